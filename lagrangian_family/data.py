"""Data for the paper's experiments: MNIST from IDX files, scikit-learn's digits, binarisation.

MNIST is read from a folder holding the four IDX files of LeCun, Cortes and Burges, gzipped or
not, named with a dash (``train-images-idx3-ubyte``, as on the public mirrors) or a dot
(``train-images.idx3-ubyte``); the IDX headers are parsed here with numpy (no torchvision).
:func:`download_mnist` fetches the files from public mirrors; nothing else touches the network.
:func:`load_digits` is the no-download default: scikit-learn's 1,797 8x8 digits.

Importing this module imports numpy only; :func:`as_tensors` imports torch when called.

>>> import numpy as np
>>> x = np.array([[0.2, 0.7]])
>>> binarize(x, mode="fixed")
array([[0., 1.]], dtype=float32)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from lagrangian_family.errors import ObjectiveError

#: Environment variable naming the data folder (the MNIST folder itself, or a folder holding ``mnist/``).
DATA_ENV = "LAGFAM_DATA"

#: SHA-256 of the four decompressed MNIST files (the dash names; the content is the same for dot names).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Public mirrors of the gzipped MNIST files, tried in order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_SPLITS = {"train": "train", "test": "t10k"}
_KINDS = {"images": 3, "labels": 1}
#: IDX type codes (third byte of the magic number) and their big-endian numpy types
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_HOW_TO_GET = (
    "put the four MNIST IDX files (gzipped or not) in that folder, call "
    "lagrangian_family.data.download_mnist(folder), or set LAGFAM_DATA to the folder"
)


class DataError(ObjectiveError):
    """A data file is missing, unreadable or not what it claims to be.

    >>> issubclass(DataError, ObjectiveError)
    True
    """


# -- locating the data -------------------------------------------------------------------------

def default_data_root() -> Path | None:
    """The MNIST folder to use when none is given, or None.

    ``$LAGFAM_DATA`` first (its ``mnist/`` subfolder when it has one, else the folder itself),
    then ``../shared/data/mnist`` next to the repository holding this package.

    >>> root = default_data_root()
    >>> root is None or root.is_dir()
    True
    """
    env = os.environ.get(DATA_ENV)
    if env:
        base = Path(env).expanduser()
        return base / "mnist" if (base / "mnist").is_dir() else base
    repo = Path(__file__).resolve().parents[1]
    for candidate in (repo.parent / "shared" / "data" / "mnist", repo / "data" / "mnist"):
        if candidate.is_dir():
            return candidate
    return None


def mnist_file_names(split: str, kind: str) -> list[str]:
    """The names an MNIST file may have, in the order they are looked for.

    >>> mnist_file_names("test", "labels")[:2]
    ['t10k-labels-idx1-ubyte', 't10k-labels.idx1-ubyte']
    """
    _check_choice("split", split, _SPLITS)
    _check_choice("kind", kind, _KINDS)
    prefix, n = _SPLITS[split], _KINDS[kind]
    stems = [f"{prefix}-{kind}-idx{n}-ubyte", f"{prefix}-{kind}.idx{n}-ubyte"]
    return stems + [s + ".gz" for s in stems]


def _check_choice(name: str, value, choices) -> None:
    if not isinstance(value, str) or value not in choices:
        raise DataError(f"unknown {name} {value!r}", expected=" or ".join(map(repr, choices)),
                        given=repr(value), fix=f"pass {name}={next(iter(choices))!r}")


def _as_path(value, what: str) -> Path:
    """``value`` (a str or os.PathLike) as a Path, else a :class:`DataError`."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value).expanduser()
    raise DataError(f"{what}={value!r} is not a path", expected="a folder or file path: a str or a pathlib.Path",
                    given=f"{type(value).__name__} {value!r}", fix=f"pass {what} as a string, e.g. 'data/mnist'")


