"""The digit classifier (the digits one: it trains in seconds) and its cache: trained once,
loaded afterwards, a damaged file retrained, concurrent processes safe, inputs checked."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lagrangian_family.data import DataError, load_digits  # noqa: E402
from lagrangian_family.evaluate import CacheWarning, EvaluationError, cache_dir, load_classifier  # noqa: E402
from lagrangian_family.evaluate import cache as cache_mod  # noqa: E402
from lagrangian_family.evaluate import classifier as clf_mod  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def independent_test_split():
    """The digits test split rebuilt here from scikit-learn: the first 300 of a seed-0 permutation."""
    x, y = load_digits()
    perm = np.random.default_rng(0).permutation(len(x))[:300]
    return x[perm], y[perm]


# -- the judge ----------------------------------------------------------------------------------------------

def test_accuracy_on_the_held_out_split_is_what_it_reports(digits_classifier):
    x, y = independent_test_split()
    accuracy = float((digits_classifier.predict(x) == y).mean())
    assert accuracy >= 0.95
    assert digits_classifier.test_accuracy == pytest.approx(accuracy, abs=1e-12)


def test_probabilities_and_features(digits_classifier):
    x, _ = independent_test_split()
    p = digits_classifier.probs(x)
    assert p.shape == (300, 10) and np.allclose(p.sum(axis=1), 1.0)
    f = digits_classifier.features(x)
    assert f.shape == (300, 64) and np.isfinite(f).all()
    assert (digits_classifier.predict(x) == p.argmax(axis=1)).all()


def test_confidence_on_real_digits_is_higher_than_on_noise(digits_classifier):
    x, _ = independent_test_split()
    noise = np.random.default_rng(0).random((300, 64))
    real_conf = digits_classifier.probs(x).max(axis=1).mean()
    noise_conf = digits_classifier.probs(noise).max(axis=1).mean()
    assert real_conf > 0.95
    assert real_conf > noise_conf + 0.1


def test_every_accepted_input_form_gives_the_same_answer(digits_classifier):
    x, _ = independent_test_split()
    x = x[:20]
    ref = digits_classifier.probs(x)
    for form in (x.reshape(20, 8, 8), x.reshape(20, 1, 8, 8), torch.from_numpy(x), x.astype(np.float64),
                 torch.from_numpy(x).requires_grad_(True)):
        np.testing.assert_allclose(digits_classifier.probs(form), ref, rtol=1e-6, atol=1e-9)
    # bools are 0/1 intensities, uint8 is intensity / 255
    b = x > 0.5
    np.testing.assert_array_equal(digits_classifier.probs(b), digits_classifier.probs(b.astype(np.float32)))
    u8 = np.round(x * 255).astype(np.uint8)
    np.testing.assert_allclose(digits_classifier.probs(u8), digits_classifier.probs(u8 / 255.0), atol=1e-9)


@pytest.mark.parametrize(("bad", "match"), [
    (np.zeros((3, 784)), "look like mnist"),
    (np.zeros((3, 65)), "not digits images"),
    (np.zeros((0, 64)), "no images"),
    (np.full((2, 64), 1.5), "outside \\[0, 1\\]"),
    (np.full((2, 64), -0.1), "outside \\[0, 1\\]"),
    (np.full((2, 64), np.nan), "NaN"),
    (np.array([["a"] * 64]), "must be numbers"),
    (np.zeros(64), "not digits images"),
    ("not an array", "must be numbers"),
])
def test_bad_images_are_typed_errors(digits_classifier, bad, match):
    with pytest.raises(DataError, match=match) as info:
        digits_classifier.probs(bad)
    assert info.value.expected and info.value.fix


def test_unknown_dataset(cache):
    with pytest.raises(Exception) as info:
        load_classifier("cifar", cache_dir=cache)
    assert "mnist" in str(info.value) and "digits" in str(info.value)
    assert type(info.value).__name__ == "ObjectiveError"


# -- the cache ----------------------------------------------------------------------------------------------

def test_cache_folder_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("LAGFAM_CACHE", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LAGFAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "lagrangian_family"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "lagrangian_family"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def count_training(monkeypatch):
    calls = []
    real = clf_mod.train_classifier

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(clf_mod, "train_classifier", counted)
    return calls


def test_second_load_reads_the_cache_and_does_not_retrain(tmp_path, monkeypatch):
    calls = count_training(monkeypatch)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = load_classifier("digits", cache_dir=tmp_path)
    assert calls == [1] and first.trained_now
    # training forks the random state and restores the thread count
    assert torch.equal(torch.rand(3), expected) and torch.get_num_threads() == threads
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [first.key, first.key + ".lock"]
    assert first.key.startswith("digits-classifier-v1-")
    mtime = first.path.stat().st_mtime_ns
    clf_mod.forget_loaded()
    torch.manual_seed(123)
    second = load_classifier("digits", cache_dir=tmp_path)
    assert calls == [1] and not second.trained_now
    assert torch.equal(torch.rand(3), expected)  # loading draws nothing from the caller's random state
    assert second.path.stat().st_mtime_ns == mtime
    x, _ = independent_test_split()
    np.testing.assert_array_equal(second.probs(x), first.probs(x))
    # within a process, the loaded classifier is kept
    assert load_classifier("digits", cache_dir=tmp_path) is second


def state(path: Path) -> dict:
    payload = cache_mod.read_entry(path)
    return torch.load(io.BytesIO(payload), weights_only=True)["state_dict"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_cache_file_is_retrained_not_trusted(tmp_path, monkeypatch, digits_classifier, damage):
    shutil.copy(digits_classifier.path, tmp_path)
    first = load_classifier("digits", cache_dir=tmp_path)
    assert not first.trained_now
    original = state(first.path)
    raw = bytearray(first.path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray(b"not a cache entry at all")
    first.path.write_bytes(bytes(raw))
    clf_mod.forget_loaded()
    calls = count_training(monkeypatch)
    with pytest.warns(CacheWarning, match="damaged"):
        again = load_classifier("digits", cache_dir=tmp_path)
    assert calls == [1] and again.trained_now
    # the rewritten file is whole, and training is deterministic: the same weights again
    retrained = state(again.path)
    assert retrained.keys() == original.keys()
    for k in original:
        assert torch.equal(retrained[k], original[k]), k


def test_a_valid_entry_for_other_settings_is_retrained(tmp_path, monkeypatch, digits_classifier):
    shutil.copy(digits_classifier.path, tmp_path)
    first = load_classifier("digits", cache_dir=tmp_path)
    assert not first.trained_now
    # a well-formed entry written for another configuration (e.g. by other code under the same name)
    other = clf_mod.DigitNet(clf_mod.CONFIGS["digits"])
    cache_mod.write_entry(first.path, clf_mod._serialise("digits", clf_mod.CONFIGS["mnist"], first.data_sha256,
                                                         other, 0.99, 1.0, 1.0))
    clf_mod.forget_loaded()
    calls = count_training(monkeypatch)
    again = load_classifier("digits", cache_dir=tmp_path)
    assert calls == [1] and again.trained_now


def test_a_judge_below_its_floor_is_an_error_and_is_not_cached(tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(clf_mod.CONFIGS, "digits", replace(clf_mod.CONFIGS["digits"], epochs=1, min_accuracy=1.01))
    with pytest.raises(EvaluationError, match="test accuracy") as info:
        load_classifier("digits", cache_dir=tmp_path)
    assert "nothing was cached" in info.value.fix
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


def test_an_unwritable_cache_warns_and_still_gives_a_classifier(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(CacheWarning, match="cannot write"):
        c = load_classifier("digits", cache_dir=blocker / "cache")
    assert c.test_accuracy >= 0.95 and c.trained_now


def test_write_entry_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "entry"
    cache_mod.write_entry(path, b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.os, "replace", fail)
    with pytest.raises(OSError):
        cache_mod.write_entry(path, b"new")
    monkeypatch.undo()
    assert cache_mod.read_entry(path) == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_read_entry_reports_damage(tmp_path):
    path = tmp_path / "entry"
    cache_mod.write_entry(path, b"payload")
    assert cache_mod.read_entry(path) == b"payload"
    assert cache_mod.read_entry(tmp_path / "missing") is None
    path.write_bytes(path.read_bytes()[:-1] + b"P")
    with pytest.warns(CacheWarning, match="checksum"):
        assert cache_mod.read_entry(path) is None


def test_two_processes_train_once(tmp_path):
    """Two processes asking for the same missing classifier at once: one trains, the other waits
    on the lock and reads the finished file (never a partial one)."""
    code = ("import sys; from lagrangian_family.evaluate import load_classifier; "
            "c = load_classifier('digits', cache_dir=sys.argv[1]); print(c.trained_now, c.test_accuracy)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    results = sorted(o[0].split()[0] for o in outs)
    assert results == ["False", "True"]
    assert len({o[0].split()[1] for o in outs}) == 1
    assert not list(tmp_path.glob("*.part"))
