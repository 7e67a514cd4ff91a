"""Damaged checkpoints and kill -9 trials: are they all detected, do all runs resume exactly?

    python bench/checkpoints.py [--kills 25] [--steps 200] [--seed 0]

1. **Corpus.** A real trainer checkpoint (LagVAE on sklearn's digits, Adam, RMSProp dual
   updater) is damaged in 60+ ways: emptied, truncated at 9 points, bytes flipped in tensor data,
   in the pickle, in zip headers, a block zeroed, garbage prepended or appended, replaced by other
   files (random bytes, text, JSON, gzip, zip, npy, a pickle that would run code, a plain
   state_dict), headers altered (version, format, kind, checksum), and states re-saved with a
   valid checksum but inconsistent content (step -5, missing or extra keys, other shapes or
   dtypes, NaN weights, optimiser, updater, batch-order and random states that do not fit), plus
   a missing file, a folder, a dangling link and a FIFO. Each is loaded into a fresh trainer:
   *detected* (a CheckpointError naming the file, the trainer unchanged), *raw* (any other
   exception), *silent* (loaded, state altered) or *intact* (loaded, state identical: the
   damage missed the content, e.g. bytes after the end of the zip).
2. **Kills.** A child process trains ``--steps`` steps with a checkpoint and a CSV log row at
   every step; it is killed (SIGKILL) at a random moment, then a second child resumes from the
   checkpoint (or from scratch) to the end. Checked against one uninterrupted run: the final state
   bit for bit, the log (every step once, the same rows), and no temporary file left.

Target: every damaged checkpoint detected (0 raw, 0 silent), every kill resumed exactly.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gzip
import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lagrangian_family.backends.torch import checkpoint as ck  # noqa: E402
from lagrangian_family.files import TEMP_SUFFIX  # noqa: E402


def make_trainer(folder: Path | None = None, *, seed: int = 0, hidden: int = 64, updater: bool = True,
                 log_every: int = 1):
    """The trainer of every trial: LagVAE on the digits (deterministic from ``seed``)."""
    from lagrangian_family.backends.torch import (
        BernoulliMLPDecoder,
        GaussianMLPEncoder,
        Lagrangian,
        StandardNormalPrior,
        Trainer,
        compile_objective,
        paper_preset,
    )
    from lagrangian_family.data import load_digits

    x, _ = load_digits()
    data = torch.from_numpy((x[:500] > 0.5).astype(np.float32))
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    enc = GaussianMLPEncoder(64, 8, hidden=(hidden, hidden))
    dec = BernoulliMLPDecoder(8, 64, hidden=(hidden, hidden))
    lag = Lagrangian.lagvae(-1.0, (60.0, 0.01))
    fn = compile_objective(lag, encoder=enc, decoder=dec, prior=StandardNormalPrior(8))
    kw = {}
    if folder is not None:
        kw = dict(checkpoint=folder / "ck.pt", checkpoint_every=1, log_csv=folder / "log.csv", log_every=log_every)
    return Trainer(fn, data, batch_size=50, updater=paper_preset(lag) if updater else None, progress=False,
                   seed=seed + 1, **kw)


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# -- 1. the corpus --------------------------------------------------------------------------------------

def _records(raw: bytes) -> dict[str, tuple[int, int]]:
    """(offset, size) of every stored zip member's data."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        for info in z.infolist():
            name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
                int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
            out[info.filename] = (info.header_offset + 30 + name_len + extra_len, info.compress_size)
    return out


def _flip(raw: bytes, i: int) -> bytes:
    b = bytearray(raw)
    b[i] ^= 0x5A
    return bytes(b)


