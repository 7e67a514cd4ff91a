"""The paper's experiments (section 7) and the ``lagfam demo``, built on the torch backend.

* ``lagfam demo``: the zoo's classification table, then a short LagVAE on sklearn's digits with
  ε chosen by the section 6 procedure; reports I_q and the constraints, plots the training.
* ``lagfam experiment dual-verification``: section 7.1 (figure 1), the sign of α1 decides.
* ``lagfam experiment pareto``: section 7.2 (figure 2), LagVAE against InfoVAE's grid.

Both experiments take ``--budget smoke|small|paper`` (:mod:`.budgets`), ``--out``, ``--jobs``,
``--data`` and ``--no-vectorise``, are resumable, and write ``results.csv``, PNG plots and
``report.md``. By default the runs that share a number of steps train as vectorised stacks
(:func:`.runs.run_stack`, :class:`~lagrangian_family.backends.torch.VectorisedTrainer`), one stack
per job; ``--no-vectorise`` trains one run per process with the ``Trainer``.

Importing this package imports no torch (the CLI loads it to register the subcommands); the
modules that train do, when used.

>>> from lagrangian_family.experiments import budgets
>>> sorted(budgets.BUDGETS)
['paper', 'small', 'smoke']
"""

from __future__ import annotations

from . import budgets
from .commands import demo_main, experiment_main

__all__ = ["budgets", "demo_main", "experiment_main", "register_cli"]

_HERE = __name__ + ".commands"


def register_cli(add_command) -> None:
    """Add ``demo`` and ``experiment`` to ``lagfam`` (called by :mod:`lagrangian_family.cli`)."""
    add_command("demo", "train a short LagVAE on the digits: MI, constraints, a plot (the quick start)",
                f"{_HERE}:configure_demo", f"{_HERE}:run_demo", replace=True)
    add_command("experiment", "reproduce the paper's section 7 (dual-verification, pareto) at a budget",
                f"{_HERE}:configure_experiment", f"{_HERE}:run_experiment", replace=True)