def find_mnist_file(root, split: str, kind: str) -> Path:
    """The path of one MNIST file in ``root`` (any of the accepted names), or a :class:`DataError`.

    >>> import tempfile
    >>> try:
    ...     find_mnist_file(tempfile.mkdtemp(), "train", "images")
    ... except DataError as e:
    ...     print(str(e).splitlines()[0].split(" in ")[0])
    no MNIST train images file
    """
    folder = _as_path(root, "root")
    names = mnist_file_names(split, kind)
    try:
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            raise DataError(f"no MNIST {split} {kind} file in {folder}: the folder {what}",
                            expected=f"a folder holding one of {', '.join(names)}", given=str(folder),
                            fix=_HOW_TO_GET)
        present = set(os.listdir(folder))
        for name in names:
            path = folder / name
            if name in present and path.is_file():
                return path
    except OSError as e:  # a folder we may not list or enter
        raise DataError(f"cannot read the MNIST folder {folder}: {e.strerror or e}",
                        expected="a folder you can read (list and open its files)", given=str(e),
                        fix=f"check its permissions (chmod u+rx {folder}), or " + _HOW_TO_GET) from e
    raise DataError(
        f"no MNIST {split} {kind} file in {folder}",
        expected="one of " + ", ".join(names),
        given="a folder without them",
        fix=_HOW_TO_GET,
    )


# -- reading IDX files -------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}", expected="a readable IDX file", given=str(e), fix=_HOW_TO_GET) from e
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is a damaged gzip file", expected="a complete gzip stream",
                        given=f"{type(e).__name__}: {e}",
                        fix="delete it and " + _HOW_TO_GET) from e


def parse_idx(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """An IDX array from its bytes: magic 0x0000, a type byte, the number of dimensions, then
    that many big-endian uint32 sizes and the data (big-endian).

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    array([7, 8, 9], dtype=uint8)
    """
    if len(data) < 4:
        raise DataError(f"{name} is too short to be an IDX file", expected="at least a 4-byte magic number",
                        given=f"{len(data)} bytes", fix="delete it and " + _HOW_TO_GET)
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise DataError(
            f"{name} is not an IDX file (bad magic number)",
            expected="a magic number 00 00 <type 08/09/0B/0C/0D/0E> <number of dimensions >= 1>",
            given="magic " + data[:4].hex(" "),
            fix="delete it and " + _HOW_TO_GET,
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated inside its header", expected=f"{header} header bytes",
                        given=f"{len(data)} bytes", fix="delete it and " + _HOW_TO_GET)
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    need = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != need:
        what = "truncated" if len(data) < need else "longer than its header says"
        raise DataError(f"{name} is {what}", expected=f"{need} bytes for an array of shape {dims}",
                        given=f"{len(data)} bytes", fix="delete it and " + _HOW_TO_GET)
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not; gzip is recognised by its magic bytes).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.idx1-ubyte"
    >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 4, 2]))
    >>> read_idx(p)
    array([4, 2], dtype=uint8)
    """
    path = _as_path(path, "path")
    return parse_idx(_read_bytes(path), name=str(path))


# -- MNIST -------------------------------------------------------------------------------------

def load_mnist(root=None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (uint8, (N, 28, 28), 0 = background) and labels (uint8, (N,)).

    ``root`` is the folder of IDX files (default :func:`default_data_root`); ``split`` is
    "train" (60,000 images) or "test" (10,000).

    >>> root = default_data_root()
    >>> if root is not None and (root / "t10k-labels.idx1-ubyte.gz").exists():
    ...     images, labels = load_mnist(root, "test")
    ...     assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    """
    _check_choice("split", split, _SPLITS)
    if root is None:
        root = default_data_root()
        if root is None:
            raise DataError("no MNIST folder was given and none was found",
                            expected=f"a folder of IDX files: load_mnist(root), ${DATA_ENV}, or ../shared/data/mnist",
                            given="root=None", fix=_HOW_TO_GET)
    root = _as_path(root, "root")
    images_path = find_mnist_file(root, split, "images")
    labels_path = find_mnist_file(root, split, "labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path} does not hold MNIST images", expected="unsigned bytes of shape (N, 28, 28)",
                        given=f"{images.dtype} of shape {images.shape}", fix="delete it and " + _HOW_TO_GET)
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path} does not hold MNIST labels", expected="unsigned bytes of shape (N,)",
                        given=f"{labels.dtype} of shape {labels.shape}", fix="delete it and " + _HOW_TO_GET)
    if images.shape[0] == 0:
        raise DataError(f"{images_path} holds no images", expected="an IDX file of at least one image",
                        given="a valid header of 0 images", fix="delete it and " + _HOW_TO_GET)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} and {labels_path} disagree on the number of examples",
                        expected="as many labels as images",
                        given=f"{images.shape[0]} images, {labels.shape[0]} labels",
                        fix="the two files come from different downloads: " + _HOW_TO_GET)
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path} has labels outside 0..9", expected="digits 0 to 9",
                        given=f"a label {int(labels.max())}", fix="delete it and " + _HOW_TO_GET)
    return images, labels


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_mnist(root, *, mirrors=MNIST_MIRRORS, checksums: dict | None = MNIST_SHA256,
                   timeout: float = 60.0) -> Path:
    """Download the four gzipped MNIST files into ``root`` (created if missing) and return it.

    Each file is fetched from the first mirror that serves it, written to a temporary file
    in ``root`` and checked (a readable IDX; the SHA-256 of its decompressed content against
    ``checksums`` when given) before being renamed into place, so no half-written file is
    ever left under an MNIST name. Files already present and valid are kept. Raises
    :class:`DataError` when a file cannot be fetched from any mirror. ``mirrors`` are URL
    prefixes (``file://`` works too, for a local copy).

    >>> download_mnist("~/data/mnist")  # doctest: +SKIP
    PosixPath('/home/me/data/mnist')
    """
    folder = _as_path(root, "root")
    folder.mkdir(parents=True, exist_ok=True)
    for split in _SPLITS:
        for kind in _KINDS:
            stem = mnist_file_names(split, kind)[0]
            try:
                existing = find_mnist_file(folder, split, kind)
                data = _read_bytes(existing)
                parse_idx(data, name=str(existing))
                if checksums is None or _sha256(data) == checksums.get(stem):
                    continue
            except DataError:
                pass
            _fetch(folder, stem, mirrors, checksums, timeout)
    return folder


