"""cooper-optim on a compiled Lagrangian agrees with the project's own dual updater.

Two checks. (1) An exactly solvable constrained problem written as an objective: both cooper's
simultaneous gradient descent-ascent and the project's loop (SGD on ``out.loss``, then
:class:`GradientAscent` on ``out.violations``) reach the KKT point computed by hand. (2) On a
small LagVAE the two make the same updates step for step: the multipliers and the constraint
values agree to float rounding after many steps.
"""

import math

import cooper
import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import lagrangian_family as lf
from lagrangian_family.backends.torch import GradientAscent, Lagrangian, StandardNormalPrior, compile_objective
from lagrangian_family.backends.torch.cooper import CooperProblem

from .helpers import binary_data, tiny_models

SIGMA = 1e-3  # the encoder's fixed scale: z = mu + SIGMA * noise, so the Monte Carlo noise is tiny


class MeanEncoder(nn.Module):
    """q(z|x) = N(mu, SIGMA^2 I) whatever x: the primal variable is mu."""

    def __init__(self, d: int):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def forward(self, x):
        loc = self.mu.expand(x.shape[0], -1)
        return Independent(Normal(loc, torch.full_like(loc, SIGMA)), 1)


class UnitGaussianDecoder(nn.Module):
    """p(x|z) = N(z, I)."""

    def forward(self, z):
        return Independent(Normal(z, torch.ones_like(z)), 1)


def quadratic_problem():
    """min_mu E_i 0.5 ||x_i - mu||^2  s.t.  KL(N(mu, SIGMA^2 I) || N(0, I)) <= eps.

    As an objective: primal -E_{q(x,z)}[log p(x|z)] (= E_i 0.5 ||x_i - z||^2 + const), constraint
    E_{q(x)}[KL(q(z|x) || p(z))] = 0.5 ||mu||^2 + c with c = 0.5 d (SIGMA^2 - 1 - 2 log SIGMA).
    With the data mean m = (3, 4) and eps = c + r^2 / 2, r = 2, the constraint is active:
    mu* = r m / |m| = (1.2, 1.6), and stationarity (mu - m) + lambda mu = 0 gives
    lambda* = |m| / r - 1 = 1.5.
    """
    d = 2
    c = 0.5 * d * (SIGMA ** 2 - 1.0 - 2.0 * math.log(SIGMA))
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, d, generator=g, dtype=torch.float64)
    x = torch.tensor([3.0, 4.0], dtype=torch.float64) + noise - noise.mean(0)
    lag = Lagrangian("-E_{q(x,z)}[log p(x|z)]", [("E_{q(x)}[KL(q(z|x) || p(z))]", c + 2.0)], init=0.0).double()
    loss_fn = lag.compile(encoder=MeanEncoder(d), decoder=UnitGaussianDecoder(),
                          prior=StandardNormalPrior(d).double())
    return loss_fn, x


STEPS, LR_PRIMAL, LR_DUAL = 500, 0.1, 0.1


