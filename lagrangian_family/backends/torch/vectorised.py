"""Train a grid of runs as one stacked model: M runs, one forward and backward pass per step.

A sweep (a grid of α, ε, fixed λ, β and seeds) trains M runs that share the architecture and
the estimators. :class:`VectorisedTrainer` takes the M compiled Lagrangians (each built as for
a single run, with its own components, multipliers, bounds, updater and data) and trains them
as one model with a leading run dimension: the weights of run m are the slice ``[m]`` of
stacked tensors ``(M, ...)``, the layers are batched matrix products (``torch.baddbmm``), the
estimates are computed for all runs at once, and the optimiser acts on the stacked tensors.

What each run keeps to itself, so that its result does not depend on which runs share its stack:

* its **random streams**: a generator for its reparameterisation noise and prior samples (one
  ``(n, z)`` draw each per step, as the single run's compiled loss draws them) and its own batch
  sampler (data order and binarisation);
* its **optimiser state** (elementwise optimisers only: Adam, SGD, RMSprop; gradient clipping
  by total norm is done per run), its **multipliers** λ and **dual updater state** (λ of shape
  ``(M, k)``; runs without an updater keep λ fixed: InfoVAE, the reference problem);
* its **NaN guard**: a run whose loss becomes NaN or infinite is frozen (its parameters,
  multipliers and optimiser state stop changing) and reported in :attr:`VectorisedTrainer.failures`
  with the message a :class:`~.train.Trainer` would raise; the other runs go on.

Every operation acts on each run's slice alone (batched matrix products, elementwise maps,
reductions over the run's own rows), and each run draws from its own generators, so a run's
result does not depend on the other runs of its stack. How exactly, measured on CPU with one
thread (the tests check both):

* a run trained in any stack, or alone, is **bit for bit** the same when each run's block of
  every stacked tensor has a multiple of 32 elements (the small budget's sizes do; at the
  paper's, the 500 x 500 MMD kernel matrix does not). Otherwise an elementwise kernel may compute
  the last few elements of the whole stacked tensor with its scalar instead of its SIMD code,
  and for a transcendental function (exp, log, sigmoid) that can change the last bit of the last
  run's values, which training then carries on;
* against a :class:`~.train.Trainer` over the run alone (the same initialisation, batches,
  noise drawn from the same generator, fused Adam and dual updates), the trajectories agree to
  float rounding: the batched matrix products may reduce in another order than the unbatched
  ones (the weight gradients; in the forward pass only layers with very few outputs, e.g. 4; at
  the small and paper budgets' sizes the forward pass is bit for bit the same).

With several threads or on CUDA the kernels may also split reductions differently.

Scope: the model family of the paper's section 7: a :class:`~.components.GaussianMLPEncoder`,
a :class:`~.components.BernoulliMLPDecoder` and a :class:`~.components.StandardNormalPrior`,
with a compiled :class:`~.lagrangian.Lagrangian` (or objective) whose terms are among
``E_{q(x,z)}[log p(x|z)]``, ``E_{q(x)}[KL(q(z|x) || p(z))]``, ``KL(q(x,z) || p(x,z))`` (-ELBO)
and ``MMD(q(z) || p(z))``: VAE, β-VAE, InfoVAE/MMD-VAE, LagVAE (learned λ) and the reference
problem of section 6, at any α, ε, λ, β, MMD weight and kernel. Anything else is refused with an
:class:`~lagrangian_family.errors.ObjectiveError` saying what was found and that the
:class:`~.train.Trainer` trains it one run at a time.

Checkpoints (:meth:`VectorisedTrainer.save`) hold the stacked parameters, the optimiser, the
multipliers, the stacked updater state, the frozen runs and every run's generators and batch
samplers: a resumed stack continues exactly as the uninterrupted one on CPU.

>>> import torch
>>> from lagrangian_family.backends.torch import (BernoulliMLPDecoder, GaussianMLPEncoder, Lagrangian,
...     StandardNormalPrior, paper_preset)
>>> def run(alpha1, seed):
...     torch.manual_seed(seed)
...     lag = Lagrangian.lagvae(alpha1, (60.0, 0.1))
...     loss_fn = lag.compile(encoder=GaussianMLPEncoder(6, 2, hidden=(8,)),
...                           decoder=BernoulliMLPDecoder(2, 6, hidden=(8,)), prior=StandardNormalPrior(2))
...     return loss_fn, paper_preset(lag)
>>> runs = [run(a, s) for a in (-1.0, 1.0) for s in (0, 1)]
>>> data = torch.bernoulli(torch.full((40, 6), 0.3))
>>> vt = VectorisedTrainer([f for f, _ in runs], [data] * 4, updaters=[u for _, u in runs], batch_size=10,
...                        seeds=[0, 1, 0, 1], progress=False)
>>> histories = vt.train(5)
>>> len(histories), vt.step_count, vt.failures
(4, 5, {})
>>> vt.unstack()   # the runs' own modules, multipliers and updaters now hold the trained state
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lagrangian_family.errors import ObjectiveError

from .components import BernoulliMLPDecoder, GaussianMLPEncoder, StandardNormalPrior
from .estimators.likelihood import LikelihoodEstimator
from .estimators.mmd import MMDEstimator, kernel_matrix
from .train import NonFiniteLossError, _IterableBatches, _TensorBatches

__all__ = ["VectorisedTrainer", "StackedOutput", "StackedLinear", "stack_key", "FORMAT"]

#: The ``format`` entry of a vectorised checkpoint.
FORMAT = "lagfam-vectorised-1"

_KEYS = {"q_dist", "z_q", "dec_q", "z_p"}


def _refuse(what: str, given: str, fix: str = "train these runs one at a time with Trainer") -> ObjectiveError:
    return ObjectiveError(f"cannot vectorise these runs: {what}",
                          expected="runs of the section 7 model family (GaussianMLPEncoder, BernoulliMLPDecoder, "
                                   "StandardNormalPrior; terms among log p(x|z), KL(q(z|x) || p(z)), -ELBO and "
                                   "MMD(q(z) || p(z))) with equal shapes and settings",
                          given=given, fix=fix)


# -- stacked components ---------------------------------------------------------------------------------

class StackedLinear(nn.Module):
    """M ``nn.Linear`` layers of equal shape as one: weight ``(M, in, out)`` (each layer's weight
    transposed, so that its gradient comes out of the batched product contiguous), bias ``(M, out)``.

    ``forward(x)`` maps ``(M, n, in)`` to ``(M, n, out)``, run m through layer m
    (``torch.baddbmm``); on CPU each slice equals ``layer_m(x[m])`` bit for bit.

    >>> import torch
    >>> layers = [torch.nn.Linear(3, 2) for _ in range(4)]
    >>> s = StackedLinear(layers)
    >>> x = torch.randn(4, 5, 3)
    >>> bool(torch.equal(s(x)[2], layers[2](x[2])))
    True
    """

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([lay.weight.detach().t() for lay in layers]).contiguous())
        if layers[0].bias is not None:
            self.bias = nn.Parameter(torch.stack([lay.bias.detach() for lay in layers]).clone())
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, n, in)`` to ``(M, n, out)``."""
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)

    @torch.no_grad()
    def write(self, m: int, layer: nn.Linear) -> None:
        """Copy run ``m``'s slice into ``layer``."""
        layer.weight.copy_(self.weight[m].t())
        if self.bias is not None:
            layer.bias.copy_(self.bias[m])


