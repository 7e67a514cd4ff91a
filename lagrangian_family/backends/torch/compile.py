"""Compile a classified objective into a trainable loss (an ``nn.Module``).

``compile_objective`` lowers ``classify(objective).computable_form``: the objective the
symbolic layer derived, each of whose terms is estimable on its own, never a hand-typed
copy. Each term gets one estimator from the registry (:mod:`.registry`): closed-form KL
where torch has it, Monte Carlo on the shared samples of q(x,z) and p(x,z) otherwise
(:mod:`.samples`, drawn once per call), and for divergences between marginals or joints
MMD, adversarial JS, f-GAN or Wasserstein estimators that own their critics.

Reductions: log-densities are summed over the data dimensions of each example, estimates
are means over the batch. Values are the objective *up to the constants the algebra drops*,
E_{q(x)}[log q(x)] = -H_q(x) and E_{p(z)}[log p(z)] = -H_p(z): ``KL(q(x,z) || p(x,z))`` is
reported as -ELBO, which is the KL plus H_q(x).

Coefficients are sympy expressions lambdified once; symbols are bound per call
(``loss_fn(x, beta=4.0)``), so new values never recompile.

>>> import torch, lagrangian_family as lf
>>> from lagrangian_family.backends.torch import (compile_objective, GaussianMLPEncoder,
...     BernoulliMLPDecoder, StandardNormalPrior)
>>> torch.manual_seed(0)
<torch._C.Generator object at ...>
>>> enc, dec = GaussianMLPEncoder(6, 2, hidden=(8,)), BernoulliMLPDecoder(2, 6, hidden=(8,))
>>> loss_fn = compile_objective(lf.zoo.get("beta_vae"), encoder=enc, decoder=dec, prior=StandardNormalPrior(2))
>>> out = loss_fn(torch.bernoulli(torch.full((5, 6), 0.5)), beta=4.0)
>>> out.loss.backward()
>>> sorted(out.terms)
['E_{q(x)}[KL(q(z|x) || p(z))]', 'E_{q(x,z)}[log p(x|z)]']
>>> sorted(out.players)
['critic', 'model']
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy
import torch
from torch import nn
from torch.distributions import Distribution

from lagrangian_family.errors import ObjectiveError, closest
from lagrangian_family.symbolic.classify import Computability, as_objective, classify, fold_kl_pairs
from lagrangian_family.symbolic.objective import Objective, as_expr
from lagrangian_family.symbolic.terms import DIVERGENCES, Term

from . import estimators as _estimators  # noqa: F401  (registers the built-in estimators)
from .distributed import reduce_output
from .estimators.likelihood import analytic_kl_available
from .estimators.mmd import KERNELS
from .registry import Context, Estimate, Estimator, build, term_kind
from .samples import (
    Components,
    DistributionPrior,
    Prior,
    Samples,
    closure,
    draw,
    module_device,
    probe,
    roles,
    support_error,
)

__all__ = ["compile_objective", "CompiledObjective", "LossOutput", "Player"]


@dataclass
class Player:
    """One player of the game: its loss and its parameter group.

    The players' losses are isolated: the model's loss has no gradient in the critics'
    parameters and the critic's loss none in the model's (:mod:`.estimators.isolation`), so
    each player can be stepped by its own optimiser from one forward pass. ``backward()``
    differentiates the loss with respect to this player's parameters
    (``loss.backward(inputs=params)``). Where a critic shares layers with the encoder, decoder or
    prior, the critic player holds them and differentiates :attr:`gradient_loss` (its loss plus
    the model's at zero value), so the shared layers follow both gradients; compute both players'
    gradients before stepping either, since they then share a graph.
    """

    loss: torch.Tensor | None
    params: list[nn.Parameter] = field(default_factory=list)
    #: where a critic shares parameters with the encoder, decoder or prior (InfoGAN's Q on the
    #: discriminator's trunk): the model's loss at zero value, whose gradient in those parameters
    #: the critic player also follows (:meth:`CompiledObjective.critic_parameters`); else None
    shared: torch.Tensor | None = None

    @property
    def gradient_loss(self) -> torch.Tensor | None:
        """What to differentiate with respect to :attr:`params`: ``loss`` (plus :attr:`shared`
        where parameters are shared; it has the same value)."""
        if self.shared is None or self.loss is None:
            return self.loss
        return self.loss + self.shared

    #: keep the graph after :meth:`backward` (set where parameters are shared: the players' losses
    #: then share a graph, and either may be differentiated first)
    retain: bool = False

    def backward(self, retain_graph: bool | None = None) -> None:
        """Accumulate this player's gradient into its parameters' ``.grad``."""
        loss = self.gradient_loss
        if loss is not None and self.params and loss.requires_grad:
            loss.backward(inputs=self.params, retain_graph=self.retain if retain_graph is None else retain_graph)


@dataclass
class LossOutput:
    """The result of one call of a compiled objective.

    ``loss``: the scalar to differentiate (mean over the batch). Its value is the model
    player's loss; its gradient is the model's in the encoder, decoder and prior (surrogates
    folded in as ``value.detach() + (surrogate - surrogate.detach())``, pyro's habit) **and**
    the critic's in the critics (``+ (critic_loss - critic_loss.detach())``, zero in value). So
    the naive loop ``opt = Adam(loss_fn.parameters()); out.loss.backward(); opt.step()`` is
    simultaneous gradient descent for both players, each on its own objective. For separate
    optimisers (other learning rates, several critic steps) use ``players``.

    ``value``: the objective's estimate, up to the dropped constants (for a Lagrangian the loss
    omits the constant -λ·ε that the value includes), detached: log it, never differentiate
    it. ``terms``: {term text: estimate}, detached. ``players``: {"model": Player,
    "critic": Player}, each loss with gradients in its own parameters only (where a critic shares
    layers with the model, the model's loss also has gradients in them, and they are the critic
    player's: see :class:`Player`). ``heads``: the
    value of each named head (one, "objective", for a plain objective; the constraints too for
    a Lagrangian), detached.

    For a Lagrangian, detached for logging: ``constraints`` {name: D_i}, ``violations``
    (D - ε as a tensor), ``multipliers`` (λ) and ``primal``; differentiable, from the same
    forward pass: ``primal_loss`` (value ``primal``, gradient the model's) and
    ``constraint_losses`` {name: D_i} (values ``constraints``, gradients the model's), for a
    constrained optimiser such as cooper (:mod:`.cooper`).

    ``player_values``: the detached value of each player's loss ({"model": ..., and "critic": ...
    where there is a critic}), for logging. ``world_size``: over how many ranks the detached
    fields (``value``, ``terms``, ``heads``, ``player_values``, ``constraints``, ``violations``,
    ``primal``) are averaged: 1 in a single process; under distributed training
    (:meth:`CompiledObjective.distribute`) they are the global batch's, the same on every rank,
    while the differentiable fields are this rank's shard's (:mod:`.distributed`).
    """

    loss: torch.Tensor
    value: torch.Tensor
    terms: dict[str, torch.Tensor]
    players: dict[str, Player]
    heads: dict[str, torch.Tensor] = field(default_factory=dict)
    constraints: dict[str, torch.Tensor] = field(default_factory=dict)
    violations: torch.Tensor | None = None
    multipliers: torch.Tensor | None = None
    primal: torch.Tensor | None = None
    primal_loss: torch.Tensor | None = None
    constraint_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    player_values: dict[str, torch.Tensor] = field(default_factory=dict)
    world_size: int = 1


# -- coefficients ---------------------------------------------------------------------------

def _tmath(name):
    import math as m

    def f(v):
        return getattr(torch, name)(v) if isinstance(v, torch.Tensor) else getattr(m, name)(v)

    return f


_LAMBDIFY_MODULES = [{n: _tmath(n) for n in ("exp", "log", "sqrt", "sin", "cos", "tanh")}, "math"]


class _Coefficient:
    """A coefficient: a float, or a lambdified sympy expression over named symbols."""

    __slots__ = ("expr", "const", "fn", "names")

    def __init__(self, expr: sympy.Expr):
        self.expr = as_expr(expr)
        syms = sorted(self.expr.free_symbols, key=lambda s: s.name)
        self.names = tuple(s.name for s in syms)
        if not syms:
            self.const = float(self.expr)
            self.fn = None
        else:
            self.const = None
            self.fn = sympy.lambdify(syms, self.expr, modules=_LAMBDIFY_MODULES)

    def __call__(self, values: Mapping):
        if self.fn is None:
            return self.const
        return self.fn(*[values[n] for n in self.names])



# -- the compiled module --------------------------------------------------------------------

class _KeyedTable:
    """A user's ``estimators=`` or ``critics=`` table: {term | term text | divergence kind: entry}.

    Texts are parsed, so ``"MMD(q(z)||p(z))"`` finds the term printed ``MMD(q(z) || p(z))``.
    :meth:`check` rejects the keys that matched no lowered term (a misspelt key would
    otherwise be ignored without a word).
    """

    def __init__(self, argument: str, table: Mapping | None):
        if table is not None and not isinstance(table, Mapping):
            raise ObjectiveError(f"{argument}= is not a mapping",
                                 expected="a dict {term | term text | divergence kind: entry}",
                                 given=type(table).__name__, fix=f"pass {argument}={{'MMD': ...}}")
        self.argument = argument
        self.entries: list[tuple[object, object, object]] = []  # (user's key, normalised key, entry)
        for key, entry in (table or {}).items():
            self.entries.append((key, self._normalise(key), entry))
        self.used: set[int] = set()

    @staticmethod
    def _normalise(key):
        if isinstance(key, str) and key not in DIVERGENCES and "(" in key:
            try:
                obj = as_objective(key)
            except ObjectiveError:
                return key
            items = list(obj.items())
            if len(items) == 1 and items[0][1] == 1:
                return items[0][0]
        return key

    def lookup(self, term: Term):
        """The entry for a term: by the term (or its text), then its divergence kind."""
        for wanted in (term, str(term), term_kind(term)):
            if wanted is None:
                continue
            for i, (key, norm, entry) in enumerate(self.entries):
                if norm == wanted or key == wanted:
                    self.used.add(i)
                    return entry
        return None

    def check(self, terms: Sequence[Term]) -> None:
        unused = [key for i, (key, _, _) in enumerate(self.entries) if i not in self.used]
        if not unused:
            return
        valid = list(dict.fromkeys([str(t) for t in terms] + [k for t in terms if (k := term_kind(t))]))
        given = ", ".join(repr(str(k)) for k in unused)
        near = [n for k in unused for n in closest(str(k), valid)]
        raise ObjectiveError(
            f"{self.argument}= has a key that matches no term of the compiled objective: {given}",
            expected="keys among " + (", ".join(map(repr, valid)) if valid else "none (the objective has no terms)"),
            given=given,
            fix=("did you mean " + " or ".join(map(repr, dict.fromkeys(near))) + "?") if near
            else "use a term as printed in loss_fn.terms, or its divergence kind (KL, JS, MMD, W, D_f)")


def _check_value(name: str, value, used_in: Sequence[str] = ()):
    """A symbol's value: a real number or a 0-dim real tensor (a sympy or numpy number becomes a float)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 and not value.dtype.is_complex and value.dtype != torch.bool:
            return value
        given = f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
        fix = f"pass a 0-dim real tensor, e.g. {name}=t.squeeze() or {name}=float(t)"
    else:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return value
        if isinstance(value, sympy.Basic) and value.is_number and value.is_real:
            return float(value)
        if getattr(value, "ndim", None) == 0 and getattr(getattr(value, "dtype", None), "kind", "") in "iuf":
            return float(value)  # a 0-dim numpy array
        text = repr(value)
        given = f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
        fix = f"pass a number, e.g. {name}=4.0"
    where = f" (in {', '.join(dict.fromkeys(used_in))})" if used_in else ""
    raise ObjectiveError(f"bad value for the parameter {name!r}{where}",
                         expected="a real number or a 0-dim real tensor", given=given, fix=fix)


def _shape_text(shape: Sequence[int]) -> str:
    return "(n" + "".join(f", {d}" for d in shape) + ")"


def _zoo_aliases(symbols) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The zoo's keyword aliases that name exactly one of ``symbols`` ({alias: symbol}), and the
    ones that could name several ({alias: [symbols]}).

    The zoo accepts ``lam`` for ``lambda`` (a Python keyword, so ``loss_fn(x, lambda=1)`` cannot
    be written), ``lam`` for InfoGAN's ``lambda_I``, ``alpha`` for LagVAE's ``alpha1``. A compiled
    objective accepts the same aliases for the symbols it has, however it was given (zoo name,
    ``lf.zoo.get(...)``, text), at compile time and at call time.

    >>> _zoo_aliases({"alpha", "lambda"})[0]
    {'lam': 'lambda'}
    """
    from lagrangian_family import zoo

    pairs: dict[str, set[str]] = {}
    for name in zoo.names():
        for alias, sym in zoo.entry(name).aliases.items():
            pairs.setdefault(alias, set()).add(sym)
    found, ambiguous = {}, {}
    for alias, syms in pairs.items():
        if alias in symbols:
            continue
        hits = sorted(syms & set(symbols))
        if len(hits) == 1:
            found[alias] = hits[0]
        elif hits:
            ambiguous[alias] = hits
    return found, ambiguous


def _unique_params(*modules) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for m in modules:
        if isinstance(m, nn.Module):
            for p in m.parameters():
                if id(p) not in seen and p.requires_grad:
                    seen.add(id(p))
                    out.append(p)
    return out


def _player_values(players: Mapping[str, Player]) -> dict[str, torch.Tensor]:
    """The detached value of each player's loss (the players without a loss left out)."""
    return {name: p.loss.detach() for name, p in players.items() if p.loss is not None}


def _why_not_computable(c) -> str:
    reasons = "; ".join(getattr(c, "reasons", ()) or ())
    return reasons or "it is in no computability class"


class CompiledObjective(nn.Module):
    """A compiled objective: call it on a batch ``x`` with the parameter values.

    ``loss_fn(x, beta=4.0)`` or ``loss_fn(x, {"lambda": 10.0})`` returns a
    :class:`LossOutput`. Holds the encoder, decoder, prior (when a module) and the
    estimators (with their critics) as submodules, so ``.to(device)`` and ``state_dict()``
    cover all of them.
    """

    def __init__(self, heads: Mapping[str, object], *, encoder: nn.Module, decoder: nn.Module, prior,
                 critics: Mapping | None = None, estimators: Mapping | None = None, params: Mapping | None = None,
                 example_x: torch.Tensor | None = None, decoder_sample: str = "sample", mmd_kernel: str = "paper",
                 mmd_biased: bool = True, critic_hidden: int | None = None, fold_kl: bool = True,
                 defaults: Mapping | None = None, extra_symbols: Mapping[str, Sequence[str]] | None = None,
                 lenient: bool = False):
        """See :func:`compile_objective` for the arguments. ``defaults``: values of symbols the
        caller supplies (a zoo model's), not checked against the objective's symbols as
        ``params`` are; ``extra_symbols``: {symbol: where it is used} for symbols a subclass binds
        outside the heads (a Lagrangian's α); ``lenient``: ignore keys of ``params``,
        ``estimators`` and ``critics`` that match nothing (for a sub-problem compiled with the
        settings of a larger one)."""
        super().__init__()
        if mmd_kernel not in KERNELS:
            raise ObjectiveError(f"unknown MMD kernel {mmd_kernel!r}",
                                 expected="mmd_kernel one of " + ", ".join(map(repr, KERNELS)), given=repr(mmd_kernel),
                                 fix="pass mmd_kernel='paper' (the authors' kernel), 'rbf' or 'imq'")
        if not isinstance(mmd_biased, int) or mmd_biased not in (0, 1):
            raise ObjectiveError("mmd_biased is not a bool", expected="True (V-statistic) or False (U-statistic)",
                                 given=repr(mmd_biased), fix="pass mmd_biased=True or mmd_biased=False")
        critics_t, estimators_t = _KeyedTable("critics", critics), _KeyedTable("estimators", estimators)
        if params is not None and not isinstance(params, Mapping):
            raise ObjectiveError("params= is not a mapping", expected="a dict {symbol name: value}",
                                 given=type(params).__name__, fix="pass params={'beta': 4.0}")
        self.encoder = encoder
        self.decoder = decoder
        if isinstance(prior, Prior):
            prior = prior.obj
        if isinstance(prior, Distribution):  # its tensors become buffers: they follow .to() and state_dict
            prior = DistributionPrior(prior)
        prior_v = Prior(prior)
        if isinstance(prior_v.obj, nn.Module):
            self.prior = prior_v.obj
        else:
            self._raw_prior = prior_v.obj
        settings = {"mmd_kernel": mmd_kernel, "mmd_biased": mmd_biased, "critic_hidden": critic_hidden}
        #: the compile-wide settings, as a model file records them (:mod:`.model`)
        self.compile_options = {**settings, "mmd_biased": bool(mmd_biased), "decoder_sample": decoder_sample,
                                "fold_kl": bool(fold_kl)}
        self.defaults: dict = {}
        for k, v in (defaults or {}).items():
            self.defaults[k.name if isinstance(k, sympy.Symbol) else str(k)] = v
        user_params = {(k.name if isinstance(k, sympy.Symbol) else str(k)): v for k, v in (params or {}).items()}

        # classify every head, then dry-run the components knowing which terms use them
        self.classifications = {}
        forms: dict[str, Objective] = {}
        for head, obj in heads.items():
            objective = as_objective(obj)
            c = classify(objective)
            self.classifications[head] = c
            if c.computability is Computability.NOT_COMPUTABLE or c.computable_form is None:
                raise ObjectiveError(
                    f"the objective {objective} cannot be compiled: it is not computable",
                    expected="an objective in a computability class (likelihood-based, unary or binary "
                    "likelihood-free)", given=_why_not_computable(c),
                    fix="rewrite the offending term (lf.classify(objective) explains which)")
            forms[head] = c.computable_form
        uses: dict[str, list[str]] = {}
        for form in forms.values():
            for term in form:
                for r in roles(term):
                    uses.setdefault(r, []).append(str(term))
        comps = probe(encoder, decoder, prior_v, example_x=example_x, decoder_sample=decoder_sample, uses=uses)
        self.components: Components = comps

        # lower every term once, shared by the heads
        self._terms: list[Term] = []
        index: dict[Term, int] = {}
        self.estimators = nn.ModuleList()
        self._readouts: dict[str, list[tuple[int, _Coefficient]]] = {}
        self.objectives: dict[str, Objective] = {}
        for head, form in forms.items():
            if fold_kl and analytic_kl_available(comps):
                form = fold_kl_pairs(form)
            self.objectives[head] = form
            readout = []
            for term, coef in form.items():
                if term not in index:
                    ctx = Context(comps, critics_t.lookup(term), {}, settings)
                    est = build(term, ctx, estimators_t.lookup(term))
                    if not isinstance(est, Estimator):
                        raise ObjectiveError(f"the estimator for {term} is not an Estimator",
                                             expected="an Estimator instance", given=type(est).__name__,
                                             fix="subclass lagrangian_family.backends.torch.registry.Estimator")
                    index[term] = len(self._terms)
                    self._terms.append(term)
                    self.estimators.append(est.to(comps.device))
                readout.append((index[term], _Coefficient(coef)))
            self._readouts[head] = readout
        self._texts = [str(t) for t in self._terms]
        self._keys = closure(k for e in self.estimators for k in e.requires)
        self.symbols = tuple(sorted({n for r in self._readouts.values() for _, c in r for n in c.names}))
        self._needs = {}
        for readout in self._readouts.values():
            for i, c in readout:
                for n in c.names:
                    self._needs.setdefault(n, []).append(self._texts[i])
        for n, where in (extra_symbols or {}).items():
            self._needs.setdefault(n, []).extend(where)
        self.symbols = tuple(sorted(set(self.symbols) | set(extra_symbols or ())))
        #: the zoo's keyword aliases of this objective's symbols, alias to symbol name (lam to lambda)
        self.aliases, self._ambiguous = _zoo_aliases(set(self.symbols) | set(self.defaults))
        user_params = self._resolve_aliases(user_params, "params")
        if not lenient:
            critics_t.check(self._terms)
            estimators_t.check(self._terms)
            self._check_param_names(user_params, allowed=self.defaults)
        else:
            user_params = {k: v for k, v in user_params.items() if k in self.symbols or k in self.defaults}
        self.defaults = {k: _check_value(k, v, self._needs.get(k, ()))
                         for k, v in {**self.defaults, **user_params}.items()}
        #: the shape of one example of x, as probed at compile time (example_x's, else the decoder's samples')
        self.x_shape: tuple[int, ...] = (comps.x_shape if example_x is None
                                         else tuple(torch.as_tensor(example_x).shape[1:]))
        self._x_source = (f"as the decoder ({comps.decoder_name}) generates" if example_x is None
                          else "as example_x at compile time")
        #: whether a term scores the data under the decoder (log p(x|z) at x): x must be in its support
        self._scores_x = "dec_q" in self._keys and comps.decoder_explicit and comps.x_support is not None
        self._model_params = None
        self._critic_params = None
        self._shares = False
        self._sync = None
        if example_x is not None:
            self.dry_run(example_x)

    # -- introspection ------------------------------------------------------------------------
    @property
    def objective(self) -> Objective:
        """The (first head's) computable form that was lowered."""
        return next(iter(self.objectives.values()))

    @property
    def terms(self) -> list[str]:
        """The text of every lowered term, in order (the keys of ``out.terms``)."""
        return list(self._texts)

    def _component_parameters(self) -> list[nn.Parameter]:
        return _unique_params(self.encoder, self.decoder, getattr(self, "prior", None))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that a critic shares with the encoder, decoder or prior (a Q network on the
        discriminator's trunk, as InfoGAN's authors built it): they belong to the critic player,
        whose loss then also carries the model's terms in them (see :meth:`critic_parameters`)."""
        critic = {id(p) for p in _unique_params(self.estimators)}
        return [p for p in self._component_parameters() if id(p) in critic]

    def model_parameters(self) -> list[nn.Parameter]:
        """The model player's parameters: encoder, decoder and prior (shared ones once), less
        those a critic shares (:meth:`shared_parameters`), which are the critic player's."""
        shared = {id(p) for p in self.shared_parameters()}
        return [p for p in self._component_parameters() if id(p) not in shared]

    def critic_parameters(self) -> list[nn.Parameter]:
        """The critic player's parameters: every estimator's critic, with the parameters it
        shares with the encoder, decoder or prior. A shared parameter is stepped by the
        critic's optimiser on the sum of both players' gradients in it: the critic's loss through
        the critic, the model's through the component (the model's path through a critic is
        frozen, so nothing of the adversarial term's model gradient reaches it). This is InfoGAN's
        authors' discriminator step: its loss carries the information term, and Q's layers are
        the discriminator's. With ``n_critic`` critic steps per model step the shared layers follow
        the model's gradient at every critic step, the model's own parameters once."""
        return _unique_params(self.estimators)  # the shared parameters are among them

    def forget_players(self) -> None:
        """Forget the players' parameter lists (cached at the first call), after modules were swapped."""
        self._model_params = self._critic_params = None
        self._shares = False

    def extra_repr(self) -> str:
        """The lowered objective of each head, then each term with the estimator it got and how
        it is estimated (a KL in closed form or sampled, the critic's loss, the MMD's kernel)."""
        rows = [f"{h}: {o}" for h, o in self.objectives.items()]
        rows.append("estimators:")
        rows += [f"  {t} <- {e.describe()}" for t, e in zip(self._texts, self.estimators)]
        return "\n".join(rows)

    # -- distributed training -----------------------------------------------------------------
    @property
    def sync(self):
        """The ranks the batch is sharded over (a :class:`~.distributed.RankSync`), or None."""
        return self._sync

    def distribute(self, enabled=True, *, group=None) -> CompiledObjective:
        """Compute on one rank's shard of a global batch sharded over a ``torch.distributed``
        process group (``group``, default the world), or stop (``enabled=False``); returns self.

        While distributed, every call is a collective (call it on every rank, with shards of
        equal size): the logged values of the output (``value``, ``terms``, ``heads``,
        ``player_values``, a Lagrangian's ``constraints``, ``violations`` and ``primal``) are
        averaged over the ranks, so a dual step on ``out.violations`` is the same on every rank,
        and MMD terms are computed on the samples of the whole global batch (see
        :mod:`.distributed`). The gradients are still this rank's: average them over the ranks
        (the :class:`.Trainer` does). ``enabled`` may also be a
        :class:`~.distributed.RankSync`. Outside a process group, ``distribute()`` raises
        :class:`~lagrangian_family.ObjectiveError`:

        >>> import torch
        >>> from lagrangian_family.backends.torch import (GaussianMLPEncoder, BernoulliMLPDecoder,
        ...     StandardNormalPrior)
        >>> loss_fn = compile_objective("vae", encoder=GaussianMLPEncoder(4, 2, hidden=(8,)),
        ...     decoder=BernoulliMLPDecoder(2, 4, hidden=(8,)), prior=StandardNormalPrior(2))
        >>> loss_fn.distribute(False).sync is None
        True
        """
        from .distributed import RankSync

        if isinstance(enabled, RankSync):
            sync = enabled
        elif enabled is True or enabled is False:
            sync = RankSync(group) if enabled else None
        else:
            raise ObjectiveError("distribute() takes True, False or a RankSync", expected="a bool or a RankSync",
                                 given=f"{type(enabled).__name__} {enabled!r}", fix="loss_fn.distribute()")
        self._sync = sync
        for e in self.estimators:
            e.sync = sync
        return self

    # -- binding ------------------------------------------------------------------------------
    def _resolve_aliases(self, given: dict, where: str) -> dict:
        """``given`` with the zoo's aliases replaced by the symbols they name (``lam`` -> ``lambda``);
        an alias given with its symbol, or one that could name several symbols, is an error."""
        out: dict = {}
        origin: dict = {}
        for k, v in given.items():
            if k in self._ambiguous and k not in self.symbols:
                raise ObjectiveError(
                    f"the alias {k!r} is ambiguous in this objective",
                    expected="one of the symbols " + ", ".join(map(repr, self._ambiguous[k])),
                    given=f"{k}={v!r}",
                    fix="name the symbol itself, e.g. " + f"**{{{self._ambiguous[k][0]!r}: {v!r}}}")
            sym = self.aliases.get(k, k) if k not in self.symbols else k
            if sym in out:
                other = origin[sym]
                alias = other if other != sym else k
                raise ObjectiveError(
                    f"the parameter {sym!r} is given twice in {where}",
                    expected=f"one value for {sym!r} (the zoo's alias {alias!r} names the same symbol)",
                    given=f"{other}={out[sym]!r} and {k}={v!r}", fix=f"drop one of {other!r} and {k!r}")
            out[sym] = v
            origin[sym] = k
        return out

    def _check_param_names(self, given: Mapping, *, allowed=()) -> None:
        unknown = [str(k) for k in given if k not in self.symbols and k not in allowed]
        if unknown:
            near = [n for u in unknown for n in closest(u, self.symbols)]
            aliases = "".join(f", {a} (alias of {s})" for a, s in self.aliases.items())
            raise ObjectiveError(
                f"unknown parameter {', '.join(map(repr, unknown))}",
                expected=("parameters " + ", ".join(self.symbols) + aliases) if self.symbols else "no parameters",
                given=", ".join(unknown),
                fix=("did you mean " + " or ".join(map(repr, near)) + "?") if near else "drop it")

    def bind(self, params: Mapping | None, kwargs: Mapping) -> dict:
        """The value of every symbol: the compile-time defaults, then ``params``, then ``kwargs``."""
        if params is not None and not isinstance(params, Mapping):
            raise ObjectiveError("params is not a mapping", expected="a dict {symbol name: value}",
                                 given=type(params).__name__,
                                 fix="call loss_fn(x, {'beta': 4.0}) or loss_fn(x, beta=4.0)")
        given = {}
        for src, where in ((params or {}), "params"), (kwargs, "the keywords"):
            names = {(k.name if isinstance(k, sympy.Symbol) else k): v for k, v in src.items()}
            given.update(self._resolve_aliases(names, where) if self.aliases or self._ambiguous else names)
        self._check_param_names(given, allowed=self.defaults)
        values = dict(self.defaults)
        for k, v in given.items():
            values[k] = _check_value(k, v, self._needs.get(k, ()))
        missing = [s for s in self.symbols if s not in values]
        if missing:
            need = "; ".join(f"{s} (in {', '.join(dict.fromkeys(self._needs[s]))})" for s in missing)
            raise ObjectiveError(
                f"unbound symbol {', '.join(missing)}",
                expected="a value for every symbol of the objective",
                given=f"no value for {need}",
                fix="call loss_fn(x, " + ", ".join(f"{s}=..." if s.isidentifier() and s != "lambda"
                                                  else f"**{{{s!r}: ...}}" for s in missing)
                + ") or compile with params={...}")
        return values

    # -- evaluation ---------------------------------------------------------------------------
    def check_x(self, x) -> torch.Tensor:
        """``x`` if it is a batch the components accept: a floating-point tensor ``(n, *x_shape)``
        with the shape probed at compile time; else an :class:`ObjectiveError` saying why."""
        want = _shape_text(self.x_shape)
        if not isinstance(x, torch.Tensor):
            raise ObjectiveError("the data batch x is not a tensor",
                                 expected=f"a floating-point torch.Tensor of shape {want}",
                                 given=type(x).__name__, fix="convert it: torch.as_tensor(x, dtype=torch.float32)")
        if not x.is_floating_point():
            raise ObjectiveError("the data batch x is not floating point",
                                 expected=f"a floating-point tensor of shape {want}",
                                 given=f"a tensor of dtype {x.dtype}",
                                 fix="convert it: x.float()")
        if x.dim() == 0 or x.shape[0] == 0 or tuple(x.shape[1:]) != tuple(self.x_shape):
            raise ObjectiveError(
                f"the data batch x has shape {tuple(x.shape)}, which the components were not built for",
                expected=f"x of shape {want} {self._x_source}, with n >= 1",
                given=f"x of shape {tuple(x.shape)}",
                fix=f"reshape x to {want}, or compile with example_x=<a batch of the data> to probe its shape")
        return x

    def samples(self, x: torch.Tensor) -> Samples:
        """Draw this plan's shared samples for a batch."""
        return draw(self.check_x(x), self.components, self._keys)

    def estimate(self, x: torch.Tensor) -> tuple[Samples, list[Estimate]]:
        """The shared samples of a batch and every term's :class:`.Estimate` on them.

        Data outside the decoder's support (non-binary x for a Bernoulli decoder) is reported as
        a short :class:`ObjectiveError` instead of torch's validation error, which prints the
        whole tensor; the check runs only when torch's own validation has failed, so it costs
        nothing on good data."""
        s = self.samples(x)
        try:
            return s, [e(s) for e in self.estimators]
        except ValueError as err:
            if self._scores_x and not isinstance(err, ObjectiveError):
                c = self.components
                short = support_error(s.x, c.x_support, f"the decoder ({c.decoder_name}, {c.decoder_desc})")
                if short is not None:
                    raise short from None
            raise

    @staticmethod
    def _model_part(e: Estimate) -> torch.Tensor:
        if e.surrogate is None:
            return e.value
        return e.surrogate + (e.value - e.surrogate).detach()

    def combine(self, head: str, ests: list[Estimate], values: Mapping, parts=None):
        """(value, model loss) of one head."""
        value = loss = None
        for i, coef in self._readouts[head]:
            c = coef(values)
            e = ests[i]
            v = e.value * c
            m = v if e.surrogate is None else (parts[i] if parts is not None else self._model_part(e)) * c
            value = v if value is None else value + v
            loss = m if loss is None else loss + m
        if value is None:
            ref = ests[0].value if ests else None
            z = torch.zeros((), device=ref.device if ref is not None else None)
            return z, z
        return value, loss

    def _players(self, model_loss, ests: list[Estimate]) -> tuple[torch.Tensor, dict[str, Player]]:
        """(the output's loss, the players): the model's loss plus the critic's at zero value."""
        if self._model_params is None:
            self._model_params = self.model_parameters()
            self._critic_params = self.critic_parameters()
            self._shares = bool(self.shared_parameters())
        critic = None
        for e in ests:
            if e.critic_loss is not None:
                critic = e.critic_loss if critic is None else critic + e.critic_loss
        loss = model_loss
        if critic is not None and critic.requires_grad:
            loss = model_loss + (critic - critic.detach()).to(model_loss.dtype)
        shared = None
        if self._shares and critic is not None and model_loss.requires_grad:  # see critic_parameters
            shared = (model_loss - model_loss.detach()).to(critic.dtype)
        retain = shared is not None
        return loss, {"model": Player(model_loss, self._model_params, retain=retain),
                      "critic": Player(critic, self._critic_params, shared, retain=retain)}

    def forward(self, x: torch.Tensor, params: Mapping | None = None, **kwargs) -> LossOutput:
        """The objective on a batch ``x`` of shape ``(n, *x_shape)``, with the symbols bound.

        ``params`` and ``kwargs`` give symbol values (``loss_fn(x, beta=4.0)``,
        ``loss_fn(x, {"lambda": 10.0})`` or the zoo's alias ``lam=10.0``); the compile-time
        defaults fill in the rest. Draws the shared samples once, runs every estimator on them
        and returns a :class:`LossOutput` (``out.loss`` to differentiate, ``out.value`` to log).

        >>> import torch
        >>> from lagrangian_family.backends.torch import (GaussianMLPEncoder, BernoulliMLPDecoder,
        ...     StandardNormalPrior)
        >>> loss_fn = compile_objective("beta_vae", encoder=GaussianMLPEncoder(4, 2, hidden=(8,)),
        ...     decoder=BernoulliMLPDecoder(2, 4, hidden=(8,)), prior=StandardNormalPrior(2))
        >>> out = loss_fn(torch.ones(3, 4), beta=2.0)
        >>> out.loss.shape, out.value.requires_grad
        (torch.Size([]), False)
        """
        values = self.bind(params, kwargs)
        _, ests = self.estimate(x)
        parts = [self._model_part(e) for e in ests]
        heads = {}
        value = model_loss = None
        for head in self._readouts:
            v, m = self.combine(head, ests, values, parts)
            heads[head] = v.detach()
            if value is None:
                value, model_loss = v.detach(), m
        terms = {t: e.value.detach() for t, e in zip(self._texts, ests)}
        loss, players = self._players(model_loss, ests)
        out = LossOutput(loss, value, terms, players, heads, player_values=_player_values(players))
        return reduce_output(out, self._sync)

    def dry_run(self, x: torch.Tensor) -> None:
        """Run every estimator once on two examples (no gradient, random state restored); an
        error names the term whose estimator failed."""
        dev, _ = module_device(self.encoder, self.decoder, getattr(self, "prior", None))
        x = self.check_x(torch.as_tensor(x)[:2].to(dev))
        devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        from .samples import _EvalMode

        with torch.no_grad(), torch.random.fork_rng(devices=devices), _EvalMode(self):
            try:
                s = self.samples(x)
            except Exception as err:  # noqa: BLE001
                raise ObjectiveError("drawing the shared samples failed on example_x",
                                     expected="components that accept a batch of the data",
                                     given=f"{type(err).__name__}: {err}", fix="check the components' shapes") from err
            for term, est in zip(self._terms, self.estimators):
                try:
                    out = est(s)
                    ok = math.isfinite(float(out.value))
                except Exception as err:  # noqa: BLE001
                    raise ObjectiveError(f"estimating {term} failed on example_x",
                                         expected="components whose outputs fit the term's estimator",
                                         given=f"{type(err).__name__}: {err}",
                                         fix="check the shapes of the components involved in this term") from err
                if not ok:
                    raise ObjectiveError(f"estimating {term} on example_x gave {float(out.value)}",
                                         expected="a finite estimate", given=str(float(out.value)),
                                         fix="check the data range (e.g. binary x for a Bernoulli decoder)")


def compile_objective(objective, *, encoder: nn.Module, decoder: nn.Module, prior, critics: Mapping | None = None,
                      estimators: Mapping | None = None, params: Mapping | None = None,
                      example_x: torch.Tensor | None = None, decoder_sample: str = "sample",
                      mmd_kernel: str = "paper", mmd_biased: bool = True, critic_hidden: int | None = None,
                      fold_kl: bool = True) -> CompiledObjective:
    """Compile an objective (zoo name, text, Term, Objective or :class:`.Lagrangian`) into a loss.

    Parameters
    ----------
    objective
        What to compile. A zoo name binds the zoo's default parameter values (overridable per call).
    encoder, decoder, prior
        The components (see :mod:`.components`).
    critics
        ``{term | term text | divergence kind: nn.Module}`` replacing default critics; a critic
        takes the flattened samples ``(n, d)`` (x before z for joints) and returns ``(n,)`` or ``(n, 1)``.
    estimators
        ``{term | term text | kind: name | "name:opt=value,..." | Estimator | factory}``,
        e.g. ``{"JS": "gan-saturating", "MMD": "mmd:kernel=imq", "D_f": "fgan:pearson"}``.
    params
        Default values of symbols (``{"beta": 4.0}``); per-call values override them. A name
        that is no symbol of the objective raises, as it does at call time.
    example_x
        A batch of data for a compile-time dry run (shape and range checks).
    decoder_sample
        ``"sample"`` or ``"mean"``: what a sample of p(x) with a path gradient is when the
        decoder's distribution has no ``rsample`` (only likelihood-free terms use it).
    mmd_kernel, mmd_biased
        The MMD convention (``"paper"``: ``exp(-||a-b||^2/d^2)``, biased V-statistic; see
        :mod:`.estimators.mmd`).
    critic_hidden
        Width of default critics (default ``clamp(2 d, 32, 256)``).
    fold_kl
        Estimate ``c·E_q[log q(z|x)] - c·E_q[log p(z)]`` as an analytic KL where possible.

    Returns
    -------
    CompiledObjective
        The loss: ``loss_fn(x, **values)`` returns a :class:`LossOutput`.

    Raises
    ------
    ObjectiveError
        When the objective is not computable (saying why), when a term needs what a component
        cannot give (log p(x|z) of an implicit decoder, a path-gradient sample), on a shape
        mismatch, and on an option that would otherwise be ignored: an unknown ``mmd_kernel``,
        a key of ``estimators`` or ``critics`` that matches no term, a name in ``params`` that
        is no symbol.

    Examples
    --------
    >>> import torch, lagrangian_family as lf
    >>> from lagrangian_family.backends.torch import (GaussianMLPEncoder, DeterministicMLPDecoder,
    ...     StandardNormalPrior)
    >>> enc, gen = GaussianMLPEncoder(4, 2, hidden=(8,)), DeterministicMLPDecoder(2, 4, hidden=(8,))
    >>> try:
    ...     compile_objective("vae", encoder=enc, decoder=gen, prior=StandardNormalPrior(2))
    ... except lf.ObjectiveError as e:
    ...     print(str(e).splitlines()[0])
    cannot estimate E_{q(x,z)}[log p(x|z)] with these components
    """
    from .lagrangian import Lagrangian

    kw = dict(encoder=encoder, decoder=decoder, prior=prior, critics=critics, estimators=estimators,
              example_x=example_x, decoder_sample=decoder_sample, mmd_kernel=mmd_kernel, mmd_biased=mmd_biased,
              critic_hidden=critic_hidden, fold_kl=fold_kl)
    if isinstance(objective, Lagrangian):
        return objective.compile(params=params, **kw)
    defaults = {}
    if isinstance(objective, str):
        from lagrangian_family import zoo

        name = objective.strip().lower().replace("-", "_")
        if name in zoo.names():
            defaults = dict(zoo.entry(name).parameters)
    return CompiledObjective({"objective": objective}, params=params, defaults=defaults, **kw)
