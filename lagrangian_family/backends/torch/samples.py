"""Shared samples of the two sampling joints, drawn once per call and reused by every term.

Q = q(x) q(z|x): the data batch ``x``, then ``z_q ~ q(z|x)``.
P = p(z) p(x|z): ``z_p ~ p(z)`` (as many as the batch), then ``x_p ~ p(x|z_p)``.

Only what the compiled plan needs is drawn, always in the same order (Q first, then P),
so that two plans that need the same samples consume the random stream identically.
Samples are reparameterised (``rsample``) when the distribution allows it; otherwise the
log-probability of the sample is kept for the score-function gradient of Monte Carlo terms.

This module also holds the compile-time view of the components (:class:`Components`):
which are explicit, which can be sampled with a path gradient, their shapes and device,
found by a tiny dry run that leaves the random state and the modules' modes untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.distributions import Distribution, Independent, constraints
from torch.distributions.transforms import Transform

from lagrangian_family.errors import ObjectiveError

#: Sample keys in drawing order. An estimator lists the keys it reads in ``requires``.
ORDER = ("q_dist", "z_q", "dec_q", "z_p", "dec_p", "x_p", "x_p_path", "enc_p")
#: What each key needs drawn first.
DEPENDS = {
    "q_dist": (),
    "z_q": ("q_dist",),
    "dec_q": ("z_q",),
    "z_p": (),
    "dec_p": ("z_p",),
    "x_p": ("dec_p",),
    "x_p_path": ("dec_p",),
    "enc_p": ("x_p",),
}


def roles(term) -> set[str]:
    """Which components a term uses: "encoder", "decoder", "prior"."""
    from lagrangian_family.symbolic.terms import Divergence, ExpectedLog, MutualInformation

    if isinstance(term, ExpectedLog):
        dens = [term.outer, term.density]
    elif isinstance(term, Divergence):
        dens = [d for d in (term.left, term.right, term.outer) if d is not None]
    elif isinstance(term, MutualInformation):
        return {"encoder"} if term.family == "q" else {"decoder", "prior"}
    else:  # pragma: no cover - unknown term types use everything
        return {"encoder", "decoder", "prior"}
    out: set[str] = set()
    for d in dens:
        scope = set(d.vars) | set(d.given)
        if d.family == "q" and "z" in scope:
            out.add("encoder")
        if d.family == "p" and "x" in scope:
            out |= {"decoder", "prior"}
        if d.family == "p" and "z" in d.vars:
            out.add("prior")
    return out


def closure(keys) -> tuple[str, ...]:
    """The keys and everything they depend on, in drawing order."""
    out: set[str] = set()
    stack = list(keys)
    while stack:
        k = stack.pop()
        if k not in out:
            out.add(k)
            stack.extend(DEPENDS[k])
    return tuple(k for k in ORDER if k in out)


def per_example(t: torch.Tensor, n: int) -> torch.Tensor:
    """Sum a log-density (or KL) over everything but the batch dimension: shape ``(n,)``."""
    if t.dim() == 1:
        return t
    if t.dim() == 0:
        return t.expand(n)
    return t.reshape(n, -1).sum(1)


def flat(t: torch.Tensor) -> torch.Tensor:
    """``(n, ...)`` to ``(n, d)``."""
    return t.reshape(t.shape[0], -1)


class Prior:
    """A uniform view of the prior: a ``Distribution``, or a module/object with ``sample(n)``.

    ``explicit`` says whether ``log_prob`` exists; ``distribution()`` gives a torch
    distribution for analytic KL when there is one.
    """

    def __init__(self, prior):
        self.obj = prior
        if isinstance(prior, Distribution):
            self.explicit = True
            self.reparameterised = prior.has_rsample
        elif callable(getattr(prior, "sample", None)):
            self.explicit = callable(getattr(prior, "log_prob", None)) and getattr(prior, "explicit", True)
            self.reparameterised = True
        else:
            raise ObjectiveError(
                "the prior is neither a distribution nor a sampler",
                expected="a torch.distributions.Distribution over one z, or an object with sample(n) "
                "(and log_prob(z) if explicit), e.g. StandardNormalPrior(dim) or DataSamplerPrior(data)",
                given=f"{type(prior).__name__}",
                fix="wrap it: StandardNormalPrior(z_dim), or DataSamplerPrior(samples) for a data domain",
            )

    @property
    def name(self) -> str:
        return type(self.obj).__name__

    def sample(self, n: int) -> torch.Tensor:
        p = self.obj
        if isinstance(p, Distribution):
            return p.rsample((n,)) if p.has_rsample else p.sample((n,))
        return p.sample(n)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return per_example(self.obj.log_prob(z), z.shape[0])

    def distribution(self) -> Distribution | None:
        p = self.obj
        if isinstance(p, Distribution):
            return p
        make = getattr(p, "distribution", None)
        return make() if callable(make) else None


def _tensor_leaves(obj, path=()):
    """(path, tensor) of every tensor a distribution holds, through base distributions and transforms."""
    for key, value in vars(obj).items():
        here = path + (key,)
        if isinstance(value, torch.Tensor):
            yield here, value
        elif isinstance(value, (Distribution, Transform)):
            yield from _tensor_leaves(value, here)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, (Distribution, Transform)):
                    yield from _tensor_leaves(item, here + (str(i),))


def _rebuild(obj, tensors: dict, path=()):
    """A shallow copy of a distribution (or transform) with its tensors replaced by ``tensors[path]``."""
    new = copy.copy(obj)
    for key, value in vars(obj).items():
        here = path + (key,)
        if isinstance(value, torch.Tensor):
            if here in tensors:
                new.__dict__[key] = tensors[here]
        elif isinstance(value, (Distribution, Transform)):
            new.__dict__[key] = _rebuild(value, tensors, here)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (Distribution, Transform)) for v in value):
            new.__dict__[key] = type(value)(_rebuild(v, tensors, here + (str(i),))
                                            if isinstance(v, (Distribution, Transform)) else v
                                            for i, v in enumerate(value))
    return new


class DistributionPrior(nn.Module):
    """A prior given as a ``torch.distributions`` object, as a module whose tensors are buffers.

    A plain distribution is not a module, so ``.to(device)``, ``.double()`` and ``state_dict()``
    would not see it. Wrapped, every tensor it holds (its parameters, those of its base
    distribution and transforms) is a buffer: it moves and changes dtype with the compiled loss
    and is saved with it. :func:`.compile_objective` wraps a distribution prior this way.

    >>> from torch.distributions import Independent, Normal
    >>> prior = DistributionPrior(Independent(Normal(torch.zeros(2), torch.ones(2)), 1))
    >>> sorted(prior.state_dict())
    ['base_dist__loc', 'base_dist__scale']
    >>> prior.double().sample(3).dtype
    torch.float64
    """

    explicit = True

    def __init__(self, distribution: Distribution):
        super().__init__()
        if not isinstance(distribution, Distribution):
            raise ObjectiveError("DistributionPrior wraps a torch distribution",
                                 expected="a torch.distributions.Distribution over one z",
                                 given=type(distribution).__name__,
                                 fix="pass e.g. Independent(Normal(torch.zeros(d), torch.ones(d)), 1)")
        self._paths: list[tuple[str, tuple[str, ...]]] = []
        for path, tensor in _tensor_leaves(distribution):
            name = "__".join(path)
            self.register_buffer(name, tensor)
            self._paths.append((name, path))
        self._template = distribution
        self._dist = distribution

    def _refresh(self) -> None:
        self._dist = _rebuild(self._template, {path: self._buffers[name] for name, path in self._paths})

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._refresh()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh()  # cached derived tensors (lazy properties) are recomputed from the loaded ones

    @property
    def has_rsample(self) -> bool:
        """Whether the distribution draws reparameterised samples (a path gradient)."""
        return self._dist.has_rsample

    def distribution(self) -> Distribution:
        """The distribution, on the module's device and dtype."""
        return self._dist

    def sample(self, n: int) -> torch.Tensor:
        """``n`` samples ``(n, *z_shape)`` (reparameterised when the distribution allows it)."""
        d = self._dist
        return d.rsample((n,)) if d.has_rsample else d.sample((n,))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per example, summed over the dimensions of z: ``(n,)``."""
        return per_example(self._dist.log_prob(z), z.shape[0])

    def forward(self, n: int) -> torch.Tensor:  # pragma: no cover - convenience
        """``prior(n)`` is ``prior.sample(n)``."""
        return self.sample(n)

    def extra_repr(self) -> str:
        return repr(self._dist)


#: names of the supports whose membership the data can be checked against
_SUPPORT_TEXT = {"_Boolean": "{0, 1}", "_OneHot": "one-hot vectors", "_Simplex": "the probability simplex",
                 "_IntegerInterval": "integers in an interval", "_IntegerGreaterThan": "integers above a bound"}


def data_support(d) -> constraints.Constraint | None:
    """The support of a decoder's distribution when it does not depend on its parameters and is
    not all reals (Bernoulli's {0, 1}, Beta's [0, 1], a one-hot categorical's vertices), else None."""
    base = d
    while isinstance(base, Independent):
        base = base.base_dist
    # the class attribute: a support that depends on the parameters is a property there
    support = getattr(type(base), "support", None) if isinstance(base, Distribution) else None
    if not isinstance(support, constraints.Constraint) or isinstance(support, (constraints._Dependent,
                                                                                constraints._Real)):
        return None
    return support


def support_text(support: constraints.Constraint) -> str:
    """A short description of a support: ``{0, 1}``, ``[0.0, 1.0]``."""
    name = type(support).__name__
    if name == "_Interval":
        return f"[{support.lower_bound}, {support.upper_bound}]"
    if name == "_HalfOpenInterval":
        return f"[{support.lower_bound}, {support.upper_bound})"
    if name in ("_GreaterThan", "_GreaterThanEq"):
        return f"values {'>' if name == '_GreaterThan' else '>='} {support.lower_bound}"
    return _SUPPORT_TEXT.get(name, repr(support))


def check_support(x: torch.Tensor, support: constraints.Constraint | None, decoder: str, where: str = "") -> None:
    """Raise a short :class:`ObjectiveError` when the data ``x`` is outside the decoder's support
    (e.g. non-binary x for a Bernoulli decoder); ``decoder`` names the decoder and its distribution.

    >>> check_support(torch.tensor([[0.0, 0.5]]), constraints.boolean, "a Bernoulli decoder")
    Traceback (most recent call last):
    ...
    lagrangian_family.errors.ObjectiveError: the data batch x is outside the support of the decoder's distribution
    expected: x in {0, 1}, where a Bernoulli decoder gives log p(x|z)
    given: 1 of 2 values outside it, e.g. 0.5 at index (0, 1); x ranges over [0, 0.5]
    fix: ...
    """
    err = support_error(x, support, decoder, where)
    if err is not None:
        raise err


def support_error(x: torch.Tensor, support: constraints.Constraint | None, decoder: str,
                  where: str = "") -> ObjectiveError | None:
    """The error :func:`check_support` raises, or None when ``x`` is in the support."""
    if support is None:
        return None
    ok = support.check(x)
    if bool(ok.all()):
        return None
    bad = (~ok).nonzero()
    first = tuple(int(i) for i in bad[0])
    value = x[first] if len(first) == x.dim() else x[first].reshape(-1)[:4]
    shown = f"{float(value):.4g}" if value.dim() == 0 else str([round(float(v), 4) for v in value])
    binary = type(support).__name__ == "_Boolean"
    return ObjectiveError(
        f"the data batch x is outside the support of the decoder's distribution{where}",
        expected=f"x in {support_text(support)}, where {decoder} gives log p(x|z)",
        given=f"{len(bad)} of {ok.numel()} values outside it, e.g. {shown} at index {first}; "
        f"x ranges over [{float(x.min()):.4g}, {float(x.max()):.4g}]",
        fix="binarise the data (lagrangian_family.data.binarize(x), stochastic, or binarize(x, mode='fixed')), "
        "or use a decoder for continuous data (GaussianMLPDecoder, LaplaceMLPDecoder)" if binary else
        "map the data into the support, or use a decoder whose distribution covers the data's range")


@dataclass
class Components:
    """The encoder, decoder and prior, and what a dry run found out about them."""

    encoder: nn.Module
    decoder: nn.Module
    prior: Prior
    encoder_explicit: bool = True
    encoder_rsample: bool = True
    encoder_dist: type | None = None
    decoder_explicit: bool = True
    decoder_rsample: bool = True
    decoder_dist: type | None = None
    prior_dist: type | None = None
    x_shape: tuple[int, ...] = ()
    z_shape: tuple[int, ...] = ()
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    decoder_sample: str = "sample"
    q_example: Distribution | None = None  # the encoder's distribution on two probe examples
    prior_example: Distribution | None = None  # the prior as a torch distribution, when it has one
    x_support: constraints.Constraint | None = None  # the decoder's support, when checkable (data_support)

    encoder_desc: str = "tensor"
    decoder_desc: str = "tensor"

    @property
    def encoder_name(self) -> str:
        return type(self.encoder).__name__

    @property
    def decoder_name(self) -> str:
        return type(self.decoder).__name__

    @property
    def x_dim(self) -> int:
        return int(torch.Size(self.x_shape).numel())

    @property
    def z_dim(self) -> int:
        return int(torch.Size(self.z_shape).numel())


def _name(m) -> str:
    return type(m).__name__


def describe(d) -> str:
    """``Independent(Bernoulli)`` for a distribution, ``tensor`` for a tensor."""
    if isinstance(d, torch.distributions.Independent):
        return f"Independent({describe(d.base_dist)})"
    if isinstance(d, Distribution):
        return type(d).__name__
    return "tensor"


def module_device(*modules) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of the first parameter or buffer found (CPU, float32 if none)."""
    for m in modules:
        if isinstance(m, nn.Module):
            for t in list(m.parameters()) + list(m.buffers()):
                if t.is_floating_point():
                    return t.device, t.dtype
                return t.device, torch.get_default_dtype()
    return torch.device("cpu"), torch.get_default_dtype()


class _EvalMode:
    """Put modules in eval mode for a dry run and restore every submodule's flag after."""

    def __init__(self, *modules):
        self.modules = [m for m in modules if isinstance(m, nn.Module)]
        self.saved: list[tuple[nn.Module, bool]] = []

    def __enter__(self):
        for m in self.modules:
            self.saved += [(s, s.training) for s in m.modules()]
            m.eval()

    def __exit__(self, *exc):
        for s, flag in self.saved:
            s.training = flag
        return False


def probe(encoder, decoder, prior, *, example_x=None, decoder_sample: str = "sample",
          uses: dict[str, list[str]] | None = None) -> Components:
    """Dry-run the components on two examples to learn their kinds and shapes.

    ``uses`` maps "encoder", "decoder", "prior" to the terms that use each; errors name them.

    Runs under ``torch.no_grad``, in eval mode, inside ``torch.random.fork_rng`` so that the
    random stream and batch-norm statistics are left exactly as they were.
    """
    if decoder_sample not in ("sample", "mean"):
        raise ObjectiveError("unknown decoder_sample option", expected="'sample' or 'mean'",
                             given=repr(decoder_sample), fix="pass decoder_sample='mean' to use the decoder's "
                             "mean as its sample in likelihood-free terms")
    for role, m in (("encoder", encoder), ("decoder", decoder)):
        if not callable(m):
            raise ObjectiveError(f"the {role} is not callable", expected="an nn.Module",
                                 given=type(m).__name__, fix=f"pass an nn.Module as {role}=")
    prior_v = prior if isinstance(prior, Prior) else Prior(prior)
    uses = uses or {}

    def used_by(*roles) -> str:
        """The terms that use every one of ``roles``."""
        names = [t for t in dict.fromkeys(uses.get(roles[0], ())) if all(t in uses.get(r, ()) for r in roles)]
        return f" (used by {', '.join(names)})" if names else ""

    device, dtype = module_device(encoder, decoder, prior_v.obj)
    if example_x is not None:
        example_x = torch.as_tensor(example_x)
        device = example_x.device
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    c = Components(encoder, decoder, prior_v, device=device, dtype=dtype, decoder_sample=decoder_sample)
    with torch.no_grad(), torch.random.fork_rng(devices=devices), _EvalMode(encoder, decoder, prior_v.obj):
        try:
            z0 = prior_v.sample(2)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ObjectiveError(f"the prior ({prior_v.name}) failed to sample", expected="sample(n) -> (n, z_dim)",
                                 given=f"{type(e).__name__}: {e}", fix="check the prior") from e
        if not isinstance(z0, torch.Tensor) or z0.dim() < 2 or z0.shape[0] != 2:
            raise ObjectiveError(f"the prior ({prior_v.name}) returned a bad sample",
                                 expected="sample(n) returning a tensor of shape (n, z_dim)",
                                 given=f"{type(z0).__name__} of shape {tuple(getattr(z0, 'shape', ()))}",
                                 fix="return one row per sample")
        z0 = z0.to(device)
        c.z_shape = tuple(z0.shape[1:])
        dist = prior_v.distribution() if prior_v.explicit else None
        c.prior_dist = type(dist) if dist is not None else None
        c.prior_example = dist
        try:
            d = decoder(z0)
        except Exception as e:  # noqa: BLE001
            _, dec_dtype = module_device(decoder)
            if z0.is_floating_point() and dec_dtype != z0.dtype:
                raise ObjectiveError(f"the prior ({prior_v.name}) samples {z0.dtype} but the decoder "
                                     f"({_name(decoder)}) computes in {dec_dtype}" + used_by("decoder"),
                                     expected="the prior and the decoder in one dtype",
                                     given=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}",
                                     fix="move the components to one dtype before compiling (e.g. .double() each), "
                                     "or compile, then move the compiled loss (loss_fn.double())") from e
            raise ObjectiveError(f"the decoder ({_name(decoder)}) failed on prior samples of shape {tuple(z0.shape)}"
                                 + used_by("decoder"),
                                 expected=f"a decoder taking z of shape (n, {', '.join(map(str, c.z_shape))})",
                                 given=f"{type(e).__name__}: {e}",
                                 fix="make the decoder's input size match the prior's dimension") from e
        if isinstance(d, Distribution):
            c.decoder_explicit, c.decoder_rsample, c.decoder_dist = True, d.has_rsample, type(d)
            c.decoder_desc = describe(d)
            c.x_support = data_support(d)
            xs = d.sample()
        elif isinstance(d, torch.Tensor):
            c.decoder_explicit, c.decoder_rsample = False, True
            xs = d
        else:
            raise ObjectiveError(f"the decoder ({_name(decoder)}) returned a {type(d).__name__}",
                                 expected="a torch.distributions.Distribution over x (explicit) or a tensor "
                                 "(implicit generator)", given=type(d).__name__,
                                 fix="return e.g. Independent(Bernoulli(logits=...), 1)")
        c.x_shape = tuple(xs.shape[1:])
        if example_x is not None:
            ex_shape = tuple(example_x.shape[1:])
            if ex_shape != c.x_shape and torch.Size(ex_shape).numel() != torch.Size(c.x_shape).numel():
                raise ObjectiveError(
                    f"shape mismatch between the data and the decoder ({_name(decoder)})" + used_by("decoder"),
                    expected=f"x of shape (n, {', '.join(map(str, c.x_shape))}) as the decoder generates",
                    given=f"example_x of shape {tuple(example_x.shape)}",
                    fix="make the decoder's output size match the data")
            x = example_x[:2].to(device)
        else:
            x = xs
        try:
            e = encoder(x)
        except Exception as err:  # noqa: BLE001
            raise ObjectiveError(f"the encoder ({_name(encoder)}) failed on x of shape {tuple(x.shape)}"
                                 + used_by("encoder"),
                                 expected="an encoder taking a batch of x", given=f"{type(err).__name__}: {err}",
                                 fix="make the encoder's input size match the data") from err
        if isinstance(e, Distribution):
            c.encoder_explicit, c.encoder_rsample, c.encoder_dist = True, e.has_rsample, type(e)
            c.encoder_desc = describe(e)
            c.q_example = e
            zs = e.sample()
        elif isinstance(e, torch.Tensor):
            c.encoder_explicit, c.encoder_rsample = False, True
            zs = e
        else:
            raise ObjectiveError(f"the encoder ({_name(encoder)}) returned a {type(e).__name__}",
                                 expected="a torch.distributions.Distribution over z (explicit) or a tensor "
                                 "(implicit, deterministic)", given=type(e).__name__,
                                 fix="return e.g. Independent(Normal(loc, scale), 1)")
        if tuple(zs.shape[1:]) != c.z_shape:
            raise ObjectiveError(
                f"shape mismatch between the encoder ({_name(encoder)}) and the prior ({prior_v.name})"
                + used_by("encoder", "prior"),
                expected=f"z of shape (n, {', '.join(map(str, c.z_shape))}) as the prior samples",
                given=f"the encoder gives z of shape {tuple(zs.shape)}",
                fix="make the encoder's latent size equal to the prior's")
        if example_x is not None and c.decoder_explicit:
            d = decoder(zs)
            try:
                per_example(d.log_prob(x), 2)
                err = None
            except Exception as e:  # noqa: BLE001 - diagnosed below
                err = e
            if err is not None:
                _diagnose_scoring(err, d, x, example_x, c, _name(decoder), used_by("decoder"))
            check_support(example_x, c.x_support, f"the decoder ({_name(decoder)}, {c.decoder_desc})",
                          " (example_x)")
    return c


