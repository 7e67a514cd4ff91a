"""What every metric shares: the two datasets, their splits, and the checks on images and labels.

Two datasets are known: ``"mnist"`` (28x28, read by :func:`lagrangian_family.data.load_mnist`,
60,000 training and 10,000 test images) and ``"digits"`` (scikit-learn's 8x8 digits, read by
:func:`lagrangian_family.data.load_digits`; the first 300 images of a seed-0 permutation are the
test split and the other 1,497 the training split, as in :mod:`lagrangian_family.experiments`).

Images are accepted as numpy arrays or torch tensors of shape ``(N, side*side)``,
``(N, side, side)`` or ``(N, 1, side, side)``; floats (or bools) must lie in [0, 1], and
``uint8`` is read as intensity / 255 (the convention of :func:`lagrangian_family.data.to_unit_interval`).

This module imports numpy only.

>>> as_images(np.zeros((2, 8, 8)), "digits").shape
(2, 64)
>>> try:
...     as_images(np.zeros((2, 784)), "digits")
... except DataError as e:
...     print(str(e).splitlines()[0])
images of shape (2, 784) are not digits images
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lagrangian_family.data import DataError
from lagrangian_family.errors import ObjectiveError

__all__ = ["DATASETS", "DatasetSpec", "EvaluationError", "Split", "as_images", "as_labels", "dataset_spec",
           "load_split"]


class EvaluationError(ObjectiveError):
    """An evaluation cannot be done as asked: a judge that fails its own held-out check, a metric
    given inputs that do not fit together.

    >>> issubclass(EvaluationError, ObjectiveError)
    True
    """


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the metrics know: its name, image side, number of classes and description."""

    name: str
    side: int
    n_classes: int
    description: str

    @property
    def dim(self) -> int:
        return self.side * self.side


#: The datasets the judges know, by name: MNIST (28x28) and scikit-learn's digits (8x8).
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", 28, 10, "MNIST, 28x28 (60,000 training and 10,000 test images)"),
    "digits": DatasetSpec("digits", 8, 10, "scikit-learn's digits, 8x8 (1,497 training and 300 test images)"),
}

#: Size of the digits test split (the first images of a seed-0 permutation), as in the experiments.
DIGITS_TEST = 300


