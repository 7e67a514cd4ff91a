"""Dual updaters: ascend the multipliers λ of a :class:`.Lagrangian` on the measured violations.

Each updater is fed ``out.violations`` (D - ε, measured up to the dropped constants: see
:mod:`.lagrangian`) after every training step. It averages them over ``every`` steps,
then updates λ and projects it onto ``[lower, upper]`` (``lower = 0`` by default: λ >= 0).
Its own state (accumulators, moment estimates, step count) is in ``state_dict``; the
multipliers themselves are buffers of the Lagrangian.

* :class:`GradientAscent`: projected gradient ascent, λ <- max(λ + lr (D - ε), 0)
  (Algorithm 1).
* :class:`RMSPropAscent` and :func:`paper_preset`: the authors' code (ermongroup/lagvae,
  ``methods/lagvae.py``): TensorFlow 1's RMSProp (decay 0.9, ε 1e-10 inside the square root,
  mean square initialised to 1) with learning rate 1e-4 ascending the Lagrangian in λ, every
  step, then λ clipped to [0.001, 100].
* :class:`GECO`: multiplicative ascent on a moving average of the violations (Rezende &
  Viola 2018): C̄ <- ρ C̄ + (1 - ρ) (D - ε), λ <- λ exp(lr C̄).
* :class:`HeldOut`: any of these fed the violations of held-out batches instead of the training
  batch's, so that λ enforces the constraints on data the model does not fit (the constraints
  of section 5 are population divergences; a training batch under-estimates them as the model
  overfits).

>>> import torch
>>> from lagrangian_family.backends.torch import Lagrangian
>>> lag = Lagrangian(None, [("KL(q(x,z) || p(x,z))", 90.0)])
>>> up = GradientAscent(lag, lr=0.5)
>>> up.step(torch.tensor([-4.0]))   # D below its bound: λ = max(1 - 2, 0)
True
>>> lag.multipliers
tensor([0.])
"""

from __future__ import annotations

import math

import torch

from lagrangian_family.errors import ObjectiveError

__all__ = ["DualUpdater", "GradientAscent", "RMSPropAscent", "GECO", "paper_preset", "HeldOut"]


