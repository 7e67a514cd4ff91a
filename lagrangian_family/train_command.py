"""``lagfam train MODEL_OR_TEXT``: train any zoo model or computable text objective into a run folder.

::

    lagfam train vae --budget smoke --out runs/vae                  # sklearn's digits, seconds
    lagfam train ali --data mnist --budget small --out runs/ali     # MNIST, minutes on a CPU
    lagfam train "-E_{q(x,z)}[log p(x|z)] + beta * E_{q(x)}[KL(q(z|x) || p(z))]" --set beta=4 --out runs/b4

The recipe of the torch backend (:mod:`lagrangian_family.backends.torch.recipes`) chooses the
components the objective needs and the training defaults; the run folder holds the model
(``model.pt``, read by ``lagfam sample``), a checkpoint, the CSV log, PNG grids, ``metrics.json``
and ``report.md`` (see :mod:`lagrangian_family.backends.torch.runs`). Rerunning the same command
resumes an interrupted run exactly and skips a finished one. Under ``torchrun ... -m
lagrangian_family.cli train ...`` every rank trains its shard of the global batch and rank 0
writes.

Bad input (an objective in no computability class, a component the data cannot supply, an
``--out`` that is a file or another folder, a data folder without MNIST, a bad ``--set``) prints
``error:`` with what was expected, what was given and how to fix it, writes nothing and exits
with status 2. This module imports no torch until the command runs.

>>> import argparse
>>> p = argparse.ArgumentParser(); configure(p)
>>> a = p.parse_args(["vae", "--out", "runs/vae", "--set", "beta=2"])
>>> a.data, a.budget, a.bindings
('digits', 'smoke', ['beta=2'])
"""

from __future__ import annotations

import argparse
import shlex
import sys

__all__ = ["configure", "run", "train_main", "options_of"]


def configure(p: argparse.ArgumentParser) -> None:
    """Add the arguments of ``lagfam train``."""
    p.description = ("Train a zoo model (lagfam zoo) or a computable text objective into one run folder: "
                     "components and training defaults chosen by the objective's recipe, progress bar, "
                     "checkpoints and exact resume (rerun the same command), a CSV log, PNG grids, model.pt "
                     "(read by lagfam sample), metrics.json and report.md with objective-independent metrics.")
    p.add_argument("model", metavar="MODEL|EXPR", help="a zoo name or an objective in the text syntax")
    p.add_argument("--data", default="digits", metavar="digits|mnist",
                   help="training data: sklearn's 8x8 digits (no download; the default) or MNIST")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="MNIST folder of IDX files (default: $LAGFAM_DATA, else ../shared/data/mnist when present)")
    p.add_argument("--budget", default="smoke", metavar="smoke|small|paper",
                   help="smoke: seconds (tests); small: minutes on two CPU cores; paper: the authors' scale, for a "
                        "GPU (default smoke)")
    p.add_argument("--arch", default="mlp", metavar="mlp|conv", help="component architecture (default mlp)")
    p.add_argument("--out", required=True, metavar="DIR", help="the run folder (new, or this run's to resume)")
    p.add_argument("--set", dest="bindings", action="append", metavar="NAME=VALUE", default=[],
                   help="bind a parameter of the objective (beta=4); repeatable; several values (beta=1,2,4) make a "
                        "sweep: one run folder per grid point under --out")
    p.add_argument("--option", dest="options", action="append", metavar="NAME=VALUE", default=[],
                   help="override a default of the recipe (e.g. decoder=generator, lr=1e-4, hidden=256,256, "
                        "spectral_norm=false; the recipe's OPTIONS); repeatable")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="a sweep over N seeds (--seed, --seed + 1, ...): one run folder per grid point under --out")
    p.add_argument("--no-vectorise", dest="vectorise", action="store_false",
                   help="in a sweep, train every run alone with the Trainer instead of stacking the runs that can "
                        "share one vectorised model (VectorisedTrainer)")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="also write TensorBoard logs to DIR")
    p.add_argument("--lagrangian", default=None, metavar="PREFERENCE",
                   help="train the Lagrangian version of the model: maximise-Iq, minimise-Iq, maximise-Ip or "
                        "minimise-Ip; its dual form's divergences become constraints D_i <= ε_i with learned λ "
                        "(needs --slack)")
    p.add_argument("--slack", default=None, metavar="GAMMA",
                   help="ε = ε̂ + GAMMA (section 6), ε̂ each constraint's value after a reference run at the "
                        "original multipliers; a number, or a percentage of ε̂ such as 50%%")
    p.add_argument("--dual-lr", type=float, default=None, metavar="LR",
                   help="learning rate of the projected gradient ascent on λ (default 0.01)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--wait", action="store_true",
                   help="if another run is writing to --out, wait for it to finish instead of exiting")
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: fewer steps
    p.add_argument("--n-eval", type=int, default=None, help=argparse.SUPPRESS)


def _command(args) -> str:
    argv = sys.argv[1:] if sys.argv and sys.argv[1:2] == ["train"] else None
    if argv:
        return " ".join(shlex.quote(a) for a in ["lagfam", *argv])
    parts = ["lagfam", "train", args.model, "--data", args.data, "--budget", args.budget]
    for b in args.bindings:
        parts += ["--set", b]
    return " ".join(shlex.quote(p) for p in [*parts, "--seed", str(args.seed), "--out", args.out])


