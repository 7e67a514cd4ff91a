"""The data of the experiments: intensities in [0, 1], binarised stochastically per batch.

``load(budget, data_dir)`` returns a :class:`Data`: float tensors of intensities for training
and test, plus fixed binarisations (one Bernoulli draw with a fixed seed) used for every
evaluation, so that all runs are measured on the same binary images. Training batches are
drawn with a fresh binarisation each time (stochastically binarised MNIST, as the authors).

The files are read by :mod:`lagrangian_family.data` (IDX files, gzipped or not, names with a
dash or a dot; scikit-learn's digits).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Data", "load", "default_mnist_dir", "check_mnist_dir", "StochasticBatches"]

MNIST_HELP = ("MNIST is four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
              "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) from any public mirror "
              "(e.g. https://ossci-datasets.s3.amazonaws.com/mnist/, or "
              "lagrangian_family.data.download_mnist(FOLDER)); "
              "put them in one folder and pass --data FOLDER (or set LAGFAM_DATA), or use --budget smoke, "
              "which needs no files (sklearn's digits)")


@dataclass
class Data:
    """Intensities in [0, 1] (``train``, ``test``: float tensors ``(n, d)``) and the fixed binary
    evaluation copies (``train_bin``, ``test_bin``)."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_bin: torch.Tensor
    test_bin: torch.Tensor
    source: str

    @property
    def x_dim(self) -> int:
        return int(self.train.shape[1])


class StochasticBatches:
    """An endless iterable of training batches, each binarised by a fresh Bernoulli draw.

    The order and the draws come from its own generator (``seed``), so two runs with the same
    seed see the same batches. A pixel of intensity p is 1 when a uniform draw u in [0, 1) is
    below p (``torch.rand(...) < p``: on CPU the very draws of ``torch.bernoulli`` with the same
    generator, five times faster). ``next()`` gives one batch; ``state_dict()`` and
    ``load_state_dict()`` save and restore the position (generator, permutation, offset), so a
    resumed run sees the batches the uninterrupted one would have seen. Iterating yields the
    same stream as calling ``next()``.

    >>> b = StochasticBatches(torch.full((10, 3), 0.5), batch_size=4, seed=0)
    >>> x = next(iter(b)); tuple(x.shape), sorted(set(x.flatten().tolist())) <= [0.0, 1.0]
    ((4, 3), True)
    """

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int, device: torch.device | str = "cpu"):
        self.x = x.to(device)
        self.batch_size = min(int(batch_size), x.shape[0])
        self.gen = torch.Generator(device=self.x.device)
        self.gen.manual_seed(int(seed))
        self._perm: torch.Tensor | None = None
        self._pos = 0

    def next(self) -> torch.Tensor:
        """The next batch: a new permutation at the start of each epoch (the last partial batch
        of an epoch is dropped), then a Bernoulli draw of the batch's intensities."""
        n = self.x.shape[0]
        if self._perm is None or self._pos + self.batch_size > n:
            self._perm = torch.randperm(n, generator=self.gen, device=self.x.device)
            self._pos = 0
        xb = torch.index_select(self.x, 0, self._perm[self._pos:self._pos + self.batch_size])
        self._pos += self.batch_size
        u = torch.rand(xb.shape, generator=self.gen, device=xb.device, dtype=xb.dtype)
        return (u < xb).to(xb.dtype)

    def __iter__(self):
        while True:
            yield self.next()

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": None if self._perm is None else self._perm.cpu().clone(),
                "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        perm = state["perm"]
        self._perm = None if perm is None else perm.to(self.x.device)
        self._pos = int(state["pos"])


def default_mnist_dir() -> Path | None:
    """The MNIST folder to use when ``--data`` is not given (``$LAGFAM_DATA``, else the workplace's
    ``../shared/data/mnist``): :func:`lagrangian_family.data.default_data_root`."""
    from lagrangian_family.data import default_data_root

    return default_data_root()


