"""Files that survive crashes and careless users: atomic writes, stale temporaries, folder locks.

* :func:`atomic_write` writes a file through a temporary in the same folder (fsync, rename,
  fsync of the folder), removing the temporary on any exception. A ``kill -9`` cannot run that
  cleanup, so temporaries are named ``.<name>.<pid>.<token>.lagfam-tmp``: the next write of the
  same file, and :func:`remove_stale_temporaries`, recognise those whose process is gone and
  remove them.
* :func:`check_output_folder` checks, before any work starts, that a folder can be created and
  written (so that a run never stops half-way on a bad ``--out``).
* :class:`FolderLock` locks a folder while a run writes to it (``fcntl.flock`` on
  ``<folder>/.lagfam.lock``: the operating system releases it when the process dies, so a lock
  left by a killed run is taken over). The lock file names its holder (PID, command, start), so
  a refused second run can say who holds it.

Only the standard library is imported (no torch).

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write(folder / "a.txt", "hello\\n")
PosixPath('...a.txt')
>>> sorted(p.name for p in folder.iterdir())
['a.txt']
>>> with FolderLock(folder, command="example") as lock:
...     lock.holder()["command"]
'example'
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lagrangian_family.errors import ObjectiveError

__all__ = ["TEMP_SUFFIX", "LOCK_NAME", "FolderBusyError", "FolderLock", "atomic_write", "temporary_path",
           "remove_stale_temporaries", "check_output_folder", "pid_alive"]

#: Suffix of every temporary file the toolkit writes.
TEMP_SUFFIX = ".lagfam-tmp"
#: The lock file of a locked folder.
LOCK_NAME = ".lagfam.lock"

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{8})" + re.escape(TEMP_SUFFIX) + "$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine.

    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name next to ``path``: ``.<name>.<pid>.<token>.lagfam-tmp``.

    >>> temporary_path("/data/ck.pt").name.startswith(".ck.pt.")
    True
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporaries in ``folder`` (of the file ``name`` only, when given) whose writing
    process no longer exists; returns what was removed. Temporaries of live processes (a
    concurrent writer) are kept.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / f".x.json.{2**22 + 7}.0123abcd.lagfam-tmp").write_text("{")  # a PID that does not exist
    >>> [p.name for p in remove_stale_temporaries(d)]
    ['.x.json.4194311.0123abcd.lagfam-tmp']
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        if pid_alive(int(m["pid"])):  # its writer (perhaps this process) may be writing it now
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:
            pass
    return removed


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, content: bytes | str | Callable, *, fsync: bool = True) -> Path:
    """Write ``path`` atomically: a temporary in the same folder, fsync, rename, fsync the folder.

    ``content``: bytes, text (UTF-8) or a function ``write(binary_file)``. On any exception the
    temporary is removed and ``path`` is untouched; stale temporaries of ``path`` left by killed
    processes are removed first. Returns ``path``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> atomic_write(p, lambda f: f.write(b"abc")).read_bytes()
    b'abc'
    """
    path = Path(path)
    remove_stale_temporaries(path.parent, path.name)
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        _fsync_folder(path.parent)
    return path


# -- output folders -------------------------------------------------------------------------------

def _probe(folder: Path) -> str | None:
    """None when a file can be created in ``folder``, else the reason (the OS error)."""
    probe = folder / f".lagfam-probe.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:  # pragma: no cover
        pass
    return None


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a folder that exists or can be created, and can be written; else an
    :class:`~lagrangian_family.errors.ObjectiveError` saying why. Nothing is created.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "file"
    >>> _ = f.write_text("x")
    >>> try:
    ...     check_output_folder(f / "sub")
    ... except ObjectiveError as e:
    ...     print(str(e).splitlines()[0])
    --out .../file/sub cannot be created: .../file is a file, not a folder
    """
    try:
        text = os.fsdecode(path)
    except (TypeError, ValueError) as e:
        raise ObjectiveError(f"{option} is not a path", expected="a folder path", given=repr(path),
                             fix=f"pass {option} DIR") from e
    if not text.strip() or "\0" in text:
        raise ObjectiveError(f"{option} is {'empty' if not text.strip() else 'not a path'}",
                             expected="a folder path", given=repr(text), fix=f"pass {option} DIR, e.g. {option} runs/x")
    path = Path(text).expanduser()
    fix = f"choose another {option} (a folder you can write), or fix the permissions"
    try:
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                kind = "a broken link" if path.is_symlink() and not path.exists() else "a file"
                raise ObjectiveError(f"{option} {path} is {kind}, not a folder", expected="a folder (new or existing)",
                                     given=f"{path}: {kind}", fix=f"choose a folder for {option}, or remove {path}")
            reason = _probe(path)
            if reason is not None:
                raise ObjectiveError(f"{option} {path} cannot be written: {reason}",
                                     expected="a folder you can write in", given=str(path), fix=fix)
            return path
        parent = path.parent
        while not (parent.exists() or parent.is_symlink()):
            if parent == parent.parent:
                break
            parent = parent.parent
        if not parent.is_dir():
            raise ObjectiveError(f"{option} {path} cannot be created: {parent} is a file, not a folder",
                                 expected="a path whose existing part is a folder", given=str(path), fix=fix)
        reason = _probe(parent)
        if reason is not None:
            raise ObjectiveError(f"{option} {path} cannot be created in {parent}: {reason}",
                                 expected="a folder you can write in", given=str(path), fix=fix)
    except OSError as e:  # a path too long, a loop of links, a folder we may not list
        raise ObjectiveError(f"{option} {path} cannot be used: {e.strerror or e}", expected="a usable folder path",
                             given=str(path), fix=fix) from e
    return path


