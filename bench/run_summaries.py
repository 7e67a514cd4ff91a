"""One JSON line per ``lagfam train`` run folder: its command (with the ``--option`` overrides),
the recipe's critic and generator settings (those of its first critic), and the
objective-independent metrics.

    python bench/run_summaries.py RUN_DIR [RUN_DIR ...] >> bench/results/FILE.jsonl

The measurements behind the recipes' adversarial defaults
(``bench/results/adversarial_defaults_small_mnist.jsonl``) were collected this way from runs of
``lagfam train MODEL --data mnist --budget small --option ...``; its first three lines are the
zoo's ALI, BiGAN and InfoGAN folders as committed at 7b1bf85 (6,000 steps, spectral
normalisation: ``git show 7b1bf85:docs/results/zoo/ali/metrics.json``). Lines written before the
``shared_trunk`` field existed have none: their InfoGAN's Q was a network of its own. Not a test:
nothing is asserted.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def summary(folder: Path) -> dict:
    """The summary of one finished run folder."""
    m = json.loads((folder / "metrics.json").read_text())
    recipe = json.loads((folder / "run.json").read_text())["recipe"]
    report = folder / "report.md"
    found = re.search(r"Command: `(.*)`", report.read_text()) if report.is_file() else None
    command = found.group(1) if found else None
    critic = next(iter(recipe["compile_options"].get("critics", {}).values()), {}).get("config", {})
    return {"model": m["identity"]["model"], "command": command, "seed": m["identity"]["seed"], "steps": m["steps"],
            "recipe": {"spectral_norm": critic.get("spectral_norm"), "critic_dropout": critic.get("dropout"),
                       "estimators": recipe["compile_options"].get("estimators", {}),
                       "generator_batch_norm": recipe["components"]["decoder"]["config"].get("batch_norm", False),
                       "shared_trunk": "shared_trunk" in recipe["compile_options"]},
            "train_minutes": round(m["train_minutes"], 2), "classes": m["samples"]["classes_covered"],
            "class_shares": m["samples"]["class_shares"],
            "confidence_ratio": round(m["samples"]["confidence_ratio"], 4),
            "frechet": round(m["samples"]["frechet_distance"], 1),
            "probe": m.get("probe", {}).get("accuracy"), "code_accuracy": m.get("code", {}).get("accuracy"),
            "targets_met": all(t["met"] for t in m["targets"].values() if not t.get("exempt")),
            "machine": m["machine"]}


def main(argv=None) -> int:
    folders = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    missing = [str(f) for f in folders if not (f / "metrics.json").is_file()]
    if not folders or missing:
        print("error: expected finished run folders (each with metrics.json); not one: "
              + (", ".join(missing) or "none given"), file=sys.stderr)
        return 2
    for f in folders:
        print(json.dumps(summary(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
