"""Fuzz the ``lagfam`` command line as a careless user would; count tracebacks (target: 0).

    python bench/cli_fuzz.py [--jobs 2] [--timeout 60] [--only demo]

Every subcommand gets bad values (numbers out of range, NaN, 1e999999, text where a number goes,
empty strings, 100,000-character arguments), bad files and folders (``--out`` on a file, under a
file, in a read-only or unlistable folder, in ``/proc``; ``--data`` missing, a file, empty,
unreadable, with garbled, truncated, mislabelled, empty or mismatched IDX files), an output
folder held by another run, and an output folder of another experiment. Each case runs
``python -m lagrangian_family.cli ARGS`` in a fresh process (in a scratch folder). As root, the
processes run without the capabilities that bypass file permissions (``setpriv``), so that
permission cases behave as they do for a user.

A case passes when the process ends within the timeout, prints no traceback, exits with the
expected status (2 for bad input, with ``error:`` or argparse's ``usage:`` on stderr) and,
when its ``--out`` did not exist before, leaves nothing there. Printed: one line per failing
case, then the counts per subcommand and in total. The objectives that crash the symbolic layer
(issue 7, item 2: classify limits, another engineer's work) are counted apart.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Case:
    group: str
    args: list[str]
    rc: int = 2  # the expected exit status
    out: str | None = None  # an --out that must not be created
    note: str = ""
    item2: bool = False  # a crash of the symbolic layer (issue 7 item 2), counted apart
    result: dict = field(default_factory=dict)


# -- scratch files ------------------------------------------------------------------------------------

def _idx(array_shape: tuple[int, ...], data: bytes, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(array_shape)]) + b"".join(struct.pack(">I", d) for d in array_shape) + data


def _mnist(folder: Path, n_train: int = 20, n_test: int = 10, *, gz: bool = False, **override) -> Path:
    """A small synthetic MNIST folder (valid unless ``override`` replaces a file's bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": _idx((n_train, 28, 28), bytes(n_train * 784)),
        "train-labels-idx1-ubyte": _idx((n_train,), bytes(i % 10 for i in range(n_train))),
        "t10k-images-idx3-ubyte": _idx((n_test, 28, 28), bytes(n_test * 784)),
        "t10k-labels-idx1-ubyte": _idx((n_test,), bytes(i % 10 for i in range(n_test))),
    }
    files.update(override)
    for name, raw in files.items():
        if raw is None:
            continue
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def scratch(base: Path) -> dict[str, Path]:
    p = {}
    p["file"] = base / "a-file"
    p["file"].write_text("not a folder\n")
    p["ro"] = base / "read-only"
    p["ro"].mkdir()
    p["noaccess"] = base / "no-access"
    p["noaccess"].mkdir()
    (p["noaccess"] / "inner").mkdir()
    p["empty"] = base / "empty"
    p["empty"].mkdir()
    p["garbage"] = base / "mnist-garbage"
    p["garbage"].mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (p["garbage"] / name).write_bytes(os.urandom(3000))
    good = _mnist(base / "mnist-ok-template")
    train_images = (good / "train-images-idx3-ubyte").read_bytes()
    p["truncated"] = _mnist(base / "mnist-truncated", **{"train-images-idx3-ubyte": train_images[:5000]})
    p["magic"] = _mnist(base / "mnist-magic", **{"train-images-idx3-ubyte": b"\x12\x34" + train_images[2:]})
    p["zero"] = _mnist(base / "mnist-zero-images", n_train=0)
    p["counts"] = _mnist(base / "mnist-counts", **{"train-labels-idx1-ubyte": _idx((7,), bytes(7))})
    p["labels"] = _mnist(base / "mnist-labels", **{"train-labels-idx1-ubyte": _idx((20,), bytes([42]) * 20)})
    p["shape"] = _mnist(base / "mnist-shape", **{"train-images-idx3-ubyte": _idx((20, 27, 27), bytes(20 * 729))})
    p["halfgz"] = _mnist(base / "mnist-gz-truncated", gz=True)
    raw = (p["halfgz"] / "t10k-images-idx3-ubyte.gz").read_bytes()
    (p["halfgz"] / "t10k-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    p["missing1"] = _mnist(base / "mnist-missing-one", **{"t10k-labels-idx1-ubyte": None})
    p["unreadable"] = _mnist(base / "mnist-unreadable-file")
    p["dirfile"] = _mnist(base / "mnist-dir-as-file", **{"train-images-idx3-ubyte": None})
    (p["dirfile"] / "train-images-idx3-ubyte").mkdir()
    p["other"] = base / "other-experiment"
    p["other"].mkdir()
    (p["other"] / "experiment.json").write_text('{"experiment": "pareto", "budget": {"name": "smoke"}}')
    p["locked"] = base / "locked"
    p["locked"].mkdir()
    p["runsfile"] = base / "runs-is-a-file"
    p["runsfile"].mkdir()
    (p["runsfile"] / "runs").write_text("x")
    shutil.rmtree(good)
    # a trained (tiny) model for `lagfam sample`, a damaged copy, sample arrays for `lagfam score`
    import numpy as np
    import torch

    from lagrangian_family.backends.torch import (
        BernoulliMLPDecoder,
        GaussianMLPEncoder,
        StandardNormalPrior,
        compile_objective,
        save_model,
    )

    torch.manual_seed(0)
    fn = compile_objective("vae", encoder=GaussianMLPEncoder(64, 2, hidden=(8,)),
                           decoder=BernoulliMLPDecoder(2, 64, hidden=(8,)), prior=StandardNormalPrior(2))
    p["model"] = base / "run-ok"
    p["model"].mkdir()
    save_model(p["model"] / "model.pt", fn)
    p["badmodel"] = base / "run-damaged"
    p["badmodel"].mkdir()
    raw = bytearray((p["model"] / "model.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (p["badmodel"] / "model.pt").write_bytes(bytes(raw))
    p["nomodel"] = base / "run-empty"
    p["nomodel"].mkdir()
    for name, arr in (("nan", np.full((10, 64), np.nan, dtype=np.float32)), ("shape", np.zeros((10, 7), np.float32)),
                      ("range", np.full((10, 64), 3.0, dtype=np.float32)), ("empty", np.zeros((0, 64), np.float32)),
                      ("strings", np.array(["a", "b"])), ("3d", np.zeros((2, 8, 8), np.float32))):
        np.save(base / f"samples-{name}.npy", arr)
        p[f"npy-{name}"] = base / f"samples-{name}.npy"
    (base / "objects.npy").write_bytes(b"\x93NUMPY" + os.urandom(200))
    p["npy-garbage"] = base / "objects.npy"
    # permissions last (as root the cases run without the capabilities that bypass them)
    p["ro"].chmod(0o555)
    p["noaccess"].chmod(0o000)
    (p["unreadable"] / "train-images-idx3-ubyte").chmod(0o000)
    return p


# -- the cases ----------------------------------------------------------------------------------------

ITEM2_OBJECTIVES = [  # crash inputs of the symbolic layer listed in issue 7 (item 2)
    "exp(exp(exp(exp(10)))) * KL(q(z) || p(z))",
    "(-1/2)**pi * KL(q(z) || p(z))",
    "((1e-300)**gamma + 1)**15 * KL(q(z) || p(z))",
    "log((-1e308)**((1e-3/7)**E)) * KL(q(z) || p(z))",
    "(beta+gamma+delta+eps+1)**32 * KL(q(z) || p(z))",
    "exp(-1e1000) * KL(q(z) || p(z))",
]


def cases(p: dict[str, Path], base: Path) -> list[Case]:
    c: list[Case] = []
    new = str(base / "new-out")  # an --out that must stay uncreated

    def add(group, *args, rc=2, out=None, note="", item2=False):
        c.append(Case(group, [str(a) for a in args], rc, out, note, item2))

    # classify
    for v in ("1e999999", "-1e999999", "1e-999999", "inf", "-inf", "nan", "NaN", "1/0", "0/0", "", "abc", "4=5",
              "1" * 5000, "0x10", "1e99999999999999999999", "__import__('os').system('touch pwned')", "1..2",
              "--", " ", "4 4", "１"):
        add("classify", "classify", "beta_vae", "--set", f"beta={v}", note=f"--set beta={v[:30]}",
            rc=0 if v == "１" else 2)  # a full-width digit is a digit to Python
    for s in ("beta", "=4", "nosuch=1", "divergence=bogus", "divergence=", "beta=4=5", "BETA=4", "lambda=-1e9999"):
        add("classify", "classify", "infovae", "--set", s, note=f"--set {s}")
    add("classify", "classify", "vae", "--set", "beta=4", note="zoo model without that parameter")
    add("classify", "classify", "KL(q(z) || p(z)) + beta * KL(q(x) || p(x))", "--set", "beta=1e999999",
        note="text objective, huge value")
    add("classify", "classify", "KL(q(z) || p(z))", "--set", "divergence=kl", note="option on a text objective")
    for text in ("", " ", "KL(", "betavae", "E_{q(x)}[", "KL(q(z) || p(x))", "x" * 100_000,
                 "__import__('os').system('touch pwned')", "KL(q(z) || p(z)) * KL(q(x) || p(x))",
                 "1/0 * KL(q(z) || p(z))", "(" * 500 + "1" + ")" * 500 + " * KL(q(z) || p(z))", "KL(q(z) || p(z)) +"):
        add("classify", "classify", text, note=f"objective {text[:40]!r}")
    # odd but valid (names are parameters): any status, no traceback
    for text in ("KL(q(z) || p(z)) + " * 2000 + "KL(q(z) || p(z))", "nan * KL(q(z) || p(z))",
                 "zoo * KL(q(z) || p(z))", "é * KL(q(z) || p(z))"):
        add("classify", "classify", text, note=f"objective {text[:40]!r}", rc=-1)
    for text in ITEM2_OBJECTIVES:
        add("classify", "classify", text, note=f"objective {text[:40]!r}", item2=True, rc=-1)
    add("classify", "--width", "0", "classify", "vae", rc=0, note="--width 0")
    add("classify", "--width", "-5", "classify", "vae", rc=0, note="--width -5")
    add("classify", "--width", "1000000000000", "classify", "vae", note="--width 1e12")
    add("classify", "--width", "abc", "classify", "vae", note="--width abc")
    add("classify", "classify", note="no objective")
    add("classify", "classify", "vae", "--bogus", note="unknown option")
    # zoo, table, closure
    add("zoo", "zoo", "extra", note="extra argument")
    add("zoo", "--width", "99999999999999999999", "zoo", note="huge --width")
    for m, w in (("-1", "3"), ("0", "3"), ("3", "-1"), ("3", "0"), ("1000000", "1000000"), ("3", "100000"),
                 ("50", "3"), ("abc", "3"), ("3", "1.5")):
        add("table", "table", "--max-members", m, "--max-weight", w, note=f"--max-members {m} --max-weight {w}")
    for fam in (",,,", "nosuch", "vae,nosuch", " , "):
        add("closure", "closure", "vae", "--families", fam, note=f"--families {fam[:20]!r}")
    for fam in ("", "vae," * 200):  # the default families; one family named 200 times
        add("closure", "closure", "vae", "--families", fam, note=f"--families {fam[:20]!r}", rc=-1)
    add("closure", "closure", "--families", "vae", note="--families without objective")
    add("closure", "closure", "KL(", note="bad objective")
    add("closure", "closure", "E_{q(z)}[JS(q(x|z) || p(x|z))]", note="objective in no class")
    add("closure", "closure", "x" * 100_000, note="100k-character objective")
    # sample (lagfam sample RUN_DIR -n N --out FILE.npy)
    ok_out = str(base / "samples-out.npy")
    for run_dir, note in ((base / "no-such-run", "a missing run folder"), (p["file"], "a file that is no model"),
                          (p["badmodel"], "a damaged model.pt"), (p["nomodel"], "a folder without model.pt"),
                          (p["noaccess"], "an unlistable folder"), ("", "an empty path")):
        add("sample", "sample", run_dir, "-n", "5", "--out", ok_out, out=ok_out, note=note)
    for n in ("0", "-3", "abc", str(10**12)):
        add("sample", "sample", p["model"], "-n", n, "--out", ok_out, out=ok_out, note=f"-n {n}")
    for out, note in ((p["ro"] / "x.npy", "--out in a read-only folder"), (base / "no-dir" / "x.npy",
                      "--out in a missing folder"), (p["empty"], "--out a folder"), ("/proc/x.npy", "--out in /proc"),
                      ("", "--out empty")):
        add("sample", "sample", p["model"], "-n", "5", "--out", out, note=note,
            out=None if out in ("", p["empty"]) else str(out))
    add("sample", "sample", p["model"], "-n", "5", "--out", ok_out, "--grid", p["ro"] / "g.png", out=ok_out,
        note="--grid in a read-only folder")
    add("sample", "sample", p["model"], "-n", "5", "--out", base / "seeded.npy", "--seed", "-1", rc=-1,
        note="--seed -1 (torch accepts it)")
    # score (lagfam score FILE.npy); every case fails before a classifier is trained
    add("score", "score", p["npy-3d"], rc=-1, note="a 3-d array (8x8 images: valid)")
    for f, note in ((base / "none.npy", "a missing file"), (p["file"], "a text file"), (p["empty"], "a folder"),
                    (p["npy-nan"], "NaN samples"), (p["npy-shape"], "7 columns"), (p["npy-range"], "values of 3"),
                    (p["npy-empty"], "0 samples"), (p["npy-strings"], "an array of strings"),
                    (p["npy-garbage"], "a damaged .npy")):
        add("score", "score", f, note=note)
    add("score", "score", p["npy-nan"], "--data", "imagenet", note="--data imagenet")
    add("score", "score", p["npy-nan"], "--data", "mnist", "--data-dir", base / "no-mnist", note="--data-dir missing")
    # demo: numbers, then paths
    quick = ["--no-table", "--steps", "2", "--ref-steps", "2", "--hidden", "4", "--no-progress"]
    for opt, v in (("--alpha", "nan"), ("--alpha", "inf"), ("--alpha", "1e309"), ("--alpha", "abc"),
                   ("--gamma1", "nan"), ("--gamma1", "-inf"), ("--seed", "-1"), ("--seed", str(2**64)),
                   ("--seed", "1.5"), ("--steps", "0"), ("--steps", "-5"), ("--steps", str(10**12)),
                   ("--ref-steps", "0"), ("--hidden", "0"), ("--hidden", "-3"), ("--hidden", str(10**9))):
        add("demo", "demo", *quick, opt, v, "--out", new, out=new, note=f"{opt} {v}")
    for out, note in ((p["file"], "--out a file"), (p["file"] / "sub", "--out under a file"),
                      (p["ro"] / "sub", "--out in a read-only folder"), (p["ro"], "--out a read-only folder"),
                      (p["noaccess"] / "inner" / "x", "--out under an unlistable folder"),
                      ("/proc/lagfam-out", "--out in /proc"), ("", "--out empty"),
                      (p["locked"], "--out held by another run")):
        add("demo", "demo", *quick, "--out", out, note=note, out=None if out in ("", p["locked"]) else str(out))
    # experiment
    for opt, v in (("--jobs", "0"), ("--jobs", "-1"), ("--jobs", str(10**6)), ("--jobs", "two"),
                   ("--budget", "huge"), ("--budget", "")):
        add("experiment", "experiment", "pareto", "--budget", "smoke", opt, v, "--out", new, out=new,
            note=f"{opt} {v}")
    add("experiment", "experiment", "nosuch", "--out", new, out=new, note="unknown experiment")
    add("experiment", "experiment", note="no experiment")
    for out, note in ((p["file"], "--out a file"), (p["file"] / "sub", "--out under a file"),
                      (p["ro"] / "sub", "--out in a read-only folder"), (p["ro"], "--out a read-only folder"),
                      (p["noaccess"] / "inner" / "x", "--out under an unlistable folder"),
                      ("/proc/lagfam-out", "--out in /proc"), ("", "--out empty"),
                      (p["locked"], "--out held by another run"), (p["other"], "--out of another experiment"),
                      (p["runsfile"], "--out whose runs/ is a file")):
        add("experiment", "experiment", "dual-verification", "--budget", "smoke", "--out", out, note=note,
            out=None if out in ("", p["locked"], p["other"], p["runsfile"]) else str(out))
    data_cases = [(base / "no-such-mnist", "--data missing"), (p["file"], "--data a file"),
                  (p["empty"], "--data an empty folder"), (p["noaccess"], "--data unlistable"),
                  (p["garbage"], "--data garbage files"), (p["truncated"], "--data truncated images"),
                  (p["magic"], "--data wrong magic"), (p["zero"], "--data 0 images"),
                  (p["counts"], "--data mismatched counts"), (p["labels"], "--data labels outside 0..9"),
                  (p["shape"], "--data 27x27 images"), (p["halfgz"], "--data truncated gzip"),
                  (p["missing1"], "--data one file missing"), (p["unreadable"], "--data unreadable file"),
                  (p["dirfile"], "--data a folder named like a file"), ("", "--data empty")]
    for data, note in data_cases:
        for exp in ("pareto", "dual-verification"):
            add("experiment", "experiment", exp, "--budget", "small", "--data", data, "--out", new, out=new,
                note=f"{exp} {note}")
    return c


# -- running them ---------------------------------------------------------------------------------------

def _prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        print("note: running as root without setpriv: permission cases are not what a user sees")
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def run_case(case: Case, cwd: Path, timeout: float, prefix: list[str]) -> Case:
    existed = case.out is not None and os.path.lexists(case.out)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "100",
           "LAGFAM_DATA": str(cwd / "no-default-data"), "LAGFAM_CACHE": str(cwd / "cache")}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(prefix + [sys.executable, "-m", "lagrangian_family.cli", *case.args], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, env=env)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    wall = time.perf_counter() - t0
    problems = []
    if rc is None:
        problems.append(f"no answer within {timeout:g} s")
    if "Traceback (most recent call last)" in err:
        last = [ln for ln in err.strip().splitlines() if ln.strip()][-1]
        problems.append(f"traceback: {last[:150]}")
    elif rc is not None and case.rc >= 0 and rc != case.rc:
        problems.append(f"exit status {rc}, expected {case.rc}")
    if rc == 2 and not err.lstrip().startswith(("error:", "usage:")) and "\nerror:" not in err \
            and "traceback" not in " ".join(problems):
        problems.append(f"exit 2 without an error line: {err.strip()[:120]!r}")
    if case.out is not None and not existed and os.path.lexists(case.out):
        problems.append(f"{case.out} was created")
        if os.path.isdir(case.out):
            shutil.rmtree(case.out, ignore_errors=True)
    if (cwd / "pwned").exists():
        problems.append("a payload ran")
    case.result = {"rc": rc, "wall": wall, "problems": problems, "stderr": err}
    return case


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--only", default=None,
                    help="run one group (classify, zoo, table, closure, sample, score, demo, experiment)")
    opts = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="lagfam-cli-fuzz-"))
    paths = scratch(base)
    todo = [c for c in cases(paths, base) if opts.only is None or c.group == opts.only]
    from lagrangian_family.files import FolderLock

    lock = FolderLock(paths["locked"], command="bench/cli_fuzz.py (holding the lock)").acquire()
    prefix = _prefix()
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
            done = list(pool.map(lambda c: run_case(c, base, opts.timeout, prefix), todo))
    finally:
        lock.release()
        for q in (paths["ro"], paths["noaccess"], paths["unreadable"] / "train-images-idx3-ubyte"):
            q.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
    groups: dict[str, list[Case]] = {}
    for c in done:
        groups.setdefault("item 2 objectives" if c.item2 else c.group, []).append(c)
    how = "setpriv: no DAC override" if prefix else "as this user"
    print(f"{len(done)} cases in {time.perf_counter() - t0:.0f} s ({how})")
    for c in done:
        if c.result["problems"]:
            tag = " [item 2]" if c.item2 else ""
            print(f"FAIL{tag} {c.group}: {c.note}: {'; '.join(c.result['problems'])}")
    print()
    print(f"{'group':<20} {'cases':>6} {'tracebacks':>11} {'hangs':>6} {'other':>6} {'slowest s':>10}")
    totals = [0, 0, 0, 0]
    for g, cs in groups.items():
        tb = sum(any(p.startswith("traceback") for p in c.result["problems"]) for c in cs)
        hang = sum(c.result["rc"] is None for c in cs)
        other = sum(bool(c.result["problems"]) for c in cs) - tb - hang
        print(f"{g:<20} {len(cs):>6} {tb:>11} {hang:>6} {other:>6} {max(c.result['wall'] for c in cs):>10.1f}")
        if g != "item 2 objectives":
            for i, v in enumerate((len(cs), tb, hang, other)):
                totals[i] += v
    print(f"{'total (items 4-7)':<20} {totals[0]:>6} {totals[1]:>11} {totals[2]:>6} {totals[3]:>6}")
    return 0 if totals[1:] == [0, 0, 0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