# -- folder locks ---------------------------------------------------------------------------------

class FolderBusyError(ObjectiveError):
    """Another process holds the folder's lock (a second run on the same ``--out``)."""


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"PID {info.get('pid', '?')}{where} ({info.get('command') or 'lagfam'}), since {when}"


class FolderLock:
    """An exclusive lock on a folder while one run writes to it.

    ``acquire(wait=False)`` raises :class:`FolderBusyError` (naming the holder) when another
    process holds it; ``wait=True`` blocks until it is free (``on_wait(holder_text)`` is called
    once first). A lock whose holder died is free: ``fcntl.flock`` locks die with their process;
    :attr:`previous` then holds the dead holder's description (``None`` after a clean exit).
    Usable as a context manager (acquires without waiting).
    """

    def __init__(self, folder: str | os.PathLike, *, command: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.previous: dict | None = None
        self._fd: int | None = None

    def _read(self, fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            raw = os.read(fd, 65536)
            info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def holder(self) -> dict:
        """What the lock file says about its holder (``{}`` when nobody wrote it)."""
        if self._fd is not None:
            return self._read(self._fd)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return {}
        try:
            return self._read(fd)
        finally:
            os.close(fd)

    def acquire(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> FolderLock:
        """Take the lock and name this process in the lock file; returns ``self``.

        Raises :class:`FolderBusyError` when another process holds it, unless ``wait``: then
        ``on_wait(holder)`` is called once and this blocks until the holder releases it (or dies).
        """
        import fcntl

        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                who = _describe(self._read(fd))
                if not wait:
                    raise FolderBusyError(
                        f"{self.folder} is in use by another run: {who}",
                        expected="one run at a time writing to a folder", given=str(self.folder),
                        fix="wait for that run to finish, pass --wait to start when it does, or choose another "
                            "--out") from None
                if on_wait is not None:
                    on_wait(who)
                fcntl.flock(fd, fcntl.LOCK_EX)
            # a clean release empties the file: what is left was written by a holder that died
            self.previous = self._read(fd) or None
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                    "started": time.time()}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (the lock file stays, empty: a clean exit)."""
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