def _diagnose_scoring(err: Exception, d: Distribution, x: torch.Tensor, example_x: torch.Tensor, c: Components,
                      name: str, used: str) -> None:
    """Raise the error that says why the decoder's log_prob failed on the data: a shape mismatch,
    data outside the support, or else the failure itself (its first line)."""
    shape = tuple(d.batch_shape + d.event_shape)
    if shape != tuple(x.shape):
        want = tuple(x.shape[1:])
        dims = ", ".join(map(str, shape[1:]))
        raise ObjectiveError(
            f"the decoder ({name}) returns a distribution over x of shape {shape[1:]}, but the data has shape "
            f"{want}" + used,
            expected=f"batch_shape + event_shape of the decoder's {c.decoder_desc} equal to x's shape "
            f"(n, {', '.join(map(str, want))})",
            given=f"batch_shape {tuple(d.batch_shape)}, event_shape {tuple(d.event_shape)} for example_x of shape "
            f"{tuple(example_x.shape)}",
            fix=f"reshape the data to (n, {dims}) (x.reshape(len(x), {dims})), or build the decoder for "
            f"x_shape={want} (the ready-made decoders take it, e.g. BernoulliMLPDecoder(z_dim, {want}))") from None
    support = c.x_support if c.x_support is not None else getattr(d, "support", None)
    if isinstance(support, constraints.Constraint) and not isinstance(support, constraints._Dependent):
        check_support(example_x.to(x.device), data_support(d) or support, f"the decoder ({name}, {c.decoder_desc})",
                      " (example_x)")
    first = str(err).splitlines()[0] if str(err) else ""
    raise ObjectiveError(f"the decoder ({name}) cannot score the data" + used,
                         expected=f"log_prob(x) of its {c.decoder_desc} defined on the data",
                         given=f"{type(err).__name__}: {first[:200]}",
                         fix="check that the decoder's distribution fits the data (shape, range, dtype)") from None


