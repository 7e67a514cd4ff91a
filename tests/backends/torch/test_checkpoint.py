"""Checkpoints: damaged, truncated, foreign or inconsistent files raise CheckpointError naming the
file (never a raw EOFError or UnpicklingError, never a silent load); no temporary survives a
kill; a resumed CSV log has each step once. The full corpus and the kill trials are in
``bench/checkpoints.py``."""

from __future__ import annotations

import csv
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lagrangian_family import ObjectiveError
from lagrangian_family.backends.torch import Lagrangian, Trainer, compile_objective, paper_preset
from lagrangian_family.backends.torch import checkpoint as ck
from lagrangian_family.backends.torch.checkpoint import CheckpointError
from lagrangian_family.files import TEMP_SUFFIX

from .helpers import binary_data, tiny_models

ROOT = Path(__file__).resolve().parents[3]


def _trainer(seed=0, hidden=16, **kw):
    enc, dec, prior = tiny_models(seed)
    if hidden != 16:
        from lagrangian_family.backends.torch import BernoulliMLPDecoder, GaussianMLPEncoder

        torch.manual_seed(seed)
        enc, dec = GaussianMLPEncoder(6, 2, hidden=(hidden,)), BernoulliMLPDecoder(2, 6, hidden=(hidden,))
    lag = Lagrangian.lagvae(-1.0, (3.0, 0.01))
    fn = compile_objective(lag, encoder=enc, decoder=dec, prior=prior)
    return Trainer(fn, binary_data(40), batch_size=10, updater=paper_preset(lag), progress=False, seed=3, **kw)


def _snapshot(trainer):
    import copy

    return copy.deepcopy(trainer.state_dict())


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture
def saved(tmp_path):
    t = _trainer()
    t.train(4)
    path = tmp_path / "ck.pt"
    t.save(path)
    return path, t


def test_round_trip_is_exact_and_has_a_header(saved):
    path, t = saved
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "lagfam-checkpoint" and payload["version"] == 1 and payload["kind"] == "trainer"
    assert len(payload["sha256"]) == 64
    fresh = _trainer(seed=5)
    fresh.load(path)
    assert fresh.step_count == 4 and _equal(fresh.state_dict()["loss_fn"], t.state_dict()["loss_fn"])


def _bytes_of(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "empty":
        raw = bytearray()
    elif how == "truncated":
        raw = raw[: len(raw) // 2]
    elif how == "last byte missing":
        raw = raw[:-1]
    elif how == "flipped weight byte":
        w = torch.load(path, weights_only=True)["state"]["loss_fn"]["encoder.body.0.weight"]
        i = raw.index(_bytes_of(w))
        raw[i + 5] ^= 0x10
    elif how == "flipped pickle byte":
        i = raw.index(b"model_optimizer")
        raw[i + 2] ^= 0x01
    elif how == "random bytes":
        raw = bytearray(os.urandom(2000))
    elif how == "text":
        raw = bytearray(b"step = 4\nweights = [1, 2, 3]\n")
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["empty", "truncated", "last byte missing", "flipped weight byte",
                                 "flipped pickle byte", "random bytes", "text"])
def test_damaged_files_raise_checkpoint_error_naming_the_file(saved, how):
    path, _ = saved
    _damage(path, how)
    fresh = _trainer(seed=5)
    before = _snapshot(fresh)
    with pytest.raises(CheckpointError) as info:
        fresh.load(path)
    message = str(info.value)
    assert str(path) in message and info.value.path == path
    assert "weights_only=False" not in message  # never the advice to unpickle arbitrary code
    assert isinstance(info.value, ObjectiveError)
    assert _equal(before, fresh.state_dict())  # nothing was loaded


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ck.load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is not a file"):
        ck.load(tmp_path)


def test_foreign_files_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"step": 3, "loss_fn": {}}, plain)  # a plain state_dict: no format header
    with pytest.raises(CheckpointError, match="not a lagfam checkpoint"):
        ck.load(plain)
    model = ck.save(tmp_path / "model.pt", {"encoder": {"w": torch.ones(1)}}, kind="model")
    with pytest.raises(CheckpointError, match="is a 'model' checkpoint") as info:
        _trainer().load(model)
    assert "expected: a 'trainer' checkpoint" in str(info.value)


def test_other_versions_and_altered_headers(tmp_path):
    path = ck.save(tmp_path / "a.pt", {"x": torch.zeros(2)})
    payload = torch.load(path, weights_only=True)
    for change, message in (({"version": 2}, "has format version 2"), ({"version": "1"}, "format version '1'"),
                            ({"sha256": "0" * 64}, "checksum does not match"), ({"kind": "trainer"}, "checksum"),
                            ({"sha256": None}, "lacks the checksum")):
        torch.save({**payload, **change}, path)
        with pytest.raises(CheckpointError, match=message):
            ck.load(path)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "lagfam-checkpoint", "version": 1, "state": _Payload(marker)}, path)
    legacy = tmp_path / "evil.pkl"
    legacy.write_bytes(pickle.dumps(_Payload(marker)))
    for p in (path, legacy):
        with pytest.raises(CheckpointError, match="damaged or not a checkpoint") as info:
            ck.load(p)
        assert "weights_only=False" not in str(info.value)
    assert not marker.exists()


