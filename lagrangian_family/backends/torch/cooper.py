"""A compiled Lagrangian as a cooper-optim constrained problem, from one forward pass.

`cooper <https://github.com/cooper-org/cooper>`_ (``pip install 'lagrangian_family[torch,cooper]'``, the
package ``cooper-optim``) optimises a ``ConstrainedMinimizationProblem``: its
``compute_cmp_state`` returns the loss and the constraint violations as differentiable tensors,
and cooper's formulations and optimisers build the primal and dual Lagrangians from them.
:class:`CooperProblem` is that problem for a :class:`.CompiledLagrangian`: one call of the
compiled loss gives the primal (``out.primal_loss``) and every constraint
(``out.constraint_losses``) with their gradients, so the primal and the constraints are never
evaluated twice.

* The constraints ``D_i <= ε_i`` are one cooper inequality constraint with one multiplier per
  ``D_i`` (violation ``D - ε``, measured up to the constants the algebra drops, as in
  :mod:`.lagrangian`: a joint KL is measured as -ELBO).
* The multipliers start at the Lagrangian's ``λ``; after every dual step they are projected onto
  ``[lower, upper]`` (``lower = 0``: λ >= 0; the authors' preset clips to [0.001, 100]) and written
  back into ``lagrangian.multipliers``, so ``out.multipliers``, ``state_dict()`` and
  checkpoints show cooper's λ.
* The loss cooper sees carries the critics' loss at zero value (as ``out.loss`` does: see
  :class:`.LossOutput`), so a primal optimiser over ``loss_fn.parameters()`` also trains the
  critics of adversarial terms, each player on its own objective; or give cooper one primal
  optimiser per player.

With SGD on λ (``maximize=True``) cooper's simultaneous step is the project's own
:class:`.GradientAscent` step (Algorithm 1), update for update (tested).

Under distributed training (:meth:`.CompiledObjective.distribute` on every rank) the dual step
uses the violations averaged over the ranks (cooper's ``strict_violation``), so the multipliers
stay the same on every rank; the primal gradients are each rank's, to be averaged over the ranks
as in any data-parallel loop (:mod:`.distributed`).

>>> import torch, cooper
>>> from lagrangian_family.backends.torch import (GaussianMLPEncoder, BernoulliMLPDecoder,
...     StandardNormalPrior, Lagrangian)
>>> torch.manual_seed(0)
<torch._C.Generator object at ...>
>>> lag = Lagrangian.lagvae(-1.0, (5.0, 0.01))
>>> loss_fn = lag.compile(encoder=GaussianMLPEncoder(4, 2, hidden=(8,)),
...     decoder=BernoulliMLPDecoder(2, 4, hidden=(8,)), prior=StandardNormalPrior(2))
>>> problem = CooperProblem(loss_fn)
>>> opt = cooper.optim.SimultaneousOptimizer(problem,
...     primal_optimizers=torch.optim.Adam(loss_fn.parameters(), lr=1e-3),
...     dual_optimizers=torch.optim.SGD(problem.dual_parameters(), lr=1e-2, maximize=True))
>>> x = torch.bernoulli(torch.full((16, 4), 0.5))
>>> rollout = opt.roll(compute_cmp_state_kwargs={"x": x})
>>> sorted(rollout.cmp_state.misc["out"].constraints)   # the compiled loss's output, for logging
['KL(q(x,z) || p(x,z))', 'MMD(q(z) || p(z))']
>>> bool(torch.equal(lag.multipliers, problem.multiplier.weight.detach()))
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from lagrangian_family.errors import ObjectiveError

try:
    import cooper
except ImportError as _err:  # pragma: no cover - cooper is in the dev extra
    raise ImportError("lagrangian_family.backends.torch.cooper needs cooper-optim: "
                      "pip install 'lagrangian_family[torch,cooper]'") from _err

from .lagrangian import CompiledLagrangian

__all__ = ["CooperProblem", "LagrangianMultiplier"]


class LagrangianMultiplier(cooper.multipliers.DenseMultiplier):
    """cooper's dense multiplier for the constraints of a :class:`.Lagrangian`: starts at its ``λ``,
    is projected onto ``[lower, upper]`` after every dual step and written back into
    ``lagrangian.multipliers``."""

    def __init__(self, lagrangian, *, lower: float = 0.0, upper: float = math.inf):
        lam = lagrangian.multipliers
        super().__init__(init=lam.detach().clone(), device=lam.device, dtype=lam.dtype)
        if not 0.0 <= lower <= upper:
            raise ObjectiveError("bad bounds for the multipliers", expected="0 <= lower <= upper",
                                 given=f"lower={lower}, upper={upper}", fix="lower=0.0, upper=math.inf")
        self.lower, self.upper = float(lower), float(upper)
        object.__setattr__(self, "_lagrangian", lagrangian)  # not a submodule: its buffers stay its own
        with torch.no_grad():
            self.weight.clamp_(self.lower, self.upper)

    @torch.no_grad()
    def post_step_(self) -> None:
        """Project onto ``[lower, upper]`` (in place) and copy into the Lagrangian's buffer."""
        self.weight.clamp_(self.lower, self.upper)
        target = self._lagrangian.multipliers
        target.copy_(self.weight.detach().to(target))