def _fetch(folder: Path, stem: str, mirrors, checksums, timeout: float) -> None:
    errors = []
    target = folder / f"{stem}.gz"
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + stem + ".gz"
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out)
            data = _read_bytes(Path(tmp))
            parse_idx(data, name=url)
            if checksums is not None and _sha256(data) != checksums.get(stem):
                raise DataError(f"{url} does not have the expected content", expected=checksums.get(stem, "?"),
                                given=_sha256(data), fix="try another mirror")
            os.replace(tmp, target)
            return
        except (OSError, ValueError) as e:  # URLError is an OSError; DataError a ValueError
            errors.append(f"{url}: {e}".splitlines()[0])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {stem}.gz", expected="one mirror serving the file",
                    given="; ".join(errors) or "no mirror", fix="check the network or copy the files by hand")


# -- scikit-learn's digits ----------------------------------------------------------------------

def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, flattened: images float32 (1797, 64) in [0, 1], labels int64.

    No download: the data ship with scikit-learn.

    >>> x, y = load_digits()
    >>> x.shape, float(x.max()), sorted(set(y.tolist())) == list(range(10))
    ((1797, 64), 1.0, True)
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is in the dev extras
        raise DataError("load_digits needs scikit-learn", expected="scikit-learn installed",
                        given="no module sklearn", fix="pip install scikit-learn") from e
    bunch = sk_load_digits()
    images = (np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 64)
    return images, np.asarray(bunch.target, dtype=np.int64)


# -- preprocessing ------------------------------------------------------------------------------