def _stack_module(mods: Sequence[nn.Module], where: str) -> nn.Module:
    """A stacked version of equal modules: Linear -> StackedLinear, Sequential elementwise,
    parameter-free modules (activations) shared."""
    first = mods[0]
    if any(type(m) is not type(first) for m in mods):
        raise _refuse(f"the {where} differ in type", ", ".join(sorted({type(m).__name__ for m in mods})))
    if type(first) is nn.Linear:
        shapes = {(tuple(m.weight.shape), m.bias is not None, m.weight.dtype, m.weight.device) for m in mods}
        if len(shapes) > 1:
            raise _refuse(f"the {where} layers differ in shape, dtype or device", str(sorted(map(str, shapes))))
        return StackedLinear(mods)
    if type(first) is nn.Sequential:
        if len({len(m) for m in mods}) > 1:
            raise _refuse(f"the {where} have different depths", str(sorted({len(m) for m in mods})))
        return nn.Sequential(*[_stack_module([m[i] for m in mods], where) for i in range(len(first))])
    if not list(first.parameters()) and not list(first.buffers()):
        if len({repr(m) for m in mods}) > 1:
            raise _refuse(f"the {where} use different activations", ", ".join(sorted({repr(m) for m in mods})))
        return copy.deepcopy(first)
    raise _refuse(f"the {where} contain a {type(first).__name__}", "a layer other than Linear with parameters")


def _write_module(stacked: nn.Module, m: int, target: nn.Module) -> None:
    if isinstance(stacked, StackedLinear):
        stacked.write(m, target)
    elif isinstance(stacked, nn.Sequential):
        for s, t in zip(stacked, target):
            _write_module(s, m, t)


class _StackedEncoder(nn.Module):
    """M :class:`GaussianMLPEncoder` as one: ``(M, n, ...)`` to (loc, log_scale, scale) ``(M, n, z)``."""

    def __init__(self, encoders: Sequence[GaussianMLPEncoder]):
        super().__init__()
        first = encoders[0]
        limits = {(e.min_log_scale, e.max_log_scale, e.x_dim, e.z_dim) for e in encoders}
        if len(limits) > 1:
            raise _refuse("the encoders differ in sizes or log-scale limits", str(sorted(limits)))
        self.min_log_scale, self.max_log_scale = first.min_log_scale, first.max_log_scale
        self.body = _stack_module([e.body for e in encoders], "encoders")
        self.act = _stack_module([e.act for e in encoders], "encoders")
        self.head = _stack_module([e.head for e in encoders], "encoders")

    def forward(self, x: torch.Tensor):
        h = self.act(self.body(x.reshape(x.shape[0], x.shape[1], -1)))
        loc, log_scale = self.head(h).chunk(2, dim=-1)
        log_scale = log_scale.clamp(self.min_log_scale, self.max_log_scale)
        return loc, log_scale.exp()

    def write(self, m: int, enc: GaussianMLPEncoder) -> None:
        _write_module(self.body, m, enc.body)
        _write_module(self.head, m, enc.head)


class _StackedDecoder(nn.Module):
    """M :class:`BernoulliMLPDecoder` as one: z ``(M, n, z)`` to logits ``(M, n, x_dim)``."""

    def __init__(self, decoders: Sequence[BernoulliMLPDecoder]):
        super().__init__()
        shapes = {(d.z_dim, d.x_shape) for d in decoders}
        if len(shapes) > 1:
            raise _refuse("the decoders differ in sizes", str(sorted(map(str, shapes))))
        self.net = _stack_module([d.net for d in decoders], "decoders")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def write(self, m: int, dec: BernoulliMLPDecoder) -> None:
        _write_module(self.net, m, dec.net)


class _StackedModel(nn.Module):
    def __init__(self, encoders, decoders):
        super().__init__()
        self.encoder = _StackedEncoder(encoders)
        self.decoder = _StackedDecoder(decoders)