def check_mnist_dir(data_dir: str | os.PathLike | None = None, *, validate: bool = False) -> Path:
    """The MNIST folder to read (``data_dir``, else :func:`default_mnist_dir`), or a
    :class:`~lagrangian_family.data.DataError` naming the path and how to get the data. With
    ``validate``, the four files are read and checked now (a bad folder is refused before any work).

    >>> import tempfile
    >>> try:
    ...     check_mnist_dir(tempfile.mkdtemp() + "/absent")
    ... except Exception as e:
    ...     print(type(e).__name__, str(e).splitlines()[0].endswith("does not exist"))
    DataError True
    """
    from lagrangian_family.data import DataError, load_mnist

    folder = Path(data_dir).expanduser() if data_dir is not None else default_mnist_dir()
    if folder is None:
        raise DataError("no MNIST folder was given and none was found", expected="an MNIST folder: --data FOLDER or "
                        "$LAGFAM_DATA", given="no --data, no $LAGFAM_DATA, no ../shared/data/mnist", fix=MNIST_HELP)
    try:
        exists, is_dir = folder.exists(), folder.is_dir()
    except OSError as e:
        raise DataError(f"the MNIST folder {folder} cannot be read: {e.strerror or e}", expected="a readable folder",
                        given=str(folder), fix="check its permissions, or " + MNIST_HELP) from e
    if not exists:
        raise DataError(f"the MNIST folder {folder} does not exist", expected="a folder of the four MNIST IDX files",
                        given=str(folder), fix=MNIST_HELP)
    if not is_dir:
        raise DataError(f"the MNIST folder {folder} is a file, not a folder", expected="the folder holding the "
                        "four IDX files", given=str(folder), fix=MNIST_HELP)
    if validate:
        for split in ("train", "test"):
            load_mnist(folder, split)
    return folder


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from lagrangian_family.data import load_digits

    x, _ = load_digits()
    perm = np.random.default_rng(0).permutation(x.shape[0])
    x = x[perm]
    return x[300:], x[:300]


def load(dataset: str, data_dir: str | os.PathLike | None = None, *, n_train: int | None = None,
         n_test: int | None = None, seed: int = 1234) -> Data:
    """Load ``"digits"`` (sklearn, 1497 train / 300 test, 64 pixels) or ``"mnist"`` (from
    ``data_dir``, default :func:`default_mnist_dir`), optionally the first ``n_train``/``n_test``
    images of a fixed shuffle.

    >>> d = load("digits", n_train=100)
    >>> d.train.shape[0], d.x_dim, float(d.train.max()) <= 1.0
    (100, 64, True)
    """
    if dataset == "digits":
        tr, te = _digits()
        source = "sklearn.datasets.load_digits (8x8, intensities / 16)"
    elif dataset == "mnist":
        from lagrangian_family.data import load_mnist, to_unit_interval

        folder = check_mnist_dir(data_dir)
        tr = to_unit_interval(load_mnist(folder, "train")[0])
        te = to_unit_interval(load_mnist(folder, "test")[0])
        source = f"MNIST IDX files in {folder}"
    else:
        from lagrangian_family.errors import ObjectiveError

        raise ObjectiveError(f"unknown dataset {dataset!r}", expected="'digits' or 'mnist'", given=repr(dataset),
                             fix="use dataset='digits' (no download) or 'mnist'")
    rng = np.random.default_rng(seed)
    if n_train is not None and n_train < tr.shape[0]:
        tr = tr[rng.permutation(tr.shape[0])[:n_train]]
    if n_test is not None and n_test < te.shape[0]:
        te = te[rng.permutation(te.shape[0])[:n_test]]
    train, test = torch.from_numpy(np.ascontiguousarray(tr)), torch.from_numpy(np.ascontiguousarray(te))
    g = torch.Generator().manual_seed(seed)
    return Data(dataset, train, test, torch.bernoulli(train, generator=g), torch.bernoulli(test, generator=g), source)
