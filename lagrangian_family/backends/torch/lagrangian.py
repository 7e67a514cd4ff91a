"""Constrained objectives with learned multipliers (the paper's section 5, Algorithm 1, LagVAE).

The primal problem is ``min α1·I_q + α2·I_p  subject to  D_i <= ε_i``. Its Lagrangian is

    L(θ, λ) = α1·Ī_q or α1·I̲_q  +  α2·Ī_p or α2·I̲_p  +  Σ λ_i (D_i - ε_i),   λ >= 0,

where each mutual information is replaced by its upper bound when its α >= 0 and by its
lower bound when α < 0 (Algorithm 1, eq. 13: Ī_q = E_{q(x)}[KL(q(z|x) || p(z))],
I̲_q = E_{q(x,z)}[log p(x|z)] + H_q(x)). The model minimises L over θ with λ fixed; an
updater (:mod:`.updaters`) ascends λ on the measured violations D_i - ε_i.

Constraint values are measured **up to the constants the algebra drops**: a constraint
``KL(q(x,z) || p(x,z)) <= ε`` is measured as -ELBO = KL + H_q(x), so ε is in -ELBO units (the
paper's ε'_1 = ε_1 + H_q(x), section 6), and likewise any constraint whose estimate drops
E_{q(x)}[log q(x)] or E_{p(z)}[log p(z)]. Setting ε from a reference run
(:func:`calibrate_epsilon`) measures ε̂ in the same units, so ε = ε̂ + γ is consistent.

The multipliers λ and the bounds ε are buffers: they are in ``state_dict``.

>>> import torch
>>> lag = Lagrangian.lagvae(alpha1=-1.0, epsilon=(90.0, 0.001))
>>> [name for name in lag.names]
['KL(q(x,z) || p(x,z))', 'MMD(q(z) || p(z))']
>>> lag.multipliers
tensor([1., 1.])
>>> sorted(lag.state_dict())
['epsilon', 'multipliers']
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy
import torch
from torch import nn

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.bounds import mi_bounds
from lagrangian_family.symbolic.classify import as_objective
from lagrangian_family.symbolic.objective import Objective, as_coefficient, as_expr, symbol
from lagrangian_family.symbolic.terms import MutualInformation

from .compile import CompiledObjective, LossOutput, _Coefficient, _player_values
from .distributed import reduce_output

__all__ = ["Constraint", "Lagrangian", "CompiledLagrangian", "calibrate_epsilon", "lagrangian_of",
           "measure_constraints", "epsilon_with_slack", "compile_with_recipe"]


@dataclass(frozen=True)
class Constraint:
    """``divergence <= epsilon``: any computable objective, measured up to the dropped constants
    (a joint KL(q || p) is measured as -ELBO, so its epsilon is in -ELBO units)."""

    divergence: Objective
    epsilon: float | None = None
    name: str | None = None


def _epsilon(value, divergence) -> float:
    """A bound ε as a float (NaN for None: to be set later); an ObjectiveError naming the constraint."""
    if value is None:
        return math.nan
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        return float(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    text = repr(value)
    raise ObjectiveError(f"bad bound for the constraint {divergence} <= epsilon",
                         expected="a real number, or None to set it later (set_epsilon, calibrate_epsilon)",
                         given=f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}",
                         fix=f"pass ({str(divergence)!r}, 90.0)")


def _as_constraint(c) -> Constraint:
    if isinstance(c, Constraint):
        out = Constraint(as_objective(c.divergence), c.epsilon, c.name)
    elif isinstance(c, tuple) and len(c) in (2, 3):
        out = Constraint(as_objective(c[0]), *c[1:])
    else:
        out = Constraint(as_objective(c))
    _epsilon(out.epsilon, out.divergence)
    return out


class Lagrangian(nn.Module):
    """``α1·I_q + α2·I_p + Σ λ_i (D_i - ε_i)`` with multipliers ``λ >= 0`` in a buffer.

    ``primal``: an objective over ``I_q(x;z)``, ``I_p(x;z)`` (each replaced by its bound by the
    sign of its coefficient, which may be a symbol bound per call) and any other computable
    terms, or None. ``constraints``: a sequence of :class:`Constraint`, ``(divergence, epsilon)``
    or ``(divergence, epsilon, name)`` tuples, or a mapping {divergence: epsilon}; a divergence
    is anything :func:`lagrangian_family.classify` accepts (text, Term, Objective). ε may be
    None, to be set later (:meth:`set_epsilon`, :func:`calibrate_epsilon`). ``init``: the
    initial multipliers (Algorithm 1: 1).

    >>> lag = Lagrangian("-2 * I_q(x;z)", [("KL(q(x,z) || p(x,z))", 95.0)])
    >>> lag.epsilon
    tensor([95.])
    """

    def __init__(self, primal=None, constraints: Sequence | Mapping = (), *, init: float | Sequence[float] = 1.0):
        super().__init__()
        if isinstance(constraints, Mapping):
            constraints = list(constraints.items())
        cons = [_as_constraint(c) for c in constraints]
        if not cons:
            raise ObjectiveError("a Lagrangian without constraints", expected="at least one constraint D_i <= eps_i",
                                 given="no constraints", fix="pass constraints=[('KL(q(x,z) || p(x,z))', eps)]")
        names: list[str] = []
        for i, c in enumerate(cons):
            base = c.name or str(c.divergence)
            name = base if base not in names else f"{base} #{i + 1}"
            names.append(name)
        self.names = tuple(names)
        self.constraints = tuple(cons)
        self.primal = Objective() if primal is None else as_objective(primal)
        m = len(cons)
        try:
            init_t = torch.as_tensor(init, dtype=torch.get_default_dtype()).flatten()
        except (TypeError, ValueError, RuntimeError) as err:
            raise ObjectiveError("bad initial multipliers", expected=f"a non-negative number, or {m} of them",
                                 given=f"{type(init).__name__} {init!r}", fix="pass init=1.0 (Algorithm 1)") from err
        if init_t.numel() == 1:
            init_t = init_t.expand(m).clone()
        if init_t.numel() != m or (init_t < 0).any():
            raise ObjectiveError("bad initial multipliers", expected=f"{m} non-negative values",
                                 given=str(init_t.tolist()), fix="pass init=1.0 (Algorithm 1)")
        self.register_buffer("multipliers", init_t)
        eps = [_epsilon(c.epsilon, c.divergence) for c in cons]
        self.register_buffer("epsilon", torch.tensor(eps, dtype=torch.get_default_dtype()))
        #: the symbolic :class:`~lagrangian_family.symbolic.constrained.LagrangianForm` this Lagrangian
        #: was built from (:func:`lagrangian_of`), or None
        self.form = None
        #: the weights of the reference problem (section 6, eq. 19): the original model's multipliers
        #: for a Lagrangian built by :func:`lagrangian_of`, else None (the current multipliers are used)
        self.reference_multipliers: tuple[float, ...] | None = None
        #: the slack γ to add to a reference run's measured values (:func:`lagrangian_of`), or None
        self.slack = None

    # -- construction helpers -----------------------------------------------------------------
    @classmethod
    def lagvae(cls, alpha1, epsilon: Sequence = (None, None), *, mmd_weight: float = 1.0,
               init: float | Sequence[float] = 1.0) -> Lagrangian:
        """LagVAE (eq. 17-18): ``α1·I_q`` subject to ``KL(q(x,z) || p(x,z)) <= ε1`` (measured as
        -ELBO) and ``mmd_weight·MMD(q(z) || p(z)) <= ε2``. The authors' code uses
        ``mmd_weight=1e4`` (their ε2 is in those units)."""
        mmd = "MMD(q(z) || p(z))" if mmd_weight == 1 else f"{mmd_weight} * MMD(q(z) || p(z))"
        a = symbol(alpha1) if isinstance(alpha1, str) else as_coefficient(alpha1, context="alpha1")
        primal = a * MutualInformation("q")
        e1, e2 = epsilon
        return cls(primal, [("KL(q(x,z) || p(x,z))", e1), (mmd, e2, "MMD(q(z) || p(z))")], init=init)

    @classmethod
    def from_objective(cls, objective, multipliers: Sequence[str], epsilon: Sequence | None = None, *,
                       init: float | Sequence[float] = 1.0) -> Lagrangian:
        """Read a Lagrangian off an objective linear in the multiplier symbols: each
        ``D_i = d objective / d λ_i``, the primal is the rest (e.g. the zoo's ``lagvae``).

        >>> import lagrangian_family as lf
        >>> lag = Lagrangian.from_objective(lf.zoo.get("lagvae", alpha=1), ["lambda_1", "lambda_2"])
        >>> lag.names, str(lag.primal)
        (('KL(q(x,z) || p(x,z))', 'MMD(q(z) || p(z))'), 'E_{q(x)}[KL(q(z|x) || p(z))]')
        """
        obj = as_objective(objective)
        syms = [symbol(m) if isinstance(m, str) else m for m in multipliers]
        cons = []
        for i, s in enumerate(syms):
            d = Objective([(t, sympy.diff(c, s)) for t, c in obj.items()])
            if any(s2 in d.free_symbols for s2 in syms) or len(d) == 0:
                raise ObjectiveError(f"the objective is not linear in {s}, or {s} multiplies nothing",
                                     expected="an objective of the form primal + sum_i lambda_i * D_i",
                                     given=str(obj), fix="check the multiplier names")
            eps = None if epsilon is None else epsilon[i]
            cons.append(Constraint(d, eps))
        primal = obj.subs({s: 0 for s in syms})
        return cls(primal if len(primal) else None, cons, init=init)

    def set_epsilon(self, epsilon) -> None:
        """Set the bounds ε (in the units of the measured constraints, constants dropped)."""
        try:
            e = torch.as_tensor(epsilon, dtype=self.epsilon.dtype, device=self.epsilon.device).flatten()
        except (TypeError, ValueError, RuntimeError) as err:
            raise ObjectiveError("bad bounds", expected=f"{self.epsilon.numel()} real numbers",
                                 given=f"{type(epsilon).__name__} {epsilon!r}",
                                 fix="one epsilon per constraint") from err
        if e.numel() != self.epsilon.numel():
            raise ObjectiveError("wrong number of bounds", expected=f"{self.epsilon.numel()} values",
                                 given=str(e.tolist()), fix="one epsilon per constraint")
        self.epsilon.copy_(e)

    def reference(self, multipliers: Sequence[float] | None = None) -> Lagrangian:
        """The reference problem of section 6 (eq. 19): the same constraints with ε = 0, no
        primal, and the multipliers fixed at ``multipliers`` (default: :attr:`reference_multipliers`,
        else the current ones). Compile it with the components (and critics' settings) of this
        Lagrangian, train it with no dual updater, and :func:`measure_constraints` on held-out data
        gives ε̂; :func:`epsilon_with_slack` then sets ε = ε̂ + slack."""
        if multipliers is None:
            multipliers = (list(self.reference_multipliers) if self.reference_multipliers is not None
                           else self.multipliers.tolist())
        return Lagrangian(None, [(c.divergence, 0.0, n) for c, n in zip(self.constraints, self.names)],
                          init=multipliers)

    # -- the objectives -----------------------------------------------------------------------
    def mi_terms(self) -> list[tuple[str, sympy.Expr]]:
        """(family, α) of each mutual information of the primal."""
        return [(t.family, c) for t, c in self.primal.items() if isinstance(t, MutualInformation)]

    def primal_rest(self) -> Objective:
        """The primal's terms other than mutual informations."""
        return Objective([(t, c) for t, c in self.primal.items() if not isinstance(t, MutualInformation)])

    def fixed(self, multipliers: Sequence[float] | None = None, *, alpha_bound: Mapping | None = None) -> Objective:
        """The objective with fixed multipliers: primal (bounds chosen by α's sign, which must be
        known) + Σ λ_i D_i (the ε terms are constants and dropped). With α = 0 and fixed λ this is
        the reference problem of section 6 (eq. 19-20)."""
        from lagrangian_family.symbolic.bounds import algorithm1_bound

        lam = self.multipliers.tolist() if multipliers is None else list(multipliers)
        items = list(self.primal_rest().items())
        for fam, a in self.mi_terms():
            items += [(t, a * k) for t, k in algorithm1_bound(fam, a).items()]
        for c, l in zip(self.constraints, lam):
            lam_c = as_coefficient(l, context=f"the multiplier of {c.name}")
            items += [(t, k * lam_c) for t, k in c.divergence.items()]
        return Objective(items)

    def compile(self, **kw) -> CompiledLagrangian:
        """Compile with components (the keywords of :func:`.compile_objective`)."""
        return CompiledLagrangian(self, **kw)

    def extra_repr(self) -> str:
        rows = [f"primal: {self.primal}" + (f" ({self.form.preference})" if self.form is not None else "")]
        rows += [f"{n} <= {e:g}" for n, e in zip(self.names, self.epsilon.tolist())]
        return "\n".join(rows)


class CompiledLagrangian(CompiledObjective):
    """A compiled :class:`Lagrangian`: every bound and constraint is a head over shared estimates.

    ``out.loss`` = primal (bounds by the sign of α) + Σ λ_i D_i with λ fixed (detached), plus
    the critics' loss at zero value (see :class:`.LossOutput`); ``out.value`` = primal +
    Σ λ_i (D_i - ε_i) (detached). For logging, detached: ``out.primal``, ``out.constraints`` =
    {name: D_i}, ``out.violations`` = D - ε, ``out.multipliers`` = λ. Differentiable, from the
    same forward pass: ``out.primal_loss`` and ``out.constraint_losses`` = {name: D_i}, whose
    gradients are the model's (what a constrained optimiser such as cooper needs: :mod:`.cooper`).
    Under distributed training (:meth:`~.CompiledObjective.distribute`) the detached
    ``constraints``, ``violations`` and ``primal`` are averaged over the ranks (the global
    batch's estimates, the same on every rank), so a dual updater fed ``out.violations`` keeps
    λ identical across the ranks (:mod:`.distributed`).

    >>> import torch
    >>> from lagrangian_family.backends.torch import (GaussianMLPEncoder, BernoulliMLPDecoder,
    ...     StandardNormalPrior)
    >>> loss_fn = Lagrangian.lagvae(-1.0, (90.0, 0.01)).compile(encoder=GaussianMLPEncoder(4, 2, hidden=(8,)),
    ...     decoder=BernoulliMLPDecoder(2, 4, hidden=(8,)), prior=StandardNormalPrior(2))
    >>> out = loss_fn(torch.ones(5, 4))
    >>> sorted(out.constraint_losses), out.primal_loss.requires_grad, out.primal.requires_grad
    (['KL(q(x,z) || p(x,z))', 'MMD(q(z) || p(z))'], True, False)
    """

    def __init__(self, lagrangian: Lagrangian, **kw):
        heads: dict[str, object] = {}
        alphas = []
        for fam, a in lagrangian.mi_terms():
            lower, upper = mi_bounds(fam)
            a = as_expr(a)
            if a.free_symbols:  # the sign is known only per call: both bounds are compiled
                heads[f"I_{fam}:upper"], heads[f"I_{fam}:lower"] = upper, lower
            elif a != 0:  # only the bound Algorithm 1 uses, so the other needs no estimator or critic
                heads[f"I_{fam}:{'upper' if a >= 0 else 'lower'}"] = upper if a >= 0 else lower
            alphas.append((fam, a))
        rest = lagrangian.primal_rest()
        if len(rest):
            heads["primal"] = rest
        for name, c in zip(lagrangian.names, lagrangian.constraints):
            heads[name] = c.divergence
        coefs = [(fam, _Coefficient(a)) for fam, a in alphas]
        extra: dict[str, list[str]] = {}
        for fam, c in coefs:
            for n in c.names:
                extra.setdefault(n, []).append(f"I_{fam}(x;z)")
        super().__init__(heads, extra_symbols=extra, **kw)
        self.lagrangian = lagrangian
        self._alphas = coefs
        self._has_rest = len(rest) > 0

    def forward(self, x: torch.Tensor, params: Mapping | None = None, **kwargs) -> LossOutput:
        """The Lagrangian on a batch ``x`` with λ and ε as they stand (see the class doc); symbol
        values (α, any parameter of the primal or the constraints) as for
        :meth:`.CompiledObjective.forward`."""
        values = self.bind(params, kwargs)
        _, ests = self.estimate(x)
        parts = [self._model_part(e) for e in ests]
        primal_v = primal_l = None
        for fam, coef in self._alphas:
            a = coef(values)
            if a == 0:
                continue
            v, m = self.combine(f"I_{fam}:{'upper' if a >= 0 else 'lower'}", ests, values, parts)
            primal_v = v * a if primal_v is None else primal_v + v * a
            primal_l = m * a if primal_l is None else primal_l + m * a
        if self._has_rest:
            v, m = self.combine("primal", ests, values, parts)
            primal_v = v if primal_v is None else primal_v + v
            primal_l = m if primal_l is None else primal_l + m
        lam = self.lagrangian.multipliers
        eps = self.lagrangian.epsilon
        cons_v, cons_l = [], []
        for name in self.lagrangian.names:
            v, m = self.combine(name, ests, values, parts)
            cons_v.append(v)
            cons_l.append(m)
        d = torch.stack(cons_v)
        lam_d = lam.detach().to(d.dtype)
        loss = (lam_d * torch.stack(cons_l)).sum()
        eps_t = eps.to(d.dtype)
        value = (lam_d * (d - torch.nan_to_num(eps_t, nan=0.0))).sum()
        if primal_v is not None:
            loss = loss + primal_l
            value = value + primal_v
        if primal_l is None:
            primal_l = torch.zeros((), device=d.device, dtype=d.dtype)
        heads = {"primal": primal_v.detach() if primal_v is not None else primal_l}
        constraints = {n: v.detach() for n, v in zip(self.lagrangian.names, cons_v)}
        heads.update(constraints)
        terms = {t: e.value.detach() for t, e in zip(self._texts, ests)}
        loss, players = self._players(loss, ests)
        out = LossOutput(loss, value.detach(), terms, players, heads)
        out.constraints = constraints
        out.violations = d.detach() - eps_t
        out.multipliers = lam.detach().clone()
        out.primal = heads["primal"]
        out.primal_loss = primal_l
        out.constraint_losses = dict(zip(self.lagrangian.names, cons_l))
        out.player_values = _player_values(players)
        return reduce_output(out, self._sync)


def calibrate_epsilon(lagrangian: Lagrangian, data, *, encoder: nn.Module, decoder: nn.Module, prior,
                      gamma=0.0, multipliers: Sequence[float] | None = None, steps: int = 1000,
                      batch_size: int = 100, eval_batches: int = 10, copy_components: bool = True,
                      optimizer=None, progress: bool = False, eval_data=None, trainer: Mapping | None = None,
                      **compile_kw) -> torch.Tensor:
    """Set ε = ε̂ + γ from a reference run (paper, section 6, eq. 19-20).

    Trains (copies of, unless ``copy_components=False``) the components on the constraints
    alone, ``Σ λ_i D_i`` with α = 0 and the multipliers fixed (``multipliers``, default the
    Lagrangian's :attr:`~Lagrangian.reference_multipliers` when it was built by
    :func:`lagrangian_of`, else its current ones; the paper uses λ = (1, 100) for LagVAE), then
    measures ε̂ as the mean of each D_i over ``eval_batches`` batches (of ``eval_data``, held-out
    data, when given; else of the training data). The values are measured **up to the
    dropped constants** (KL(q(x,z) || p(x,z)) as -ELBO), the same units the compiled
    Lagrangian measures, so ε = ε̂ + γ is consistent. ``gamma`` is the slack in any form
    :func:`epsilon_with_slack` takes: a number, one per constraint, a mapping by constraint name,
    a value ``"50%"`` relative to ε̂ (the paper: γ2 = 0.5 ε̂2). ``trainer``: more keywords for the
    reference run's :class:`.Trainer` (``critic_optimizer``, ``n_critic``, ``seed``...). Returns ε̂
    and sets ``lagrangian.epsilon``.
    Under distributed training (a process group initialised) call it on every rank: the
    reference run is distributed like any :class:`.Trainer`'s, and ε̂ is measured on the global
    batches, the same on every rank.

    >>> import torch
    >>> from lagrangian_family.backends.torch import GaussianMLPEncoder, BernoulliMLPDecoder, StandardNormalPrior
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> lag = Lagrangian.lagvae(-1.0)
    >>> data = torch.bernoulli(torch.full((32, 6), 0.5))
    >>> eps_hat = calibrate_epsilon(lag, data, encoder=GaussianMLPEncoder(6, 2, hidden=(8,)),
    ...     decoder=BernoulliMLPDecoder(2, 6, hidden=(8,)), prior=StandardNormalPrior(2),
    ...     multipliers=[1.0, 100.0], gamma=[1.0, 0.0], steps=3, batch_size=16, eval_batches=1)
    >>> bool(torch.allclose(lag.epsilon, eps_hat + torch.tensor([1.0, 0.0])))
    True
    """
    from .train import Trainer

    enc = copy.deepcopy(encoder) if copy_components else encoder
    dec = copy.deepcopy(decoder) if copy_components else decoder
    pri = copy.deepcopy(prior) if copy_components and isinstance(prior, nn.Module) else prior
    ref = lagrangian.reference(multipliers)
    # the reference problem has no primal: settings that name only primal terms or α are not errors here
    loss_fn = ref.compile(encoder=enc, decoder=dec, prior=pri, **{**compile_kw, "lenient": True})
    runner = Trainer(loss_fn, data, batch_size=batch_size, model_optimizer=optimizer, progress=progress,
                     **dict(trainer or {}))
    runner.train(steps)
    if eval_data is not None:
        eps_hat = measure_constraints(loss_fn, eval_data, batch_size=batch_size, batches=eval_batches)
    else:
        totals = None
        with torch.no_grad(), runner._distributing():  # distributed: the global batches' values, on every rank
            for _ in range(eval_batches):
                x = runner.next_batch()
                d = loss_fn(x).violations  # ε = 0 in the reference problem: violations are the values
                totals = d if totals is None else totals + d
        eps_hat = totals / eval_batches
    eps_hat = eps_hat.to(lagrangian.epsilon)
    epsilon_with_slack(lagrangian, eps_hat, gamma)
    return eps_hat


def measure_constraints(loss_fn: CompiledLagrangian, data, *, batch_size: int = 100, batches: int | None = None,
                        params: Mapping | None = None) -> torch.Tensor:
    """The constraints' values D_i of a compiled Lagrangian (any: the reference problem's, or the
    Lagrangian's own) measured on ``data`` (held-out data: a tensor ``(N, ...)``), in order
    (``loss_fn.lagrangian.names``): the mean over consecutive batches of ``batch_size`` examples
    (all of them, or the first ``batches``), weighted by their sizes, with no gradient and the
    components in eval mode (their modes are restored). Critic-based estimates use the critics as
    they stand: measure after training, when they have been trained alongside.

    Units are those of the compiled constraints (constants dropped: KL(q(x,z) || p(x,z)) as
    -ELBO), as ε is.
    """
    if not isinstance(loss_fn, CompiledLagrangian):
        raise ObjectiveError("measure_constraints measures a compiled Lagrangian",
                             expected="a CompiledLagrangian (Lagrangian(...).compile(...))",
                             given=type(loss_fn).__name__, fix="compile the Lagrangian or its reference() first")
    x_all = data if isinstance(data, torch.Tensor) else torch.as_tensor(data)
    if x_all.ndim < 1 or x_all.shape[0] == 0:
        raise ObjectiveError("no data to measure the constraints on", expected="a tensor (N, ...) with N >= 1",
                             given=f"shape {tuple(x_all.shape)}", fix="pass held-out examples")
    n = x_all.shape[0]
    if batches is not None:
        n = min(n, int(batches) * batch_size)
    was = loss_fn.training
    total, count = None, 0
    loss_fn.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                x = x_all[start:min(n, start + batch_size)]
                out = loss_fn(x, params)
                d = torch.stack([out.constraints[k] for k in loss_fn.lagrangian.names]) * x.shape[0]
                total = d if total is None else total + d
                count += x.shape[0]
    finally:
        loss_fn.train(was)
    return total / count


def _slack_values(lagrangian: Lagrangian, eps_hat: torch.Tensor, slack) -> torch.Tensor:
    names = list(lagrangian.names)
    m = len(names)
    if isinstance(slack, Mapping):
        missing = [n for n in names if n not in slack]
        extra = [str(k) for k in slack if k not in names]
        if missing or extra:
            raise ObjectiveError("the slack names the constraints",
                                 expected="one value for each of: " + "; ".join(names),
                                 given=("missing " + "; ".join(missing) if missing else "")
                                 + (" unknown " + "; ".join(extra) if extra else ""),
                                 fix="pass a number for all constraints, or a mapping {constraint name: slack}")
        items = [slack[n] for n in names]
    elif isinstance(slack, (str, numbers.Real)) or (isinstance(slack, torch.Tensor) and slack.numel() == 1):
        items = [slack] * m
    elif isinstance(slack, (Sequence, torch.Tensor)):
        items = list(slack)
        if len(items) != m:
            raise ObjectiveError("wrong number of slacks", expected=f"one number, or {m} values (one per constraint: "
                                 + "; ".join(names) + ")", given=str(items), fix="one slack per constraint")
    else:
        raise ObjectiveError("bad slack", expected="a number, one per constraint, a mapping by constraint name, or "
                             "'50%' (relative to the measured value)", given=f"{type(slack).__name__} {slack!r}",
                             fix="pass slack=1.0")
    out = []
    for name, v, e in zip(names, items, eps_hat.tolist()):
        rel = isinstance(v, str)
        if rel:
            text = v.strip()
            try:
                if not text.endswith("%"):
                    raise ValueError(text)
                v = float(text[:-1]) / 100.0
            except ValueError:
                raise ObjectiveError(f"bad slack for {name}", expected="a number or a percentage such as '50%'",
                                     given=repr(text), fix="pass e.g. 1.0 or '50%'") from None
        elif isinstance(v, bool) or not isinstance(v, (numbers.Real, torch.Tensor)):
            raise ObjectiveError(f"bad slack for {name}", expected="a number or a percentage such as '50%'",
                                 given=f"{type(v).__name__} {v!r}", fix="pass e.g. 1.0 or '50%'")
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise ObjectiveError(f"bad slack for {name}", expected="a finite slack >= 0 (paper, section 6: γ > 0 "
                                 "keeps the constraint strictly feasible)", given=repr(v), fix="pass e.g. 1.0")
        out.append(abs(e) * v if rel else v)
    return torch.tensor(out, dtype=eps_hat.dtype, device=eps_hat.device)


def epsilon_with_slack(lagrangian: Lagrangian, measured, slack) -> torch.Tensor:
    """Set ε = ε̂ + γ (section 6) from the constraints' values ``measured`` in a reference run (a
    tensor or sequence in the order of ``lagrangian.names``, or a mapping by name) and the
    ``slack`` γ: a number (every constraint), one per constraint, a mapping by constraint name, and
    any value may be a string ``"50%"``, relative to the measured value (0.5 times its absolute value; the paper's
    γ2 = 0.5 ε̂2). Slack is in each constraint's units (-ELBO nats for a joint KL, the JS estimate's
    nats, squared MMD...), so one number rarely suits constraints of different kinds. Returns ε.

    >>> lag = Lagrangian.lagvae(-1.0)
    >>> [round(e, 6) for e in epsilon_with_slack(lag, [90.0, 0.002], [1.0, "50%"]).tolist()]
    [91.0, 0.003]
    """
    names = list(lagrangian.names)
    if isinstance(measured, Mapping):
        missing = [n for n in names if n not in measured]
        if missing:
            raise ObjectiveError("measured values are missing", expected="a value for each of: " + "; ".join(names),
                                 given="missing " + "; ".join(missing), fix="measure every constraint")
        measured = [float(measured[n]) for n in names]
    try:
        eps_hat = torch.as_tensor(measured, dtype=lagrangian.epsilon.dtype).flatten()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ObjectiveError("bad measured values", expected=f"{len(names)} real numbers",
                             given=f"{type(measured).__name__} {measured!r}",
                             fix="pass the values measure_constraints returns") from err
    if eps_hat.numel() != len(names) or not torch.isfinite(eps_hat).all():
        raise ObjectiveError("bad measured values", expected=f"{len(names)} finite values, one per constraint: "
                             + "; ".join(names), given=str(eps_hat.tolist()),
                             fix="measure the reference run again (measure_constraints)")
    eps = eps_hat + _slack_values(lagrangian, eps_hat, slack)
    lagrangian.set_epsilon(eps)
    return lagrangian.epsilon.clone()


def lagrangian_of(objective, *, preference: str, alpha: float = 1.0, slack=None, reference=None,
                  epsilon=None, params: Mapping | None = None, multipliers: Sequence[str] | None = None,
                  init: float | Sequence[float] | str = 1.0, require_consistency: bool = True) -> Lagrangian:
    """The Lagrangian version of a member of the family: its dual form's divergences become
    constraints ``D_i <= ε_i`` with learned ``λ_i >= 0``, and the primal is the information
    ``preference`` (one of ``'maximise-Iq'``, ``'minimise-Iq'``, ``'maximise-Ip'``,
    ``'minimise-Ip'``), replaced by its computable bound of eq. 13 as Algorithm 1 does (the
    upper bound to minimise, the lower bound to maximise). The symbolic part (which divergences,
    which bound, the reference weights, the refusals) is
    :func:`lagrangian_family.symbolic.constrained.lagrangian_form`; the form is kept as
    ``lag.form``, the original model's multipliers as ``lag.reference_multipliers``.

    ``objective``: a zoo name (its parameters take their original defaults unless ``params``
    binds them), a text objective or an Objective, with a dual form that enforces consistency
    (every zoo model except VMI, which enforces none: paper, footnote 2). ``alpha`` > 0: the
    primal's weight (only its sign matters, and the preference gives it). ``multipliers``: the
    symbols of an objective that already is a Lagrangian (the zoo's ``lagvae`` names its own).
    ``require_consistency=False`` accepts constraints that do not enforce consistency (see
    :func:`~lagrangian_family.symbolic.constrained.lagrangian_form`).

    ε, in the units of the compiled constraints (constants dropped; a joint KL(q || p) as -ELBO),
    one of:

    * ``epsilon``: the bounds themselves (one per constraint, or a mapping by name);
    * ``reference`` and ``slack``: ε = reference + slack, where ``reference`` holds the
      constraints' values measured in a reference run (section 6: the original model's
      constraints trained alone, ``lag.reference()``, measured by :func:`measure_constraints`);
      ``slack`` as :func:`epsilon_with_slack` takes it (a number, one per constraint, a mapping by
      name, ``"50%"``);
    * neither: ε is left unset (NaN) and ``slack`` (if given) is kept as ``lag.slack`` for the
      caller's reference run: :func:`calibrate_epsilon` (``gamma=lag.slack``) trains it with the
      original model's multipliers and sets ε.

    ``init``: the initial multipliers (Algorithm 1: 1), or ``"original"`` for the original model's.

    The result is a plain :class:`Lagrangian` (primal ``±alpha·I``, the bound chosen when it is
    compiled), so :func:`.save_model` stores it as any Lagrangian (primal, constraints, λ, ε); the
    symbolic ``form``, ``reference_multipliers`` and ``slack`` are attributes that a loaded model
    does not have (call ``lagrangian_of`` again for them).

    The command line's ``lagfam train MODEL --lagrangian PREFERENCE --slack S`` does, with the
    original model's recipe ``r = recipes.recipe(MODEL, data=..., budget=...)``::

        lag = lagrangian_of(model, preference=preference, slack=slack)     # ε unset
        ref = compile_with_recipe(lag.reference(), r)                      # eq. 19, λ fixed
        r.trainer(ref, train_x).train(steps)                               # no updater
        epsilon_with_slack(lag, measure_constraints(ref, held_out_x), lag.slack)
        loss_fn = compile_with_recipe(lag, r)                              # fresh components
        updater = HeldOut(RMSPropAscent(lag, lr=0.05, lower=0.001), loss_fn, held_out_x)
        r.trainer(loss_fn, train_x, updater=updater).train(steps)

    (``examples/lagrangian_zoo.py`` is this, with the measurements.) A refusal is an
    :class:`~lagrangian_family.errors.ObjectiveError` here or, for components that cannot
    estimate a constraint (InfoGAN's code encoder), from ``compile_with_recipe``.

    >>> lag = lagrangian_of("infogan", preference="maximise-Ip", reference=[0.5, 0.3], slack=[1.0, 0.05])
    >>> lag.names, str(lag.primal), lag.reference_multipliers
    (('E_{p(x)}[KL(p(z|x) || q(z|x))]', 'JS(q(x) || p(x))'), '-I_p(x;z)', (1.0, 1.0))
    >>> [round(e, 4) for e in lag.epsilon.tolist()]
    [1.5, 0.35]
    >>> lagrangian_of("lagvae", preference="minimise-Iq", epsilon=[95.0, 0.01]).names
    ('KL(q(x,z) || p(x,z))', 'MMD(q(z) || p(z))')
    """
    from lagrangian_family.symbolic.constrained import lagrangian_form

    form = lagrangian_form(objective, preference=preference, alpha=alpha, params=params, multipliers=multipliers,
                           require_consistency=require_consistency)
    if isinstance(init, str):
        if init != "original":
            raise ObjectiveError("bad initial multipliers", expected="a number, one per constraint, or 'original'",
                                 given=repr(init), fix="pass init=1.0 (Algorithm 1) or init='original'")
        init = list(form.reference_multipliers)
    if epsilon is not None and (reference is not None or slack is not None):
        raise ObjectiveError("both epsilon and a reference run given", expected="epsilon, or reference and slack",
                             given=f"epsilon={epsilon!r}, reference={reference!r}, slack={slack!r}",
                             fix="pass epsilon= alone, or reference= with slack=")
    if reference is not None and slack is None:
        raise ObjectiveError("a reference without a slack", expected="slack= with reference= (ε = reference + slack)",
                             given=f"reference={reference!r}", fix="pass slack=1.0 (or 0.0 for ε = the reference)")
    lag = Lagrangian(form.primal, [(d, None, n) for d, n in zip(form.constraints, form.names)], init=init)
    lag.form = form
    lag.reference_multipliers = form.reference_multipliers
    lag.slack = slack
    if slack is not None:
        _slack_values(lag, torch.zeros(len(form.names)), slack)  # check it now, not after a reference run
    if epsilon is not None:
        if isinstance(epsilon, Mapping):
            missing = [n for n in lag.names if n not in epsilon]
            if missing:
                raise ObjectiveError("epsilon names the constraints", expected="a value for each of: "
                                     + "; ".join(lag.names), given="missing " + "; ".join(missing),
                                     fix="pass one epsilon per constraint")
            epsilon = [epsilon[n] for n in lag.names]
        lag.set_epsilon(epsilon)
    elif reference is not None:
        epsilon_with_slack(lag, reference, slack)
    return lag


def compile_with_recipe(lagrangian: Lagrangian, recipe, *, example_x=None, device=None) -> CompiledLagrangian:
    """Compile a Lagrangian (one from :func:`lagrangian_of`, or its :meth:`~Lagrangian.reference`)
    with what a :class:`~.recipes.Recipe` chose for the original model: fresh components built
    from the recipe (its seed), its compile options (``decoder_sample``, estimators), and for every
    term of the Lagrangian's heads that trains a critic, the recipe's critic for that term, or one
    of the same kind (:class:`~.components.MLPCritic`, spectral normalisation, dropout 0.2 over
    (x, z), the recipe's critic widths) where the Lagrangian has a term the original has not (ALICE's
    constraint ``E_{q(z)}[KL(q(x|z) || p(x|z))]`` is measured with an f-GAN critic on z). Train it
    with ``recipe.trainer(loss_fn, data, updater=...)``.

    >>> from lagrangian_family.backends.torch.recipes import recipe
    >>> r = recipe("alice", data="digits", budget="smoke")
    >>> lag = lagrangian_of("alice", preference="maximise-Iq", epsilon=[30.0, 0.5])
    >>> fn = compile_with_recipe(lag, r)
    >>> sorted(t for t, e in zip(fn._texts, fn.estimators) if getattr(e, "critic", None) is not None)
    ['JS(q(x,z) || p(x,z))', 'KL(q(z) || p(z))']
    """
    from lagrangian_family.symbolic.classify import classify

    from .model import build_component
    from .recipes import DATASETS, _critic_terms, share_layers

    comps = recipe.build_components(device)
    opts = dict(recipe.compile_options)
    given = dict(opts.pop("critics", None) or {})
    x_dim = int(DATASETS[recipe.data]["x_shape"][0])
    heads = [c.divergence for c in lagrangian.constraints]
    for fam, a in lagrangian.mi_terms():
        a = as_expr(a)
        if a.free_symbols or a == 0:
            continue
        lower, upper = mi_bounds(fam)
        heads.append(upper if a >= 0 else lower)
    if len(lagrangian.primal_rest()):
        heads.append(lagrangian.primal_rest())
    found: dict[str, tuple[int, bool]] = {}
    for head in heads:
        text = str(classify(head).computable_form)
        found.update(_critic_terms(text, recipe.components, {}, x_dim))
    like = next(iter(given.values()), None)
    hidden = (like["config"]["hidden"] if like is not None
              else recipe.components["encoder"]["config"].get("hidden", [128]))
    critics = {}
    for term, (in_dim, joint) in found.items():
        spec = given.get(term) or {"class": "MLPCritic", "config": {"in_dim": in_dim, "hidden": list(hidden),
                                                                     "dropout": 0.2 if joint else 0.0,
                                                                     "spectral_norm": True, "activation": "LeakyReLU"}}
        critic = build_component(spec, role=f"critic:{term}")
        critics[term] = critic.to(device) if device is not None else critic
    share_layers(opts, comps, critics)
    if example_x is not None:
        example_x = torch.as_tensor(example_x)
        if device is not None:
            example_x = example_x.to(device)
    return lagrangian.compile(encoder=comps["encoder"], decoder=comps["decoder"], prior=comps["prior"],
                              critics=critics or None, example_x=example_x, **opts)