def _numeric_array(x, function: str) -> np.ndarray:
    """``x`` as a numpy array of numbers (bool, integer or float), else a :class:`DataError`."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:  # ragged nested sequences
        raise DataError(f"{function} needs an array of numbers", expected="a numpy array (or a nested list) of numbers",
                        given=f"{type(x).__name__}: {e}", fix="pass the images as a numpy array") from e
    if arr.dtype.kind not in "biuf":
        text = repr(x) if len(repr(x)) <= 40 else repr(x)[:37] + "..."
        raise DataError(f"{function} needs an array of numbers",
                        expected="a numpy array of intensities: uint8 in 0..255 or floats in [0, 1]",
                        given=f"{type(x).__name__} {text} (dtype {arr.dtype})",
                        fix="pass the images as a numpy array, e.g. load_mnist(root)[0]")
    return arr


def to_unit_interval(images) -> np.ndarray:
    """Images as float32 in [0, 1], one row per image: uint8 is divided by 255.

    >>> to_unit_interval(np.array([[[0, 255]]], dtype=np.uint8))
    array([[0., 1.]], dtype=float32)
    """
    x = _numeric_array(images, "to_unit_interval")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x.reshape(x.shape[0], -1) if x.ndim > 1 else x


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def binarize(x, mode: str = "stochastic", rng=None):
    """Binary images from intensities in [0, 1] (uint8 is read as intensity / 255).

    ``mode="fixed"``: 1 where the intensity is > 0.5; ``mode="stochastic"``: a Bernoulli draw
    with the intensity as probability, from ``rng`` (a numpy Generator or seed; for a torch
    tensor, a ``torch.Generator`` or None). Numpy input gives float32 numpy output; a torch
    tensor gives a tensor of its floating dtype on its device.

    >>> b = binarize(np.full((2, 3), 0.5), rng=0)
    >>> b.dtype, set(np.unique(b).tolist()) <= {0.0, 1.0}
    (dtype('float32'), True)
    """
    if mode not in ("stochastic", "fixed"):
        raise DataError(f"unknown binarisation mode {mode!r}", expected="'stochastic' or 'fixed'",
                        given=repr(mode), fix="pass mode='stochastic' (Bernoulli) or mode='fixed' (threshold 0.5)")
    if _is_torch(x):
        import torch

        if not isinstance(x, torch.Tensor):
            raise DataError("binarize needs an array or a tensor of intensities",
                            expected="a numpy array or a torch.Tensor", given=type(x).__name__,
                            fix="pass a torch.Tensor, or torch.as_tensor(x)")
        if x.dtype.is_complex:
            raise DataError("binarize needs real intensities", expected="a real tensor: uint8 or floats in [0, 1]",
                            given=f"a tensor of dtype {x.dtype}", fix="pass the real part, or the images themselves")
        if rng is not None and not isinstance(rng, torch.Generator):
            raise DataError("a bad random generator for a torch tensor", expected="a torch.Generator or None",
                            given=type(rng).__name__, fix="pass rng=torch.Generator().manual_seed(0), or binarize "
                            "a numpy array with a numpy Generator or seed")
        if x.dtype == torch.uint8:
            p = x.float() / 255.0
        else:
            p = x if x.is_floating_point() else x.to(torch.get_default_dtype())
        if mode == "fixed":
            return (p > 0.5).to(p.dtype)
        _check_range(float(p.min()) if p.numel() else 0.0, float(p.max()) if p.numel() else 0.0)
        return torch.bernoulli(p, generator=rng)
    arr = _numeric_array(x, "binarize")
    p = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if mode == "fixed":
        return (p > 0.5).astype(np.float32)
    if p.size:
        _check_range(float(p.min()), float(p.max()))
    try:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    except (TypeError, ValueError) as e:
        raise DataError("a bad random generator", expected="a numpy Generator, a non-negative integer seed or None",
                        given=f"{type(rng).__name__} {rng!r}", fix="pass rng=0, or rng=np.random.default_rng(0)") from e
    return (gen.random(p.shape, dtype=np.float32) < p).astype(np.float32)


def _check_range(lo: float, hi: float) -> None:
    if lo < 0 or hi > 1 or not np.isfinite(lo) or not np.isfinite(hi):
        raise DataError("intensities outside [0, 1] cannot be Bernoulli probabilities",
                        expected="values in [0, 1] (or uint8 in 0..255)", given=f"values in [{lo:g}, {hi:g}]",
                        fix="scale the images first, e.g. with to_unit_interval")


def as_tensors(*arrays, device=None, dtype=None):
    """The arrays as torch tensors (torch is imported here, not when the module is).

    >>> import numpy as np
    >>> t, = as_tensors(np.zeros((2, 3), dtype=np.float32))
    >>> tuple(t.shape)
    (2, 3)
    """
    import torch

    return tuple(torch.as_tensor(np.ascontiguousarray(a), device=device, dtype=dtype) for a in arrays)