class _Run:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def corpus(good: Path, folder: Path) -> list[tuple[str, callable]]:
    """(kind, make(path)) pairs; ``make`` writes the damaged checkpoint at ``path``."""
    raw = good.read_bytes()
    recs = _records(raw)
    data_recs = sorted((k for k in recs if "/data/" in k and not k.endswith(".pkl")), key=lambda k: -recs[k][1])
    pkl_off, pkl_size = next(v for k, v in recs.items() if k.endswith("data.pkl"))
    central = raw.rfind(b"PK\x01\x02")
    payload = torch.load(good, weights_only=True)
    state = payload["state"]
    marker = folder / "payload-ran"
    kinds: list[tuple[str, callable]] = []

    def raw_kind(name, data):
        kinds.append((name, lambda p, d=data: p.write_bytes(d)))

    raw_kind("empty file", b"")
    for cut in (1, 16, 100, 1000):
        raw_kind(f"truncated to {cut} bytes", raw[:cut])
    for frac in (0.25, 0.5, 0.75, 0.9):
        raw_kind(f"truncated to {frac:.0%}", raw[:int(len(raw) * frac)])
    raw_kind("last byte missing", raw[:-1])
    for rank, label in ((0, "largest"), (len(data_recs) // 2, "middle"), (len(data_recs) - 1, "smallest")):
        off, size = recs[data_recs[rank]]
        raw_kind(f"flipped byte in the {label} tensor's data", _flip(raw, off + size // 2))
    off, size = recs[data_recs[0]]
    raw_kind("flipped bytes in two tensors", _flip(_flip(raw, off + 3), recs[data_recs[1]][0] + 1))
    for frac in (0.1, 0.5, 0.9):
        raw_kind(f"flipped byte at {frac:.0%} of the pickle", _flip(raw, pkl_off + int(pkl_size * frac)))
    raw_kind("flipped byte in the zip directory", _flip(raw, central + 20))
    raw_kind("flipped byte in a local zip header", _flip(raw, 10))
    mid = len(raw) // 2
    raw_kind("a 4 KiB block zeroed", raw[:mid] + bytes(4096) + raw[mid + 4096:])
    raw_kind("garbage prepended", b"garbage\n" * 8 + raw)
    raw_kind("garbage appended", raw + b"garbage\n" * 8)
    raw_kind("random bytes", os.urandom(len(raw)))
    raw_kind("a text file", b"step = 12\nweights = [0.1, 0.2]\n")
    raw_kind("a JSON file", json.dumps({"format": "lagfam-checkpoint", "version": 1}).encode())
    raw_kind("the checkpoint gzipped", gzip.compress(raw))
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    raw_kind("another zip archive", zbuf.getvalue())
    nbuf = io.BytesIO()
    np.save(nbuf, np.arange(10))
    raw_kind("a numpy .npy file", nbuf.getvalue())
    raw_kind("a pickle that would run code", pickle.dumps(_Run(str(marker))))
    kinds.append(("a torch file holding code", lambda p: torch.save({"format": ck.FORMAT, "version": 1,
                                                                     "state": _Run(str(marker))}, p)))
    kinds.append(("a plain state_dict (no header)", lambda p: torch.save(state, p)))
    kinds.append(("a torch file of a list", lambda p: torch.save([1, 2, 3], p)))
    for name, change in (("format version 2", {"version": 2}), ("format version '1'", {"version": "1"}),
                         ("another format name", {"format": "other"}), ("no checksum", {"sha256": None}),
                         ("checksum altered", {"sha256": "0" * 64}), ("kind altered", {"kind": "model"}),
                         ("no state", {"state": None})):
        kinds.append((f"header: {name}", lambda p, c=change: torch.save({**payload, **c}, p)))

    def resaved(name, edit):
        def make(p):
            s = copy.deepcopy(state)
            edit(s)
            ck.save(p, s, kind="trainer")
        kinds.append((f"consistent checksum: {name}", make))

    first_w = next(k for k in state["loss_fn"] if k.endswith("weight"))
    a_bias = next(k for k in state["loss_fn"] if k.endswith("bias"))
    resaved("step = -5", lambda s: s.update(step=-5))
    resaved("step = 2.5", lambda s: s.update(step=2.5))
    resaved("step = '7'", lambda s: s.update(step="7"))
    resaved("no loss_fn", lambda s: s.pop("loss_fn"))
    resaved("a parameter missing", lambda s: s["loss_fn"].pop(a_bias))
    resaved("an extra parameter", lambda s: s["loss_fn"].__setitem__("encoder.extra", torch.zeros(1)))
    resaved("a weight of another shape", lambda s: s["loss_fn"].__setitem__(first_w, torch.zeros(3, 3)))
    resaved("a weight in float64", lambda s: s["loss_fn"].__setitem__(first_w, s["loss_fn"][first_w].double()))
    resaved("a NaN weight", lambda s: s["loss_fn"][first_w].view(-1).__setitem__(0, float("nan")))
    resaved("infinite multipliers", lambda s: s["loss_fn"]["lagrangian.multipliers"].fill_(float("inf")))
    resaved("an optimiser group missing", lambda s: s["model_optimizer"]["param_groups"].clear())
    resaved("an optimiser moment of another shape",
            lambda s: s["model_optimizer"]["state"][0].__setitem__("exp_avg", torch.zeros(2)))
    resaved("a NaN optimiser moment", lambda s: s["model_optimizer"]["state"][0]["exp_avg_sq"].fill_(float("nan")))
    resaved("an optimiser state not a dict", lambda s: s["model_optimizer"].__setitem__("state", [1]))
    resaved("an updater state of another shape", lambda s: s["updater"].__setitem__("ms", torch.zeros(7)))
    resaved("no updater state", lambda s: s.update(updater=None))
    resaved("batch position -1", lambda s: s["batches"].update(pos=-1))
    resaved("batch position past the end", lambda s: s["batches"].update(pos=10**6))
    resaved("batch order too short", lambda s: s["batches"].update(perm=s["batches"]["perm"][:-1]))
    resaved("batch order not a permutation", lambda s: s["batches"]["perm"].__setitem__(0, s["batches"]["perm"][1]))
    resaved("batch generator state cut", lambda s: s["batches"].update(gen=s["batches"]["gen"][:100]))
    resaved("torch random state cut", lambda s: s["rng"].update(torch=s["rng"]["torch"][:10]))
    resaved("numpy random keys cut", lambda s: s["rng"]["numpy"].update(keys=s["rng"]["numpy"]["keys"][:5]))
    resaved("python random state cut", lambda s: s["rng"]["python"]["state"].pop())
    resaved("numpy random position out of range", lambda s: s["rng"]["numpy"].update(pos=10**6))

    def other(p, **kw):
        t = make_trainer(**kw)
        t.train(2)
        t.save(p)

    kinds.append(("another architecture", lambda p: other(p, hidden=32)))
    kinds.append(("a trainer without updater", lambda p: other(p, updater=False)))
    kinds.append(("a 'model' checkpoint", lambda p: ck.save(p, {"encoder": state["loss_fn"]}, kind="model")))

    def missing(p):
        p.unlink(missing_ok=True)

    def folder_(p):
        p.unlink(missing_ok=True)
        p.mkdir()

    def dangling(p):
        p.unlink(missing_ok=True)
        p.symlink_to(p.parent / "nowhere")

    def fifo(p):
        p.unlink(missing_ok=True)
        os.mkfifo(p)

    kinds += [("a missing file", missing), ("a folder", folder_), ("a dangling link", dangling), ("a FIFO", fifo)]
    return kinds


def run_corpus(folder: Path) -> int:
    good = folder / "good.pt"
    t = make_trainer()
    t.train(5)
    t.save(good)
    reference = copy.deepcopy(t.state_dict())
    counts = {"detected": 0, "raw": 0, "silent": 0, "intact": 0}
    failures = []
    kinds = corpus(good, folder)
    for i, (name, make) in enumerate(kinds):
        path = folder / f"damaged-{i}.pt"
        make(path)
        fresh = make_trainer(seed=7)
        before = copy.deepcopy(fresh.state_dict())
        try:
            fresh.load(path)
        except ck.CheckpointError as e:
            ok = str(path) in str(e) and equal(before, fresh.state_dict()) and "weights_only=False" not in str(e)
            outcome = "detected" if ok else "raw"
            detail = str(e).splitlines()[0]
        except Exception as e:  # noqa: BLE001 - what the bench counts
            outcome, detail = "raw", f"{type(e).__name__}: {e}"
        else:
            outcome = "intact" if equal(reference, fresh.state_dict()) else "silent"
            detail = "loaded"
        counts[outcome] += 1
        print(f"  {outcome:<8} {name}: {detail[:110]}")
        if outcome in ("raw", "silent"):
            failures.append(name)
    ran = (folder / "payload-ran").exists()
    print(f"corpus: {len(kinds)} kinds: {counts['detected']} detected, {counts['intact']} intact content loaded "
          f"unaltered, {counts['raw']} raw errors, {counts['silent']} silent loads of altered state; "
          f"payload executed: {'YES' if ran else 'no'}")
    return len(failures) + int(ran)


# -- 2. kill -9 trials ----------------------------------------------------------------------------------

def child(folder: Path, steps: int) -> None:
    torch.set_num_threads(1)
    t = make_trainer(folder)
    if (folder / "ck.pt").exists():
        t.load(folder / "ck.pt")
    print(f"start {t.step_count}", flush=True)
    t.train(steps - t.step_count)
    print("finished", flush=True)


def _child(folder: Path, steps: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, "--child", str(folder), "--steps", str(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def run_kills(base: Path, n: int, steps: int, rng: random.Random) -> int:
    ref = base / "reference"
    ref.mkdir(parents=True)
    proc = _child(ref, steps)
    proc.stdout.readline()
    t0 = time.perf_counter()
    proc.stdout.readline()  # "finished"
    duration = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{err}")
    final = ck.load(ref / "ck.pt")
    ref_rows = _rows(ref / "log.csv")
    print(f"reference: {steps} steps in {duration:.1f} s after start-up; kills uniform over that time")
    stats = {"exact": 0, "log": 0, "clean": 0, "temp_at_kill": 0, "before_first": 0, "too_late": 0}
    i = 0
    while i < n and stats["too_late"] < 3 * n:
        d = base / f"trial-{i}-{stats['too_late']}"
        d.mkdir()
        proc = _child(d, steps)
        proc.stdout.readline()  # "start 0": imports done
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        if "finished" in out:  # the kill came after the end: not a trial
            stats["too_late"] += 1
            continue
        i += 1
        temps = [p.name for p in d.iterdir() if p.name.endswith(TEMP_SUFFIX)]
        stats["temp_at_kill"] += bool(temps)
        had = (d / "ck.pt").exists()
        stats["before_first"] += not had
        proc = _child(d, steps)
        out, err = proc.communicate()
        if proc.returncode != 0:
            print(f"  trial {i - 1}: the resumed run failed: {err.strip().splitlines()[-1] if err.strip() else '?'}")
            continue
        start = int(out.split()[1])
        exact = equal(final, ck.load(d / "ck.pt"))
        rows = _rows(d / "log.csv")
        steps_logged = [r[0] for r in rows[1:]]
        log_ok = rows == ref_rows and len(set(steps_logged)) == len(steps_logged)
        leftovers = [p.name for p in d.iterdir() if p.name.endswith(TEMP_SUFFIX)]
        stats["exact"] += exact
        stats["log"] += log_ok
        stats["clean"] += not leftovers
        print(f"  trial {i - 1:2d}: killed at step {start:3d} of {steps}{' (a save in progress)' if temps else ''}: "
              f"state {'exact' if exact else 'DIFFERENT'}, log {'ok' if log_ok else 'WRONG'}, "
              f"{'no temporary' if not leftovers else 'left ' + ', '.join(leftovers)}")
    print(f"kills: {i} trials ({stats['temp_at_kill']} during a save, {stats['before_first']} before the first "
          f"checkpoint; {stats['too_late']} more kills came after the run had finished and are not counted): "
          f"{stats['exact']} resumed bit-exact, {stats['log']} logs identical without duplicates, "
          f"{stats['clean']} folders without temporaries")
    return 3 * n - stats["exact"] - stats["log"] - stats["clean"]  # a trial not made counts as a failure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=25)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        child(Path(opts.child), opts.steps)
        return 0
    torch.set_num_threads(1)
    base = Path(tempfile.mkdtemp(prefix="lagfam-checkpoints-"))
    try:
        (base / "corpus").mkdir()
        bad = run_corpus(base / "corpus")
        bad += run_kills(base / "kills", opts.kills, opts.steps, random.Random(opts.seed)) if opts.kills else 0
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    print("target met" if bad == 0 else f"target missed: {bad} failures")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
