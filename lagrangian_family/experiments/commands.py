"""The ``lagfam demo`` and ``lagfam experiment`` subcommands: argument parsing and checking (no
torch import at module level; the work is imported when a subcommand runs).

Every argument and path is checked before any work starts (a bad ``--out``, ``--data``,
``--jobs`` or number is an error with exit status 2, and nothing is written), then the output
folder is locked for the run (:class:`lagrangian_family.files.FolderLock`): a second run on the
same folder says who holds it and exits with 2, or waits with ``--wait``.
"""

from __future__ import annotations

import argparse
import os
import sys

from lagrangian_family.errors import ObjectiveError

__all__ = ["configure_demo", "run_demo", "configure_experiment", "run_experiment", "demo_main", "experiment_main",
           "EXPERIMENTS"]

EXPERIMENTS = ("dual-verification", "pareto")


def _default_jobs() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true",
                   help="if another run is writing to --out, wait for it to finish instead of exiting")


def configure_demo(p: argparse.ArgumentParser) -> None:
    p.description = ("Print the zoo's classification table, then train a short LagVAE (the paper's Algorithm 1) "
                     "on sklearn's 8x8 digits: a reference run sets ε = ε̂ + γ (section 6), LagVAE maximises "
                     "I_q(x;z) subject to -ELBO <= ε1 and MMD <= ε2. Reports the mutual information and the "
                     "constraints, and writes a plot of the training curves and λ trajectories. No downloads.")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/demo-<timestamp>)")
    p.add_argument("--alpha", type=float, default=-1.0,
                   help="α1: negative maximises I_q, positive minimises it (default -1)")
    p.add_argument("--gamma1", type=float, default=2.0, help="slack on -ELBO in nats (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-table", action="store_true", help="skip the classification table")
    _wait_option(p)
    # hidden: tests make the demo fast with these
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--ref-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)


#: Bounds of the numeric options (beyond them a run cannot work or would exhaust the machine).
MAX_SEED = 2**32 - 2
MAX_STEPS = 10**9
MAX_HIDDEN = 65536
MAX_ABS_ALPHA = 1e6


def _check_int(option: str, value, low: int, high: int, hint: str) -> None:
    if value is not None and not low <= value <= high:
        raise ObjectiveError(f"{option} {value} is out of range", expected=f"an integer from {low} to {high}",
                             given=str(value), fix=hint)


def _check_finite(option: str, value: float, bound: float, hint: str) -> None:
    import math

    if not math.isfinite(value) or abs(value) > bound:
        raise ObjectiveError(f"{option} {value} is not usable", expected=f"a finite number within ±{bound:g}",
                             given=str(value), fix=hint)


def _lock(folder, wait: bool):
    """The folder's lock, taken (or waited for); says when it takes over from a killed run."""
    from lagrangian_family.files import FolderLock

    lock = FolderLock(folder, command=" ".join(["lagfam", *sys.argv[1:]]) if sys.argv else "lagfam")

    def waiting(who: str) -> None:
        print(f"waiting: {folder} is in use by {who}", file=sys.stderr, flush=True)

    lock.acquire(wait=wait, on_wait=waiting)
    if lock.previous:
        print(f"note: the previous run on {folder} (PID {lock.previous.get('pid', '?')}) did not finish; "
              "continuing from what it left", file=sys.stderr)
    return lock


def run_demo(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from lagrangian_family.files import check_output_folder

    _check_finite("--alpha", args.alpha, MAX_ABS_ALPHA, "e.g. --alpha -1 (maximise I_q) or --alpha 1")
    _check_finite("--gamma1", args.gamma1, 1e6, "a slack in nats, e.g. --gamma1 2")
    _check_int("--seed", args.seed, 0, MAX_SEED, "e.g. --seed 0")
    _check_int("--steps", args.steps, 1, MAX_STEPS, "e.g. --steps 100")
    _check_int("--ref-steps", args.ref_steps, 1, MAX_STEPS, "e.g. --ref-steps 100")
    _check_int("--hidden", args.hidden, 1, MAX_HIDDEN, "e.g. --hidden 64")
    out = check_output_folder(args.out if args.out is not None else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S"),
                              "--out")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out, args.wait)
    try:
        from .demo import demo

        return demo(out=out, alpha1=args.alpha, gamma1=args.gamma1, seed=args.seed, table=not args.no_table,
                    steps=args.steps, ref_steps=args.ref_steps, hidden=args.hidden, progress=not args.no_progress)
    finally:
        lock.release()


