"""The data module: IDX parsing, MNIST from the shared folder, digits, binarisation.

Only local files: the shared MNIST folder (checked against its SHA256SUMS and the per-class
counts of its README) and small IDX files written to tmp_path.
"""

from __future__ import annotations

import gzip
import hashlib
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

from lagrangian_family import data
from lagrangian_family.data import DataError, binarize, load_digits, load_mnist, parse_idx, read_idx
from lagrangian_family.errors import ObjectiveError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (SHARED_MNIST / "SHA256SUMS.uncompressed").exists(),
                                 reason="the shared MNIST folder is not here")

# /work/shared/data/README.md
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file written by hand: 00 00 08 ndim, big-endian uint32 sizes, the bytes."""
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_mnist(folder: pathlib.Path, split="train", n=5, *, style="-", gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = {"train": "train", "test": "t10k"}[split]
    for kind, arr, k in (("images", images, 3), ("labels", labels, 1)):
        name = f"{prefix}-{kind}{style}idx{k}-ubyte" + (".gz" if gz else "")
        raw = idx_bytes(arr)
        (folder / name).write_bytes(gzip.compress(raw) if gz else raw)
    return images, labels


# -- the shared MNIST folder --------------------------------------------------------------------

@needs_mnist
def test_shared_files_match_their_checksums():
    sums = {}
    for line in (SHARED_MNIST / "SHA256SUMS.uncompressed").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    assert len(sums) == 4
    for name, digest in sums.items():
        raw = gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == digest
        # the module's own table has the same digests under the dash names
        assert data.MNIST_SHA256[name.replace(".idx", "-idx")] == digest


@needs_mnist
@pytest.mark.parametrize(("split", "counts"), [("train", TRAIN_COUNTS), ("test", TEST_COUNTS)])
def test_load_mnist_shapes_and_class_counts(split, counts):
    images, labels = load_mnist(SHARED_MNIST, split)
    n = sum(counts)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == counts
    assert images.max() == 255 and images.min() == 0


@needs_mnist
def test_default_root_finds_the_shared_folder(monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    assert data.default_data_root().resolve() == SHARED_MNIST.resolve()
    images, labels = load_mnist(split="test")
    assert images.shape[0] == labels.shape[0] == 10000


def test_env_var_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data.default_data_root() == tmp_path
    (tmp_path / "mnist").mkdir()
    assert data.default_data_root() == tmp_path / "mnist"
    images, labels = write_mnist(tmp_path / "mnist", "test", n=3)
    got_images, got_labels = load_mnist(split="test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


# -- IDX parsing on crafted files -----------------------------------------------------------------

@pytest.mark.parametrize("style", ["-", "."])
@pytest.mark.parametrize("gz", [False, True])
def test_every_file_name_style(tmp_path, style, gz):
    images, labels = write_mnist(tmp_path, "train", n=4, style=style, gz=gz)
    got_images, got_labels = load_mnist(tmp_path, "train")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable


def test_parse_idx_by_hand():
    # 2 x 3 unsigned bytes
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(parse_idx(raw), [[1, 2, 3], [4, 5, 6]])
    # big-endian int32 (type 0x0C): 258 = 0x00000102
    raw = bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 1, 2])
    out = parse_idx(raw)
    assert out.tolist() == [258] and out.dtype == np.int32 and out.dtype.isnative
    # big-endian float32 (type 0x0D): 1.5 = 0x3FC00000
    raw = bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0xC0, 0, 0])
    assert parse_idx(raw).tolist() == [1.5]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "too short"),
        (bytes([1, 2, 8, 1, 0, 0, 0, 1, 7]), "bad magic number"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 7]), "bad magic number"),
        (bytes([0, 0, 8, 0]), "bad magic number"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 2]), "truncated inside its header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 7, 8]), "longer than its header says"),
    ],
)
def test_corrupt_idx(tmp_path, raw, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "download_mnist" in str(info.value)
    assert isinstance(info.value, ObjectiveError)


def test_truncated_gzip(tmp_path):
    write_mnist(tmp_path, "test", n=3, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="damaged gzip") as info:
        load_mnist(tmp_path, "test")
    assert str(path) in str(info.value)


def test_gzip_of_a_truncated_idx(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2])))
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match="no MNIST train images file") as info:
        load_mnist(tmp_path, "train")
    text = str(info.value)
    assert str(tmp_path) in text and "train-images-idx3-ubyte" in text and "train-images.idx3-ubyte.gz" in text
    assert "download_mnist" in text and "LAGFAM_DATA" in text
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere", "train")


def test_inconsistent_files(tmp_path):
    write_mnist(tmp_path, "train", n=4)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3)))
    with pytest.raises(DataError, match="disagree on the number of examples"):
        load_mnist(tmp_path, "train")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(4, 12)))
    with pytest.raises(DataError, match="labels outside 0..9"):
        load_mnist(tmp_path, "train")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((4, 8, 8))))
    with pytest.raises(DataError, match="does not hold MNIST images"):
        load_mnist(tmp_path, "train")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_mnist(tmp_path, "valid")


def test_zero_images_and_folders_that_are_files(tmp_path):
    write_mnist(tmp_path, "train", n=0)
    with pytest.raises(DataError, match="holds no images") as info:
        load_mnist(tmp_path, "train")
    assert str(tmp_path / "train-images-idx3-ubyte") in str(info.value) and "fix: delete it" in str(info.value)
    a_file = tmp_path / "train-images-idx3-ubyte"
    with pytest.raises(DataError, match="the folder is a file, not a folder"):
        load_mnist(a_file, "train")


def test_an_unreadable_folder_is_a_data_error(tmp_path, monkeypatch):
    """The mapping of the OS error (the real permission case runs in tests/test_cli.py)."""
    write_mnist(tmp_path, "train")

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data.os, "listdir", denied)
    with pytest.raises(DataError, match=f"cannot read the MNIST folder {tmp_path}: Permission denied") as info:
        load_mnist(tmp_path, "train")
    assert "chmod u+rx" in str(info.value)


def test_experiment_data_folder_errors_are_data_errors(tmp_path):
    pytest.importorskip("torch")
    from lagrangian_family.experiments.datasets import check_mnist_dir, load

    with pytest.raises(DataError, match="does not exist") as info:
        load("mnist", tmp_path / "absent")
    assert "--budget smoke" in str(info.value)
    with pytest.raises(DataError, match="no MNIST train images file"):
        check_mnist_dir(tmp_path, validate=True)
    with pytest.raises(ObjectiveError, match="unknown dataset 'cifar'"):
        load("cifar")


# -- download (from a local file:// mirror) -------------------------------------------------------

def make_mirror(folder: pathlib.Path):
    folder.mkdir()
    sums = {}
    for split in ("train", "test"):
        images, labels = write_mnist(folder, split, n=3, gz=True, seed=len(split))
        prefix = {"train": "train", "test": "t10k"}[split]
        sums[f"{prefix}-images-idx3-ubyte"] = hashlib.sha256(idx_bytes(images)).hexdigest()
        sums[f"{prefix}-labels-idx1-ubyte"] = hashlib.sha256(idx_bytes(labels)).hexdigest()
    return folder.as_uri() + "/", sums


def test_download_from_a_local_mirror(tmp_path):
    mirror, sums = make_mirror(tmp_path / "mirror")
    target = tmp_path / "data"
    bad = (tmp_path / "empty").as_uri() + "/"
    assert data.download_mnist(target, mirrors=[bad, mirror], checksums=sums) == target
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(f"{stem}.gz" for stem in sums)  # nothing half-written left
    images, labels = load_mnist(target, "test")
    assert images.shape == (3, 28, 28)
    # a second call finds everything in place and fetches nothing
    data.download_mnist(target, mirrors=[bad], checksums=sums)


def test_download_rejects_wrong_content_and_leaves_nothing(tmp_path):
    mirror, sums = make_mirror(tmp_path / "mirror")
    wrong = {k: "0" * 64 for k in sums}
    target = tmp_path / "data"
    with pytest.raises(DataError, match="could not download") as info:
        data.download_mnist(target, mirrors=[mirror], checksums=wrong)
    assert "expected content" in str(info.value)
    assert list(target.iterdir()) == []
    # a corrupt file on the mirror is rejected too
    (tmp_path / "mirror" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz"):
        data.download_mnist(target, mirrors=[mirror], checksums=None)
    assert [p.name for p in target.iterdir() if p.name.startswith(".")] == []


# -- digits, binarisation, tensors ---------------------------------------------------------------

def test_load_digits():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.shape == (1797,) and set(np.unique(y).tolist()) == set(range(10))


def test_binarize_fixed():
    x = np.array([[0.0, 0.49, 0.5, 0.51, 1.0]])
    np.testing.assert_array_equal(binarize(x, mode="fixed"), [[0, 0, 0, 1, 1]])
    np.testing.assert_array_equal(binarize(np.array([0, 127, 128, 255], dtype=np.uint8), mode="fixed"), [0, 0, 1, 1])


def test_binarize_stochastic():
    x = np.full(200_000, 0.3)
    b = binarize(x, rng=np.random.default_rng(0))
    assert set(np.unique(b).tolist()) == {0.0, 1.0}
    # Bernoulli(0.3): the mean is within 5 standard deviations sqrt(.3 * .7 / n) ~ 0.001
    assert abs(b.mean() - 0.3) < 0.006
    np.testing.assert_array_equal(binarize(x[:100], rng=7), binarize(x[:100], rng=7))
    assert binarize(np.zeros(10), rng=0).sum() == 0 and binarize(np.ones(10), rng=0).sum() == 10
    with pytest.raises(DataError, match="outside"):
        binarize(np.array([1.5]))
    with pytest.raises(DataError, match="unknown binarisation mode"):
        binarize(x, mode="otsu")


def test_binarize_torch():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    x = torch.full((50_000,), 0.7, dtype=torch.float64)
    b = binarize(x, rng=g)
    assert b.dtype == torch.float64 and abs(float(b.mean()) - 0.7) < 0.012
    assert binarize(torch.tensor([10, 200], dtype=torch.uint8), mode="fixed").tolist() == [0.0, 1.0]
    t_x, t_y = data.as_tensors(np.zeros((2, 4), dtype=np.float32), np.arange(2))
    assert tuple(t_x.shape) == (2, 4) and t_y.dtype == torch.int64


def test_import_is_numpy_only():
    code = "import sys, lagrangian_family.data; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]


# -- bad arguments: DataError with expected / given / fix, never a raw TypeError or ValueError ------

def assert_explains(err: DataError, *words: str) -> None:
    msg = str(err)
    assert isinstance(err, ObjectiveError)
    assert "expected:" in msg and "given:" in msg and "fix:" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("call", [lambda: load_mnist(3), lambda: data.find_mnist_file(3.5, "train", "images"),
                                  lambda: read_idx(None), lambda: data.download_mnist(["a"])])
def test_paths_that_are_not_paths(call):
    with pytest.raises(DataError) as info:
        call()
    assert_explains(info.value, "is not a path", "str")


@pytest.mark.parametrize("split", [3, ["train"], None])
def test_splits_that_are_not_names(split, tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, split)
    assert_explains(info.value, "unknown split", "'train'")


@pytest.mark.parametrize("fn", [binarize, data.to_unit_interval])
@pytest.mark.parametrize("bad, given", [("abc", "str 'abc'"), ([[0.1, 0.2], [0.3]], "list"), (None, "NoneType"),
                                        (np.array(["0.1"]), "ndarray")])
def test_non_numeric_images(fn, bad, given):
    with pytest.raises(DataError) as info:
        fn(bad)
    assert_explains(info.value, "array of numbers", given)


def test_bad_random_generators():
    with pytest.raises(DataError) as info:
        binarize(np.full(3, 0.5), rng="abc")
    assert_explains(info.value, "random generator", "str 'abc'")
    torch = pytest.importorskip("torch")
    with pytest.raises(DataError) as info:
        binarize(torch.full((3,), 0.5), rng=0)
    assert_explains(info.value, "torch.Generator", "int")


def test_binarize_integer_tensors_and_bool_arrays():
    torch = pytest.importorskip("torch")
    assert binarize(torch.tensor([0, 1, 1])).tolist() == [0.0, 1.0, 1.0]
    np.testing.assert_array_equal(binarize(np.array([True, False]), rng=0), [1.0, 0.0])