# -- what a compiled loss computes, read off its plan -----------------------------------------------------

def _estimator_signature(est: nn.Module, term: str):
    """A hashable description of what an estimator computes from (log p(x|z_q), KL, z_q, z_p)."""
    if type(est) is LikelihoodEstimator:
        if est.p_atoms or any(dens != "p(x|z)" for dens, _ in est.q_atoms) or len(est.q_atoms) > 1:
            raise _refuse(f"the term {term} needs likelihood atoms other than log p(x|z) under q(x,z)",
                          f"atoms {[key for key, _ in est.atoms]}")
        c = est.q_atoms[0][1] if est.q_atoms else None
        return ("likelihood", float(est.kl_coef), c)
    if type(est) is MMDEstimator:
        if str(est.term) != "MMD(q(z) || p(z))":
            raise _refuse(f"the MMD term {term} is not between q(z) and p(z)", term)
        return ("mmd", est.kernel, bool(est.biased), tuple(est.scales), float(est.scale))
    raise _refuse(f"the term {term} has a {type(est).__name__}", f"{type(est).__name__} for {term}")


@dataclass
class _RunPlan:
    """One run's reading of its compiled loss: which estimates, and their coefficients in each head."""

    sigs: list  # estimator signature of each of the run's terms
    texts: list[str]
    primal: list[tuple[int, float, float]]  # (term index, readout coefficient, alpha)
    constraints: list[list[tuple[int, float]]]  # per constraint: (term index, coefficient)
    names: tuple[str, ...]
    needs_zp: bool


def _coef_value(coef, values: Mapping, what: str) -> float:
    v = coef(values)
    v = float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
    if not math.isfinite(v):
        raise _refuse(f"the coefficient of {what} is {v}", str(v), "bind finite parameter values")
    return v


def _plan(loss_fn, params: Mapping | None) -> _RunPlan:
    from .lagrangian import CompiledLagrangian

    if not isinstance(loss_fn, CompiledLagrangian):
        raise _refuse("a run is not a compiled Lagrangian", type(loss_fn).__name__,
                      "compile Lagrangian(...) (e.g. Lagrangian.lagvae(alpha1, eps, init=lam)) for each run; "
                      "fixed multipliers need no updater")
    enc, dec = loss_fn.encoder, loss_fn.decoder
    prior = getattr(loss_fn, "prior", None)
    for role, comp, cls in (("encoder", enc, GaussianMLPEncoder), ("decoder", dec, BernoulliMLPDecoder),
                            ("prior", prior, StandardNormalPrior)):
        if type(comp) is not cls:
            raise _refuse(f"the {role} is a {type(comp).__name__}", type(comp).__name__,
                          f"use {cls.__name__}, or train these runs one at a time with Trainer")
    keys = set(loss_fn._keys)
    if not keys <= _KEYS:
        raise _refuse("the objective needs samples of p(x,z) or an encoder on generated x", ", ".join(sorted(keys)))
    values = loss_fn.bind(params, {})
    texts = list(loss_fn._texts)
    sigs = [_estimator_signature(e, t) for e, t in zip(loss_fn.estimators, texts)]
    primal = []
    for fam, coef in loss_fn._alphas:
        a = _coef_value(coef, values, f"I_{fam}(x;z)")
        if a == 0:
            continue
        if fam != "q":
            raise _refuse("the primal has I_p(x;z)", f"{a:g} * I_p(x;z)")
        head = f"I_q:{'upper' if a >= 0 else 'lower'}"
        for i, c in loss_fn._readouts[head]:
            primal.append((i, _coef_value(c, values, head), a))
    if loss_fn._has_rest:
        for i, c in loss_fn._readouts["primal"]:
            primal.append((i, _coef_value(c, values, "the primal"), 1.0))
    names = tuple(loss_fn.lagrangian.names)
    constraints = [[(i, _coef_value(c, values, n)) for i, c in loss_fn._readouts[n]] for n in names]
    return _RunPlan(sigs, texts, primal, constraints, names, "z_p" in keys)


# -- the stacked loss -------------------------------------------------------------------------------------

@dataclass
class StackedOutput:
    """One step of M runs: every field has the run dimension first.

    ``loss``, ``value``: ``(M,)`` (as :class:`~.compile.LossOutput`'s, per run); ``terms``: {term
    text: ``(M,)``} (a run's own terms are those of its compiled loss); ``constraints``,
    ``violations``, ``multipliers``: ``(M, k)``; ``finite``: ``(M,)`` bool, whether each run's loss
    is finite.
    """

    loss: torch.Tensor
    value: torch.Tensor
    terms: dict[str, torch.Tensor]
    constraints: torch.Tensor
    violations: torch.Tensor
    multipliers: torch.Tensor
    finite: torch.Tensor
    extras: dict = field(default_factory=dict)


