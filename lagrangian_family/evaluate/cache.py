"""The on-disk cache of trained judges and reference statistics: atomic, checksummed, locked.

The folder is ``$LAGFAM_CACHE`` when set, else ``$XDG_CACHE_HOME/lagrangian_family``, else
``~/.cache/lagrangian_family``. Each entry is one file: a magic line, the SHA-256 of the payload,
then the payload. It is written to a temporary file in the same folder and renamed into place
(``os.replace``, atomic on POSIX and Windows), so a reader never sees a half-written entry; a
file whose checksum does not match (truncated, edited, a disk error) is reported with a
:class:`CacheWarning` and rebuilt, never trusted. Building holds an exclusive lock on
``NAME.lock`` (``fcntl.flock`` where available), so two processes asking for the same missing
entry build it once: the second waits, then reads what the first wrote.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> payload, built = cached_bytes(Path(folder) / "answer.bin", lambda: b"42")
>>> payload, built
(b'42', True)
>>> cached_bytes(Path(folder) / "answer.bin", lambda: b"never called")
(b'42', False)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["CACHE_ENV", "CacheWarning", "cache_dir", "cached_bytes", "read_entry", "write_entry"]

#: Environment variable naming the cache folder.
CACHE_ENV = "LAGFAM_CACHE"

_MAGIC = b"lagrangian_family cache entry v1\n"
_DIGEST_LEN = 64


class CacheWarning(UserWarning):
    """A cache entry was damaged (and is rebuilt), or the cache folder cannot be written."""


class _Damaged(Exception):
    pass


def cache_dir(explicit=None) -> Path:
    """The cache folder: ``explicit`` when given, else ``$LAGFAM_CACHE``, ``$XDG_CACHE_HOME/lagrangian_family``
    or ``~/.cache/lagrangian_family`` (not created here).

    >>> cache_dir("/tmp/x")
    PosixPath('/tmp/x')
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lagrangian_family"


def _envelope(payload: bytes) -> bytes:
    return _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _open_envelope(raw: bytes) -> bytes:
    head = len(_MAGIC) + _DIGEST_LEN + 1
    if not raw.startswith(_MAGIC) or len(raw) < head or raw[head - 1:head] != b"\n":
        raise _Damaged("not a cache entry (bad header)")
    digest, payload = raw[len(_MAGIC):head - 1].decode("ascii", "replace"), raw[head:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise _Damaged("its checksum does not match its content")
    return payload


def read_entry(path: Path) -> bytes | None:
    """The payload stored at ``path``; None when there is no such file or it is damaged (with a
    :class:`CacheWarning` saying so)."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        warnings.warn(f"cannot read the cache entry {path} ({e}); rebuilding it", CacheWarning, stacklevel=3)
        return None
    try:
        return _open_envelope(raw)
    except _Damaged as e:
        warnings.warn(f"the cache entry {path} is damaged ({e}); rebuilding it", CacheWarning, stacklevel=3)
        return None


def write_entry(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over ``path``. Raises OSError when the folder cannot be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_envelope(payload))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path.lock`` for the duration (a no-op where fcntl or the folder is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename alone keeps readers safe
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a+b")  # noqa: SIM115 - closed below
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def cached_bytes(path: Path, build: Callable[[], bytes], *, valid: Callable[[bytes], bool] | None = None,
                 on_build: Callable[[], None] | None = None) -> tuple[bytes, bool]:
    """The payload at ``path``, built by ``build()`` and stored when missing, damaged or not
    ``valid(payload)``; returns ``(payload, built)``.

    A folder that cannot be written gives a :class:`CacheWarning` and the built payload (used
    for this process only). ``on_build`` is called just before building (e.g. to say that
    a classifier is being trained).
    """
    path = Path(path)

    def usable(payload: bytes | None) -> bool:
        return payload is not None and (valid is None or valid(payload))

    payload = read_entry(path)
    if usable(payload):
        return payload, False
    with _locked(path):
        # another process may have built it while this one waited for the lock
        if path.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CacheWarning)  # already reported above
                again = read_entry(path)
            if usable(again):
                return again, False
        if on_build is not None:
            on_build()
        payload = build()
        try:
            write_entry(path, payload)
        except OSError as e:
            warnings.warn(f"cannot write the cache entry {path} ({e}); it is used for this process only. "
                          f"Set {CACHE_ENV} to a writable folder to keep it", CacheWarning, stacklevel=2)
    return payload, True
