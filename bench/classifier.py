"""The digit classifiers of ``lagrangian_family.evaluate``: accuracy, training time, cache, and what
the judge says about real images and about garbage.

For each dataset (MNIST needs its IDX files; digits ship with scikit-learn): train the classifier
in a fresh temporary cache (so it always trains; ``--keep`` uses the real cache instead), print
its held-out test accuracy and training time with the ratio to the target of 120 s (a couple of
CPU minutes), then load it again from the cache file in the same process and print the ratio
load / train. Then score, as ``lagfam score`` would, real test images and degenerate "samples"
(uniform noise, blank images, one digit repeated, blurred digits, superpositions of two digits)
to show how each metric reacts. Not a test: nothing is asserted.

    python bench/classifier.py [--dataset mnist|digits|both] [--data-dir DIR] [--keep] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lagrangian_family.evaluate import (  # noqa: E402
    cache_dir,
    load_classifier,
    load_split,
    score_samples,
)
from lagrangian_family.evaluate import classifier as clf_mod  # noqa: E402

TARGET_SECONDS = 120.0


def _blur(x: np.ndarray, side: int, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(a.reshape(side, side), sigma) for a in x]).reshape(len(x), -1)


def degenerate(split, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    side = int(round(split.x_test.shape[1] ** 0.5))
    x, y = split.x_test, split.y_test
    idx = rng.permutation(len(x))[:n]
    other = rng.permutation(len(x))[:n]
    keep = y[idx] != y[other]
    return {
        "real test images": x[idx],
        f"real, blurred (sigma {side / 28:.2g} px)": _blur(x[idx], side, side / 28),
        "two digits superposed": (0.5 * x[idx] + 0.5 * x[other])[keep],
        "one digit repeated": np.repeat(x[idx[:1]], n, axis=0),
        "uniform noise": rng.random((n, side * side)),
        "blank images": np.zeros((n, side * side)),
    }


def bench(dataset: str, data_dir, keep: bool, n: int) -> None:
    folder = cache_dir() if keep else Path(tempfile.mkdtemp(prefix="lagfam-bench-"))
    print(f"== {dataset}: cache {folder}")
    clf_mod.forget_loaded()
    t0 = time.perf_counter()
    clf = load_classifier(dataset, data_dir=data_dir, cache_dir=folder, progress=print)
    first = time.perf_counter() - t0
    clf_mod.forget_loaded()
    t0 = time.perf_counter()
    again = load_classifier(dataset, data_dir=data_dir, cache_dir=folder)
    load = time.perf_counter() - t0
    assert not again.trained_now
    print(f"held-out test accuracy {clf.test_accuracy:.4f} (floor {clf_mod.CONFIGS[dataset].min_accuracy})")
    if clf.trained_now:
        print(f"training {clf.train_cpu_seconds:.1f} CPU s on one thread ({clf.train_seconds:.1f} s wall); "
              f"ratio of CPU time to the {TARGET_SECONDS:.0f} s target {clf.train_cpu_seconds / TARGET_SECONDS:.3f}")
    else:
        print(f"(already cached: trained in {clf.train_seconds:.1f} s when it was)")
    print(f"first call {first:.2f} s, load from cache {load:.2f} s: ratio load / first call {load / first:.3f}")
    split = load_split(dataset, data_dir)
    n = min(n, len(split.x_test))
    print(f"\nscores of {n} images each (the reference: as many real test images, "
          "Fréchet distance to the training images' features):")
    print(f"{'images':32s} {'classes':>7s} {'confidence':>10s} {'ratio':>6s} {'Fréchet':>9s}")
    for name, x in degenerate(split, n, np.random.default_rng(0)).items():
        s = score_samples(np.clip(x, 0, 1), dataset, data_dir=data_dir, cache_dir=folder)
        print(f"{name:32s} {s['classes_covered']:7d} {s['confidence']:10.3f} {s['confidence_ratio']:6.3f} "
              f"{s['frechet_distance']:9.2f}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("mnist", "digits", "both"), default="both")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $LAGFAM_DATA, ../shared/data/mnist)")
    ap.add_argument("--keep", action="store_true", help="use (and fill) the real cache instead of a temporary one")
    ap.add_argument("--n", type=int, default=5000, help="images per scored set (default 5000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for scoring (training always uses one)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for dataset in (("digits", "mnist") if args.dataset == "both" else (args.dataset,)):
        bench(dataset, args.data_dir, args.keep, args.n)


if __name__ == "__main__":
    main()