class _StackedLagrangian:
    """The estimates of every distinct estimator, for all runs at once, and each run's heads."""

    def __init__(self, plans: list[_RunPlan], model: _StackedModel, device, dtype):
        self.model = model
        sigs: list = []
        for p in plans:
            for s in p.sigs:
                if s not in sigs:
                    sigs.append(s)
        self.sigs = sigs
        M, U, k = len(plans), len(sigs), len(plans[0].names)
        pc = torch.zeros(M, U, dtype=dtype)
        pa = torch.zeros(M, U, dtype=dtype)
        cc = torch.zeros(M, k, U, dtype=dtype)
        self.run_terms: list[dict[str, int]] = []
        for m, p in enumerate(plans):
            idx = [sigs.index(s) for s in p.sigs]
            self.run_terms.append({t: u for t, u in zip(p.texts, idx)})
            for i, c, a in p.primal:
                if pc[m, idx[i]] != 0:
                    raise _refuse("a term appears twice in a run's primal", p.texts[i])
                pc[m, idx[i]], pa[m, idx[i]] = c, a
            for j, readout in enumerate(p.constraints):
                for i, c in readout:
                    cc[m, j, idx[i]] = c
        self.pc, self.pa, self.cc = pc.to(device), pa.to(device), cc.to(device)
        self.has_mmd = any(s[0] == "mmd" for s in sigs)
        # union of the texts, first seen first
        self.texts: dict[str, int] = {}
        for rt in self.run_terms:
            for t, u in rt.items():
                self.texts.setdefault(t, u)

    def estimates(self, x: torch.Tensor, eps_q: torch.Tensor, z_p: torch.Tensor | None) -> list[torch.Tensor]:
        """The value of every distinct estimator, ``(M,)`` each (the computations of the single run's
        compiled loss, in the same order, on each run's slice)."""
        enc, dec = self.model.encoder, self.model.decoder
        loc, scale = enc(x)
        z = loc + eps_q * scale  # Normal.rsample
        logits = dec(z)
        xf = x.reshape(x.shape[0], x.shape[1], -1)
        # Bernoulli.log_prob summed over x; negating the sum, not each term, gives the same bits (rounding
        # to nearest is symmetric) and saves two passes over (M, n, x_dim)
        logp = -F.binary_cross_entropy_with_logits(logits, xf, reduction="none").sum(-1)
        kl = None
        out = []
        for s in self.sigs:
            if s[0] == "likelihood":
                _, kl_coef, c = s
                value = None
                if kl_coef:
                    if kl is None:  # torch's KL(Normal || Normal) against N(0, I), summed, batch mean
                        var_ratio = scale.pow(2)
                        t1 = loc.pow(2)
                        kl = (0.5 * (var_ratio + t1 - 1 - var_ratio.log())).sum(-1).mean(-1)
                    value = kl * kl_coef if kl_coef != 1.0 else kl
                if c is not None:
                    f = logp * c if c != 1.0 else logp
                    mm = f.mean(-1)
                    value = mm if value is None else value + mm
                if value is None:
                    value = torch.zeros(x.shape[0], device=x.device, dtype=loc.dtype)
                out.append(value)
            else:
                _, kernel, biased, scales, sc = s
                out.append(_mmd(z, z_p, kernel, biased, scales, sc))
        return out

    def forward(self, x, eps_q, z_p, lam, eps) -> StackedOutput:
        v = self.estimates(x, eps_q, z_p)
        d = None
        primal = None
        for u, vu in enumerate(v):
            c = vu[:, None] * self.cc[:, :, u]
            d = c if d is None else d + c
            p = (vu * self.pc[:, u]) * self.pa[:, u]
            primal = p if primal is None else primal + p
        lam_d = lam.detach().to(d.dtype)
        loss = (lam_d * d).sum(-1) + primal
        value = (lam_d * (d - torch.nan_to_num(eps.to(d.dtype), nan=0.0))).sum(-1) + primal
        terms = {t: v[u].detach() for t, u in self.texts.items()}
        finite = torch.isfinite(loss)  # what the Trainer checks
        return StackedOutput(loss, value.detach(), terms, d.detach(), d.detach() - eps.to(d.dtype),
                             lam.detach().clone(), finite)


def _mmd(a, b, kernel, biased, scales, scale):
    """The squared MMD of :func:`.estimators.mmd.mmd` for each run's slice ``(M, n, d)``."""
    n, mb = a.shape[1], b.shape[1]
    dim = a.shape[2]
    u = torch.cat([a, b.to(a.dtype)], 1)
    aa = (u * u).sum(-1)  # two reductions, as squared_distances(u, u) does: the same graph, the same gradient
    bb = (u * u).sum(-1)
    d2 = (aa[:, :, None] + bb[:, None, :] - 2.0 * torch.bmm(u, u.transpose(1, 2))).clamp_min(0.0)
    k = kernel_matrix(d2, dim, kernel, scales, scale)
    kaa, kbb, kab = k[:, :n, :n], k[:, n:, n:], k[:, :n, n:]
    if biased:
        return kaa.mean((1, 2)) + kbb.mean((1, 2)) - 2.0 * kab.mean((1, 2))
    saa = (kaa.sum((1, 2)) - kaa.diagonal(dim1=1, dim2=2).sum(-1)) / (n * (n - 1))
    sbb = (kbb.sum((1, 2)) - kbb.diagonal(dim1=1, dim2=2).sum(-1)) / (mb * (mb - 1))
    return saa + sbb - 2.0 * kab.mean((1, 2))


# -- stacked dual updaters -----------------------------------------------------------------------------

class _StackedMultipliers:
    """What a dual updater needs from a Lagrangian (``multipliers``, ``epsilon``, ``names``), for M runs."""

    def __init__(self, multipliers: torch.Tensor, epsilon: torch.Tensor, names):
        self.multipliers, self.epsilon, self.names = multipliers, epsilon, names


def _settings(updater) -> dict:
    skip = {"lagrangian"}
    return {k: v for k, v in vars(updater).items() if k not in skip and not isinstance(v, torch.Tensor)}


