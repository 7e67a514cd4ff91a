"""TensorBoard logs of a training run: scalars under clean tags, the tags' texts, sample grids.

``Trainer(..., tensorboard="runs/lagvae")`` (a folder, a ``SummaryWriter`` or a
:class:`TensorBoardLogger`) writes, next to the CSV log (which stays the default), every row
the Trainer logs (every ``log_every`` steps and the last), under tags that TensorBoard groups:

============================  ==================================================================
tag                           value
============================  ==================================================================
``loss/model``                the model player's loss
``loss/critic``               the critic player's loss (objectives with a critic)
``objective/value``           the objective's estimate (a Lagrangian: primal + Σ λ (D - ε))
``terms/<term>``              each term's estimate
``constraint/<name>``         each constraint's value D_i (a Lagrangian)
``violation/<name>``          D_i - ε_i
``lambda/<name>``             the multiplier λ_i
``other/<key>``               any other column of the row
============================  ==================================================================

Term and constraint texts such as ``E_{q(x)}[KL(q(z|x) || p(z))]`` are not tags (braces, pipes
and spaces): :func:`clean_tag` writes them as ``E_qx_KL_qz_given_x_pz``, and the text summary
``tags`` holds the table from each tag to its text. Sample grids (``samples``: decoder means of
``n_images`` draws of p(z) from a generator seeded ``image_seed``, the same draws every time,
laid out by :func:`lagrangian_family.images.grid`) are written every ``image_every`` steps and at
the end of every ``train`` call. Under distributed training only rank 0 writes.

Needs the ``tensorboard`` package (the ``tensorboard`` extra); this module imports it on use.

>>> clean_tag("E_{q(x)}[KL(q(z|x) || p(z))]")
'E_qx_KL_qz_given_x_pz'
>>> clean_tag("KL(q(x,z) || p(x,z))"), clean_tag("10 * MMD(q(z) || p(z))")
('KL_qxz_pxz', '10_MMD_qz_pz')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from lagrangian_family.errors import ObjectiveError

__all__ = ["TensorBoardLogger", "clean_tag"]

_DENSITY = re.compile(r"\b([pq])\(([^()|]*?)(?:\|([^()]*?))?\)")


def _density(m: re.Match) -> str:
    fam, vars_, given = m.group(1), m.group(2), m.group(3)
    out = fam + re.sub(r"[\s,]", "", vars_)
    if given:
        out += "_given_" + re.sub(r"[\s,]", "", given)
    return out


def clean_tag(text: str) -> str:
    """A TensorBoard tag for a term, constraint or column name: densities ``q(z|x)`` as
    ``qz_given_x``, ``I_q(x;z)`` as ``I_q_xz``, the rest of the punctuation as ``_`` (only letters,
    digits, ``_``, ``.`` and ``-`` are kept).

    >>> clean_tag("I_q(x;z)"), clean_tag("E_{q(x,z)}[log p(x|z)]")
    ('I_q_xz', 'E_qxz_log_px_given_z')
    """
    s = _DENSITY.sub(_density, str(text))
    s = re.sub(r"\(([^()]*);([^()]*)\)", lambda m: "_" + m.group(1).strip() + m.group(2).strip(), s)  # I_q(x;z)
    s = re.sub(r"\s+-\s+", "_minus_", s)
    s = re.sub(r"\s+\+\s+", "_plus_", s)
    s = s.replace("*", "_")
    s = re.sub(r"[^A-Za-z0-9_.\-]+", "_", s)
    s = re.sub(r"_+", "_", s).strip("_")
    return s or "_"


def _tag_groups(row: Mapping) -> list[tuple[str, str, str]]:
    """(group, raw name, row key) of each logged value of a Trainer row, in the row's order."""
    out = []
    for key in row:
        if key == "step":
            continue
        if key == "loss":
            out.append(("loss", "model", key))
        elif key == "critic_loss":
            out.append(("loss", "critic", key))
        elif key == "value":
            out.append(("objective", "value", key))
        elif key.startswith(("constraint ", "violation ", "lambda ")):
            prefix, _, name = key.partition(" ")
            out.append((prefix, name, key))
        else:
            out.append(("terms", key, key))
    return out


