"""What both experiments share: the reference runs of section 6 (ε̂), the run folder, the
driver that submits runs to the :class:`~.runs.Executor` and writes the results."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .budgets import Budget
from .runs import Executor, RunSpec, machine, write_json_atomic

__all__ = ["Context", "reference_specs", "epsilon_hat", "fmt"]


def fmt(x, digits: int = 3) -> str:
    """A number for a report: ``nan`` and booleans spelled out, floats with ``digits`` significant
    decimals where they matter.

    >>> fmt(1.23456), fmt(1234.5), fmt(0.000512), fmt(True), fmt(float("nan"))
    ('1.235', '1234.5', '0.000512', 'yes', '-')
    """
    if isinstance(x, bool):
        return "yes" if x else "no"
    if x is None:
        return "-"
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if math.isnan(x):
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 0.01:
        return f"{x:.{digits}f}"
    return f"{x:.{digits}g}"


def init_from(budget: Budget) -> str | None:
    """The model later runs start from: the first reference run's, with ``warm_start``."""
    return "reference-s0/model.pt" if budget.warm_start else None


def reference_specs(budget: Budget) -> list[RunSpec]:
    """The reference runs of section 6 (eq. 19-20): α1 = 0, λ fixed at ``budget.ref_multipliers``
    (on -ELBO and mmd_weight·MMD; expressed here on the raw MMD), one per seed."""
    l1, l2 = budget.ref_multipliers
    return [RunSpec(f"reference-s{s}", "reference", 0.0, multipliers=(l1, l2 * budget.mmd_weight), seed=100 + s,
                    tags={"role": "reference"})
            for s in range(budget.ref_seeds)]


def epsilon_hat(rows: list[dict], budget: Budget) -> tuple[float, float]:
    """ε̂ = (mean train -ELBO, mean train raw MMD) of the reference runs; with ``warm_start``, the
    values of the first reference run, the θ* every run starts from (so ε = ε̂ + γ is strictly
    feasible at the start)."""
    if budget.warm_start:
        rows = rows[:1]
    e1 = sum(r["train_neg_elbo"] for r in rows) / len(rows)
    e2 = sum(r["train_mmd"] for r in rows) / len(rows)
    return e1, e2


_LOCK = threading.Lock()


def _say(s: str) -> None:
    """Print one line whole (runs finish on the executor's callback thread)."""
    with _LOCK:
        sys.stdout.write(s + "\n")
        sys.stdout.flush()


@dataclass
class Context:
    """One invocation of an experiment: its budget, folders, executor settings and log."""

    experiment: str
    budget: Budget
    out: Path
    jobs: int
    data_dir: str | None
    command: str
    vectorise: bool = True  # train compatible runs as vectorised stacks (False: one process per run)
    log: Callable[[str], None] = field(default=lambda s: _say(s))
    started: float = field(default_factory=time.time)

    @property
    def dataset_args(self) -> tuple:
        return (self.budget.dataset, self.data_dir, self.budget.n_train, self.budget.n_test)

    def runs_dir(self) -> Path:
        return self.out / "runs"

    def check_folder(self) -> None:
        """Refuse an ``out`` folder that holds another experiment or budget (its finished runs would
        be mixed with these), and remove the temporaries killed runs left in it."""
        from lagrangian_family.errors import ObjectiveError
        from lagrangian_family.files import remove_stale_temporaries

        info = self.out / "experiment.json"
        if info.is_file():
            try:
                old = json.loads(info.read_text())
            except (OSError, ValueError):
                old = None  # damaged: rewritten below
            if isinstance(old, dict):
                was_budget = old.get("budget", {}).get("name") if isinstance(old.get("budget"), dict) else None
                for what, was, now in (("experiment", old.get("experiment"), self.experiment),
                                       ("budget", was_budget, self.budget.name)):
                    if was is not None and was != now:
                        raise ObjectiveError(
                            f"{self.out} holds the results of {what} {was!r}, not {now!r}",
                            expected=f"an empty folder or one of {self.experiment} at budget {self.budget.name}",
                            given=f"--out {self.out} ({info.name} says {what} {was!r})",
                            fix=f"choose another --out (the default is runs/{self.experiment}-{self.budget.name})")
        if self.runs_dir().exists() and not self.runs_dir().is_dir():
            raise ObjectiveError(f"{self.runs_dir()} is a file", expected="a folder of runs (or nothing)",
                                 given=str(self.runs_dir()), fix="remove that file or choose another --out")
        for folder in (self.out, self.runs_dir(), *(self.runs_dir().glob("*/") if self.runs_dir().is_dir() else ())):
            for path in remove_stale_temporaries(folder):
                self.log(f"  removed {path.name}, left by an interrupted run")

    def executor(self) -> Executor:
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs_dir().mkdir(exist_ok=True)
        write_json_atomic(self.out / "experiment.json", {
            "experiment": self.experiment, "command": self.command, "budget": self.budget.to_dict(),
            "jobs": self.jobs, "vectorise": self.vectorise, "data": self.data_dir, "machine": machine(),
            "started": self.started})
        return Executor(self.budget, self.dataset_args, self.runs_dir(), self.jobs, on_done=self._on_done,
                        log=self.log, vectorise=self.vectorise)

    def _on_done(self, spec: RunSpec, row: dict, resumed: bool) -> None:
        if resumed:
            self.log(f"  skip {spec.name} (finished earlier)")
        else:
            self.log(f"  done {spec.name}: -ELBO {row['train_neg_elbo']:.2f}, MMD {row['train_mmd']:.2e}, "
                     f"MI {row['test_mi']:.2f} (test), {row['time_total_s']:.0f} s")

    @staticmethod
    def results(futures) -> list[dict]:
        return [f.result() for f in futures]