class Samples:
    """The samples of one call. Attributes are set only for the keys the plan needs.

    ``x``: the data batch; ``q_dist``: q(z|x); ``z_q``: z ~ q(z|x); ``dec_q``: p(x|z_q) (a
    distribution, or a tensor for an implicit decoder); ``z_p``: z ~ p(z); ``dec_p``: p(x|z_p);
    ``x_p``: x ~ p(x|z_p); ``x_p_path``: a sample of p(x) with a path gradient (the same
    tensor as ``x_p`` when reparameterised); ``enc_p``: q(z|x_p). ``z_q_logp`` and
    ``x_p_logp`` are the log-probabilities of non-reparameterised samples (None otherwise).
    """

    __slots__ = ("x", "n", "q_dist", "z_q", "z_q_logp", "dec_q", "z_p", "dec_p", "x_p", "x_p_logp",
                 "x_p_path", "enc_p", "cache")

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.n = x.shape[0]
        self.z_q_logp = None
        self.x_p_logp = None
        #: per-example quantities shared between estimators (log-densities, analytic KL)
        self.cache: dict = {}


def _sample(d, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A sample of ``d`` and, when it has no path gradient, its per-example log-probability (for
    the score-function gradient): a tensor (an implicit component) is its own sample,
    ``rsample`` is used when the distribution has it."""
    if not isinstance(d, Distribution):
        return d, None
    if d.has_rsample:
        return d.rsample(), None
    v = d.sample()
    return v, per_example(d.log_prob(v), n)


def draw(x: torch.Tensor, comps: Components, keys: tuple[str, ...]) -> Samples:
    """Draw the samples for ``keys`` (already closed under dependencies, in drawing order)."""
    s = Samples(x)
    n = s.n
    for k in keys:
        if k == "q_dist":
            s.q_dist = comps.encoder(x)
        elif k == "z_q":
            s.z_q, s.z_q_logp = _sample(s.q_dist, n)
        elif k == "dec_q":
            s.dec_q = comps.decoder(s.z_q)
        elif k == "z_p":
            z = comps.prior.sample(n)
            s.z_p = z if z.device == x.device else z.to(x.device)
        elif k == "dec_p":
            s.dec_p = comps.decoder(s.z_p)
        elif k == "x_p":
            s.x_p, s.x_p_logp = _sample(s.dec_p, n)
        elif k == "x_p_path":
            d = s.dec_p
            if not isinstance(d, Distribution):
                s.x_p_path = d
            elif comps.decoder_sample == "mean":
                s.x_p_path = d.mean
            elif d.has_rsample:
                s.x_p_path = s.x_p if getattr(s, "x_p", None) is not None and s.x_p_logp is None else d.rsample()
            else:  # pragma: no cover - rejected at compile time
                raise RuntimeError("no path-gradient sample of p(x)")
        elif k == "enc_p":
            s.enc_p = comps.encoder(s.x_p)
    return s
