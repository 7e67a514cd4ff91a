"""Problems and per-rank scenarios for the distributed tests (run in processes that
``torch.multiprocessing.spawn`` starts: everything here is importable by module path).

The comparison with a single process needs a forward pass that depends on the batch alone, not on
how a rank's random stream was left: :class:`NoiseFromX` draws z = μ(x) + σ(x)·ε(x) with a fixed
"noise" ε(x) computed from the example itself, and :class:`RankTablePrior` is N(0, I) whose n
samples on rank r are rows r·n to (r + 1)·n of a fixed table, so that the ranks' samples of p(z)
together are the single process's. Everything else (the MMD on gathered samples, the all-reduced
gradients and constraint estimates, the dual step) is what the library does on any problem.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback

import torch
from torch import nn
from torch.distributions import Independent, Normal

from lagrangian_family.backends.torch import (
    BernoulliMLPDecoder,
    GaussianMLPEncoder,
    GradientAscent,
    Lagrangian,
    StandardNormalPrior,
    Trainer,
    paper_preset,
)
from lagrangian_family.symbolic.terms import Density, Divergence

from .helpers import binary_data, tiny_models

X_DIM, Z_DIM, N_DATA, BATCH, SEED = 6, 2, 64, 16, 3
STEPS = 200


class _FixedNoiseNormal(Normal):
    def __init__(self, loc, scale, eps):
        super().__init__(loc, scale, validate_args=False)
        self.eps = eps

    def rsample(self, sample_shape=torch.Size()):  # noqa: B008 - torch's signature
        return self.loc + self.scale * self.eps


class NoiseFromX(nn.Module):
    """A Gaussian encoder whose reparameterisation noise is a fixed function of the example."""

    def __init__(self, x_dim: int = X_DIM, z_dim: int = Z_DIM):
        super().__init__()
        self.net = GaussianMLPEncoder(x_dim, z_dim, hidden=(16,))
        g = torch.Generator().manual_seed(123)
        self.register_buffer("proj", 3.0 * torch.randn(x_dim, z_dim, generator=g))

    def forward(self, x):
        base = self.net(x).base_dist
        eps = 1.2 * torch.sin(x @ self.proj + 0.5)
        return Independent(_FixedNoiseNormal(base.loc, base.scale, eps), 1)


class RankTablePrior(StandardNormalPrior):
    """N(0, I); its n samples on rank r are rows r·n to (r + 1)·n of a fixed table."""

    def __init__(self, dim: int = Z_DIM, rows: int = 256):
        super().__init__(dim)
        g = torch.Generator().manual_seed(7)
        self.register_buffer("table", torch.randn(rows, dim, generator=g))

    def sample(self, n: int) -> torch.Tensor:
        import torch.distributed as dist

        r = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return self.table[r * n:(r + 1) * n]


def deterministic_problem(init_seed: int = 0):
    """LagVAE (α1 = -1: -ELBO and MMD constraints) on a forward pass fixed by the batch; an
    updater by projected gradient ascent."""
    torch.manual_seed(init_seed)
    enc, dec, prior = NoiseFromX(), BernoulliMLPDecoder(Z_DIM, X_DIM, hidden=(16,)), RankTablePrior()
    lag = Lagrangian.lagvae(-1.0, (3.5, 0.002))
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    return loss_fn, GradientAscent(lag, lr=0.05)


def stochastic_problem(init_seed: int = 0):
    """A Lagrangian with a GAN term in the primal (a critic), an MMD and a -ELBO constraint, on
    the usual random components; the authors' updater."""
    enc, dec, prior = tiny_models(init_seed)
    lag = Lagrangian("-1 * I_q(x;z) + JS(q(z) || p(z))", [("KL(q(x,z) || p(x,z))", 3.5),
                                                         ("MMD(q(z) || p(z))", 0.002)])
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    return loss_fn, paper_preset(lag)


def data() -> torch.Tensor:
    return binary_data(N_DATA, X_DIM, seed=1)


def lambdas_callback(store: list):
    def cb(trainer, out):
        store.append(trainer.loss_fn.lagrangian.multipliers.clone())

    return cb


def state(loss_fn) -> dict:
    return {k: v.detach().clone() for k, v in loss_fn.state_dict().items()}


def _outcome(fn) -> str:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the scenario records what was raised
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return "no error"


