"""The digit classifier that judges samples: a small conv net, trained once per dataset and cached.

One network per dataset, trained on the training split only and checked on the held-out test
split before it is cached (a judge under its accuracy floor is an error, never stored):

* ``mnist``: conv 5x5 (16) → BN → ReLU → max-pool → conv 5x5 (32) → BN → ReLU → max-pool →
  linear 512→128 → ReLU (the **features**) → dropout 0.25 → linear 128→10. Four epochs of Adam
  with a one-cycle learning rate (peak 3e-3), batch 128: about 30 s on one CPU thread, 99.3%
  test accuracy (floor 99%).
* ``digits``: conv 3x3 (16) → BN → ReLU → max-pool → conv 3x3 (32) → BN → ReLU → linear
  512→64 → ReLU (the features) → dropout 0.25 → linear 64→10. Ten epochs, batch 64, on the
  1,497 training images: about a second, 99.3% on the 300 test images (floor 95%).

Training is deterministic: a fixed seed, the global random state left untouched
(``torch.random.fork_rng``), one CPU thread (the reductions of several threads do not add up
in a fixed order), the CPU only. It sees intensities in [0, 1], the form of decoder means and of
``lagfam sample``'s output.

A plain classifier is confident on some images that are no digit at all (on MNIST: uniform noise
0.97, blank images 0.88, against 0.99 on real digits; ``bench/classifier.py``), so the mean
confidence of samples is to be read with the classes they cover and their Fréchet distance,
which expose such samples.

Cached (:mod:`.cache`) under ``<dataset>-classifier-v<VERSION>-<data sha256[:16]>.pt``: the
dataset's checksum and :data:`VERSION` (bumped with any change to the network or its training)
name the file, so new data or new code never reuse an old judge.

>>> import tempfile
>>> clf = load_classifier("digits", cache_dir=tempfile.mkdtemp())
>>> clf.test_accuracy >= 0.95, clf.probs(np.zeros((2, 64))).shape, clf.features(np.zeros((2, 8, 8))).shape
(True, (2, 10), (2, 64))
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cache import cache_dir as _cache_dir
from .cache import cached_bytes
from .common import EvaluationError, Split, as_images, dataset_spec, load_split

__all__ = ["VERSION", "CONFIGS", "ClassifierConfig", "DigitClassifier", "DigitNet", "Trained", "forget_loaded",
           "load_classifier", "train_classifier"]

#: Version of the classifier's code: part of the cache key, bumped when the network or its training changes.
VERSION = 1


@dataclass(frozen=True)
class ClassifierConfig:
    """The network (``blocks``: (channels, kernel, padding, max-pool after) per conv block;
    ``hidden``: the feature layer) and its training."""

    side: int
    blocks: tuple[tuple[int, int, int, bool], ...]
    hidden: int
    epochs: int
    batch_size: int
    max_lr: float
    dropout: float
    seed: int
    min_accuracy: float


CONFIGS: dict[str, ClassifierConfig] = {
    "mnist": ClassifierConfig(side=28, blocks=((16, 5, 0, True), (32, 5, 0, True)), hidden=128, epochs=4,
                              batch_size=128, max_lr=3e-3, dropout=0.25, seed=0, min_accuracy=0.99),
    "digits": ClassifierConfig(side=8, blocks=((16, 3, 1, True), (32, 3, 1, False)), hidden=64, epochs=10,
                               batch_size=64, max_lr=3e-3, dropout=0.25, seed=0, min_accuracy=0.95),
}


class DigitNet(nn.Module):
    """The conv net of a :class:`ClassifierConfig`: ``features(x)`` is the penultimate layer,
    ``forward(x)`` the logits. Input ``(N, 1, side, side)`` or flat ``(N, side*side)``.

    >>> net = DigitNet(CONFIGS["digits"])
    >>> tuple(net(torch.zeros(3, 64)).shape), tuple(net.features(torch.zeros(3, 64)).shape)
    ((3, 10), (3, 64))
    """

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.side = config.side
        layers: list[nn.Module] = []
        channels = 1
        for out, kernel, padding, pool in config.blocks:
            layers += [nn.Conv2d(channels, out, kernel, padding=padding), nn.BatchNorm2d(out), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2))
            channels = out
        layers.append(nn.Flatten())
        self.body = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.body(torch.zeros(1, 1, config.side, config.side)).shape[1]
        self.hidden = nn.Sequential(nn.Linear(flat, config.hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.hidden, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.body(x.reshape(x.shape[0], 1, self.side, self.side)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def _predict(net: DigitNet, x: np.ndarray, batch: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features of ``x`` ``(N, d)`` (float32 in [0, 1]), in evaluation mode."""
    was_training = net.training
    net.eval()
    logits, feats = [], []
    try:
        for i in range(0, x.shape[0], batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32))
            f = net.features(xb)
            feats.append(f.numpy().astype(np.float64))
            logits.append(net.head(f).numpy().astype(np.float64))
    finally:
        net.train(was_training)
    return np.concatenate(logits), np.concatenate(feats)