def run_own(loss_fn, x, steps, lr_primal, lr_dual, optimizer=torch.optim.SGD):
    opt = optimizer(loss_fn.parameters(), lr=lr_primal)
    up = GradientAscent(loss_fn.lagrangian, lr=lr_dual)
    history = []
    for _ in range(steps):
        out = loss_fn(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        up.step(out.violations)
        history.append((loss_fn.lagrangian.multipliers.clone(), torch.stack(list(out.constraints.values()))))
    return history


def run_cooper(loss_fn, x, steps, lr_primal, lr_dual, optimizer=torch.optim.SGD):
    problem = CooperProblem(loss_fn)
    opt = cooper.optim.SimultaneousOptimizer(
        problem, primal_optimizers=optimizer(loss_fn.parameters(), lr=lr_primal),
        dual_optimizers=torch.optim.SGD(problem.dual_parameters(), lr=lr_dual, maximize=True))
    history = []
    for _ in range(steps):
        roll = opt.roll(compute_cmp_state_kwargs={"x": x})
        out = roll.cmp_state.misc["out"]
        history.append((loss_fn.lagrangian.multipliers.clone(), torch.stack(list(out.constraints.values()))))
    return history


def test_cooper_and_the_own_updater_reach_the_kkt_point_of_a_quadratic_problem():
    results = {}
    for name, run in (("own", run_own), ("cooper", run_cooper)):
        loss_fn, x = quadratic_problem()
        torch.manual_seed(1)
        run(loss_fn, x, STEPS, LR_PRIMAL, LR_DUAL)
        results[name] = (float(loss_fn.lagrangian.multipliers[0]), loss_fn.encoder.mu.detach().clone(),
                         loss_fn, x)
    for name, (lam, mu, loss_fn, x) in results.items():
        # KKT point by hand; the tolerance covers the Monte Carlo noise of z (SIGMA / sqrt(64) around mu)
        assert abs(lam - 1.5) < 5e-4, (name, lam)
        assert torch.allclose(mu, torch.tensor([1.2, 1.6], dtype=torch.float64), atol=5e-4), (name, mu)
        with torch.no_grad():
            violation = float(loss_fn(x).violations[0])
        assert abs(violation) < 1e-3, (name, violation)
    # and the two agree with each other far more closely than with the hand solution
    assert abs(results["own"][0] - results["cooper"][0]) < 1e-9
    assert torch.allclose(results["own"][1], results["cooper"][1], atol=1e-9)


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_cooper_makes_the_own_updaters_updates_on_a_small_lagvae(optimizer):
    """Same seeds, same batches: cooper's simultaneous step and the project's step coincide, so
    the multipliers and the constraint values agree to float rounding (float32 sums taken in a
    different order: 1e-5 relative) after 40 steps."""
    histories = []
    for run in (run_own, run_cooper):
        enc, dec, prior = tiny_models(seed=3)
        lag = Lagrangian.lagvae(-1.0, (4.0, 0.005), mmd_weight=10.0)
        loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
        torch.manual_seed(7)
        histories.append(run(loss_fn, binary_data(64), 40, 1e-2, 0.05, optimizer))
    moved = False
    for (lam_a, d_a), (lam_b, d_b) in zip(*histories):
        assert torch.allclose(lam_a, lam_b, rtol=1e-5, atol=1e-6), (lam_a, lam_b)
        assert torch.allclose(d_a, d_b, rtol=1e-5, atol=1e-6), (d_a, d_b)
        moved |= not torch.equal(lam_a, torch.ones(2))
    assert moved  # the multipliers did move, so the comparison can fail


def test_cooper_projection_bounds_and_the_lagrangians_buffer():
    enc, dec, prior = tiny_models()
    lag = Lagrangian.lagvae(1.0, (1e6, 1e6))  # far from active: the ascent drives λ down
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    problem = CooperProblem(loss_fn, lower=0.001, upper=100.0)
    opt = cooper.optim.SimultaneousOptimizer(
        problem, primal_optimizers=torch.optim.SGD(loss_fn.parameters(), lr=1e-3),
        dual_optimizers=torch.optim.SGD(problem.dual_parameters(), lr=1.0, maximize=True))
    opt.roll(compute_cmp_state_kwargs={"x": binary_data()})
    assert torch.equal(lag.multipliers, torch.full((2,), 0.001))  # λ = 1 + 1.0 * (D - 1e6), clipped
    assert "lagrangian.multipliers" in loss_fn.state_dict()
    assert torch.equal(loss_fn.state_dict()["lagrangian.multipliers"], problem.multiplier.weight.detach())


def test_the_differentiable_fields_equal_the_logged_ones():
    enc, dec, prior = tiny_models()
    lag = Lagrangian.lagvae(-1.0, (90.0, 0.01))
    out = lag.compile(encoder=enc, decoder=dec, prior=prior)(binary_data())
    assert torch.equal(out.primal_loss.detach(), out.primal)
    for name, d in out.constraint_losses.items():
        assert d.requires_grad and torch.equal(d.detach(), out.constraints[name])
    # the model's loss is the primal plus the weighted constraints: λ = (1, 1) here
    total = out.primal_loss + sum(out.constraint_losses.values())
    assert torch.allclose(total, out.players["model"].loss)


def test_errors_are_typed():
    enc, dec, prior = tiny_models()
    with pytest.raises(lf.ObjectiveError, match="compiled Lagrangian"):
        CooperProblem(compile_objective("vae", encoder=enc, decoder=dec, prior=prior))
    loss_fn = Lagrangian.lagvae(-1.0).compile(encoder=enc, decoder=dec, prior=prior)  # ε not set
    with pytest.raises(lf.ObjectiveError, match="not set"):
        CooperProblem(loss_fn).compute_cmp_state(binary_data())
    with pytest.raises(lf.ObjectiveError, match="bounds"):
        CooperProblem(loss_fn, lower=-1.0)
