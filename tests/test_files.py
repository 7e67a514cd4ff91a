"""Atomic writes, stale temporaries, output-folder checks and folder locks (no torch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lagrangian_family import ObjectiveError
from lagrangian_family.files import (
    LOCK_NAME,
    TEMP_SUFFIX,
    FolderBusyError,
    FolderLock,
    atomic_write,
    check_output_folder,
    remove_stale_temporaries,
)

ROOT = Path(__file__).resolve().parents[1]
DEAD_PID = 2**22 + 3  # above Linux's largest pid_max: no such process


def test_atomic_write_replaces_whole_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "a.json"
    atomic_write(path, "old")

    def fails(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(path, fails)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_stale_temporaries_of_dead_processes_only(tmp_path):
    stale = tmp_path / f".a.json.{DEAD_PID}.0123abcd{TEMP_SUFFIX}"
    mine = tmp_path / f".a.json.{os.getpid()}.0123abcd{TEMP_SUFFIX}"
    foreign = tmp_path / ".a.json.tmp"  # not our naming: never touched
    for p in (stale, mine, foreign):
        p.write_text("")
    atomic_write(tmp_path / "a.json", "x")
    assert not stale.exists() and mine.exists() and foreign.exists()
    stale.write_text("")
    assert remove_stale_temporaries(tmp_path) == [stale]


def test_check_output_folder(tmp_path):
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created
    a_file = tmp_path / "f"
    a_file.write_text("")
    for path, message in ((a_file, "is a file, not a folder"), (a_file / "x", "cannot be created"),
                          ("", "--out is empty"), ("\0", "is not a path")):
        with pytest.raises(ObjectiveError, match=message):
            check_output_folder(path)
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ObjectiveError, match="is a broken link"):
        check_output_folder(dangling)


_HOLD = textwrap.dedent("""
    import sys, time
    from lagrangian_family.files import FolderLock
    lock = FolderLock(sys.argv[1], command="holder --out x").acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
""")


def hold(folder: Path, seconds: float) -> subprocess.Popen:
    """A process holding ``folder``'s lock for ``seconds`` (returns once it holds it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_holder_is_refused_with_the_holders_name(tmp_path):
    proc = hold(tmp_path, 30)
    try:
        with pytest.raises(FolderBusyError) as info:
            FolderLock(tmp_path).acquire()
        assert f"in use by another run: PID {proc.pid} (holder --out x)" in str(info.value)
        assert "--wait" in str(info.value)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_waiting_for_the_holder(tmp_path):
    proc = hold(tmp_path, 1.0)
    said = []
    t0 = time.monotonic()
    with FolderLock(tmp_path).acquire(wait=True, on_wait=said.append) as lock:
        assert lock.locked and time.monotonic() - t0 > 0.2
        assert said and f"PID {proc.pid}" in said[0]
        assert lock.previous is None  # the holder released it cleanly
    proc.wait()
    proc.stdout.close()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: nobody named


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path):
    proc = hold(tmp_path, 30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with FolderLock(tmp_path) as lock:
        assert lock.previous["pid"] == proc.pid
        assert lock.holder()["pid"] == os.getpid()
