"""``lagfam score FILE.npy``: the table or JSON for a good file, exit code 2 and no traceback for a bad one;
and the evaluate package imports without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lagrangian_family.cli import main

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("torch")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_score_prints_the_table(tmp_path, capsys, digits, cache):
    f = tmp_path / "samples.npy"
    np.save(f, digits.x_test)
    rc, out, err = run(capsys, "score", str(f), "--cache-dir", str(cache))
    assert rc == 0, err
    assert "300 samples scored by the digits digit classifier" in out  # the width chose the dataset
    assert "| classes covered (share ≥ 5%) | 10 of 10 | 10 of 10 |" in out
    assert "Fréchet distance" in out


def test_score_json(tmp_path, capsys, digits, cache):
    from lagrangian_family.evaluate import score_samples

    f = tmp_path / "samples.npy"
    np.save(f, digits.x_test[:100].reshape(100, 8, 8))
    rc, out, _ = run(capsys, "score", str(f), "--data", "digits", "--json", "--cache-dir", str(cache))
    assert rc == 0
    got = json.loads(out)
    expected = score_samples(digits.x_test[:100], "digits", cache_dir=cache)
    assert got["classes_covered"] == expected["classes_covered"]
    assert got["frechet_distance"] == pytest.approx(expected["frechet_distance"])
    assert got["reference"]["n"] == 100


def write_bad(tmp_path: Path, kind: str) -> Path:
    f = tmp_path / f"{kind}.npy"
    if kind == "missing":
        return f
    if kind == "folder":
        f.mkdir()
    elif kind == "text":
        f.write_text("these are not samples")
    elif kind == "truncated":
        np.save(f, np.zeros((10, 64)))
        f.write_bytes(f.read_bytes()[:-40])
    elif kind == "pickle":
        np.save(f, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "npz":
        np.savez(f, a=np.zeros((3, 64)))
        (tmp_path / f"{kind}.npy.npz").rename(f)
    elif kind == "shape":
        np.save(f, np.zeros((5, 100)))
    elif kind == "range":
        np.save(f, np.full((5, 64), 2.0))
    elif kind == "nan":
        np.save(f, np.full((5, 784), np.nan))
    elif kind == "strings":
        np.save(f, np.array([["a"] * 64] * 3))
    elif kind == "wrongdata":
        np.save(f, np.zeros((5, 64)))
    return f


BAD = {"missing": "no samples file", "folder": "no samples file", "text": "not a readable .npy",
       "truncated": "not a readable .npy", "pickle": "not a readable .npy", "npz": ".npz archive",
       "shape": "not digit images", "range": "outside [0, 1]", "nan": "NaN", "strings": "must be numbers",
       "wrongdata": "look like digits"}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_files_exit_2_with_a_typed_message(tmp_path, capsys, cache, kind):
    f = write_bad(tmp_path, kind)
    before = sorted(p.name for p in tmp_path.iterdir())
    extra = ["--data", "mnist"] if kind == "wrongdata" else []
    rc, out, err = run(capsys, "score", str(f), "--cache-dir", str(cache), *extra)
    assert rc == 2
    assert err.startswith("error: ") and BAD[kind] in err
    assert "expected:" in err and "fix:" in err
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written or removed


def test_a_bad_file_from_the_shell_has_no_traceback(tmp_path, cache):
    f = write_bad(tmp_path, "range")
    proc = subprocess.run([sys.executable, "-m", "lagrangian_family.cli", "score", str(f), "--cache-dir", str(cache)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: image intensities outside [0, 1]")
    assert "Traceback" not in proc.stderr


def test_evaluate_imports_without_torch():
    code = ("import sys, lagrangian_family.evaluate as ev, lagrangian_family.evaluate.command; "
            "print(ev.frechet_distance([0.0], [[1.0]], [1.0], [[1.0]]), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["1.0", "False"]