class Trained(NamedTuple):
    """What :func:`train_classifier` returns."""

    net: DigitNet
    accuracy: float
    seconds: float
    cpu_seconds: float


def train_classifier(split: Split, config: ClassifierConfig,
                     progress: Callable[[str], None] | None = None) -> Trained:
    """Train a :class:`DigitNet` on ``split``'s training images (deterministically: seed, one
    thread, CPU); returns the network (in evaluation mode), its test accuracy, and the wall-clock
    and CPU seconds it took (on a shared machine the CPU time is the one to compare).

    >>> from lagrangian_family.evaluate.common import load_split
    >>> from dataclasses import replace
    >>> t = train_classifier(load_split("digits"), replace(CONFIGS["digits"], epochs=1))
    >>> 0.0 <= t.accuracy <= 1.0 and t.cpu_seconds > 0
    True
    """
    start, cpu = time.perf_counter(), time.process_time()
    x = torch.from_numpy(np.ascontiguousarray(split.x_train, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(split.y_train, dtype=np.int64))
    n = x.shape[0]
    bs = min(config.batch_size, n)
    per_epoch = n // bs
    with torch.random.fork_rng(devices=[]), _one_thread():
        torch.manual_seed(config.seed)
        net = DigitNet(config)
        order = torch.Generator().manual_seed(config.seed)
        opt = torch.optim.Adam(net.parameters(), lr=config.max_lr / 25)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.max_lr, total_steps=config.epochs * per_epoch)
        net.train()
        for epoch in range(config.epochs):
            perm = torch.randperm(n, generator=order)
            for i in range(per_epoch):
                idx = perm[i * bs:(i + 1) * bs]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if progress is not None and (config.epochs <= 10 or (epoch + 1) % 10 == 0):
                progress(f"  epoch {epoch + 1}/{config.epochs}: loss {loss.item():.4f}")
        net.eval()
        logits, _ = _predict(net, split.x_test)
    accuracy = float((logits.argmax(axis=1) == split.y_test).mean())
    return Trained(net, accuracy, time.perf_counter() - start, time.process_time() - cpu)


class DigitClassifier:
    """A trained judge of digit images: :meth:`probs`, :meth:`predict`, :meth:`features`.

    Attributes: ``dataset``, ``test_accuracy`` (on the held-out test split), ``train_seconds`` and
    ``train_cpu_seconds`` (when it was trained), ``key`` (its cache file's name), ``sha256`` (of its stored payload),
    ``data_sha256`` (of the data it was trained on), ``path`` (its cache file), ``trained_now``.
    Inputs: anything :func:`~.common.as_images` accepts for the dataset.
    """

    def __init__(self, dataset: str, net: DigitNet, *, test_accuracy: float, train_seconds: float,
                 train_cpu_seconds: float, key: str,
                 sha256: str, data_sha256: str, path: Path, trained_now: bool):
        self.dataset = dataset
        self.net = net.eval()
        self.test_accuracy = test_accuracy
        self.train_seconds = train_seconds
        self.train_cpu_seconds = train_cpu_seconds
        self.key = key
        self.sha256 = sha256
        self.data_sha256 = data_sha256
        self.path = path
        self.trained_now = trained_now

    def __repr__(self) -> str:
        return f"DigitClassifier({self.dataset!r}, test_accuracy={self.test_accuracy:.4f}, key={self.key!r})"

    def logits(self, images) -> np.ndarray:
        """Class logits ``(N, 10)``."""
        return _predict(self.net, as_images(images, self.dataset))[0]

    def probs(self, images) -> np.ndarray:
        """Class probabilities ``(N, 10)`` (float64, rows sum to 1)."""
        logits = self.logits(images)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, images) -> np.ndarray:
        """The predicted digit of each image ``(N,)``."""
        return self.logits(images).argmax(axis=1)

    def features(self, images) -> np.ndarray:
        """The penultimate layer ``(N, hidden)`` (float64): the space of the Fréchet distance."""
        return _predict(self.net, as_images(images, self.dataset))[1]

    def probs_and_features(self, images) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`probs` and :meth:`features` in one pass."""
        logits, feats = _predict(self.net, as_images(images, self.dataset))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True), feats


def _fresh_net(config: ClassifierConfig) -> DigitNet:
    """A network to load weights into, built without drawing from the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        return DigitNet(config)