def _stack_updaters(updaters, holder: _StackedMultipliers):
    """One updater of the runs' common class acting on ``(M, k)`` multipliers, and the mask of runs
    that have one (the others keep λ fixed)."""
    present = [u for u in updaters if u is not None]
    learn = torch.tensor([u is not None for u in updaters], device=holder.multipliers.device)
    if not present:
        return None, learn
    first = present[0]
    kinds = {type(u).__name__ for u in present}
    if len(kinds) > 1:
        raise _refuse("the runs use different dual updaters", ", ".join(sorted(kinds)),
                      "use one updater class and one setting per stack (group the runs)")
    s0 = _settings(first)
    for u in present[1:]:
        if _settings(u) != s0:
            diff = sorted(k for k in s0 if _settings(u).get(k) != s0[k])
            raise _refuse("the runs' dual updaters differ in their settings or progress", ", ".join(diff),
                          "use one setting per stack (group the runs by it)")
    states = [(u if u is not None else first).state_dict() for u in updaters]
    stacked_state = {}
    for key, v in states[0].items():
        if isinstance(v, torch.Tensor):
            stacked_state[key] = torch.stack([s[key].to(holder.multipliers) for s in states])
        else:
            stacked_state[key] = v
    stacked = copy.copy(first)
    stacked.lagrangian = holder
    for key, v in vars(first).items():  # fresh tensors of the stacked shape (load_state_dict keeps devices)
        if isinstance(v, torch.Tensor):
            setattr(stacked, key, torch.zeros(len(updaters), *v.shape, dtype=v.dtype, device=v.device))
    stacked.load_state_dict(stacked_state)
    return stacked, learn


# -- batches and generators --------------------------------------------------------------------------------

def _batch_source(data, batch_size: int, seed: int):
    """``next()``-able batches of one run: a sampler with ``next()`` as is, a tensor or indexable
    dataset as the Trainer shuffles it (same seed, same order), any other iterable restarted."""
    if callable(getattr(data, "next", None)):
        return data
    if isinstance(data, torch.Tensor) or (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        return _TensorBatches(data, batch_size, seed)
    return _IterableBatches(data)


def stack_key(loss_fn) -> tuple:
    """What runs must share to be stacked: the component types, their parameter shapes, activations
    and log-scale limits, the number of constraints, dtype and device. The terms, their coefficients
    (α, ε, λ, MMD weight) and the estimators' settings may differ (each distinct estimator is computed
    once for the stack). Group a sweep by this key (and by the optimiser's and updater's settings and
    the number of steps); a run outside the supported family raises an ObjectiveError.

    >>> import torch
    >>> from lagrangian_family.backends.torch import (BernoulliMLPDecoder, GaussianMLPEncoder, Lagrangian,
    ...     StandardNormalPrior)
    >>> def make(a, hidden=8):
    ...     return Lagrangian.lagvae(a, (90.0, 0.1)).compile(encoder=GaussianMLPEncoder(6, 2, hidden=(hidden,)),
    ...         decoder=BernoulliMLPDecoder(2, 6, hidden=(hidden,)), prior=StandardNormalPrior(2))
    >>> stack_key(make(-1.0)) == stack_key(make(2.0)), stack_key(make(-1.0)) == stack_key(make(-1.0, hidden=16))
    (True, False)
    """
    if not loss_fn.symbols:
        _plan(loss_fn, None)  # refuses a run outside the family
    enc, dec = loss_fn.encoder, loss_fn.decoder
    shapes = tuple((n, tuple(p.shape)) for n, p in list(enc.named_parameters()) + list(dec.named_parameters()))
    acts = tuple(repr(m) for m in list(enc.modules()) + list(dec.modules())
                 if not isinstance(m, (nn.Linear, nn.Sequential, GaussianMLPEncoder, BernoulliMLPDecoder)))
    p = next(enc.parameters())
    return (type(enc).__name__, type(dec).__name__, type(getattr(loss_fn, "prior", None)).__name__, shapes, acts,
            (getattr(enc, "min_log_scale", None), getattr(enc, "max_log_scale", None)), str(p.dtype), str(p.device),
            len(getattr(getattr(loss_fn, "lagrangian", None), "names", ())))


def _default_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3, fused=params[0].device.type in ("cpu", "cuda"))


# -- the trainer -------------------------------------------------------------------------------------------