class DualUpdater:
    """Base class: accumulate violations, update every ``every`` steps, project onto the bounds."""

    def __init__(self, lagrangian, *, every: int = 1, lower: float = 0.0, upper: float = math.inf):
        if every < 1:
            raise ObjectiveError("bad update period", expected="every >= 1", given=str(every), fix="every=1")
        if lower < 0:
            raise ObjectiveError("multipliers must stay non-negative", expected="lower >= 0", given=str(lower),
                                 fix="lower=0.0")
        self.lagrangian = lagrangian
        self.every = int(every)
        self.lower, self.upper = float(lower), float(upper)
        lam = lagrangian.multipliers
        self._acc = torch.zeros_like(lam)
        self._count = 0
        self.updates = 0

    def step(self, violations) -> bool:
        """Feed one step's violations D - ε (a tensor, or the step's :class:`.LossOutput`);
        returns True when the multipliers were updated.

        Under distributed training every rank must feed the same violations, averaged over the
        ranks, or the ranks' λ drift apart: a compiled Lagrangian gives them once distributed
        (:meth:`.CompiledObjective.distribute`; the :class:`.Trainer` does it). Given the
        :class:`.LossOutput` of a rank of a process group of several, an updater refuses
        violations that are the rank's own shard's (``out.world_size == 1``)."""
        if hasattr(violations, "violations") and hasattr(violations, "world_size"):
            violations = self._global_violations(violations)
        lam = self.lagrangian.multipliers
        v = torch.as_tensor(violations).detach().to(device=lam.device, dtype=lam.dtype).reshape(lam.shape)
        if not torch.isfinite(v).all():
            bad = [n for n, ok in zip(self.lagrangian.names, torch.isfinite(v).tolist()) if not ok]
            unset = torch.isnan(self.lagrangian.epsilon).tolist()
            why = "its epsilon is not set" if any(unset) else "its measured value is not finite"
            raise ObjectiveError(f"cannot update the multiplier of {', '.join(bad)}: {why}",
                                 expected="finite violations D - epsilon", given=str(v.tolist()),
                                 fix="set epsilon (lagrangian.set_epsilon or calibrate_epsilon) and check the loss")
        self._acc += v
        self._count += 1
        if self._count < self.every:
            return False
        g = self._acc / self._count
        self._acc.zero_()
        self._count = 0
        with torch.no_grad():
            self._update(lam, g)
            lam.clamp_(self.lower, self.upper)
        self.updates += 1
        return True

    @staticmethod
    def _global_violations(out) -> torch.Tensor:
        if out.violations is None:
            raise ObjectiveError("the output has no violations", expected="the output of a compiled Lagrangian",
                                 given="the output of a compiled objective without constraints",
                                 fix="compile a Lagrangian (Lagrangian(...).compile(...)) to learn multipliers")
        import torch.distributed as dist

        if out.world_size == 1 and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise ObjectiveError(
                f"the violations are rank {dist.get_rank()}'s own, but {dist.get_world_size()} ranks are training",
                expected="violations averaged over the ranks (out.world_size equal to the number of ranks)",
                given="out.world_size = 1: the loss is not distributed, so each rank would step λ on its own shard "
                      "and the multipliers would drift apart",
                fix="call loss_fn.distribute() on every rank before training (the Trainer does it)")
        return out.violations

    def _update(self, lam: torch.Tensor, g: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The updater's running state (accumulated violations, counters, and a subclass's own);
        λ itself lives in the Lagrangian's ``state_dict``."""
        return {"acc": self._acc.clone(), "count": self._count, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`."""
        self._acc = state["acc"].to(self._acc)
        self._count = int(state["count"])
        self.updates = int(state["updates"])


class GradientAscent(DualUpdater):
    """Projected gradient ascent (Algorithm 1): λ <- clamp(λ + lr (D - ε), lower, upper)."""

    def __init__(self, lagrangian, lr: float = 1e-3, *, every: int = 1, lower: float = 0.0,
                 upper: float = math.inf):
        super().__init__(lagrangian, every=every, lower=lower, upper=upper)
        self.lr = float(lr)

    def _update(self, lam, g):
        lam.add_(g, alpha=self.lr)


class RMSPropAscent(DualUpdater):
    """RMSProp ascent with TensorFlow 1 semantics (the authors' LagVAE code).

    ms <- decay ms + (1 - decay) g^2 (ms starts at 1); λ <- λ + lr g / sqrt(ms + eps).
    """

    def __init__(self, lagrangian, lr: float = 1e-4, *, decay: float = 0.9, eps: float = 1e-10, every: int = 1,
                 lower: float = 0.0, upper: float = math.inf):
        super().__init__(lagrangian, every=every, lower=lower, upper=upper)
        self.lr, self.decay, self.eps = float(lr), float(decay), float(eps)
        self._ms = torch.ones_like(lagrangian.multipliers)

    def _update(self, lam, g):
        self._ms.mul_(self.decay).add_((1.0 - self.decay) * g * g)
        lam.add_(self.lr * g / torch.sqrt(self._ms + self.eps))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ms": self._ms.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._ms = state["ms"].to(self._ms)


def paper_preset(lagrangian, *, every: int = 1) -> RMSPropAscent:
    """The authors' setting: RMSProp (TF1) with lr 1e-4 on λ every step, clipped to [0.001, 100].

    >>> from lagrangian_family.backends.torch import Lagrangian
    >>> up = paper_preset(Lagrangian.lagvae(1.0, (90.0, 1e-3)))
    >>> up.lr, up.lower, up.upper
    (0.0001, 0.001, 100.0)
    """
    return RMSPropAscent(lagrangian, lr=1e-4, decay=0.9, eps=1e-10, every=every, lower=1e-3, upper=100.0)


class GECO(DualUpdater):
    """Multiplicative ascent on a moving average (GECO, Rezende & Viola 2018).

    C̄ <- ρ C̄ + (1 - ρ) g (C̄ starts at the first g), λ <- λ exp(lr C̄), then the projection.
    """

    def __init__(self, lagrangian, lr: float = 1e-2, *, rho: float = 0.99, every: int = 1, lower: float = 0.0,
                 upper: float = math.inf):
        super().__init__(lagrangian, every=every, lower=lower, upper=upper)
        self.lr, self.rho = float(lr), float(rho)
        self._ma = torch.zeros_like(lagrangian.multipliers)
        self._started = False

    def _update(self, lam, g):
        if not self._started:
            self._ma.copy_(g)
            self._started = True
        else:
            self._ma.mul_(self.rho).add_((1.0 - self.rho) * g)
        lam.mul_(torch.exp(self.lr * self._ma))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ma": self._ma.clone(), "started": self._started}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._ma = state["ma"].to(self._ma)
        self._started = bool(state["started"])


class HeldOut:
    """A dual updater fed the violations of held-out batches: at each step the compiled Lagrangian
    ``loss_fn`` is evaluated (no gradient, eval mode) on the next ``batch_size`` examples of
    ``data`` (cycled in order), and ``updater`` steps on those violations instead of the training
    batch's. The constraints of section 5 are divergences of the model's distributions, which a
    training batch under-estimates once the model overfits (on the digits, -ELBO ends about a nat
    higher on held-out images than on training batches); held-out estimates keep λ enforcing them
    where they are judged. Hold out data that you do not also use for the final measurement.

    >>> import torch
    >>> from lagrangian_family.backends.torch import (Lagrangian, GaussianMLPEncoder, BernoulliMLPDecoder,
    ...     StandardNormalPrior, GradientAscent)
    >>> lag = Lagrangian.lagvae(-1.0, (1e6, 1e6))
    >>> fn = lag.compile(encoder=GaussianMLPEncoder(4, 2, hidden=(8,)), decoder=BernoulliMLPDecoder(2, 4, hidden=(8,)),
    ...                  prior=StandardNormalPrior(2))
    >>> up = HeldOut(GradientAscent(lag, lr=1e-7), fn, torch.ones(6, 4), batch_size=4)
    >>> up.step(None), up.position
    (True, 4)
    """

    def __init__(self, updater: DualUpdater, loss_fn, data: torch.Tensor, *, batch_size: int = 100):
        if not isinstance(updater, DualUpdater):
            raise ObjectiveError("HeldOut wraps a dual updater",
                                 expected="a DualUpdater (GradientAscent, RMSPropAscent, GECO)",
                                 given=type(updater).__name__, fix="HeldOut(RMSPropAscent(lag), ...)")
        if not isinstance(data, torch.Tensor) or data.ndim < 1 or data.shape[0] == 0:
            raise ObjectiveError("no held-out data", expected="a tensor (N, ...) with N >= 1",
                                 given=type(data).__name__ if not isinstance(data, torch.Tensor)
                                 else f"shape {tuple(data.shape)}", fix="pass held-out examples")
        if int(batch_size) < 1:
            raise ObjectiveError("bad batch size", expected="batch_size >= 1", given=str(batch_size),
                                 fix="batch_size=100")
        self.updater, self.loss_fn, self.data = updater, loss_fn, data
        self.batch_size = int(batch_size)
        #: the index of the next held-out example
        self.position = 0
        #: the held-out violations of the last step (None before the first)
        self.last: torch.Tensor | None = None

    @property
    def lagrangian(self):
        """The Lagrangian whose multipliers the wrapped updater ascends."""
        return self.updater.lagrangian

    def violations(self) -> torch.Tensor:
        """D - ε on the next held-out batch (advances :attr:`position`)."""
        n = self.data.shape[0]
        idx = [(self.position + i) % n for i in range(min(self.batch_size, n))]
        self.position = (self.position + len(idx)) % n
        was = self.loss_fn.training
        self.loss_fn.eval()
        try:
            with torch.no_grad():
                return self.loss_fn(self.data[idx]).violations
        finally:
            self.loss_fn.train(was)

    def step(self, out=None) -> bool:
        """Ignore the training step's output ``out``; step the updater on held-out violations."""
        self.last = self.violations()
        return self.updater.step(self.last)

    def state_dict(self) -> dict:
        """The wrapped updater's state and the held-out position."""
        return {"updater": self.updater.state_dict(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`."""
        self.updater.load_state_dict(state["updater"])
        self.position = int(state["position"])