def _serialise(dataset: str, config: ClassifierConfig, data_sha: str, net: DigitNet, accuracy: float,
               seconds: float, cpu_seconds: float) -> bytes:
    buf = io.BytesIO()
    torch.save({"version": VERSION, "dataset": dataset, "config": asdict(config), "data_sha256": data_sha,
                "test_accuracy": accuracy, "train_seconds": seconds,
                "train_cpu_seconds": cpu_seconds, "torch": str(torch.__version__),
                "state_dict": net.state_dict()}, buf)
    return buf.getvalue()


def _deserialise(payload: bytes) -> dict:
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def _matches(payload: bytes, dataset: str, config: ClassifierConfig, data_sha: str) -> bool:
    try:
        d = _deserialise(payload)
        if not (d["version"] == VERSION and d["dataset"] == dataset and d["data_sha256"] == data_sha
                and _as_config(d["config"]) == config):
            return False
        _fresh_net(config).load_state_dict(d["state_dict"])  # the weights fit the network
        return all(math.isfinite(float(d[k])) for k in ("test_accuracy", "train_seconds", "train_cpu_seconds"))
    except Exception:  # any unreadable payload is rebuilt
        return False


def _as_config(d: dict) -> ClassifierConfig:
    d = dict(d)
    d["blocks"] = tuple(tuple(b) for b in d["blocks"])
    return ClassifierConfig(**d)


def _key(dataset: str, data_sha: str) -> str:
    return f"{dataset}-classifier-v{VERSION}-{data_sha[:16]}.pt"


#: Classifiers loaded in this process, by (dataset, data folder, cache folder).
_LOADED: dict[tuple[str, str | None, str], DigitClassifier] = {}


def forget_loaded() -> None:
    """Forget the classifiers loaded in this process (the next :func:`load_classifier` reads the cache again).

    >>> forget_loaded()
    """
    _LOADED.clear()


def _load(dataset: str, data_dir: str | None, folder: str, progress: Callable[[str], None] | None) -> DigitClassifier:
    config = CONFIGS[dataset]
    split = load_split(dataset, data_dir)
    key = _key(dataset, split.sha256)
    path = Path(folder) / key
    trained: dict = {}

    def build() -> bytes:
        net, accuracy, seconds, cpu_seconds = train_classifier(split, config, progress)
        if accuracy < config.min_accuracy:
            raise EvaluationError(
                f"the {dataset} classifier reached only {accuracy:.4f} test accuracy after training",
                expected=f"at least {config.min_accuracy} on the held-out test split",
                given=f"{accuracy:.4f} (trained on {split.source})",
                fix="check the data files (lagrangian_family.data checks MNIST's checksums); nothing was cached")
        trained["net"] = net
        return _serialise(dataset, config, split.sha256, net, accuracy, seconds, cpu_seconds)

    def announce() -> None:
        if progress is not None:
            progress(f"training the {dataset} digit classifier once (cached as {path})")

    payload, built = cached_bytes(path, build, valid=lambda p: _matches(p, dataset, config, split.sha256),
                                  on_build=announce)
    d = _deserialise(payload)
    net = trained.get("net")
    if net is None:
        net = _fresh_net(config)
        net.load_state_dict(d["state_dict"])
    if progress is not None and built:
        progress(f"  test accuracy {d['test_accuracy']:.4f} in {d['train_seconds']:.1f} s "
                 f"({d['train_cpu_seconds']:.1f} CPU s)")
    return DigitClassifier(dataset, net, test_accuracy=float(d["test_accuracy"]),
                           train_seconds=float(d["train_seconds"]),
                           train_cpu_seconds=float(d["train_cpu_seconds"]), key=key,
                           sha256=hashlib.sha256(payload).hexdigest(), data_sha256=split.sha256, path=path,
                           trained_now=built)


def load_classifier(dataset: str = "mnist", *, data_dir=None, cache_dir=None,
                    progress: Callable[[str], None] | None = None) -> DigitClassifier:
    """The digit classifier of ``dataset`` ("mnist" or "digits"): read from the cache, or trained
    (on the training split of ``data_dir``'s MNIST, or the digits) and cached. Loaded once per
    process (:func:`forget_loaded` forgets).

    ``cache_dir`` defaults to :func:`~.cache.cache_dir` (``$LAGFAM_CACHE``, ...); ``progress``
    (e.g. ``print``) hears about training.
    """
    spec = dataset_spec(dataset)
    if spec.name == "mnist" and data_dir is not None:
        from lagrangian_family.data import _as_path

        data_dir = str(_as_path(data_dir, "data_dir").resolve())
    else:
        data_dir = None
    memo = (spec.name, data_dir, str(_cache_dir(cache_dir).resolve()))
    if memo not in _LOADED:
        _LOADED[memo] = _load(*memo, progress)
    return _LOADED[memo]