class VectorisedTrainer:
    """Train M compiled Lagrangians of one shape as one stacked model (see the module docstring).

    ``loss_fns``: the runs' compiled Lagrangians (``Lagrangian(...).compile(...)``), each with its
    own encoder, decoder and prior (modules of equal shapes on one device). ``data``: one per run:
    a tensor ``(N, ...)`` or indexable dataset (shuffled as the Trainer does, with ``seeds[m]``), a
    sampler with ``next()`` (and ``state_dict`` for exact resume), or any iterable of batches.
    ``updaters``: one dual updater or None (fixed λ) per run; the present ones must share class and
    settings. ``noise``: one ``torch.Generator`` per run, on the runs' device, for its
    reparameterisation noise and prior samples (default: seeded by ``seeds``); pass the generator
    whose state a single run would draw from (e.g. ``torch.get_rng_state()`` right after building it)
    to reproduce that run. ``model_optimizer``: a factory ``params -> Optimizer`` over the stacked
    parameters (default Adam 1e-3, fused); it must act elementwise. ``params``: symbol values per
    run. ``max_grad_norm``: clip each run's gradient to this total norm. ``log_csv``: a path (or
    None) per run, written every ``log_every`` steps as the Trainer writes its log.
    ``checkpoint``/``checkpoint_every``: as the Trainer's. ``callback(trainer, out)`` after every
    step; returning True stops.

    After training, :meth:`unstack` writes each run's parameters, multipliers and updater state
    back into its own modules. :attr:`failures` maps the index of each frozen run to the
    :class:`~.train.NonFiniteLossError` that a Trainer would have raised for it.
    """

    def __init__(self, loss_fns: Sequence, data: Sequence, *, batch_size: int = 100,
                 updaters: Sequence | None = None, seeds: Sequence[int] | None = None,
                 noise: Sequence[torch.Generator] | None = None, model_optimizer: Callable | None = None,
                 params: Sequence[Mapping | None] | None = None, max_grad_norm: float | None = None,
                 log_csv: Sequence | None = None, log_every: int = 10, progress: bool = True,
                 checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
                 callback: Callable | None = None):
        loss_fns = list(loss_fns)
        M = len(loss_fns)
        if M == 0:
            raise ObjectiveError("no runs to train", expected="at least one compiled Lagrangian", given="[]",
                                 fix="pass loss_fns=[...]")

        def per_run(name, seq, default):
            if seq is None:
                return [default(m) for m in range(M)]
            seq = list(seq)
            if len(seq) != M:
                raise ObjectiveError(f"{name} has {len(seq)} entries for {M} runs", expected=f"one per run ({M})",
                                     given=str(len(seq)), fix=f"pass one {name} entry per compiled loss")
            return seq

        if isinstance(data, torch.Tensor) or not isinstance(data, Sequence):
            raise ObjectiveError("data is not one entry per run", expected=f"a list of {M} data sources",
                                 given=type(data).__name__, fix="pass [data] * len(loss_fns) to share one tensor")
        data = per_run("data", data, lambda m: None)
        self.loss_fns = loss_fns
        self.M = M
        seeds = [int(s) for s in per_run("seeds", seeds, lambda m: m)]
        self.params = per_run("params", params, lambda m: None)
        self.updaters = per_run("updaters", updaters, lambda m: None)
        self.log_csv = per_run("log_csv", log_csv, lambda m: None)
        self.plans = [_plan(f, p) for f, p in zip(loss_fns, self.params)]
        keys = {stack_key(f) for f in loss_fns}
        if len(keys) > 1:
            raise _refuse("the runs differ in architecture, estimators, dtype or device",
                          f"{len(keys)} different kinds of run", "group the runs by stack_key(loss_fn)")
        p0 = next(loss_fns[0].encoder.parameters())
        self.device, self.dtype = p0.device, p0.dtype
        self.z_dim = loss_fns[0].encoder.z_dim
        self.x_shape = tuple(loss_fns[0].x_shape)
        self.batch_size = int(batch_size)
        self.model = _StackedModel([f.encoder for f in loss_fns], [f.decoder for f in loss_fns])
        self.lagrangian = _StackedLagrangian(self.plans, self.model, self.device, self.dtype)
        lam = torch.stack([f.lagrangian.multipliers.detach().to(self.device) for f in loss_fns]).clone()
        eps = torch.stack([f.lagrangian.epsilon.detach().to(self.device) for f in loss_fns]).clone()
        self.holder = _StackedMultipliers(lam, eps, self.plans[0].names)
        self.updater, self.learn = _stack_updaters(self.updaters, self.holder)
        self.batches = [_batch_source(d, batch_size, s) for d, s in zip(data, seeds)]
        if noise is None:
            noise = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        self.noise = per_run("noise", noise, lambda m: None)
        for g in self.noise:
            if not isinstance(g, torch.Generator) or torch.device(g.device).type != self.device.type:
                raise ObjectiveError("a noise generator is not a torch.Generator on the runs' device",
                                     expected=f"torch.Generator(device={str(self.device)!r})",
                                     given=f"{type(g).__name__} on {getattr(g, 'device', '?')}",
                                     fix="pass noise=[torch.Generator(device=...) per run] or leave it None")
        self.stacked_params = list(self.model.parameters())
        factory = model_optimizer or _default_optimizer
        self.optimizer = factory(self.stacked_params)
        self.max_grad_norm = max_grad_norm
        self.log_every = max(1, int(log_every))
        self.progress = progress
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.callback = callback
        self.active = torch.ones(M, dtype=torch.bool)
        self.failures: dict[int, NonFiniteLossError] = {}
        self._frozen: dict[int, list[torch.Tensor]] = {}
        self.step_count = 0
        self._csv_fields: list[list[str] | None] = [None] * M

    # -- one step ---------------------------------------------------------------------------------------
    def next_batch(self) -> torch.Tensor:
        """The runs' next batches, stacked ``(M, n, ...)`` (zeros for frozen runs, which draw nothing)."""
        xs = []
        shape = None
        for m, b in enumerate(self.batches):
            if not self.active[m]:
                xs.append(None)
                continue
            x = torch.as_tensor(b.next())
            x = x if x.device == self.device else x.to(self.device)
            if tuple(x.shape[1:]) != self.x_shape or (shape is not None and tuple(x.shape) != shape):
                raise ObjectiveError(f"run {m}'s batch has shape {tuple(x.shape)}",
                                     expected=f"batches of shape (n, {', '.join(map(str, self.x_shape))}), the "
                                              "same n for every run",
                                     given=f"{tuple(x.shape)} (others: {shape})",
                                     fix="give every run data of one shape and one batch size")
            shape = tuple(x.shape)
            xs.append(x.to(self.dtype))
        if shape is None:
            shape = (self.batch_size, *self.x_shape)
        zero = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return torch.stack([x if x is not None else zero for x in xs])

    def _noise(self, n: int):
        shape = (n, self.z_dim)
        eps_q, z_p = [], []
        zero = torch.zeros(shape, dtype=self.dtype, device=self.device)
        for m, g in enumerate(self.noise):
            if not self.active[m]:
                eps_q.append(zero)
                z_p.append(zero)
                continue
            # the single run's draws, in its order: q(z|x).rsample(), then the prior's randn
            eps_q.append(torch.empty(shape, dtype=self.dtype, device=self.device).normal_(generator=g))
            if self.plans[m].needs_zp:
                z_p.append(torch.randn(shape, dtype=self.dtype, device=self.device, generator=g))
            else:
                z_p.append(zero)
        return torch.stack(eps_q), (torch.stack(z_p) if self.lagrangian.has_mmd else None)

    def forward(self, x: torch.Tensor) -> StackedOutput:
        """The stacked loss of the batches ``x`` ``(M, n, ...)``, with each run's next noise draws."""
        eps_q, z_p = self._noise(x.shape[1])
        return self.lagrangian.forward(x, eps_q, z_p, self.holder.multipliers, self.holder.epsilon)

    def _freeze(self, out: StackedOutput) -> None:
        bad = (~out.finite.cpu()) & self.active
        for m in bad.nonzero().flatten().tolist():
            loss = float(out.loss[m].detach())
            terms = [f"{t} = {float(out.terms[t][m])}" for t in self.plans[m].texts
                     if not math.isfinite(float(out.terms[t][m]))]
            where = "; ".join(terms) if terms else "no single term (the coefficients or their sum overflowed)"
            self.failures[m] = NonFiniteLossError(
                f"the loss became {loss} at step {self.step_count + 1}: non-finite {where}. Lower the learning "
                "rate, check the data range, or clip gradients (max_grad_norm=...)")
            self.active[m] = False
            self._frozen[m] = [p.detach()[m].clone() for p in self.stacked_params]

    def _clip(self, grads) -> None:
        norms = torch.stack([g.reshape(g.shape[0], -1).norm(dim=1) for g in grads], 1)
        total = norms.norm(dim=1)
        coef = (self.max_grad_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.reshape(-1, *([1] * (g.dim() - 1))).to(g.dtype))

    def step(self) -> StackedOutput:
        """One training step of every active run; returns the stacked output."""
        x = self.next_batch()
        out = self.forward(x)
        if not bool(out.finite.all()):
            self._freeze(out)
        active = self.active.to(self.device)
        loss = torch.where(active, out.loss, torch.zeros_like(out.loss)).sum()
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, self.stacked_params, allow_unused=True)
            # contiguous (a no-op for the stacked layers' gradients): fused optimisers read raw memory
            grads = [torch.zeros_like(p) if g is None else g.contiguous() for p, g in zip(self.stacked_params, grads)]
            if self._frozen:
                idx = torch.tensor(sorted(self._frozen), device=self.device)
                for g in grads:
                    g.index_fill_(0, idx, 0.0)
            if self.max_grad_norm is not None:
                self._clip(grads)
            for p, g in zip(self.stacked_params, grads):
                p.grad = g
            self.optimizer.step()
            if self._frozen:
                with torch.no_grad():
                    for m, saved in self._frozen.items():
                        for p, s in zip(self.stacked_params, saved):
                            p[m].copy_(s)
        if self.updater is not None:
            learn = self.learn & active
            v = torch.where(learn[:, None], out.violations, torch.zeros_like(out.violations))
            lam_before = self.holder.multipliers.clone()
            self.updater.step(v)
            with torch.no_grad():
                self.holder.multipliers.copy_(torch.where(learn[:, None], self.holder.multipliers, lam_before))
        self.step_count += 1
        return out

    # -- logs -------------------------------------------------------------------------------------------
    def record(self, out: StackedOutput) -> list[dict | None]:
        """Each active run's log row, as :meth:`.Trainer.record` writes it (None for frozen runs)."""
        loss, value = out.loss.detach().tolist(), out.value.tolist()
        terms = {t: v.tolist() for t, v in out.terms.items()}
        cons, viol, lam = out.constraints.tolist(), out.violations.tolist(), out.multipliers.tolist()
        rows: list[dict | None] = []
        for m, plan in enumerate(self.plans):
            if not self.active[m]:
                rows.append(None)
                continue
            row = {"step": self.step_count, "loss": loss[m], "value": value[m]}
            row.update({t: terms[t][m] for t in plan.texts})
            for i, n in enumerate(plan.names):
                row[f"constraint {n}"] = cons[m][i]
            for i, n in enumerate(plan.names):
                row[f"violation {n}"] = viol[m][i]
            for i, n in enumerate(plan.names):
                row[f"lambda {n}"] = lam[m][i]
            rows.append(row)
        return rows

    def _write(self, m: int, row: dict) -> None:
        path = self.log_csv[m]
        if path is None:
            return
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        if self._csv_fields[m] is None:
            if not new:
                with open(path, newline="") as f:
                    header = next(csv.reader(f), None)
                self._csv_fields[m] = header or list(row)
            else:
                self._csv_fields[m] = list(row)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._csv_fields[m], extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    # -- the loop ---------------------------------------------------------------------------------------
    def train(self, steps: int) -> list[list[dict]]:
        """Run ``steps`` steps; returns each run's logged rows (every ``log_every`` steps and the last).

        A run whose loss becomes NaN or infinite is frozen and listed in :attr:`failures`; the
        others go on. Training stops early only when every run is frozen (or the callback says so)."""
        from tqdm import tqdm

        histories: list[list[dict]] = [[] for _ in range(self.M)]
        bar = tqdm(total=steps, disable=not self.progress, leave=False)
        try:
            for i in range(steps):
                if not bool(self.active.any()):
                    break
                out = self.step()
                if self.step_count % self.log_every == 0 or i == steps - 1:
                    for m, row in enumerate(self.record(out)):
                        if row is not None:
                            histories[m].append(row)
                            self._write(m, row)
                    bar.set_postfix(active=f"{int(self.active.sum())}/{self.M}", refresh=False)
                bar.update(1)
                every = self.checkpoint_every
                if self.checkpoint is not None and every and self.step_count % every == 0:
                    self.save(self.checkpoint)
                if self.callback is not None and self.callback(self, out):
                    break
        finally:
            bar.close()
        if self.checkpoint is not None:
            self.save(self.checkpoint)
        return histories

    def unstack(self) -> None:
        """Write each run's trained parameters, multipliers and updater state into its own modules."""
        with torch.no_grad():
            for m, f in enumerate(self.loss_fns):
                self.model.encoder.write(m, f.encoder)
                self.model.decoder.write(m, f.decoder)
                f.lagrangian.multipliers.copy_(self.holder.multipliers[m])
                u = self.updaters[m]
                if u is not None and self.updater is not None:
                    st = self.updater.state_dict()
                    u.load_state_dict({k: (v[m].clone() if isinstance(v, torch.Tensor) else v) for k, v in st.items()})

    # -- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything that changes during training: the stacked parameters, the optimiser, the
        multipliers, the stacked updater, the frozen runs and their failures, each run's noise
        generator and batch sampler, the step count."""
        return {
            "format": FORMAT,
            "runs": self.M,
            "step": self.step_count,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "multipliers": self.holder.multipliers.clone(),
            "updater": self.updater.state_dict() if self.updater is not None else None,
            "active": self.active.clone(),
            "failures": {m: str(e) for m, e in self.failures.items()},
            "frozen": {m: [t.clone() for t in s] for m, s in self._frozen.items()},
            "noise": [g.get_state() for g in self.noise],
            "batches": [b.state_dict() if callable(getattr(b, "state_dict", None)) else {} for b in self.batches],
        }

    def load_state_dict(self, state: dict, *, source: str | os.PathLike | None = None) -> None:
        """Restore :meth:`state_dict` into a trainer built over the same runs, in the same order.

        All or nothing: a state that does not fit (another number of runs, other shapes, a missing
        entry) raises :class:`~.checkpoint.CheckpointError` (naming ``source``, the file it came
        from) and leaves the trainer as it was."""
        from .checkpoint import CheckpointError

        where = f"checkpoint {source}" if source is not None else "the state"
        expected = "a checkpoint of this stack: the same runs, in the same order, with the same settings"
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            given = repr(state.get("format")) if isinstance(state, Mapping) else type(state).__name__
            raise CheckpointError(f"{where} is not a checkpoint of a vectorised trainer", path=source,
                                  expected=f"format {FORMAT!r}", given=f"format {given}",
                                  fix="load a file written by VectorisedTrainer.save")
        if state.get("runs") != self.M:
            raise CheckpointError(f"{where} holds another number of runs", path=source, expected=f"{self.M} runs",
                                  given=f"{state.get('runs')} runs", fix="build the same runs, in the same order")
        backup = copy.deepcopy(self.state_dict())
        try:
            self._load_state(state)
        except Exception as err:  # noqa: BLE001 - whatever a bad state raises, the trainer is restored
            self._load_state(backup)
            raise CheckpointError(f"{where} does not fit this stack: {type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else ''}", path=source, expected=expected,
                                  given=type(err).__name__, fix="resume with the runs and settings the checkpoint "
                                  "was written with, or start over without it") from err

    def _load_state(self, state: Mapping) -> None:
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step {step!r} is not a step count")
        active = state["active"]
        if not isinstance(active, torch.Tensor) or tuple(active.shape) != (self.M,):
            raise ValueError("the mask of active runs has another shape")
        if len(state["noise"]) != self.M or len(state["batches"]) != self.M:
            raise ValueError("the generators or batch samplers are not one per run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            self.holder.multipliers.copy_(state["multipliers"])
        if self.updater is not None and state["updater"] is not None:
            self.updater.load_state_dict(state["updater"])
        self.active = active.clone().to(torch.bool).cpu()
        self.failures = {int(m): NonFiniteLossError(msg) for m, msg in state["failures"].items()}
        self._frozen = {int(m): [t.to(self.device) for t in s] for m, s in state["frozen"].items()}
        for g, s in zip(self.noise, state["noise"]):
            g.set_state(s)
        for b, s in zip(self.batches, state["batches"]):
            if s and callable(getattr(b, "load_state_dict", None)):
                b.load_state_dict(s)
        self.step_count = int(step)

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint of the whole stack (:mod:`.checkpoint`: versioned, checksummed, atomic)."""
        from .checkpoint import save

        save(path, self.state_dict(), kind="vectorised")

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save`; training then continues exactly.

        The file is verified (format, version, checksum) and must fit this stack; any problem
        raises :class:`~.checkpoint.CheckpointError` naming the file, and the trainer is unchanged.
        Each run's CSV log is cut back to the checkpoint's step (the rows a killed stack wrote
        after its last checkpoint are written again by the resumed one)."""
        from .checkpoint import load

        self.load_state_dict(load(path, kind="vectorised"), source=path)
        for m, p in enumerate(self.log_csv):
            if p is not None:
                _cut_log(Path(p), self.step_count)
                self._csv_fields[m] = None


def _cut_log(path: Path, step: int) -> None:
    """Keep the complete rows of ``log.csv`` up to ``step`` (a line cut short by a kill is dropped)."""
    if not path.exists():
        return
    from lagrangian_family.files import atomic_write

    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines = lines[:-1]
    rows = list(csv.reader(lines))
    if not rows or "step" not in rows[0]:
        atomic_write(path, b"")
        return
    i = rows[0].index("step")
    keep = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and _as_step(r[i]) is not None
                        and _as_step(r[i]) <= step]
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(keep)
    atomic_write(path, out.getvalue().encode())


def _as_step(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
