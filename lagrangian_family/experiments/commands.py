"""The ``lagfam demo`` and ``lagfam experiment`` subcommands: argument parsing only (no torch
import at module level; the work is imported when a subcommand runs)."""

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
    # hidden: tests make the demo fast with these
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--ref-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)


def run_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return demo(out=args.out, alpha1=args.alpha, gamma1=args.gamma1, seed=args.seed, table=not args.no_table,
                steps=args.steps, ref_steps=args.ref_steps, hidden=args.hidden, progress=not args.no_progress)


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


def run_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import budgets
    from .common import Context

    budget = budgets.get(args.budget)
    out = Path(args.out) if args.out else Path("runs") / f"{args.experiment}-{args.budget}"
    data_dir = args.data
    if budget.dataset == "mnist":
        from .datasets import MNIST_HELP, default_mnist_dir

        folder = Path(data_dir) if data_dir else default_mnist_dir()
        if folder is None or not folder.is_dir():
            where = f"{data_dir} does not exist" if data_dir else "no MNIST folder was given and none was found"
            print(f"error: budget {budget.name} needs MNIST: {where}. {MNIST_HELP}", file=sys.stderr)
            return 2
        data_dir = str(folder.resolve())
    command = f"lagfam experiment {args.experiment} --budget {args.budget} --out {out} --jobs {args.jobs}"
    if args.data:
        command += f" --data {args.data}"
    if not args.vectorise:
        command += " --no-vectorise"
    ctx = Context(args.experiment, budget, out, max(1, args.jobs), data_dir, command, vectorise=args.vectorise)
    if args.quiet:
        ctx.log = lambda s: None
    try:
        if args.experiment == "dual-verification":
            from .dual_verification import run_experiment as go
        else:
            from .pareto import run_experiment as go
        result = go(ctx)
    except (FileNotFoundError, ValueError, ObjectiveError) as e:  # a missing or corrupt data file, a bad setting
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # a run diverged (NonFiniteLossError); the finished runs are kept
        print(f"error: {e}\nthe runs that finished are kept: rerun the command to retry the others", file=sys.stderr)
        return 1
    for k in ("report", "csv", "plot"):
        print(f"{k}: {result['paths'][k]}")
    return 0


def _parse(configure, argv, prog):
    p = argparse.ArgumentParser(prog=prog)
    configure(p)
    return p.parse_args(argv)


def demo_main(argv: list[str] | None = None) -> int:
    """``lagfam demo`` as a function (``argv`` without the subcommand name)."""
    return run_demo(_parse(configure_demo, argv, "lagfam demo"))


def experiment_main(argv: list[str] | None = None) -> int:
    """``lagfam experiment`` as a function (``argv`` without the subcommand name)."""
    return run_experiment(_parse(configure_experiment, argv, "lagfam experiment"))
