"""``lagfam sample RUN_DIR -n N --out FILE.npy``: samples of a trained model, for other tools.

Writes N samples x ~ p(x) of the model in RUN_DIR as an ``(N, d)`` float32 numpy array in
[0, 1] (``d`` the flattened x: 784 for MNIST, 64 for the 8x8 digits): the decoder's means of
z ~ p(z), or the generator's output. For a model whose prior is a second image domain
(CycleGAN, DiscoGAN) they are the translations of the domain's first N images, in the order of
its source (cycling when N exceeds them), so that a tool can pair them with their labels. Values
are clipped to the model's data range and mapped from it to [0, 1].

**Run folder layout** (the minimum this command reads): ``RUN_DIR/model.pt``, written by
:func:`lagrangian_family.backends.torch.save_model` (``save_model(RUN_DIR, loss_fn)``). A run
folder may hold anything else (logs, checkpoints, grids, a report); RUN_DIR may also be the
model file itself.

Options: ``--seed`` (default 0: the same samples every time), ``--grid FILE.png`` (the first
samples as an image grid), ``--data`` (the second domain's data: an MNIST folder to resolve the
model's saved source, or an ``.npy`` array of the domain's images when the model has no
source). A folder that is not a run folder, a damaged model file, a missing output folder or
N <= 0 is a typed error (exit code 2) and nothing is written; the files are written
atomically.

>>> import argparse
>>> p = argparse.ArgumentParser(); configure(p)
>>> p.parse_args(["runs/vae", "-n", "64", "--out", "x.npy"]).n
64
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from lagrangian_family.errors import ObjectiveError

__all__ = ["configure", "run", "sample_run"]


def configure(p: argparse.ArgumentParser) -> None:
    """Add the arguments of ``lagfam sample``."""
    p.description = ("Write N samples x ~ p(x) of a trained model as an (N, d) float32 .npy array in [0, 1] "
                     "(decoder means or generator outputs; for CycleGAN/DiscoGAN, translations of the second "
                     "domain's first N images). RUN_DIR is a run folder holding model.pt, or the model file.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder holding model.pt (or the model file itself)")
    p.add_argument("-n", "--n", type=int, required=True, metavar="N", help="number of samples (>= 1)")
    p.add_argument("--out", required=True, metavar="FILE.npy", help="the array to write (its folder must exist)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--grid", default=None, metavar="FILE.png", help="also write the first samples as a PNG grid")
    p.add_argument("--data", default=None, metavar="DIR|FILE.npy",
                   help="second-domain data for CycleGAN/DiscoGAN: the MNIST folder its saved source reads, or an "
                        ".npy array of the domain's images")


def _out_path(value, what: str, flag: str) -> Path:
    p = Path(value)
    if p.is_dir():
        raise ObjectiveError(f"{flag} {value} is a folder", expected=f"the path of {what}", given=str(value),
                             fix=f"name the file, e.g. {flag} {p / ('samples.npy' if flag == '--out' else 'grid.png')}")
    if not p.parent.is_dir():
        raise ObjectiveError(f"cannot write {value}: the folder {p.parent} does not exist",
                             expected=f"{what} in an existing folder", given=str(value),
                             fix=f"create it first (mkdir -p {p.parent})")
    return p


def _run_path(value) -> Path:
    from lagrangian_family.backends.torch.model import MODEL_FILE

    p = Path(value)
    if p.is_dir():
        if not (p / MODEL_FILE).is_file():
            held = ", ".join(sorted(q.name for q in p.iterdir())[:6]) or "nothing"
            raise ObjectiveError(f"{value} is not a run folder: it has no {MODEL_FILE}",
                                 expected=f"a run folder holding {MODEL_FILE} (written by save_model), or a model file",
                                 given=f"a folder holding {held}",
                                 fix="pass the folder that training wrote, or its model file")
        return p / MODEL_FILE
    if not p.exists():
        raise ObjectiveError(f"no run folder or model file at {value}", expected="a run folder or a model file",
                             given=f"{value} (missing)", fix="check the path")
    return p


def _load(path: Path, data):
    from lagrangian_family.backends.torch import load_model

    if data is None:
        return load_model(path)
    d = Path(data)
    if d.is_dir():
        return load_model(path, data_dir=d)
    if d.is_file() and d.suffix == ".npy":
        try:
            images = np.load(d, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ObjectiveError(f"cannot read {data}", expected="a numpy .npy array of images",
                                 given=f"{type(e).__name__}: {e}", fix="write it with numpy.save") from e
        return load_model(path, prior=images.astype(np.float32).reshape(images.shape[0], -1))
    raise ObjectiveError(f"--data {data} is neither a folder nor an .npy file", expected="an MNIST folder or a .npy "
                         "array of the second domain's images", given=str(data), fix="check the path")


def _to_unit(x: np.ndarray, x_range) -> np.ndarray:
    if x_range is not None:
        lo, hi = x_range
        x = (np.clip(x, lo, hi) - lo) / (hi - lo)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _samples(model, n: int, seed: int, batch_size: int):
    import torch

    chunks = []
    data = getattr(model.prior, "data", None)
    if model.prior_is_domain and isinstance(data, torch.Tensor):
        idx = torch.arange(n) % data.shape[0]
        for i in range(0, n, batch_size):
            chunks.append(model.translate(data[idx[i:i + batch_size]]))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for i in range(0, n, batch_size):
                chunks.append(model.sample(min(batch_size, n - i)))
    x = torch.cat(chunks).reshape(n, -1).cpu().double().numpy()
    return _to_unit(x, model.x_range)


def _save_atomic(write, path: Path) -> str:
    from lagrangian_family.files import remove_stale_temporaries, temporary_path

    remove_stale_temporaries(path.parent, path.name)  # left by a killed run
    tmp = str(temporary_path(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


#: The most samples one call writes (1,000,000 MNIST images are 3 GB of float32).
MAX_SAMPLES = 1_000_000


def sample_run(run_dir, n: int, out, *, seed: int = 0, grid=None, data=None, batch_size: int = 1000) -> np.ndarray:
    """``lagfam sample`` as a function: writes and returns the ``(n, d)`` float32 array.

    Every argument is checked before anything is computed or written; both files appear
    together (each written to a temporary file, then renamed).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ObjectiveError("a bad number of samples", expected="N >= 1", given=repr(n), fix="pass -n 64")
    if n > MAX_SAMPLES:
        raise ObjectiveError(f"-n {n} is too many samples for one file", expected=f"N <= {MAX_SAMPLES:,}",
                             given=str(n), fix="write several files with different --seed values")
    out_p = _out_path(out, "the .npy array", "--out")
    grid_p = _out_path(grid, "the PNG grid", "--grid") if grid is not None else None
    model = _load(_run_path(run_dir), data)
    x = _samples(model, int(n), seed, batch_size)
    img = None
    if grid_p is not None:
        from lagrangian_family.images import grid as make_grid

        shape = model.x_shape if len(model.x_shape) > 1 else None
        img = make_grid(x[:100], nrow=10, image_shape=shape, scale=3 if x.shape[1] <= 64 else 1)
    tmps = []
    try:
        tmps.append((_save_atomic(lambda f: np.save(f, x, allow_pickle=False), out_p), out_p))
        if img is not None:
            tmps.append((_save_atomic(lambda f: _png(img, f), grid_p), grid_p))
        for tmp, final in tmps:
            os.replace(tmp, final)
        tmps = []
    finally:
        for tmp, _ in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return x


def _png(img: np.ndarray, f) -> None:
    from PIL import Image

    Image.fromarray(img).save(f, format="PNG")


def run(args: argparse.Namespace) -> int:
    """Run ``lagfam sample`` (typed errors are printed by :func:`lagrangian_family.cli.main`, exit 2)."""
    x = sample_run(args.run_dir, args.n, args.out, seed=args.seed, grid=args.grid, data=args.data)
    extra = f" and a grid to {args.grid}" if args.grid else ""
    print(f"wrote {x.shape[0]} samples of shape {tuple(x.shape)} in [0, 1] to {args.out}{extra}")
    return 0
