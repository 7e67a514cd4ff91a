"""``lagfam score FILE.npy``: the sample scores of a file of images, next to real test images.

The file is what ``lagfam sample`` writes: a ``.npy`` array ``(N, 784)`` (MNIST) or ``(N, 64)``
(digits) of intensities in [0, 1]. ``--data`` defaults to the dataset the width says. A bad
file, shape or range prints ``error: ...`` and exits with status 2 (the CLI's rule for bad input).

Argument parsing only at import (no torch); the scoring is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lagrangian_family.data import DataError

__all__ = ["configure", "read_samples", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    p.description = ("Score samples x ~ p(x) with a digit classifier trained once on the dataset's training images "
                     "(cached): the classes covered (share >= 5%), the mean classifier confidence and the Fréchet "
                     "distance in the classifier's feature space, each next to the same numbers for as many real "
                     "test images. Nothing here knows the model's training objective.")
    p.add_argument("file", metavar="FILE.npy", help="samples: a .npy array (N, 784) or (N, 64), values in [0, 1]")
    p.add_argument("--data", choices=("mnist", "digits"), default=None,
                   help="the dataset of the classifier (default: mnist for 784 columns, digits for 64)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="MNIST folder of IDX files (default: $LAGFAM_DATA, else ../shared/data/mnist)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where the classifier is cached (default: $LAGFAM_CACHE, else ~/.cache/lagrangian_family)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON instead of a Markdown table")


def read_samples(path) -> np.ndarray:
    """The array in a ``.npy`` file (no pickles), or a :class:`~lagrangian_family.data.DataError`.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "s.npy"); np.save(f, np.zeros((2, 64)))
    >>> read_samples(f).shape
    (2, 64)
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"no samples file {p}", expected="an existing .npy file (lagfam sample RUN_DIR --out FILE.npy)",
                        given="a folder" if p.is_dir() else "a path that does not exist",
                        fix="check the path")
    try:
        arr = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # not .npy, truncated, or an object array (pickle refused)
        raise DataError(f"{p} is not a readable .npy array", expected="a file written by numpy.save (no pickled "
                        "objects)", given=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        fix="write the samples with numpy.save(FILE, array)") from e
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise DataError(f"{p} is an .npz archive, not one array", expected="a single array saved by numpy.save",
                        given=f"an archive of {len(arr.files)} arrays", fix="save the samples with numpy.save")
    return arr


def _guess(arr: np.ndarray) -> str:
    from .common import DATASETS

    width = int(np.prod(arr.shape[1:])) if arr.ndim >= 2 else -1
    for name, spec in DATASETS.items():
        if width == spec.dim:
            return name
    raise DataError(f"samples of shape {arr.shape} are not digit images",
                    expected="(N, 784) for MNIST or (N, 64) for the 8x8 digits",
                    given=f"shape {arr.shape}", fix="reshape the samples to one row per image, or pass --data")


def run(args: argparse.Namespace) -> int:
    from .score import format_table, score_samples

    arr = read_samples(args.file)
    dataset = args.data or _guess(arr)
    scores = score_samples(arr, dataset, data_dir=args.data_dir, cache_dir=args.cache_dir,
                           progress=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        print(f"{args.file}: {scores['n']} samples scored by the {dataset} digit classifier")
        print()
        print(format_table(scores))
    return 0
