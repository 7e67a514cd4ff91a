"""The checkpoint file format: versioned, checksummed, written atomically, read without running code.

A checkpoint is one ``torch.save`` file holding::

    {"format": "lagfam-checkpoint", "version": 1, "kind": KIND, "sha256": DIGEST, "state": STATE}

``STATE`` is a nested structure of tensors, dicts, lists, tuples and plain values (int, float,
bool, str, bytes, None): what ``torch.load(weights_only=True)`` reads without unpickling
arbitrary objects. ``DIGEST`` is the SHA-256 of ``KIND`` and ``STATE``: every tensor's dtype,
shape and bytes and every plain value (floats exactly, by ``float.hex``), in order, so that one
flipped byte anywhere in the state (a weight, a step count) is detected. ``KIND`` says what
the state is (``"trainer"`` for :meth:`Trainer.save <.train.Trainer.save>`, ``"model"`` for
component weights), so that one kind is never loaded as another.

:func:`save` writes through a temporary file in the same folder (fsync, rename; the temporary
is removed on any exception; one left by a ``kill -9`` is removed by the next :func:`save` or
:func:`load` of the same file, see :mod:`lagrangian_family.files`). :func:`load` always uses
``weights_only=True`` and turns every failure (a missing, empty, truncated or garbled file, a
file that is not a checkpoint, another version or kind, a checksum that does not match) into
a :class:`CheckpointError` naming the file and what is wrong.

>>> import tempfile, pathlib, torch
>>> path = pathlib.Path(tempfile.mkdtemp()) / "weights.pt"
>>> _ = save(path, {"w": torch.ones(2), "step": 3}, kind="model")
>>> load(path, kind="model")
{'w': tensor([1., 1.]), 'step': 3}
>>> raw = bytearray(path.read_bytes())
>>> i = raw.index(torch.ones(2).numpy().tobytes())  # the tensor's bytes inside the file
>>> raw[i + 3] ^= 0x01
>>> _ = path.write_bytes(bytes(raw))
>>> try:
...     load(path)
... except CheckpointError as e:
...     print(str(e).splitlines()[0])
checkpoint .../weights.pt is damaged: its checksum does not match its content
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.files import atomic_write, remove_stale_temporaries

__all__ = ["FORMAT", "VERSION", "CheckpointError", "save", "load", "checksum"]

#: The value of the ``format`` field of every checkpoint.
FORMAT = "lagfam-checkpoint"
#: The format version this module writes and reads.
VERSION = 1

_FIX_DAMAGED = ("the file was damaged after it was written (a failing disk, a partial copy, an edit): "
                "delete it and resume from an earlier checkpoint or start the run again")


class CheckpointError(ObjectiveError):
    """A checkpoint that cannot be used: missing, damaged, truncated, of another format, version
    or kind, or inconsistent with what it is loaded into. ``path`` names the file.

    >>> issubclass(CheckpointError, ObjectiveError)
    True
    """

    def __init__(self, message: str, *, path=None, expected: str | None = None, given: str | None = None,
                 fix: str | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(message, expected=expected, given=given, fix=fix)


# -- the checksum ---------------------------------------------------------------------------------

def _update(h, obj, where: str) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided or t.is_quantized:
            raise TypeError(f"{where}: a {t.layout} tensor (only dense tensors are stored)")
        t = t.cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, Mapping):
        h.update(f"M{len(obj)}{{".encode())
        for k, v in obj.items():
            _update(h, k, where)
            _update(h, v, f"{where}[{k!r}]")
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):  # torch.Size is a tuple
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}[".encode())
        for i, v in enumerate(obj):
            _update(h, v, f"{where}[{i}]")
        h.update(b"]")
    elif obj is None:
        h.update(b"N")
    elif isinstance(obj, bool):
        h.update(b"B1" if obj else b"B0")
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()};".encode())
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(f"S{len(b)}:".encode() + b)
    elif isinstance(obj, bytes):
        h.update(f"Y{len(obj)}:".encode() + obj)
    elif isinstance(obj, (torch.dtype, torch.device)):
        h.update(f"D{obj}".encode())
    else:
        raise TypeError(f"{where}: a {type(obj).__name__}, which a checkpoint cannot hold")


def checksum(state, kind: str = "state") -> str:
    """The SHA-256 (hex) of ``kind`` and ``state`` as the checkpoint format defines it.

    >>> checksum({"a": 1}) == checksum({"a": 1}) != checksum({"a": 2})
    True
    """
    h = hashlib.sha256()
    _update(h, kind, "kind")
    _update(h, state, "state")
    return h.hexdigest()


# -- save and load --------------------------------------------------------------------------------

def save(path: str | os.PathLike, state: Mapping, *, kind: str = "state") -> Path:
    """Write ``state`` to ``path`` as a checkpoint of ``kind`` (atomically); returns the path.

    The folder is created if needed. A state holding something other than tensors, containers
    and plain values raises :class:`CheckpointError` before anything is written.
    """
    path = Path(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"cannot write checkpoint {path}: the state is not a mapping", path=path,
                              expected="a dict of tensors and plain values", given=type(state).__name__,
                              fix="pass a state_dict()")
    try:
        digest = checksum(state, kind)
    except TypeError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: the state holds something a checkpoint cannot "
                              "store", path=path, expected="tensors, dicts, lists, tuples, int, float, bool, str, "
                              "bytes, None (what torch.load(weights_only=True) reads)", given=str(e),
                              fix="convert it to a tensor or a plain value") from None
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "sha256": digest, "state": state}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(payload, f))
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}", path=path,
                              expected="a folder that exists or can be created, with room for the file",
                              given=str(e), fix="choose another path, or free disk space") from e
    return path


def _reason(err: BaseException) -> str:
    """torch's reason for a failed load, without its advice to load with ``weights_only=False``."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    keep = [ln for ln in lines if "weights_only" not in ln and "trust" not in ln.lower()
            and not ln.startswith(("Please file", "Check the documentation", "(1)", "(2)", "In PyTorch"))]
    text = keep[0] if keep else ""
    if "WeightsUnpickler error" in str(err):
        detail = next((ln for ln in lines if "WeightsUnpickler error" in ln), text)
        text = detail.split("WeightsUnpickler error:", 1)[-1].strip()
    text = text[:200]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def load(path: str | os.PathLike, *, kind: str | None = None, map_location="cpu") -> dict:
    """The state saved in the checkpoint ``path``, verified; ``kind`` (when given) must match.

    Always ``torch.load(..., weights_only=True)``: a file holding anything else than tensors and
    plain values is refused, never unpickled. Every problem raises :class:`CheckpointError`.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent, path.name)

    def fail(problem: str, *, expected: str, given: str, fix: str = _FIX_DAMAGED, cause=None):
        raise CheckpointError(f"checkpoint {path} {problem}", path=path, expected=expected, given=given,
                              fix=fix) from cause

    try:
        if not path.exists():
            fail("does not exist", expected="a checkpoint file written by save() or Trainer.save()",
                 given="no such file", fix="check the path (training writes it at checkpoint_every steps)")
        if not path.is_file():
            fail("is not a file", expected="a checkpoint file", given="a folder or a special file",
                 fix="give the path of the checkpoint file itself")
        size = path.stat().st_size
        with open(path, "rb") as f:  # readable at all? (a permission problem is not damage)
            f.read(1)
    except OSError as e:
        fail(f"cannot be read: {e.strerror or e}", expected="a readable checkpoint file", given=str(e),
             fix="check the path and its permissions", cause=e)
    if size == 0:
        fail("is empty", expected="a checkpoint file written by save()", given="0 bytes")
    try:
        with warnings.catch_warnings():  # torch's remarks on a foreign pickle: it is refused below anyway
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged pickle or zip can raise almost anything
        fail("is damaged or not a checkpoint: torch cannot read it", given=f"{size} bytes; {_reason(e)}",
             expected="a complete torch.save file holding only tensors and plain values (it is read with "
                      "weights_only=True, so nothing in it is ever run)", cause=None)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        what = (f"a {type(payload).__name__}" if not isinstance(payload, Mapping)
                else f"a dict with keys {sorted(map(str, payload))[:6]}")
        fail("is not a lagfam checkpoint (no format header)", expected=f"a file written by save(): format {FORMAT!r}",
             given=what, fix="load it with torch.load if it is a plain state_dict, or write checkpoints with "
                             "lagrangian_family.backends.torch.checkpoint.save / Trainer.save")
    version = payload.get("version")
    if type(version) is not int or version != VERSION:
        newer = type(version) is int and version > VERSION
        fail(f"has format version {version!r}", expected=f"version {VERSION}", given=repr(version),
             fix="update lagrangian_family to read it" if newer else _FIX_DAMAGED)
    stored, state, stored_kind = payload.get("sha256"), payload.get("state"), payload.get("kind")
    if not isinstance(stored, str) or not isinstance(state, Mapping) or not isinstance(stored_kind, str):
        fail("is incomplete: its header lacks the checksum, the kind or the state",
             expected="fields sha256 (str), kind (str), state (dict)",
             given=", ".join(f"{k}: {type(payload.get(k)).__name__}" for k in ("sha256", "kind", "state")))
    try:
        actual = checksum(state, stored_kind)
    except TypeError as e:
        fail("is damaged: its state holds something a checkpoint never holds", expected="tensors and plain values",
             given=str(e))
    if actual != stored:
        fail("is damaged: its checksum does not match its content", expected=f"sha256 {stored}",
             given=f"sha256 {actual} of the tensors and values read")
    if kind is not None and stored_kind != kind:
        fail(f"is a {stored_kind!r} checkpoint", expected=f"a {kind!r} checkpoint", given=repr(stored_kind),
             fix=f"give the path of a {kind} checkpoint")
    return dict(state)
