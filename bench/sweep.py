"""Sweep throughput: M runs trained as vectorised stacks against M separate runs in processes.

A run is a section 7 LagVAE run (Gaussian-MLP encoder, Bernoulli-MLP decoder, N(0, I) prior, the
Lagrangian with α1 of both signs, RMSProp on λ, fused Adam), built by the experiments' own code
(``experiments.runs.build``) on random intensities binarised per batch, at two sizes:

* ``small``: MLP 784-256-256, latent 16, batch 100 (the small budget);
* ``paper``: MLP 784-1024-1024, latent 64, batch 250 (the paper's).

For each device (CPU; CUDA when present) and M in {1, 8, 32, 90}:

* **separate**: the runs as ``lagfam experiment --no-vectorise`` trains them: one run per process
  through the toolkit's ``Trainer`` and compiled Lagrangian, ``--procs`` processes at once (one
  torch thread each on CPU). Runs are independent, so the aggregate of M runs is that of
  min(M, procs) concurrent processes, measured directly;
* **vectorised**: the M runs as ``lagfam experiment`` trains them: on CPU split into
  min(M, procs) stacks, one process each (one thread), on CUDA one stack in one process.

Each process builds its runs, takes ``--warmup`` steps, then times steps for at least
``--seconds`` (at least two steps); processes start their timed steps together (a barrier).
The figure is the aggregate run-steps per second (one run-step = one training step of one
run); "ratio" is vectorised / separate, measured in the same invocation. With ``--repeat R``
the two are measured alternately R times and the medians are printed, with the median of the
R paired ratios (robust to a load that drifts). The load average of the machine before and
after is printed: other processes on a shared machine lower both figures, and their ratio
less. Not a test: nothing is asserted.

    python bench/sweep.py [--sizes small,paper] [--M 1,8,32,90] [--procs N] [--seconds 5] [--repeat R]
                          [--device cpu,cuda]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {"small": ((256, 256), 16, 100), "paper": ((1024, 1024), 64, 250)}
X_DIM = 784


def _budget(size: str, device: str):
    from lagrangian_family.experiments import budgets

    hidden, z, batch = SIZES[size]
    base = budgets.get("small" if size == "small" else "paper")
    return budgets.get(base.name, hidden=hidden, z_dim=z, batch_size=batch, device=device, warm_start=False)


def _specs(m: int, first: int):
    from lagrangian_family.experiments.runs import RunSpec

    alphas = (-2.0, -1.0, 1.0, 2.0)
    return [RunSpec(f"r{i}", "lagvae", alphas[i % 4], epsilon=(100.0 + i % 5, 0.01), seed=i)
            for i in range(first, first + m)]


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _worker(kind: str, size: str, device: str, first: int, m: int, warmup: int, seconds: float, barrier, queue):
    """Build ``m`` runs, warm up, wait for the others, time steps: put (run-steps, seconds) on the queue."""
    try:
        import torch

        if device == "cpu":
            torch.set_num_threads(1)
        from lagrangian_family.backends.torch import Trainer
        from lagrangian_family.backends.torch.vectorised import VectorisedTrainer
        from lagrangian_family.experiments.datasets import StochasticBatches
        from lagrangian_family.experiments.runs import _device, _optimizer, build, noise_stream

        b = _budget(size, device)
        dev = _device(b)
        data = torch.rand(4000, X_DIM, generator=torch.Generator().manual_seed(0))
        specs = _specs(m, first)
        built = []
        for s in specs:
            loss_fn, lag, up = build(s, b, X_DIM, dev)
            built.append((loss_fn, up, noise_stream(dev), StochasticBatches(data, b.batch_size, s.seed + 1, dev)))
        if kind == "separate":
            (loss_fn, up, _, batches), = built
            tr = Trainer(loss_fn, batches, batch_size=b.batch_size, updater=up, model_optimizer=_optimizer(b, dev),
                         progress=False, seed=specs[0].seed, log_every=10**9)
        else:
            tr = VectorisedTrainer([x[0] for x in built], [x[3] for x in built], batch_size=b.batch_size,
                                   updaters=[x[1] for x in built], noise=[x[2] for x in built],
                                   model_optimizer=_optimizer(b, dev), progress=False, log_every=10**9)
        for _ in range(warmup):
            tr.step()
        _sync(dev)
        barrier.wait()
        t0 = time.perf_counter()
        n = 0
        while n < 2 or time.perf_counter() - t0 < seconds:
            tr.step()
            n += 1
            if n % 4 == 0:
                _sync(dev)
        _sync(dev)
        queue.put((n * m, time.perf_counter() - t0))
    except BaseException as e:  # reported by the parent
        queue.put(e)
        barrier.abort()


def measure(kind: str, size: str, device: str, parts: list[int], warmup: int, seconds: float) -> float:
    """Aggregate run-steps/s of concurrent processes, one per entry of ``parts`` (its number of runs)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(parts)), ctx.Queue()
    procs, first = [], 0
    for m in parts:
        p = ctx.Process(target=_worker, args=(kind, size, device, first, m, warmup, seconds, barrier, queue))
        p.start()
        procs.append(p)
        first += m
    results = [queue.get() for _ in parts]
    for p in procs:
        p.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return sum(steps / secs for steps, secs in results)


def split(m: int, procs: int) -> list[int]:
    k = max(1, min(m, procs))
    return [m // k + (i < m % k) for i in range(k)]


def machine(device: str) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} CPU(s), torch {torch.__version__}, one thread per process"


def main(argv=None):
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="small,paper")
    ap.add_argument("--M", default="1,8,32,90")
    ap.add_argument("--device", default=None, help="cpu and/or cuda (default: cpu, and cuda when present)")
    ap.add_argument("--procs", type=int, default=None,
                    help="processes: separate runs at once, and stacks on CPU (default: CPUs; 8 separate runs on CUDA)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1, help="alternate the two measurements this many times")
    args = ap.parse_args(argv)
    devices = args.device.split(",") if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" not in devices:
        print("no CUDA: CPU only" if not torch.cuda.is_available() else "CUDA present but not asked for")
    sizes, ms = args.sizes.split(","), [int(m) for m in args.M.split(",")]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print(f"{'device':6} {'size':6} {'M':>4} {'separate':>12} {'vectorised':>12} {'ratio':>7}   (run-steps/s)")
    for device in devices:
        procs = args.procs or (8 if device == "cuda" else (os.cpu_count() or 1))
        for size in sizes:
            for m in ms:
                parts = [m] if device == "cuda" else split(m, procs)
                seps, vecs = [], []
                for _ in range(max(1, args.repeat)):
                    seps.append(measure("separate", size, device, [1] * min(m, procs), args.warmup, args.seconds))
                    vecs.append(measure("vectorised", size, device, parts, args.warmup, args.seconds))
                sep, vec = statistics.median(seps), statistics.median(vecs)
                ratio = statistics.median(v / s for v, s in zip(vecs, seps))
                print(f"{device:6} {size:6} {m:>4} {sep:>12.1f} {vec:>12.1f} {ratio:>7.2f}   "
                      f"(separate: {min(m, procs)} process(es); vectorised: stacks of {parts})", flush=True)
        print(f"  {device}: {machine(device)}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