def dataset_spec(dataset: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``"mnist"`` or ``"digits"``, else an :class:`ObjectiveError`.

    >>> dataset_spec("mnist").dim
    784
    """
    if isinstance(dataset, str) and dataset.lower() in DATASETS:
        return DATASETS[dataset.lower()]
    raise ObjectiveError(f"unknown dataset {dataset!r}", expected=" or ".join(map(repr, DATASETS)),
                         given=repr(dataset), fix="pass dataset='mnist' (28x28) or dataset='digits' (8x8)")


def _short(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_numpy(x, what: str) -> np.ndarray:
    """A numpy array from an array, a tensor (any device) or nested lists, else a DataError."""
    if type(x).__module__.split(".")[0] == "torch":
        import torch

        if not isinstance(x, torch.Tensor):
            raise DataError(f"{what} must be an array or a tensor", expected="a numpy array or a torch.Tensor",
                            given=type(x).__name__, fix="pass a numpy array or a torch.Tensor")
        if x.dtype.is_complex:
            raise DataError(f"{what} must be real", expected="a real tensor", given=f"dtype {x.dtype}",
                            fix="pass real values")
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        return x.numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what} must be an array of numbers", expected="a numpy array or a torch.Tensor",
                        given=f"{type(x).__name__}: {e}", fix="pass a numpy array") from e
    return arr


def as_images(images, dataset: str) -> np.ndarray:
    """``images`` as float32 ``(N, side*side)`` in [0, 1] for ``dataset``, or a :class:`DataError`
    saying what was expected.

    Accepted: shapes ``(N, side*side)``, ``(N, side, side)``, ``(N, 1, side, side)`` with N >= 1;
    floats or bools in [0, 1] (finite), or uint8 (divided by 255).

    >>> x = as_images(np.full((3, 1, 28, 28), 255, np.uint8), "mnist")
    >>> x.shape, float(x.max())
    ((3, 784), 1.0)
    """
    spec = dataset_spec(dataset)
    arr = _to_numpy(images, "images")
    shapes = f"(N, {spec.dim}), (N, {spec.side}, {spec.side}) or (N, 1, {spec.side}, {spec.side})"
    if arr.dtype.kind not in "biuf":
        raise DataError("images must be numbers", expected=f"floats in [0, 1] of shape {shapes}",
                        given=f"{type(images).__name__} of dtype {arr.dtype}: {_short(images)}",
                        fix="pass a float array of intensities in [0, 1]")
    ok_shape = arr.ndim >= 2 and (
        (arr.ndim == 2 and arr.shape[1] == spec.dim)
        or (arr.ndim == 3 and arr.shape[1:] == (spec.side, spec.side))
        or (arr.ndim == 4 and arr.shape[1:] == (1, spec.side, spec.side)))
    if not ok_shape:
        hint = f"reshape them to (N, {spec.dim})"
        for other in DATASETS.values():
            if other is not spec and arr.ndim >= 2 and int(np.prod(arr.shape[1:])) == other.dim:
                hint = f"these look like {other.name} images: pass dataset={other.name!r} (--data {other.name})"
        raise DataError(f"images of shape {arr.shape} are not {spec.name} images", expected=shapes,
                        given=f"shape {arr.shape}", fix=hint)
    if arr.shape[0] == 0:
        raise DataError("no images", expected=f"at least one image of shape {shapes}", given=f"shape {arr.shape}",
                        fix="pass a non-empty array")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    else:
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError("images contain NaN or infinite values", expected="finite intensities in [0, 1]",
                            given=f"{int((~np.isfinite(x)).sum())} non-finite values",
                            fix="check the model's output (a NaN loss?) before scoring")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError("image intensities outside [0, 1]",
                            expected="floats in [0, 1] (decoder means or generator outputs), or uint8 in 0..255",
                            given=f"values in [{lo:g}, {hi:g}]",
                            fix="map the samples to [0, 1] first (e.g. (x + 1) / 2 for a tanh output, "
                                "or a sigmoid of logits)")
    return np.ascontiguousarray(x.reshape(x.shape[0], spec.dim))


def as_labels(labels, n: int | None = None, what: str = "labels") -> np.ndarray:
    """``labels`` as int64 ``(N,)`` of non-negative integers (``n`` of them when given), else a DataError.

    >>> as_labels([3, 1, 2]).tolist()
    [3, 1, 2]
    """
    arr = _to_numpy(labels, what)
    if arr.ndim != 1 or arr.dtype.kind not in "biuf" or (n is not None and arr.shape[0] != n):
        raise DataError(f"bad {what}", expected=f"a 1-D array of {n if n is not None else 'N'} integer class labels",
                        given=f"{arr.dtype} of shape {arr.shape}", fix=f"pass one integer per image as {what}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise DataError(f"{what} must be whole numbers", expected="integer class labels",
                            given=f"non-integer values such as {_short(arr[:3].tolist())}",
                            fix="pass integer labels (argmax of the probabilities, if you have those)")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise DataError(f"{what} must be non-negative", expected="class labels 0, 1, 2, ...",
                        given=f"a label {int(out.min())}", fix="number the classes from 0")
    return out


@dataclass(frozen=True)
class Split:
    """A dataset's images (float32 ``(N, d)`` in [0, 1]) and labels (int64) for training and test,
    and the SHA-256 of all four arrays (the cache key of everything trained or computed on them)."""

    dataset: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sha256: str
    source: str


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_split(dataset: str, data_dir=None) -> Split:
    """The training and test split of ``dataset`` (MNIST from ``data_dir``, default
    :func:`lagrangian_family.data.default_data_root`). Loaded once per process and folder.

    >>> s = load_split("digits")
    >>> s.x_train.shape, s.x_test.shape, len(s.sha256)
    ((1497, 64), (300, 64), 64)
    """
    spec = dataset_spec(dataset)
    if spec.name == "digits":
        return _load_digits()
    from lagrangian_family.data import DATA_ENV, _as_path, default_data_root

    root = default_data_root() if data_dir is None else _as_path(data_dir, "data_dir")
    if root is None:
        raise DataError("no MNIST folder was given and none was found",
                        expected=f"a folder of the four MNIST IDX files: data_dir=..., --data-dir, or ${DATA_ENV}",
                        given="no folder", fix="pass the folder, or score digits samples with dataset='digits'")
    return _load_mnist(str(Path(root).expanduser().resolve()))


@functools.lru_cache(maxsize=1)
def _load_digits() -> Split:
    from lagrangian_family.data import load_digits

    x, y = load_digits()
    perm = np.random.default_rng(0).permutation(x.shape[0])
    test, train = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    xtr, ytr, xte, yte = x[train], y[train], x[test], y[test]
    return Split("digits", xtr, ytr, xte, yte, _digest(xtr, ytr, xte, yte),
                 "sklearn.datasets.load_digits (intensities / 16; test = first 300 of a seed-0 permutation)")


@functools.lru_cache(maxsize=2)
def _load_mnist(root: str) -> Split:
    from lagrangian_family.data import load_mnist

    xtr, ytr = load_mnist(root, "train")
    xte, yte = load_mnist(root, "test")
    sha = _digest(xtr, ytr, xte, yte)
    xtr = xtr.reshape(len(xtr), -1).astype(np.float32) / 255.0
    xte = xte.reshape(len(xte), -1).astype(np.float32) / 255.0
    return Split("mnist", xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), sha, f"MNIST IDX files in {root}")
