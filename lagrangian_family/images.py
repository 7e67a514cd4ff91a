"""Image grids as PNG files, without torchvision: samples, reconstructions, latent traversals.

Images are intensities in [0, 1] (``value_range`` maps another range; uint8 is read as 0..255),
given as flat rows ``(n, d)`` with ``d`` a square (784: 28x28 MNIST, 64: 8x8 digits; else pass
``image_shape``), ``(n, h, w)``, ``(n, c, h, w)`` or ``(n, h, w, c)`` with ``c`` 1 or 3, as a
numpy array or a torch tensor. Tiles are laid out ``nrow`` per row (torchvision's convention),
``padding`` pixels apart and around, on a ``pad_value`` background, and may be enlarged
``scale`` times (nearest neighbour: 8x8 digits are small). Files are written atomically.

Importing this module imports numpy only; Pillow is imported to write, torch only by
:func:`latent_traversal`.

>>> import numpy as np
>>> g = grid(np.zeros((5, 64)), nrow=3, padding=1)
>>> g.shape, g.dtype                     # 2 rows of 3 tiles of 8x8, 1 pixel apart and around
((19, 28), dtype('uint8'))
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lagrangian_family.errors import ObjectiveError

__all__ = ["ImageError", "as_images", "grid", "save_grid", "save_pairs", "latent_traversal", "read_png"]


class ImageError(ObjectiveError):
    """Images that cannot be laid out or written: a bad shape, range or path.

    >>> issubclass(ImageError, ObjectiveError)
    True
    """


def _numpy(images) -> np.ndarray:
    if hasattr(images, "detach") and hasattr(images, "cpu"):  # a torch tensor, without importing torch
        t = images.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        images = t.numpy()
    try:
        arr = np.asarray(images)
    except (TypeError, ValueError) as e:
        raise ImageError("images are not an array", expected="a numpy array or torch tensor of intensities",
                         given=f"{type(images).__name__}: {e}", fix="pass e.g. model.sample(64)") from e
    if arr.dtype.kind not in "biuf":
        raise ImageError("images are not numbers", expected="an array of intensities (floats in [0, 1] or uint8)",
                         given=f"dtype {arr.dtype}", fix="pass the images as a numeric array")
    return arr


def as_images(images, *, image_shape: Sequence[int] | None = None,
              value_range: tuple[float, float] = (0.0, 1.0), clip: bool = False) -> np.ndarray:
    """Images as float32 ``(n, h, w, c)`` in [0, 1] with ``c`` 1 or 3 (see the module docstring).

    Values outside ``value_range`` raise :class:`ImageError` unless ``clip=True``.

    >>> as_images(np.ones((2, 1, 3, 3))).shape
    (2, 3, 3, 1)
    """
    arr = _numpy(images)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ImageError("no images to lay out", expected="a batch (n, ...) with n >= 1",
                         given=f"an array of shape {arr.shape}", fix="pass at least one image")
    n = arr.shape[0]
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if math.prod(shape) != arr[0].size or len(shape) not in (2, 3):
            raise ImageError("image_shape does not fit the images",
                             expected=f"(h, w) or (c, h, w) with {arr[0].size} values", given=f"image_shape={shape}",
                             fix="pass e.g. image_shape=(28, 28)")
        arr = arr.reshape(n, *shape)
    elif arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise ImageError(f"flat images of {arr.shape[1]} values are not square",
                             expected="(n, d) with d a square (784 for 28x28, 64 for 8x8), or image_shape=",
                             given=f"shape {arr.shape}", fix="pass image_shape=(c, h, w) or (h, w)")
        arr = arr.reshape(n, side, side)
    if arr.ndim == 3:
        arr = arr[..., None]
    elif arr.ndim == 4:
        if arr.shape[1] in (1, 3):  # channels first (torch's layout) wins when both could be channels
            arr = arr.transpose(0, 2, 3, 1)
        elif arr.shape[-1] not in (1, 3):
            raise ImageError("images with an unknown channel layout", expected="(n, c, h, w) or (n, h, w, c), "
                             "c 1 or 3", given=f"shape {arr.shape}", fix="pass grey or RGB images")
    else:
        raise ImageError("images of an unknown layout", expected="(n, d), (n, h, w), (n, c, h, w) or (n, h, w, c)",
                         given=f"shape {arr.shape}", fix="reshape the batch")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ImageError("a bad value_range", expected="(low, high) with low < high", given=repr(value_range),
                         fix="pass value_range=(0.0, 1.0)")
    x = arr.astype(np.float64)
    if not np.isfinite(x).all():
        raise ImageError("images hold NaN or infinite values", expected="finite intensities",
                         given=f"{int((~np.isfinite(x)).sum())} non-finite values", fix="check the model's outputs")
    if not clip and (x.min() < lo - 1e-6 or x.max() > hi + 1e-6):
        raise ImageError(f"intensities outside [{lo:g}, {hi:g}]", expected=f"values in [{lo:g}, {hi:g}]",
                         given=f"values in [{x.min():g}, {x.max():g}]",
                         fix="pass value_range=(low, high), clip=True, or images scaled to [0, 1] (uint8 / 255)")
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def grid(images, *, nrow: int | None = None, padding: int = 2, pad_value: float = 0.5, scale: int = 1,
         image_shape: Sequence[int] | None = None, value_range: tuple[float, float] = (0.0, 1.0),
         clip: bool = False) -> np.ndarray:
    """The grid as a uint8 array ``(H, W)`` (grey) or ``(H, W, 3)``: ``nrow`` tiles per row (default
    ``ceil(sqrt(n))``), tile ``k`` at row ``k // nrow``, column ``k % nrow``.

    >>> g = grid(np.array([[0.0, 1.0, 1.0, 0.0]]), padding=0, scale=2)
    >>> g.tolist()
    [[0, 0, 255, 255], [0, 0, 255, 255], [255, 255, 0, 0], [255, 255, 0, 0]]
    """
    x = as_images(images, image_shape=image_shape, value_range=value_range, clip=clip)
    n, h, w, c = x.shape
    for name, v, low in (("nrow", nrow, 1), ("padding", padding, 0), ("scale", scale, 1)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low):
            raise ImageError(f"a bad {name}", expected=f"an integer >= {low}", given=repr(v), fix=f"pass {name}={low}")
    if not 0.0 <= float(pad_value) <= 1.0:
        raise ImageError("a bad pad_value", expected="an intensity in [0, 1]", given=repr(pad_value),
                         fix="pass pad_value=0.5")
    if scale > 1:
        x = x.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    cols = int(nrow) if nrow is not None else math.ceil(math.sqrt(n))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), float(pad_value), np.float32)
    for k in range(n):
        r, q = divmod(k, cols)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        out[top:top + h, left:left + w] = x[k]
    img = np.rint(out * 255.0).astype(np.uint8)
    return img[..., 0] if c == 1 else img


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError("a bad image path", expected="a str or os.PathLike", given=type(path).__name__,
                         fix="pass e.g. 'samples.png'")
    p = Path(path)
    if not p.parent.is_dir():
        raise ImageError(f"cannot write {p}: the folder {p.parent} does not exist", expected="a path in an existing "
                         "folder", given=str(p), fix=f"create it first (mkdir -p {p.parent})")
    if p.is_dir():
        raise ImageError(f"cannot write {p}: it is a folder", expected="a file path", given=str(p),
                         fix="name the PNG file, e.g. samples.png")
    return p


def _write_png(img: np.ndarray, path) -> Path:
    from PIL import Image

    from lagrangian_family.files import atomic_write  # a temporary left by a kill is removed by the next write

    p = _check_path(path)
    atomic_write(p, lambda f: Image.fromarray(img).save(f, format="PNG"))
    return p


def save_grid(images, path, *, nrow: int | None = None, padding: int = 2, pad_value: float = 0.5, scale: int = 1,
              image_shape: Sequence[int] | None = None, value_range: tuple[float, float] = (0.0, 1.0),
              clip: bool = False) -> Path:
    """Write ``images`` as one PNG grid (see :func:`grid`); returns the path.

    >>> import tempfile, os
    >>> path = save_grid(np.random.default_rng(0).random((16, 784)), os.path.join(tempfile.mkdtemp(), "g.png"), nrow=4)
    >>> read_png(path).shape              # 4 x 4 tiles of 28 x 28, padding 2
    (122, 122)
    """
    img = grid(images, nrow=nrow, padding=padding, pad_value=pad_value, scale=scale, image_shape=image_shape,
               value_range=value_range, clip=clip)
    return _write_png(img, path)


def save_pairs(top, bottom, path, *, nrow: int = 10, padding: int = 2, pad_value: float = 0.5, scale: int = 1,
               image_shape: Sequence[int] | None = None, value_range: tuple[float, float] = (0.0, 1.0),
               clip: bool = False) -> Path:
    """Write two aligned batches (originals and their reconstructions, images and their
    translations) as pairs of rows: ``nrow`` of ``top``, the same ``nrow`` of ``bottom`` below
    them, and so on (a short last pair of rows is filled with blank tiles). Options as
    :func:`save_grid`.

    >>> import tempfile, os
    >>> x = np.zeros((3, 4)); y = np.ones((3, 4))
    >>> img = read_png(save_pairs(x, y, os.path.join(tempfile.mkdtemp(), "p.png"), nrow=3, padding=0))
    >>> img[:, 0].tolist()                # a column: top tile (0), bottom tile (255)
    [0, 0, 255, 255]
    """
    a = as_images(top, image_shape=image_shape, value_range=value_range, clip=clip)
    b = as_images(bottom, image_shape=image_shape, value_range=value_range, clip=clip)
    if a.shape != b.shape:
        raise ImageError("the two batches of a pair grid differ in shape", expected="two batches of the same shape",
                         given=f"{a.shape} and {b.shape}", fix="pass the images and their reconstructions, aligned")
    if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
        raise ImageError("a bad nrow", expected="an integer >= 1", given=repr(nrow), fix="pass nrow=10")
    n = a.shape[0]
    cols = min(int(nrow), n)
    blank = np.full(a.shape[1:], float(pad_value), np.float32)
    tiles: list[np.ndarray] = []
    for i in range(0, n, cols):
        fill = [blank] * (cols - len(a[i:i + cols]))
        tiles += [*a[i:i + cols], *fill, *b[i:i + cols], *fill]
    return save_grid(np.stack(tiles), path, nrow=cols, padding=padding, pad_value=pad_value, scale=scale)


def latent_traversal(model, path=None, *, dims: Sequence[int] | None = None, values: Sequence[float] | None = None,
                     x=None, z=None, seed: int = 0, **options) -> np.ndarray:
    """Vary one latent coordinate per row from a base code, decode, and lay the images out.

    ``model``: a :class:`~lagrangian_family.backends.torch.model.Model` (``encode``, ``decode``,
    ``sample``-able prior). The base code is ``z`` if given, else the encoding of the image
    ``x``, else one draw of the prior (``seed``). ``dims``: the coordinates, one row each
    (default the first 16); ``values``: the values each takes along its row (default 9 from -3
    to 3, the prior's ±3σ for N(0, I)). Returns the grid (uint8, as :func:`grid`) and writes it
    to ``path`` when given.

    >>> import torch
    >>> from lagrangian_family.backends.torch import (compile_objective, GaussianMLPEncoder,
    ...     BernoulliMLPDecoder, StandardNormalPrior, Model)
    >>> model = Model(compile_objective("vae", encoder=GaussianMLPEncoder(64, 3, hidden=(8,)),
    ...     decoder=BernoulliMLPDecoder(3, 64, hidden=(8,)), prior=StandardNormalPrior(3)))
    >>> latent_traversal(model, values=[-2, 0, 2], padding=0).shape   # 3 rows (z_dim) of 3 tiles of 8x8
    (24, 24)
    """
    import torch

    z_shape = tuple(model.z_shape)
    z_dim = math.prod(z_shape)
    if z is not None:
        base = torch.as_tensor(z, dtype=torch.float64).reshape(-1)
        if base.numel() != z_dim:
            raise ImageError("the base code has the wrong size", expected=f"one code of {z_dim} values",
                             given=f"{base.numel()} values", fix="pass z of shape z_shape, or x= to encode an image")
    elif x is not None:
        base = model.encode(x)[:1].reshape(-1).double().cpu()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            base = torch.as_tensor(model.loss_fn.components.prior.sample(1)).reshape(-1).double().cpu()
    dims = list(range(min(z_dim, 16))) if dims is None else [int(d) for d in dims]
    bad = [d for d in dims if not 0 <= d < z_dim]
    if not dims or bad:
        raise ImageError("bad latent coordinates", expected=f"indices in 0..{z_dim - 1}", given=repr(dims),
                         fix="pass dims=[0, 1, 2]")
    vals = torch.linspace(-3.0, 3.0, 9, dtype=torch.float64) if values is None \
        else torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    codes = base.repeat(len(dims) * len(vals), 1)
    for r, d in enumerate(dims):
        codes[r * len(vals):(r + 1) * len(vals), d] = vals
    images = model.decode(codes.reshape(-1, *z_shape))
    x_shape = tuple(model.x_shape)
    if "image_shape" not in options and len(x_shape) == 1 and math.isqrt(x_shape[0]) ** 2 != x_shape[0]:
        options["image_shape"] = x_shape  # let as_images say what is wrong
    if model.x_range is not None and "value_range" not in options:
        options["value_range"] = model.x_range
    img = grid(images, nrow=len(vals), **options)
    if path is not None:
        _write_png(img, path)
    return img


def read_png(path) -> np.ndarray:
    """A PNG file as a uint8 array ``(H, W)`` or ``(H, W, 3)`` (for checking what was written).

    >>> import tempfile, os
    >>> read_png(save_grid(np.ones((1, 4)), os.path.join(tempfile.mkdtemp(), "one.png"), padding=0)).tolist()
    [[255, 255], [255, 255]]
    """
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L") if im.mode in ("L", "1", "P") else im.convert("RGB"))