def rank_main(rank: int, world: int, rendezvous: str, out: str, single_checkpoint: str) -> None:
    """Every 2-rank scenario, one after the other; each rank saves what it saw in ``out``."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        results: dict = {}
        x = data()

        # 1. the deterministic problem, 200 steps, a checkpoint at 100; λ after every step
        loss_fn, up = deterministic_problem(init_seed=10 + rank)  # rank 1's weights come from rank 0
        lams: list = []
        tr = Trainer(loss_fn, x, batch_size=BATCH, updater=up, seed=SEED, progress=False,
                     callback=lambdas_callback(lams), log_csv=os.path.join(out, f"log_rank{rank}.csv"),
                     tensorboard=os.path.join(out, f"tb_rank{rank}"), log_every=50)
        results["distributed_mode"] = (tr.sync is not None, tr.sync.world_size)
        tr.train(STEPS // 2)
        tr.save(os.path.join(out, "two_ranks_100.pt"))
        tr.train(STEPS // 2)
        results["det_lambdas"] = torch.stack(lams)
        results["det_final"] = state(loss_fn)

        # 2. the single process's checkpoint at step 100, continued on 2 ranks
        loss_fn, up = deterministic_problem(init_seed=99)
        tr = Trainer(loss_fn, x, batch_size=BATCH, updater=up, seed=5, progress=False)
        tr.load(single_checkpoint)
        tr.train(STEPS // 2)
        results["det_from_single"] = state(loss_fn)

        # 3. a stochastic problem with a critic: 20 steps, or 10 + a resume on fresh trainers + 10
        loss_fn, up = stochastic_problem(init_seed=20 + rank)
        tr = Trainer(loss_fn, x, batch_size=BATCH, updater=up, progress=False)  # the seed: rank 0's
        tr.train(10)
        tr.save(os.path.join(out, "stochastic_10.pt"))
        tr.train(10)
        results["sto_full"] = state(loss_fn)
        loss_fn, up = stochastic_problem(init_seed=30 + rank)
        tr = Trainer(loss_fn, x, batch_size=BATCH, updater=up, progress=False)
        tr.load(os.path.join(out, "stochastic_10.pt"))
        tr.train(10)
        results["sto_resumed"] = state(loss_fn)

        # 4. the MMD on gathered samples: value and gradient in θ shared by the ranks
        from lagrangian_family.backends.torch.distributed import RankSync
        from lagrangian_family.backends.torch.estimators.mmd import MMDEstimator

        sync = RankSync()
        theta = torch.tensor([[1.0, 0.3], [-0.4, 0.8]], requires_grad=True)
        g = torch.Generator().manual_seed(50 + rank)
        u, v = torch.randn(5 + rank, 2, generator=g), torch.randn(4, 2, generator=g)  # shards of unequal length
        term = Divergence("MMD", Density("q", ("z",)), Density("p", ("z",)))
        est = MMDEstimator(term, ((), lambda s: torch.tanh(s.x @ theta)), ((), lambda s: s.v))
        est.sync = sync

        class _S:
            pass

        s = _S()
        s.x, s.v = u, v
        value = est(s).value
        (grad,) = torch.autograd.grad(value, theta)
        results["mmd"] = {"u": u, "v": v, "value": value.detach(), "grad": grad,
                          "mean_grad": sync.mean([grad])[0]}

        # 5. cooper: its dual step on the violations of the global batch (distributed) or the rank's own
        import cooper

        from lagrangian_family.backends.torch.cooper import CooperProblem

        for distributed in (True, False):
            loss_fn, _ = deterministic_problem()
            loss_fn.distribute(distributed)
            problem = CooperProblem(loss_fn)
            opt = cooper.optim.SimultaneousOptimizer(
                problem, primal_optimizers=torch.optim.SGD(loss_fn.parameters(), lr=0.0),  # λ alone moves
                dual_optimizers=torch.optim.SGD(problem.dual_parameters(), lr=0.05, maximize=True))
            shard = x[rank * 8:(rank + 1) * 8]
            for _ in range(3):
                opt.roll(compute_cmp_state_kwargs={"x": shard})
            results[f"cooper_lambda_{'distributed' if distributed else 'local'}"] = \
                loss_fn.lagrangian.multipliers.clone()
        results["cooper_global_violations"] = deterministic_problem()[0](x[:16]).violations

        # 6. errors every rank hears of
        bad = x.clone()
        if rank == 1:
            bad[:, 2] = float("nan")
        loss_fn, up = deterministic_problem()
        results["nan_shard"] = _outcome(lambda: Trainer(loss_fn, bad, batch_size=N_DATA, seed=0,
                                                        progress=False).train(1))
        results["seeds"] = _outcome(lambda: Trainer(loss_fn, x, batch_size=BATCH, seed=rank, progress=False))
        results["odd_batch"] = _outcome(lambda: Trainer(loss_fn, x, batch_size=15, seed=0, progress=False))
        results["local_violations"] = _outcome(lambda: up.step(loss_fn(x[:8])))
        results["missing_checkpoint"] = _outcome(
            lambda: Trainer(loss_fn, x, batch_size=BATCH, seed=0, progress=False).load(
                os.path.join(out, "nowhere.pt" if rank == 1 else "two_ranks_100.pt")))
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    except Exception:
        traceback.print_exc()
        raise
    finally:
        dist.destroy_process_group()


#: what a gloo rank of this torch build prints when it aborts in C++ at exit (see :func:`torchrun`)
GLOO_ABORT = "terminate called without an active exception"


def torchrun(launch: list[str], args_of, folder_of):
    """``torchrun --standalone --nproc_per_node 2 LAUNCH ARGS`` with one thread per rank; returns
    (the completed process, the folder of the launch that counts).

    Known and not ours to fix here: under pytest a gloo rank of this torch build now and then (about
    1 launch in 30) aborts in C++ ("terminate called without an active exception", SIGABRT) although
    the run leaves the group cleanly. So a launch that fails with that message is made once more, in
    a fresh folder (``folder_of(1)``; ``args_of(folder)`` gives the arguments); a real failure fails
    both times.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(2):
        folder = folder_of(attempt)
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              *launch, *args_of(folder)], capture_output=True, text=True, env=env, timeout=600)
        if run.returncode == 0 or GLOO_ABORT not in run.stderr:
            break
    return run, folder