class CooperProblem(cooper.ConstrainedMinimizationProblem):
    """A :class:`.CompiledLagrangian` as cooper's constrained problem (see the module doc).

    ``loss_fn``: the compiled Lagrangian (its ε must be set). ``lower``, ``upper``: the
    projection of the multipliers. ``formulation_type`` and ``penalty_coefficient``: cooper's
    (default the plain Lagrangian; e.g. ``cooper.formulations.AugmentedLagrangian`` with a
    ``cooper.penalty_coefficients.DensePenaltyCoefficient``). ``params``: symbol values bound for
    every call (as the Trainer's). ``problem.constraint`` is the cooper constraint,
    ``problem.multiplier`` its multiplier.
    """

    def __init__(self, loss_fn: CompiledLagrangian, *, lower: float = 0.0, upper: float = math.inf,
                 formulation_type=None, penalty_coefficient=None, params: Mapping | None = None):
        super().__init__()
        if not isinstance(loss_fn, CompiledLagrangian):
            raise ObjectiveError("CooperProblem needs a compiled Lagrangian",
                                 expected="a CompiledLagrangian (Lagrangian(...).compile(...))",
                                 given=type(loss_fn).__name__,
                                 fix="compile a Lagrangian: lf.backends.torch.Lagrangian(primal, constraints).compile("
                                 "encoder=..., decoder=..., prior=...)")
        self.loss_fn = loss_fn
        self.params = dict(params or {})
        self.multiplier = LagrangianMultiplier(loss_fn.lagrangian, lower=lower, upper=upper)
        self.constraint = cooper.Constraint(
            constraint_type=cooper.ConstraintType.INEQUALITY,
            formulation_type=formulation_type or cooper.formulations.Lagrangian,
            multiplier=self.multiplier, penalty_coefficient=penalty_coefficient)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the constraints, in the order of the multiplier's entries."""
        return self.loss_fn.lagrangian.names

    def compute_cmp_state(self, x: torch.Tensor, params: Mapping | None = None, **kwargs) -> cooper.CMPState:
        """One call of the compiled Lagrangian on ``x``: the primal as the loss, ``D - ε`` as the
        violations (differentiable), the :class:`.LossOutput` in ``misc["out"]``."""
        out = self.loss_fn(x, {**self.params, **(params or {})}, **kwargs)
        eps = self.loss_fn.lagrangian.epsilon
        if torch.isnan(eps).any():
            unset = [n for n, e in zip(self.names, eps.tolist()) if math.isnan(e)]
            raise ObjectiveError(f"the bound of {', '.join(unset)} is not set",
                                 expected="an epsilon for every constraint", given=str(eps.tolist()),
                                 fix="lagrangian.set_epsilon(...) or calibrate_epsilon(...)")
        d = torch.stack([out.constraint_losses[n] for n in self.names])
        violation = d - eps.to(d)
        loss = out.primal_loss
        critic = out.players["critic"].loss
        if critic is not None and critic.requires_grad:  # the critics' gradient at zero value
            loss = loss + (critic - critic.detach()).to(loss.dtype)
        # distributed (loss_fn.distribute()): the dual step on the violations averaged over the ranks
        strict = out.violations.detach().to(violation) if out.world_size > 1 else None
        state = cooper.ConstraintState(violation=violation, strict_violation=strict)
        return cooper.CMPState(loss=loss, observed_constraints={self.constraint: state}, misc={"out": out})