class TensorBoardLogger:
    """Write a :class:`~.train.Trainer`'s logs to TensorBoard (see the module docstring).

    ``log_dir``: the folder of the event files (created), or ``writer``: a
    ``torch.utils.tensorboard.SummaryWriter`` (or anything with ``add_scalar``, ``add_text``,
    ``add_image`` and ``flush``) that the caller owns. A folder's writer is opened for each
    ``train`` call and closed at its end, so no file stays open between calls. ``images``:
    whether to write sample grids (None: when the data can be laid out as images); ``image_every``:
    their period in steps (None: at the end of each ``train`` call only); ``n_images``,
    ``image_seed``, ``nrow``, ``scale`` and ``image_shape``: what to draw and how to lay it out
    (:func:`lagrangian_family.images.grid`).

    >>> logger = TensorBoardLogger("runs/example", image_every=500)
    >>> logger.tag("constraint", "MMD(q(z) || p(z))")
    'constraint/MMD_qz_pz'
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, writer=None, images: bool | None = None,
                 image_every: int | None = None, n_images: int = 64, image_seed: int = 0, nrow: int | None = None,
                 scale: int = 1, image_shape=None):
        if (log_dir is None) == (writer is None):
            raise ObjectiveError("TensorBoardLogger needs a folder or a writer", expected="exactly one of log_dir "
                                 "and writer", given="both" if log_dir is not None else "neither",
                                 fix="TensorBoardLogger('runs/name') or TensorBoardLogger(writer=SummaryWriter(...))")
        if writer is not None and not all(callable(getattr(writer, m, None))
                                          for m in ("add_scalar", "add_text", "add_image", "flush")):
            raise ObjectiveError("the TensorBoard writer lacks the SummaryWriter methods",
                                 expected="a torch.utils.tensorboard.SummaryWriter",
                                 given=type(writer).__name__, fix="pass SummaryWriter(log_dir) or a folder")
        for name, v, low in (("image_every", image_every, 1), ("n_images", n_images, 1), ("scale", scale, 1)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise ObjectiveError(f"a bad {name} for the TensorBoard logger", expected=f"an integer >= {low}",
                                     given=repr(v), fix=f"pass {name}={max(low, 1)}")
        if images not in (None, True, False):
            raise ObjectiveError("a bad images option", expected="True, False or None (when the data are images)",
                                 given=repr(images), fix="pass images=True")
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._own = writer is None
        self.writer = writer
        self.images = images
        self.image_every = image_every
        self.n_images, self.image_seed, self.nrow, self.scale = n_images, int(image_seed), nrow, scale
        self.image_shape = image_shape
        self._tags: dict[tuple[str, str], str] = {}
        self._model = None
        self._purge_step: int | None = None

    # -- tags -----------------------------------------------------------------------------------
    def tag(self, group: str, name: str) -> str:
        """The tag of ``name`` in ``group`` (``loss``, ``objective``, ``terms``, ``constraint``,
        ``violation``, ``lambda``, ``other``): ``group/clean name``, made unique within the group."""
        key = (group, name)
        if key not in self._tags:
            base = f"{group}/{clean_tag(name)}"
            tag, i = base, 2
            while tag in self._tags.values():
                tag, i = f"{base}_{i}", i + 1
            self._tags[key] = tag
        return self._tags[key]

    def tag_table(self) -> str:
        """The tags so far and the names they stand for, as a Markdown table (the ``tags`` text)."""
        rows = ["| tag | name |", "| --- | --- |"]
        rows += [f"| `{t}` | `{n.replace('|', '&#124;')}` |" for (_, n), t in self._tags.items()]
        return "\n".join(rows)

    # -- the run --------------------------------------------------------------------------------
    def bind(self, loss_fn) -> None:
        """Check, before training, that sample grids can be drawn for ``loss_fn`` when they are
        asked for (``images=True``), and decide whether to draw them when ``images`` is None."""
        from .model import Model

        model = None
        problem = None
        try:
            model = Model(loss_fn)
            import numpy as np

            from lagrangian_family.images import as_images

            as_images(np.zeros((1, *model.x_shape), np.float32), image_shape=self.image_shape)
        except Exception as err:  # noqa: BLE001 - whatever makes the grid impossible
            problem = err
        if problem is not None and self.images:
            raise ObjectiveError("the TensorBoard logger cannot draw sample grids for this model",
                                 expected="a compiled objective whose samples can be laid out as images",
                                 given=f"{type(problem).__name__}: {str(problem).splitlines()[0]}",
                                 fix="pass image_shape=(c, h, w) or (h, w), or images=False") from problem
        self._model = model if problem is None and self.images is not False else None

    def resume(self, step: int) -> None:
        """A run resumes after ``step`` (a checkpoint's): the events a previous run wrote after it
        are hidden from TensorBoard (``SummaryWriter``'s ``purge_step``; a folder's writer only)."""
        if self._own:
            self.close()
            self._purge_step = int(step) + 1

    def open(self):
        """The writer (a folder's is opened here)."""
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ObjectiveError("TensorBoard logs need the tensorboard package",
                                     expected="tensorboard installed", given=str(err),
                                     fix="pip install 'lagrangian_family[torch,tensorboard]'") from err
            os.makedirs(self.log_dir, exist_ok=True)
            self.writer = SummaryWriter(self.log_dir, purge_step=self._purge_step)
            self._purge_step = None
        return self.writer

    def write_row(self, row: Mapping) -> None:
        """Write a Trainer's log row (keys as :meth:`.Trainer.record` makes them) at its step."""
        w = self.open()
        step = int(row["step"])
        new = False
        for group, name, key in _tag_groups(row):
            value = row[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            had = (group, name) in self._tags
            w.add_scalar(self.tag(group, name), float(value), step)
            new = new or not had
        if new:
            w.add_text("tags", self.tag_table(), step)

    def images_due(self, step: int) -> bool:
        """Whether a grid is due after ``step`` (every ``image_every`` steps)."""
        return self._model is not None and self.image_every is not None and step % self.image_every == 0

    def write_images(self, step: int) -> None:
        """Write the grid of samples at ``step`` (nothing when the model has no image grids)."""
        if self._model is None:
            return
        from lagrangian_family.images import grid

        samples = self._model.sample(self.n_images, seed=self.image_seed)
        img = grid(samples, nrow=self.nrow, scale=self.scale, image_shape=self.image_shape, clip=True)
        self.open().add_image("samples", img, step, dataformats="HW" if img.ndim == 2 else "HWC")

    def close(self) -> None:
        """Flush; a writer this logger opened is closed (and reopened by the next write)."""
        if self.writer is None:
            return
        self.writer.flush()
        if self._own:
            self.writer.close()
            self.writer = None


def as_logger(tensorboard) -> TensorBoardLogger | None:
    """A :class:`TensorBoardLogger` from the Trainer's ``tensorboard`` argument: None, a folder, a
    writer or a logger."""
    if tensorboard is None or tensorboard is False:
        return None
    if isinstance(tensorboard, TensorBoardLogger):
        return tensorboard
    if isinstance(tensorboard, (str, os.PathLike)):
        return TensorBoardLogger(tensorboard)
    if callable(getattr(tensorboard, "add_scalar", None)):
        return TensorBoardLogger(writer=tensorboard)
    raise ObjectiveError("a bad tensorboard argument", expected="a folder, a SummaryWriter or a TensorBoardLogger",
                         given=type(tensorboard).__name__, fix="pass tensorboard='runs/name'")