def _option_value(name: str, text: str):
    """A --option value: true/false, none, a comma-separated list, a number or a word.

    >>> _option_value("hidden", "256,256"), _option_value("spectral_norm", "false"), _option_value("lr", "1e-4")
    ([256, 256], False, 0.0001)
    """
    from lagrangian_family.cli import _value

    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    def one(part: str):
        v = _value(part.strip(), name)
        if isinstance(v, (int, float, str)):
            return v
        return int(v) if v.is_integer else float(v)  # a sympy Rational ("0.5" reads as 1/2)

    if "," in text:
        return [one(part) for part in text.split(",") if part.strip()]
    return one(text)


def options_of(pairs) -> dict:
    """The recipe options of ``--option NAME=VALUE`` pairs (a typed error for a malformed one).

    >>> options_of(["decoder=generator", "betas=0.5,0.999"])
    {'decoder': 'generator', 'betas': [0.5, 0.999]}
    """
    from lagrangian_family.cli import _name_value_pairs

    return _name_value_pairs(pairs, "an --option", "e.g. --option decoder=generator", "the option's name",
                             _option_value)


def run(args: argparse.Namespace) -> int:
    """Run ``lagfam train`` (typed errors are printed by :func:`lagrangian_family.cli.main`, exit 2)."""
    from lagrangian_family.cli import _bindings
    from lagrangian_family.errors import ObjectiveError
    from lagrangian_family.experiments.commands import MAX_SEED, _check_int

    _check_int("--seed", args.seed, 0, MAX_SEED, "e.g. --seed 0")
    _check_int("--steps", args.steps, 1, 10**9, "e.g. --steps 100")
    _check_int("--n-eval", args.n_eval, 2, 10**6, "e.g. --n-eval 1000")
    grid = {}
    for pair in args.bindings:
        name, eq, value = pair.partition("=")
        if eq and "," in value:
            grid[name.strip()] = [v for part in value.split(",") if part.strip()
                                  for v in _bindings([f"{name.strip()}={part.strip()}"]).values()]
    params = _bindings([b for b in args.bindings if b.partition("=")[0].strip() not in grid])
    options = options_of(args.options)
    _check_int("--seeds", args.seeds, 1, 1000, "e.g. --seeds 2")
    if grid or args.seeds is not None:
        return _sweep(args, grid, params, options)
    slack = args.slack
    if slack is not None and not slack.strip().endswith("%"):
        slack = _option_value("--slack", slack)
        if not isinstance(slack, (int, float)) or isinstance(slack, bool):
            raise ObjectiveError(f"--slack {args.slack} is not a slack", expected="a number >= 0, or a percentage "
                                 "such as 50%", given=repr(args.slack), fix="e.g. --slack 1.0")
    extra = {} if args.dual_lr is None else {"dual_lr": args.dual_lr}
    from lagrangian_family.backends.torch.runs import train_run

    result = train_run(args.model, out=args.out, data=args.data, budget=args.budget, params=params, seed=args.seed,
                       arch=args.arch, data_dir=args.data_dir, progress=args.progress, tensorboard=args.tensorboard,
                       wait=args.wait, lagrangian=args.lagrangian, slack=slack, n_eval=args.n_eval,
                       steps=args.steps, options=options, command=_command(args), **extra)
    if result.status == "worker":
        return 0
    m = result.metrics
    s = m.get("samples", {})
    line = (f"{result.status}: {result.out}  classes {s.get('classes_covered')}, confidence ratio "
            f"{s.get('confidence_ratio', float('nan')):.3f}, FD {s.get('frechet_distance', float('nan')):.3g}")
    if "probe" in m:
        line += f", probe {m['probe']['accuracy']:.3f}"
    if "translation_kept" in m:
        line += f", translation kept {m['translation_kept']:.3f}"
    print(line)
    print(f"report: {result.out / 'report.md'}")
    return 0


def _sweep(args, grid: dict, params: dict, options: dict) -> int:
    from lagrangian_family.backends.torch.runs import train_sweep
    from lagrangian_family.errors import ObjectiveError

    if args.lagrangian is not None or args.slack is not None or args.tensorboard is not None:
        raise ObjectiveError("a sweep trains plain runs", expected="no --lagrangian, --slack or --tensorboard with "
                             "several --set values or --seeds", given="a sweep with one of them",
                             fix="sweep by running lagfam train once per point, or drop the option")
    full = {**{k: [v] for k, v in params.items()}, **grid}
    seeds = list(range(args.seed, args.seed + (args.seeds or 1)))
    results = train_sweep(args.model, out=args.out, grid=full, seeds=seeds, vectorise=args.vectorise,
                          data=args.data, budget=args.budget, data_dir=args.data_dir, progress=args.progress,
                          wait=args.wait, n_eval=args.n_eval, steps=args.steps, options=options, arch=args.arch)
    for r in results:
        s = r.metrics.get("samples", {})
        print(f"{r.status}: {r.out}  classes {s.get('classes_covered')}, confidence ratio "
              f"{s.get('confidence_ratio', float('nan')):.3f}")
    return 0 if all(r.status != "failed" for r in results) else 1


def train_main(argv: list[str] | None = None) -> int:
    """``lagfam train`` as a function (``argv`` without the subcommand name); errors as ``lagfam`` reports them."""
    from lagrangian_family.cli import report_errors

    def go():
        p = argparse.ArgumentParser(prog="lagfam train")
        configure(p)
        return run(p.parse_args(argv))

    return report_errors(go)
