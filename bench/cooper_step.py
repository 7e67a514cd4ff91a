"""One-pass cooper step vs the project's own updater step, on the compiled Lagrangian.

LagVAE (α1 = -1, constraints -ELBO <= ε1 and 10^4·MMD <= ε2) on the authors' MNIST network
(MLP 784-1024-1024, softplus, latent 64, Gaussian encoder, Bernoulli decoder), batch 100 of
random binary images. Each training step (forward, backward, primal Adam step, dual step) is
timed two ways on the same compiled loss:

* **own**: ``out = loss_fn(x); out.loss.backward(); adam.step(); GradientAscent.step(out.violations)``;
* **cooper**: ``SimultaneousOptimizer.roll`` on :class:`~lagrangian_family.backends.torch.cooper.CooperProblem`
  (the primal and the constraints from one call of the compiled loss; dual SGD with ``maximize=True``).

Steps are interleaved (own, cooper, then cooper, own, ...) after a warm-up; "ratio" is the
ratio of the medians, "paired" the median of the ratios of adjacent steps (robust to load drift
on a shared machine). Target: ratio <= 1.1. Not a test: nothing is asserted.

    python bench/cooper_step.py [--steps 100] [--warmup 20] [--hidden 1024] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cooper
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lagrangian_family.backends.torch import (  # noqa: E402
    BernoulliMLPDecoder,
    GaussianMLPEncoder,
    GradientAscent,
    Lagrangian,
    StandardNormalPrior,
)
from lagrangian_family.backends.torch.cooper import CooperProblem  # noqa: E402

X_DIM, Z_DIM, BATCH = 784, 64, 100


def step_time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    enc = GaussianMLPEncoder(X_DIM, Z_DIM, hidden=(args.hidden, args.hidden))
    dec = BernoulliMLPDecoder(Z_DIM, X_DIM, hidden=(args.hidden, args.hidden))
    x = torch.bernoulli(torch.full((BATCH, X_DIM), 0.13))
    lag = Lagrangian.lagvae(-1.0, (90.0, 1e-3), mmd_weight=1e4, init=[1.0, 1.0])
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=StandardNormalPrior(Z_DIM))
    lr_primal, lr_dual = 1e-5, 1e-6  # small: the model stays put, so both ways time the same work

    adam = torch.optim.Adam(loss_fn.parameters(), lr=lr_primal)
    updater = GradientAscent(lag, lr=lr_dual)

    def own():
        adam.zero_grad(set_to_none=True)
        out = loss_fn(x)
        out.loss.backward()
        adam.step()
        updater.step(out.violations)

    problem = CooperProblem(loss_fn)
    coop = cooper.optim.SimultaneousOptimizer(
        problem, primal_optimizers=torch.optim.Adam(loss_fn.parameters(), lr=lr_primal),
        dual_optimizers=torch.optim.SGD(problem.dual_parameters(), lr=lr_dual, maximize=True))
    kwargs = {"x": x}

    def with_cooper():
        coop.roll(compute_cmp_state_kwargs=kwargs)

    print(f"torch {torch.__version__}, cooper {cooper.__version__}, {torch.get_num_threads()} threads, "
          f"MLP {X_DIM}-{args.hidden}-{args.hidden}, latent {Z_DIM}, batch {BATCH}, {args.steps} interleaved steps "
          f"after {args.warmup} warm-up")
    for _ in range(args.warmup):
        own()
        with_cooper()
    to, tc = [], []
    for i in range(args.steps):
        if i % 2:
            to.append(step_time(own))
            tc.append(step_time(with_cooper))
        else:
            tc.append(step_time(with_cooper))
            to.append(step_time(own))
    mo, mc = statistics.median(to), statistics.median(tc)
    paired = statistics.median(c / o for c, o in zip(tc, to))
    print(f"{'step':<22} {'own ms':>8} {'cooper ms':>10} {'ratio':>7} {'paired':>7}")
    print(f"{'LagVAE train step':<22} {mo * 1e3:8.2f} {mc * 1e3:10.2f} {mc / mo:7.3f} {paired:7.3f}")


if __name__ == "__main__":
    main()