def configure_experiment(p: argparse.ArgumentParser) -> None:
    p.description = ("Reproduce the paper's section 7 on MNIST: 'dual-verification' (7.1, figure 1: the sign of "
                     "α1 decides whether LagVAE maximises or minimises I_q within the constraints) or 'pareto' "
                     "(7.2, figure 2: no InfoVAE hyper-parameter beats LagVAE on both MI and -ELBO). Results "
                     "(CSV, plots, report.md) go to --out; a rerun with the same --out skips finished runs.")
    p.add_argument("experiment", choices=EXPERIMENTS, help="which experiment")
    p.add_argument("--budget", choices=("smoke", "small", "paper"), default="small",
                   help="smoke: seconds, sklearn digits (CI); small: about 20 minutes for both experiments on two CPU "
                        "cores; paper: the authors' scale, for a GPU (default small)")
    p.add_argument("--out", default=None, metavar="DIR", help="results folder (default runs/<experiment>-<budget>)")
    p.add_argument("--jobs", type=int, default=_default_jobs(), metavar="N",
                   help="parallel worker processes, one torch thread each: one stack of runs (or one run with "
                        "--no-vectorise) per process (default min(2, CPUs))")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="MNIST folder of IDX files (default: $LAGFAM_DATA, else ../shared/data/mnist when present)")
    p.add_argument("--no-vectorise", dest="vectorise", action="store_false",
                   help="train each run in its own process (the toolkit's Trainer) instead of training the runs "
                        "that share a number of steps as vectorised stacks, one stack per job; the results agree "
                        "to float rounding")
    p.add_argument("--quiet", action="store_true", help="print only the result paths")
    _wait_option(p)


def max_jobs() -> int:
    """The most worker processes ``--jobs`` may ask for: four per CPU."""
    return max(4, 4 * (os.cpu_count() or 1))


def run_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lagrangian_family.files import check_output_folder

    from . import budgets
    from .common import Context

    budget = budgets.get(args.budget)
    _check_int("--jobs", args.jobs, 1, max_jobs(), f"one worker per CPU core is best: --jobs {_default_jobs()}")
    out = check_output_folder(args.out if args.out is not None else Path("runs") / f"{args.experiment}-{args.budget}",
                              "--out")
    data_dir = args.data
    if budget.dataset == "mnist":
        from .datasets import check_mnist_dir

        data_dir = str(check_mnist_dir(args.data, validate=True).resolve())
    elif args.data is not None:
        print(f"note: --data is not used: budget {budget.name} trains on sklearn's digits", file=sys.stderr)
        data_dir = None
    command = f"lagfam experiment {args.experiment} --budget {args.budget} --out {out} --jobs {args.jobs}"
    if args.data:
        command += f" --data {args.data}"
    if not args.vectorise:
        command += " --no-vectorise"
    ctx = Context(args.experiment, budget, out, args.jobs, data_dir, command, vectorise=args.vectorise)
    if args.quiet:
        ctx.log = lambda s: None
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out, args.wait)
    try:
        ctx.check_folder()
        if args.experiment == "dual-verification":
            from .dual_verification import run_experiment as go
        else:
            from .pareto import run_experiment as go
        result = go(ctx)
    finally:
        lock.release()
    for k in ("report", "csv", "plot"):
        print(f"{k}: {result['paths'][k]}")
    return 0


def _parse(configure, argv, prog):
    p = argparse.ArgumentParser(prog=prog)
    configure(p)
    return p.parse_args(argv)


def demo_main(argv: list[str] | None = None) -> int:
    """``lagfam demo`` as a function (``argv`` without the subcommand name); errors as ``lagfam`` reports them."""
    from lagrangian_family.cli import report_errors

    return report_errors(lambda: run_demo(_parse(configure_demo, argv, "lagfam demo")))


def experiment_main(argv: list[str] | None = None) -> int:
    """``lagfam experiment`` as a function (``argv`` without the subcommand name); errors as ``lagfam`` reports
    them."""
    from lagrangian_family.cli import report_errors

    return report_errors(lambda: run_experiment(_parse(configure_experiment, argv, "lagfam experiment")))
