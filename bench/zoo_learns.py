"""Does every model of the zoo learn with the recipes' defaults? (issue 8, item 1 and its targets)

For each zoo model (all, or those named on the command line): build its recipe
(:func:`lagrangian_family.backends.torch.recipes.recipe`) at a budget, train it with the
``Trainer`` the recipe builds, and judge what it produces with ``lagrangian_family.evaluate``,
which knows nothing of the objective: the classes its samples cover (a class counts at 5% of the
samples), the classifier's mean confidence on them as a ratio to real test images', their Fréchet
distance (classifier features) next to real test images', the linear probe's accuracy from z for
models with an encoder, InfoGAN's categorical code recovered from its samples (Hungarian-matched)
and, for CycleGAN and DiscoGAN, the share of translations (inverted test digits -> digits, and
digits -> inverted digits) that keep their digit. Prints a table against the issue's targets
(a target missed is marked ``MISS``) and appends one JSON line per model to ``--out``.

VMI is exempt from the sample targets: it does not enforce consistency (the paper's footnote 2),
so its samples are not expected to look like data.

    OMP_NUM_THREADS=1 python bench/zoo_learns.py [MODEL ...] [--data mnist|digits]
        [--budget smoke|small|paper] [--steps N] [--out FILE.jsonl] [--set option=value ...]

Not a test: nothing is asserted. ``--set`` passes recipe options to every model named (for
tuning; the defaults are what the recipes say).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import lagrangian_family as lf  # noqa: E402
from lagrangian_family import evaluate as ev  # noqa: E402
from lagrangian_family.backends.torch import Model  # noqa: E402
from lagrangian_family.backends.torch.recipes import recipe  # noqa: E402
from lagrangian_family.data import binarize  # noqa: E402

#: the issue's targets
TARGETS = {"classes": 9, "confidence_ratio": 0.7, "probe": 0.85, "code": 0.7, "translation": 0.85}
EXEMPT = {"vmi": "VMI does not enforce consistency (paper, footnote 2): its samples need not look like data"}
N_SAMPLES = 2000


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "," in text:
        return [_value(t) for t in text.split(",") if t]
    return text


def judge(name: str, r, loss_fn, data: str) -> dict:
    """The objective-independent scores of a trained model."""
    model = Model(loss_fn)
    split = ev.load_split(data)
    side = int(round(split.x_test.shape[1] ** 0.5))
    out: dict = {}
    torch.manual_seed(1234)
    if r.domain is not None:  # CycleGAN/DiscoGAN: translate the test digits' other-domain images
        n = min(N_SAMPLES, split.x_test.shape[0])
        src = ev.to_domain(split.x_test[:n], r.domain["transform"], side=side)
        to_x = model.translate(torch.from_numpy(src)).reshape(n, -1).numpy()
        to_z = model.encode(torch.from_numpy(split.x_test[:n])).reshape(n, -1).numpy()
        out["translation_kept"] = ev.translation_kept(to_x, split.y_test[:n], data, domain="original")
        out["translation_kept_to_domain"] = ev.translation_kept(to_z, split.y_test[:n], data,
                                                                domain=r.domain["transform"])
        samples = to_x
    else:
        samples = model.sample(N_SAMPLES, seed=0).reshape(N_SAMPLES, -1).numpy()
    s = ev.score_samples(samples, data)
    out.update(classes=s["classes_covered"], confidence=s["confidence"], confidence_ratio=s["confidence_ratio"],
               frechet=s["frechet_distance"], ref_confidence=s["reference"]["confidence"],
               ref_frechet=s["reference"]["frechet_distance"])
    if r.domain is None:
        pre = (lambda x: binarize(x, "fixed")) if r.training.get("binarize") else None
        out["probe"] = ev.probe_encoder(model.encoder, data, preprocess=pre)["accuracy"]
    if name == "infogan":
        prior = model.prior
        k = prior.n_categories
        codes = torch.arange(N_SAMPLES) % k
        with torch.no_grad():
            model.loss_fn.eval()
            images = model.decoder(prior.sample_codes(N_SAMPLES, codes)).reshape(N_SAMPLES, -1).clamp(0, 1)
            model.loss_fn.train()
        out["code_accuracy"] = ev.code_recovery(images.numpy(), codes.numpy(), data)["accuracy"]
    return out


def verdict(name: str, m: dict) -> list[str]:
    """The targets this model misses (empty: all met)."""
    if name in EXEMPT:
        return []
    miss = []
    if m["classes"] < TARGETS["classes"]:
        miss.append(f"classes {m['classes']} < {TARGETS['classes']}")
    if m["confidence_ratio"] < TARGETS["confidence_ratio"]:
        miss.append(f"confidence ratio {m['confidence_ratio']:.2f} < {TARGETS['confidence_ratio']}")
    if "probe" in m and m["probe"] < TARGETS["probe"]:
        miss.append(f"probe {m['probe']:.3f} < {TARGETS['probe']}")
    if "code_accuracy" in m and m["code_accuracy"] < TARGETS["code"]:
        miss.append(f"code {m['code_accuracy']:.2f} < {TARGETS['code']}")
    if "translation_kept" in m and m["translation_kept"] < TARGETS["translation"]:
        miss.append(f"translation {m['translation_kept']:.2f} < {TARGETS['translation']}")
    return miss


def run(name: str, data: str, budget: str, steps: int | None, options: dict) -> dict:
    opts = dict(options)
    if steps is not None:
        opts["steps"] = steps
    r = recipe(name, data=data, budget=budget, **opts)
    x = r.load_data()
    loss_fn = r.build(example_x=x[:8])
    trainer = r.trainer(loss_fn, x, progress=False)
    t0, c0 = time.perf_counter(), time.process_time()
    history = trainer.train(r.training["steps"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = judge(name, r, loss_fn, data)
    last = history[-1] if history else {}
    row = {"model": name, "data": data, "budget": budget, "steps": r.training["steps"], "wall_s": round(wall, 1),
           "cpu_s": round(cpu, 1), **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()},
           "final_value": float(last.get("value", float("nan"))), "options": opts,
           "recipe": {"training": r.training, "compile_options": {k: v for k, v in r.compile_options.items()
                                                                  if k != "critics"},
                      "encoder": r.components["encoder"]["class"], "decoder": r.components["decoder"]["class"],
                      "z_dim": r.components["decoder"]["config"].get("z_dim")}}
    row["missed"] = verdict(name, m)
    row["exempt"] = EXEMPT.get(name)
    return row


def line(row: dict) -> str:
    def f(k, fmt):
        return format(row[k], fmt) if k in row else "-"

    status = "exempt" if row.get("exempt") else ("ok" if not row["missed"] else "MISS: " + "; ".join(row["missed"]))
    return (f"| {row['model']} | {row['wall_s'] / 60:.1f} | {row['classes']} | {f('confidence_ratio', '.2f')} | "
            f"{f('frechet', '.1f')} ({f('ref_frechet', '.1f')}) | {f('probe', '.3f')} | {f('code_accuracy', '.2f')} | "
            f"{f('translation_kept', '.2f')} | {status} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="zoo names (default: all)")
    p.add_argument("--data", default="mnist", choices=["mnist", "digits"])
    p.add_argument("--budget", default="small", choices=["smoke", "small", "paper"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", default="zoo_learns.jsonl")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    options = {}
    for item in a.set:
        k, _, v = item.partition("=")
        options[k] = _value(v)
    models = a.models or lf.zoo.names()
    print(f"# zoo_learns: {a.data}, budget {a.budget}, torch {torch.__version__}, {platform.processor() or 'cpu'}, "
          f"{a.threads} thread(s); targets: >= {TARGETS['classes']} classes, confidence >= "
          f"{TARGETS['confidence_ratio']}x real, probe >= {TARGETS['probe']}, InfoGAN code >= {TARGETS['code']}, "
          f"translations >= {TARGETS['translation']}")
    print("| model | minutes | classes | confidence ratio | Fréchet (real) | probe | code | translation | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in models:
        row = run(name, a.data, a.budget, a.steps, options)
        print(line(row), flush=True)
        with open(a.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
