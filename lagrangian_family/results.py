"""Results of ``lagfam train`` runs: issue 8's targets, the verdict on them, and a table of many
run folders generated from their ``metrics.json`` files (never typed by hand).

* :data:`TARGETS`: the benchmark of issue 8 at the small budget on MNIST;
* :func:`verdict`: met, missed (with what the numbers say about the miss) or exempt;
* :func:`results_table` / :func:`write_results_readme`: a Markdown table of the run folders under
  a folder (``lagfam results DIR`` writes ``DIR/README.md``): model, class, steps, minutes, sample
  metrics, probe accuracy, code accuracy or translation kept, the targets, and each model's grid.

Only the standard library is imported (no torch).

>>> targets = {"classes_covered": {"value": 3, "threshold": 9, "met": False, "exempt": None},
...            "confidence_ratio": {"value": 0.9, "threshold": 0.7, "met": True, "exempt": None}}
>>> verdict(targets, [0.8, 0.1, 0.1, 0.0])[0]
'missed'
>>> print(verdict(targets, [0.8, 0.1, 0.07, 0.03])[1])
missed: classes covered 3 < 9. Why, from the numbers: the samples leave out digits 3 (each under 5%
of them) while the most frequent digit holds 80%: some modes of the data are missed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from lagrangian_family.errors import ObjectiveError

__all__ = ["TARGETS", "TARGET_LABELS", "verdict", "fmt", "read_runs", "results_table", "write_results_readme",
           "configure", "run"]

#: Issue 8's targets at the small budget on MNIST: metric -> (threshold, what it says).
TARGETS: dict[str, tuple[float, str]] = {
    "classes_covered": (9, "samples cover at least 9 of the 10 digit classes (share ≥ 5% each)"),
    "confidence_ratio": (0.7, "mean classifier confidence at least 0.7 times that of real test images"),
    "probe_accuracy": (0.85, "a linear probe predicts the digit from z with at least 85% accuracy"),
    "code_accuracy": (0.7, "InfoGAN's categorical code matched to the labels with at least 70% accuracy"),
    "translation_kept": (0.85, "translations keep their digit at least 85% of the time"),
}

#: Short names of the targets' metrics, for tables.
TARGET_LABELS = {"classes_covered": "classes covered", "confidence_ratio": "confidence ratio",
                 "probe_accuracy": "probe accuracy", "code_accuracy": "code accuracy",
                 "translation_kept": "translation kept"}


def fmt(v) -> str:
    """A number for a table: integers as they are, others with 3 decimals (3 significant digits
    from 100 on), None as a dash.

    >>> fmt(3), fmt(0.12345), fmt(1234.5), fmt(None)
    ('3', '0.123', '1.23e+03', '–')
    """
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.3g}"


def _why(missed: list[str], shares: list[float]) -> str:
    why = []
    if "classes_covered" in missed:
        share = max(shares) if shares else float("nan")
        rare = [str(i) for i, v in enumerate(shares) if v < 0.05]
        why.append(f"the samples leave out digits {', '.join(rare)} (each under 5% of them) while the most "
                   f"frequent digit holds {share:.0%}: some modes of the data are missed")
    if "confidence_ratio" in missed and "classes_covered" not in missed:
        why.append("the samples cover the classes but are blurred or malformed digits that the classifier is "
                   "unsure of")
    if "probe_accuracy" in missed:
        why.append("the code z keeps too little of the digit's identity for a linear read-out")
    if "code_accuracy" in missed:
        why.append("the categorical code does not select the digit (the generator uses it for another factor, "
                   "or ignores it)")
    if "translation_kept" in missed:
        why.append("the translations do not keep their digit (nothing in an unpaired objective ties a digit to "
                   "its own translation beyond the cycle terms)")
    return "Why, from the numbers: " + "; ".join(why) + "." if why else ""


def verdict(targets: Mapping, shares: list[float]) -> tuple[str, str]:
    """``(status, text)`` of a run's targets (``metrics.json["targets"]``): status ``"met"``,
    ``"missed"`` or ``"exempt"``; the text names each missed metric against its threshold and
    says what the numbers show (``shares``: the samples' class shares), read off the metrics."""
    exempt = next((t["exempt"] for t in targets.values() if t.get("exempt")), None)
    if exempt:
        return "exempt", f"exempt: {exempt}."
    missed = [n for n, t in targets.items() if t.get("met") is False]
    if not missed:
        return "met", "every target met."
    parts = "; ".join(f"{TARGET_LABELS.get(n, n)} {fmt(targets[n]['value'])} < {fmt(targets[n]['threshold'])}"
                      for n in missed)
    return "missed", f"missed: {parts}. {_why(missed, shares)}".rstrip()


def read_runs(folder) -> list[tuple[Path, dict]]:
    """``(run folder, metrics)`` of every run folder directly under ``folder`` whose
    ``metrics.json`` is readable, sorted by name; a folder with none is skipped."""
    runs = []
    root = Path(folder)
    if not root.is_dir():
        raise ObjectiveError(f"{folder} is not a folder", expected="a folder of run folders (lagfam train --out "
                             "DIR/<model>)", given=str(folder), fix="pass the folder that holds the run folders")
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        path = sub / "metrics.json"
        if not path.is_file():
            continue
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(m, dict) and isinstance(m.get("samples"), dict):
            runs.append((sub, m))
    return runs


def _row(sub: Path, m: Mapping, order: Mapping[str, int]) -> tuple[list[str], str, str]:
    s = m["samples"]
    ref = s["reference"]
    ident = m.get("identity", {})
    name = ident.get("model", sub.name)
    k = len(s["class_shares"])
    extra = []
    if "code" in m:
        extra.append(f"code {fmt(m['code']['accuracy'])}")
    if "translation_kept" in m:
        extra.append(f"kept {fmt(m['translation_kept'])}")
    status, text = verdict(m.get("targets", {}), s["class_shares"])
    mark = {"met": "met", "missed": "**missed**", "exempt": "exempt"}[status]
    minutes = float(m.get("train_minutes", 0.0)) + float(m.get("eval_minutes", 0.0))
    grid = "samples.png" if not (sub / "translations.png").is_file() else "translations.png"
    cells = [f"[`{name}`]({sub.name}/report.md)", str(m.get("class", "")), fmt(m.get("steps")), f"{minutes:.1f}",
             f"{s['classes_covered']} of {k}", fmt(s["confidence_ratio"]),
             f"{fmt(s['frechet_distance'])} ({fmt(ref['frechet_distance'])})",
             fmt(m["probe"]["accuracy"]) if "probe" in m else "–", ", ".join(extra) or "–", mark,
             f"![{name}]({sub.name}/{grid})"]
    return cells, name, text


def results_table(folder, *, order: list[str] | None = None) -> str:
    """A Markdown table of the run folders under ``folder`` (see the module docstring), in the
    order of ``order`` (model names; the others after, by name), then the verdict on each run's
    targets with what its numbers say."""
    runs = read_runs(folder)
    pos = {n: i for i, n in enumerate(order or [])}
    runs.sort(key=lambda r: (pos.get(r[1].get("identity", {}).get("model", r[0].name), len(pos)), r[0].name))
    head = ["model", "class", "steps", "minutes", "classes covered", "confidence ratio", "FD (real test images)",
            "probe", "code / translation", "targets", "samples"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for sub, m in runs:
        cells, name, text = _row(sub, m, pos)
        lines.append("| " + " | ".join(cells) + " |")
        notes.append(f"- `{name}`: {text}")
    return "\n".join(lines + [""] + notes)


def write_results_readme(folder, *, title: str = "Results", intro: str = "", order: list[str] | None = None) -> Path:
    """Write ``folder/README.md``: ``title``, ``intro``, the machine(s) and budget(s) the runs name,
    and :func:`results_table` (atomically); returns its path."""
    from lagrangian_family.files import atomic_write

    runs = read_runs(folder)
    if not runs:
        raise ObjectiveError(f"no finished runs in {folder}", expected="run folders holding metrics.json",
                             given=f"{folder}", fix="train some first: lagfam train MODEL --out DIR/MODEL")
    machines = sorted({m.get("machine", "?") for _, m in runs})
    budgets = sorted({f"{m['identity'].get('budget')} on {m['identity'].get('data')}" for _, m in runs
                      if isinstance(m.get("identity"), Mapping)})
    text = [f"# {title}", ""]
    if intro:
        text += [intro, ""]
    text += [f"Runs: {len(runs)}; budget: {', '.join(budgets)}; machine: {'; '.join(machines)}.", "",
             "Generated from the runs' `metrics.json` by `lagfam results " + os.fspath(folder) + "` "
             "(`lagrangian_family.results.write_results_readme`); each model's `report.md` has the full "
             "metrics, the recipe's reasons and the images. Columns: classes covered by the samples (a class "
             "counts at a share of at least 5%), mean classifier confidence over that on real test images, Fréchet "
             "distance in the classifier's feature space to the training images (in brackets: the same number "
             "of real test images), linear probe accuracy of the digit from z on test images, InfoGAN's code "
             "accuracy (the digits drawn at each code value, Hungarian-matched) or the share of CycleGAN/DiscoGAN "
             "translations keeping their digit; minutes of training and evaluation.", "",
             results_table(folder, order=order), ""]
    return atomic_write(Path(folder) / "README.md", "\n".join(text))


def configure(p) -> None:
    """Add the arguments of ``lagfam results``."""
    p.description = ("Write DIR/README.md: a table of the lagfam train run folders under DIR, generated from their "
                     "metrics.json (model, class, minutes, sample metrics, probe, code or translation, targets, "
                     "sample grid).")
    p.add_argument("folder", metavar="DIR", help="the folder holding the run folders")
    p.add_argument("--title", default="Results", help="the README's title")
    p.add_argument("--intro", default="", metavar="TEXT", help="a paragraph (Markdown) under the title")


def run(args) -> int:
    """Run ``lagfam results``."""
    from lagrangian_family import zoo

    path = write_results_readme(args.folder, title=args.title, intro=args.intro, order=list(zoo.names()))
    print(f"wrote {path}")
    return 0