def _resave(path: Path, edit) -> None:
    """Change the state and write it back with a valid checksum: an inconsistent checkpoint."""
    state = ck.load(path)
    edit(state)
    ck.save(path, state, kind="trainer")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(step=-5), "its step is -5"),
    (lambda s: s.update(step=2.5), "its step is 2.5"),
    (lambda s: s.pop("rng"), "it lacks rng"),
    (lambda s: s["loss_fn"].pop("decoder.net.0.bias"), "missing 'decoder.net.0.bias'"),
    (lambda s: s["loss_fn"].__setitem__("encoder.head.bias", torch.zeros(9)), r"shape \(9,\)"),
    (lambda s: s["loss_fn"].__setitem__("encoder.head.bias", torch.zeros(4, dtype=torch.float64)), "float64"),
    (lambda s: s["loss_fn"]["encoder.head.weight"].__setitem__((0, 0), float("nan")), "NaN or infinite"),
    (lambda s: s["batches"].__setitem__("pos", 41), "outside 0..40"),
    (lambda s: s["batches"]["perm"].__setitem__(0, s["batches"]["perm"][1]), "not a permutation"),
    (lambda s: s["model_optimizer"]["param_groups"].append(s["model_optimizer"]["param_groups"][0]),
     "parameter groups"),
    (lambda s: s["model_optimizer"]["state"][0].__setitem__("exp_avg", torch.zeros(3)), "has shape"),
    (lambda s: s["updater"].__setitem__("ms", torch.zeros(5)), r"updater\['ms'\]"),
    (lambda s: s["rng"]["python"]["state"].pop(), "length 624"),
    (lambda s: s["rng"]["numpy"].__setitem__("pos", 9999), "Mersenne"),
])
def test_inconsistent_states_are_refused_and_leave_the_trainer_unchanged(saved, edit, message):
    path, _ = saved
    _resave(path, edit)
    fresh = _trainer(seed=5)
    before = _snapshot(fresh)
    with pytest.raises(CheckpointError, match=message) as info:
        fresh.load(path)
    assert f"checkpoint {path} does not fit this trainer" in str(info.value)
    assert _equal(before, fresh.state_dict())


def test_another_architecture_is_refused(saved):
    path, _ = saved
    with pytest.raises(CheckpointError, match=r"encoder.body.0.weight'\] is a torch.float32 tensor of shape"):
        _trainer(hidden=8).load(path)


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    path = tmp_path / "ck.pt"
    dead = tmp_path / f".ck.pt.{2**22 + 11}.00c0ffee{TEMP_SUFFIX}"  # no such PID (above the default pid_max)
    live = tmp_path / f".ck.pt.{os.getpid()}.0badcafe{TEMP_SUFFIX}"
    other = tmp_path / f".other.pt.{2**22 + 11}.00c0ffee{TEMP_SUFFIX}"
    for p in (dead, live, other):
        p.write_bytes(b"")
    ck.save(path, {"a": torch.ones(1)})
    assert not dead.exists() and live.exists() and other.exists()
    live.unlink()


_CHILD = textwrap.dedent("""
    import sys, torch
    from lagrangian_family.backends.torch import checkpoint as ck
    big = {"w": torch.arange(4_000_000, dtype=torch.float32)}
    ck.save(sys.argv[1], big)
    print("ready", flush=True)
    while True:
        ck.save(sys.argv[1], big)
""")


def _kill_while_saving(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout.readline().strip() == b"ready"
            # kill at a moment a temporary exists (the child rewrites 16 MB in a loop)
            deadline = time.monotonic() + 30
            while not any(p.name.endswith(TEMP_SUFFIX) for p in path.parent.iterdir()):
                assert time.monotonic() < deadline
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()


def test_kill_during_save_leaves_no_temporary_after_the_next_load(tmp_path):
    path = tmp_path / "big.pt"
    for _ in range(5):  # the kill may land just after a rename: then try again
        _kill_while_saving(path)
        if any(p.name.endswith(TEMP_SUFFIX) for p in tmp_path.iterdir()):
            break
    assert any(p.name.endswith(TEMP_SUFFIX) for p in tmp_path.iterdir())  # the kill left one
    state = ck.load(path)  # the last complete save, verified
    assert torch.equal(state["w"], torch.arange(4_000_000, dtype=torch.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.pt"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resumed_log_has_every_step_once_and_matches_an_uninterrupted_run(tmp_path):
    full_log = tmp_path / "full.csv"
    _trainer(log_csv=full_log, log_every=1).train(15)

    log, path = tmp_path / "log.csv", tmp_path / "ck.pt"

    def crash(trainer, out):
        if trainer.step_count == 12:
            raise KeyboardInterrupt  # as a kill after step 12: the log has rows 11, 12, the checkpoint step 10

    t = _trainer(log_csv=log, log_every=1, checkpoint=path, checkpoint_every=5, callback=crash)
    with pytest.raises(KeyboardInterrupt):
        t.train(15)
    with open(log, "a") as f:
        f.write("13,0.5,0.")  # and a row cut short by the kill
    resumed = _trainer(seed=9, log_csv=log, log_every=1, checkpoint=path, checkpoint_every=5)
    resumed.load(path)
    assert [r["step"] for r in _rows(log)] == [str(i) for i in range(1, 11)]
    resumed.train(5)
    assert _rows(log) == _rows(full_log)


def test_first_training_of_a_fresh_trainer_starts_its_log(tmp_path):
    log = tmp_path / "log.csv"
    _trainer(log_csv=log, log_every=2).train(6)
    _trainer(log_csv=log, log_every=2).train(4)  # a new run on the same path: rows of step > 0 belong to the old one
    assert [r["step"] for r in _rows(log)] == ["2", "4"]


def test_a_log_that_is_not_a_training_log_is_not_touched(tmp_path):
    log = tmp_path / "notes.csv"
    log.write_text("name,value\na,1\n")
    with pytest.raises(ObjectiveError, match="is not a training log"):
        _trainer(log_csv=log).train(1)
    assert log.read_text() == "name,value\na,1\n"
