"""Named data sources: what a model file stores instead of a second domain's images."""

from __future__ import annotations

import numpy as np
import pytest

from lagrangian_family import data_sources as ds
from lagrangian_family.data import DataError, load_digits


def test_digits_splits_partition_the_data():
    x, _ = load_digits()
    tr = ds.resolve_source({"dataset": "digits", "split": "train"})
    te = ds.resolve_source({"dataset": "digits", "split": "test"})
    assert tr.shape == (1497, 64) and te.shape == (300, 64)
    rows = {r.tobytes() for r in x}
    assert {r.tobytes() for r in tr} | {r.tobytes() for r in te} == rows
    assert np.array_equal(ds.resolve_source({"dataset": "digits", "split": "all"}), x)


def test_registered_transforms_apply_in_order(monkeypatch):
    monkeypatch.setitem(ds.TRANSFORMS, "invert", lambda im: 1.0 - im)
    monkeypatch.setitem(ds.TRANSFORMS, "half", lambda im: im / 2)
    x = ds.resolve_source({"dataset": "digits", "split": "all"})
    y = ds.resolve_source({"dataset": "digits", "split": "all", "transform": ["invert", "half"]})
    assert np.allclose(y, (1.0 - x) / 2)


def test_mnist_source_reads_the_idx_files(tmp_path):
    from lagrangian_family.data import default_data_root

    root = default_data_root()
    if root is None:
        pytest.skip("no MNIST folder on this machine")
    x = ds.resolve_source({"dataset": "mnist", "split": "test"}, root)
    assert x.shape == (10000, 784) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
    with pytest.raises(DataError):
        ds.resolve_source({"dataset": "mnist", "split": "test"}, tmp_path)  # a folder without MNIST


@pytest.mark.parametrize("source, match", [
    ({"dataset": "mnsit"}, "did you mean 'mnist'"),
    ({"dataset": "digits", "transform": "rot91"}, "unknown transform"),
    ({"dataset": "digits", "split": "valid"}, "unknown split"),
    ({"dataset": "digits", "colour": "red"}, "options"),
    ({"split": "train"}, "dataset"),
    ("mnist", "dataset"),
    ({"dataset": "digits", "transform": object()}, "JSON"),
])
def test_bad_sources_are_typed_errors(source, match):
    with pytest.raises(DataError, match=match):
        ds.resolve_source(source)
