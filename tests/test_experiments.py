"""The section 7 experiments at the smoke budget, resume, the findings, and ``lagfam demo``.

The smoke budget trains tiny networks on sklearn's digits for a few dozen steps: its numbers
check the machinery, not the paper's claims. The findings are re-derived here by hand from
``results.csv`` (an independent computation) and compared with what the report states.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from lagrangian_family.experiments import demo_main, experiment_main  # noqa: E402
from lagrangian_family.experiments.dual_verification import findings as dv_findings  # noqa: E402
from lagrangian_family.experiments.pareto import dominations  # noqa: E402
from lagrangian_family.experiments.pareto import findings as pareto_findings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        d = {}
        for k, v in r.items():
            try:
                d[k] = float(v)
            except ValueError:
                d[k] = v
        out.append(d)
    return out


def mtimes(folder: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("runs/*/metrics.json")}


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    out = tmp_path_factory.mktemp("dual")
    rc = experiment_main(["dual-verification", "--budget", "smoke", "--out", str(out), "--jobs", "1", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def dual_separate(tmp_path_factory):
    """The same experiment with one run at a time through the Trainer (the path before vectorising)."""
    out = tmp_path_factory.mktemp("dual-separate")
    rc = experiment_main(["dual-verification", "--budget", "smoke", "--out", str(out), "--jobs", "1", "--quiet",
                          "--no-vectorise"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def pareto(tmp_path_factory):
    out = tmp_path_factory.mktemp("pareto")
    rc = experiment_main(["pareto", "--budget", "smoke", "--out", str(out), "--jobs", "2", "--quiet"])
    assert rc == 0
    return out


# -- section 7.1 ------------------------------------------------------------------------------------

def test_dual_verification_writes_results(dual):
    rows = read_rows(dual / "results.csv")
    methods = [r["method"] for r in rows]
    assert methods.count("reference") == 1 and methods.count("lagvae") == 3
    assert {r["alpha1"] for r in rows if r["method"] == "lagvae"} == {-1.0, 0.0, 1.0}
    for r in rows:
        for key in ("train_neg_elbo", "test_neg_elbo", "train_mmd", "train_mi", "test_mi", "time_total_s"):
            assert isinstance(r[key], float), key
    assert (dual / "mi_vs_slack.png").read_bytes()[:8] == PNG
    ref = next(r for r in rows if r["method"] == "reference")
    for r in rows:
        if r["method"] == "lagvae":  # ε = ε̂ + γ (section 6), γ2 = 0.5 ε̂2
            assert r["eps1"] == pytest.approx(ref["train_neg_elbo"] + r["gamma1"])
            assert r["eps2"] == pytest.approx(1.5 * ref["train_mmd"])


def test_dual_verification_report_states_computed_findings(dual):
    rows = read_rows(dual / "results.csv")
    lag = {r["alpha1"]: r for r in rows if r["method"] == "lagvae"}
    report = (dual / "report.md").read_text()
    for text in ("command: `lagfam experiment dual-verification --budget smoke", "budget: `smoke`", "machine:",
                 "torch", "CPU(s)", "wall time per run", "## Findings", "MI(α1<0) > MI(α1=0) > MI(α1>0)",
                 "measured as -ELBO", "mi_vs_slack.png"):
        assert text in report, text
    # by hand from the CSV: does MI(α1 = -1) > MI(0) > MI(+1) hold on test images?
    holds = lag[-1.0]["test_mi"] > lag[0.0]["test_mi"] > lag[1.0]["test_mi"]
    f = json.loads((dual / "findings.json").read_text())
    assert f["per_gamma"][0]["test"]["order_holds"] is holds
    n = f["overall"]["test"]["order_holds"]
    assert f"holds for {n} of 1 γ1" in report
    sat = sum(r["train_neg_elbo"] <= r["eps1"] + 5.0 and r["train_mmd"] <= 2.0 * r["eps2"] for r in lag.values())
    assert f"{sat} of 3 LagVAE runs end with" in report


def test_dual_verification_resumes(dual):
    before = mtimes(dual)
    assert len(before) == 4
    proc = subprocess.run([sys.executable, "-m", "lagrangian_family.cli", "experiment", "dual-verification",
                           "--budget", "smoke", "--out", str(dual), "--jobs", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("skip ") == 4 and "done " not in proc.stdout
    assert mtimes(dual) == before
    assert "skipped 4 finished earlier" in (dual / "report.md").read_text()


def test_vectorised_runs_give_the_results_of_separate_runs(dual, dual_separate):
    """Every final metric of the vectorised grid against the same runs trained one by one by the Trainer.

    Both draw each run's batches and noise from the run's own generators and use fused Adam, so
    they differ only by the rounding of batched against unbatched matrix products (relative 1e-7,
    float32) carried through 60 steps of Adam and of RMSProp on λ: measured up to 2e-4 (λ2 of one
    run), 1e-5 elsewhere. 1e-3 relative is allowed; a wrong batch, noise draw or update changes these
    metrics by 1e-2 to 1 after the first steps."""
    vec = {r["name"]: r for r in read_rows(dual / "results.csv")}
    sep = {r["name"]: r for r in read_rows(dual_separate / "results.csv")}
    assert sorted(vec) == sorted(sep) and len(vec) == 4
    skip = {"time_train_s", "time_eval_s", "time_total_s", "steps_per_s", "stack_size", "stack_time_train_s",
            "threads"}
    compared = 0
    for name, r in vec.items():
        s = sep[name]
        assert r["stack_size"] >= 1 and "stack_size" not in s
        for k, v in s.items():
            if k in skip or k not in r:
                continue
            if isinstance(v, float):
                assert r[k] == pytest.approx(v, rel=1e-3, abs=1e-6), (name, k)
                compared += 1
            else:
                assert r[k] == v, (name, k)
    assert compared >= 4 * 15
    # and the findings computed from them are the same
    fv, fs = (json.loads((d / "findings.json").read_text()) for d in (dual, dual_separate))
    assert fv["overall"] == fs["overall"] and fv["n_satisfied"] == fs["n_satisfied"]
    assert "--no-vectorise" in (dual_separate / "report.md").read_text()
    assert "vectorised stack(s)" in (dual / "report.md").read_text()


def test_stacked_run_resumes_exactly_from_its_checkpoint(tmp_path, monkeypatch):
    """A stack interrupted after its checkpoint at step 40 resumes there: the same metrics and logs
    as the uninterrupted stack, bit for bit."""
    from lagrangian_family.backends.torch import vectorised
    from lagrangian_family.experiments import budgets, runs
    from lagrangian_family.experiments.datasets import load

    b = budgets.get("smoke", checkpoint_every=20, warm_start=False)
    data = load("digits")
    specs = [runs.RunSpec(f"a{a:+g}", "lagvae", a, epsilon=(30.0, 0.03), seed=3) for a in (-1.0, 1.0)]
    whole = runs.run_stack(specs, b, data, tmp_path / "whole")
    original = vectorised.VectorisedTrainer.train

    def interrupted(self, steps):
        original(self, 45)  # checkpoints at 20 and 40; steps 41-45 are logged, then "killed"
        raise KeyboardInterrupt

    monkeypatch.setattr(vectorised.VectorisedTrainer, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.run_stack(specs, b, data, tmp_path / "cut")
    assert len(list((tmp_path / "cut" / ".stacks").glob("*.pt"))) == 1
    monkeypatch.setattr(vectorised.VectorisedTrainer, "train", original)
    resumed = runs.run_stack(specs, b, data, tmp_path / "cut")
    timing = {"time_train_s", "time_eval_s", "time_total_s", "steps_per_s", "stack_time_train_s"}
    for w, r in zip(whole, resumed):
        assert {k: v for k, v in w.items() if k not in timing} == {k: v for k, v in r.items() if k not in timing}
    for s in specs:
        logs = [(tmp_path / d / s.name / "log.csv").read_text() for d in ("whole", "cut")]
        assert logs[0] == logs[1] and logs[0].count("\n") == 1 + 20  # header, then every 3rd of 60 steps
    assert not list((tmp_path / "cut" / ".stacks").glob("*.pt"))  # removed once the stack finished


def test_a_diverging_run_fails_alone(tmp_path):
    """In a vectorised executor a run whose loss overflows fails its own future; the others finish and
    are written (a rerun skips them), and the command reports the error without a traceback."""
    from lagrangian_family.backends.torch import NonFiniteLossError
    from lagrangian_family.experiments import budgets, runs

    b = budgets.get("smoke", warm_start=False)
    good = runs.RunSpec("good", "infovae", -1.0, multipliers=(1.0, 100.0), seed=1)
    bad = runs.RunSpec("bad", "infovae", -1.0, multipliers=(1e38, 1e38), seed=2)
    with runs.Executor(b, ("digits", None, None, None), tmp_path, jobs=1, vectorise=True) as ex:
        f_good, f_bad = ex.map([good, bad])
        assert f_good.result()["name"] == "good"
        with pytest.raises(NonFiniteLossError, match="run bad: the loss became inf at step 1"):
            f_bad.result()
    assert ex.stacks == [["good", "bad"]] and ex.ran == ["good"]
    assert runs.read_metrics(tmp_path / "good") is not None and runs.read_metrics(tmp_path / "bad") is None


def test_stochastic_batches_resume_their_stream():
    from lagrangian_family.experiments.datasets import StochasticBatches

    x = torch.rand(10, 3)
    whole = StochasticBatches(x, 4, seed=5)
    stream = [whole.next() for _ in range(7)]
    a = StochasticBatches(x, 4, seed=5)
    for _ in range(3):
        a.next()
    state = a.state_dict()
    b = StochasticBatches(x, 4, seed=5)
    b.load_state_dict(state)
    assert all(torch.equal(b.next(), s) for s in stream[3:])
    it = iter(StochasticBatches(x, 4, seed=5))  # iterating gives the same stream
    assert all(torch.equal(next(it), s) for s in stream)


def test_dual_verification_findings_by_hand():
    def row(a, mi, elbo=90.0):
        return dict(method="lagvae", gamma1=1.0, alpha1=a, train_mi=mi, test_mi=mi, train_neg_elbo=elbo,
                    eps1=91.0, train_mmd=1e-3, eps2=1e-3)

    good = dv_findings([row(-2, 30), row(-1, 29), row(0, 20), row(1, 10), row(2, 9)], tol_elbo=1, tol_mmd_rel=0.5)
    g = good["per_gamma"][0]["test"]
    assert g["order_holds"] and g["sign_decides"] and not g["magnitude_changes_outcome"]
    assert g["gap"] == pytest.approx(29.5 - 9.5) and g["spread_within_sign"] == pytest.approx(1.0)
    # α1 = -2 below α1 = 0: the magnitude changes the outcome; a run 3 nats over ε1 is not satisfied
    bad = dv_findings([row(-2, 15), row(-1, 29), row(0, 20), row(1, 10), row(2, 9, elbo=94.0)], tol_elbo=1,
                      tol_mmd_rel=0.5)
    b = bad["per_gamma"][0]["test"]
    assert b["order_holds"] and not b["strict_order_holds"] and b["magnitude_changes_outcome"]
    assert bad["n_satisfied"] == 4 and not bad["per_gamma"][0]["all_satisfied"]


# -- section 7.2 ------------------------------------------------------------------------------------

def test_pareto_writes_results_and_dominance(pareto):
    rows = read_rows(pareto / "results.csv")
    methods = [r["method"] for r in rows]
    assert methods.count("reference") == 1 and methods.count("lagvae") == 2 and methods.count("infovae") == 2
    assert (pareto / "pareto.png").read_bytes()[:8] == PNG
    f = json.loads((pareto / "findings.json").read_text())
    report = (pareto / "report.md").read_text()
    for split in ("train", "test"):
        for d, sign in (("max", -1.0), ("min", 1.0)):
            lag = [r for r in rows if r["method"] == "lagvae" and r["alpha1"] == sign]
            info = [r for r in rows if r["method"] == "infovae" and r["alpha1"] == sign]
            pairs = 0
            for li in lag:
                for ii in info:
                    lower = ii[f"{split}_neg_elbo"] < li[f"{split}_neg_elbo"]
                    mi_better = (ii[f"{split}_mi"] > li[f"{split}_mi"]) if d == "max" else \
                        (ii[f"{split}_mi"] < li[f"{split}_mi"])
                    pairs += lower and mi_better
            assert f[f"{split}_{d}"]["n_pairs"] == pairs
            assert f"- {split}, {'maximise' if d == 'max' else 'minimise'} I_q" in report
            assert f"{pairs} dominating (InfoVAE, LagVAE) pair(s)" in report
    verdict = "no InfoVAE point dominates a LagVAE point" if f["none_dominates"] else "some InfoVAE points dominate"
    assert verdict in report
    assert "`lf.equivalent` confirms it for 2 of 2 grid points" in report  # InfoVAE = s · zoo infovae(α', λ')
    for text in ("command: `lagfam experiment pareto --budget smoke", "machine:", "wall time per run", "ε̂1 ="):
        assert text in report, text
    # InfoVAE: the paper's α in {1, -1} with α1 = -α, multipliers fixed (λ1 on -ELBO, λ2 on the raw MMD)
    info = {r["infovae_alpha"]: r for r in rows if r["method"] == "infovae"}
    assert info[1.0]["alpha1"] == -1.0 and info[-1.0]["alpha1"] == 1.0
    assert info[1.0]["lambda1"] == 1.0 and info[1.0]["lambda2"] == pytest.approx(1000.0)


def test_pareto_resumes(pareto):
    before = mtimes(pareto)
    assert len(before) == 5
    assert experiment_main(["pareto", "--budget", "smoke", "--out", str(pareto), "--jobs", "2", "--quiet"]) == 0
    assert mtimes(pareto) == before
    assert "skipped 5 finished earlier" in (pareto / "report.md").read_text()


def test_dominations_by_hand():
    lag = [dict(method="lagvae", alpha1=-1.0, name="L", test_neg_elbo=100.0, test_mi=30.0),
           dict(method="lagvae", alpha1=1.0, name="M", test_neg_elbo=100.0, test_mi=10.0)]
    info = [dict(method="infovae", alpha1=-1.0, name="better", test_neg_elbo=99.0, test_mi=31.0),
            dict(method="infovae", alpha1=-1.0, name="trade-off", test_neg_elbo=99.0, test_mi=29.0),
            dict(method="infovae", alpha1=1.0, name="lower-mi", test_neg_elbo=99.5, test_mi=9.0)]
    assert [(d["infovae"], d["lagvae"]) for d in dominations(lag + info, "test", "max")] == [("better", "L")]
    assert [(d["infovae"], d["lagvae"]) for d in dominations(lag + info, "test", "min")] == [("lower-mi", "M")]
    assert dominations(lag + info, "test", "min", margin=0.5) == []
    f = pareto_findings([{**r, "train_neg_elbo": r["test_neg_elbo"], "train_mi": r["test_mi"]} for r in lag + info])
    assert f["test_max"]["dominated_lagvae"] == ["L"] and not f["none_dominates"]


# -- errors and the command line --------------------------------------------------------------------

def test_missing_mnist_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    rc = experiment_main(["pareto", "--budget", "small", "--data", str(missing), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "MNIST" in err and str(missing) in err and "--budget smoke" in err


def test_subcommands_registered_without_importing_torch():
    code = ("import sys, lagrangian_family, lagrangian_family.cli as cli; p = cli.build_parser(); "
            "assert {'demo', 'experiment'} <= set(cli.COMMANDS), sorted(cli.COMMANDS); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr


# -- the demo ---------------------------------------------------------------------------------------

def test_demo_tiny(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = demo_main(["--out", str(out), "--steps", "40", "--ref-steps", "40", "--hidden", "16", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "Table 1" in text and "likelihood-based" in text  # the classification table
    assert "I_q(x;z), KDE eq. 21, test" in text
    assert "ε̂ =" in text and "so ε = (" in text
    assert "constraint 1: -ELBO =" in text and "measured as -ELBO, i.e. up to the constant H_q(x)" in text
    assert "constraint 2: MMD =" in text
    assert f"run folder: {out}" in text
    assert (out / "training.png").read_bytes()[:8] == PNG
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epsilon"][0] == pytest.approx(summary["eps_hat"][0] + 2.0)


# -- concurrent runs and damaged results (issue 7, item 7) ------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    (dst / ".lagfam.lock").unlink(missing_ok=True)
    return dst


def test_a_second_run_on_the_same_folder_is_refused_or_waits(dual, tmp_path, capsys):
    from tests.test_files import hold

    out = _copy(dual, tmp_path / "dual")
    argv = ["dual-verification", "--budget", "smoke", "--out", str(out), "--jobs", "1"]
    proc = hold(out, 3.0)
    try:
        assert experiment_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out} is in use by another run: PID {proc.pid}") and "--wait" in err
        assert experiment_main([*argv, "--wait"]) == 0
        captured = capsys.readouterr()
        assert f"waiting: {out} is in use by PID {proc.pid}" in captured.err
        assert captured.out.count("skip ") == 4
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0  # it had released the lock before the waiting run started


def test_the_lock_of_a_killed_run_is_taken_over(dual, tmp_path, capsys):
    import signal

    from tests.test_files import hold

    out = _copy(dual, tmp_path / "dual")
    proc = hold(out, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert experiment_main(["dual-verification", "--budget", "smoke", "--out", str(out), "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert f"the previous run on {out} (PID {proc.pid}) did not finish" in captured.err
    assert captured.out.count("skip ") == 4


@pytest.mark.parametrize("content, reason", [
    ("{}", "lacks name, method, alpha1, ..."),
    ("", "is not valid JSON"),
    ("[1, 2]", "holds a list, not an object"),
    ("NaN", "holds a float, not an object"),
])
def test_check_metrics_by_hand(tmp_path, content, reason):
    from lagrangian_family.experiments.runs import METRICS, check_metrics

    (tmp_path / METRICS).write_text(content)
    row, why = check_metrics(tmp_path)
    assert row is None and why.startswith(f"its metrics.json {reason}")


def test_invalid_metrics_are_redone_with_a_line_saying_so(dual, tmp_path, capsys):
    from lagrangian_family.experiments.budgets import get
    from lagrangian_family.experiments.runs import check_metrics

    out = _copy(dual, tmp_path / "dual")
    runs = sorted(p.parent.name for p in out.glob("runs/gamma*/metrics.json"))
    assert len(runs) == 3
    good = json.loads((out / "runs" / runs[0] / "metrics.json").read_text())
    (out / "runs" / runs[0] / "metrics.json").write_text("{}")
    (out / "runs" / runs[1] / "metrics.json").write_text(json.dumps({**good, "test_mi": float("nan")}))
    (out / "runs" / runs[2] / "metrics.json").write_text(json.dumps({**good, "name": runs[2], "train_mmd": "small"}))
    stale = out / "runs" / runs[0] / f".metrics.json.{2**22 + 5}.0123abcd.lagfam-tmp"  # left by a kill
    stale.write_text("{")
    assert experiment_main(["dual-verification", "--budget", "smoke", "--out", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert f"redo {runs[0]}: its metrics.json lacks name, method, alpha1, ..." in text
    assert f"redo {runs[1]}: its metrics.json has test_mi = nan, not a finite number" in text
    assert f"redo {runs[2]}: its metrics.json has train_mmd = 'small', not a finite number" in text
    assert text.count("skip ") == 1 and text.count("done ") == 3  # the reference run is still valid
    assert not stale.exists()
    for name in runs:  # redone: valid again, and the same numbers as the first time (CPU runs are exact)
        row, why = check_metrics(out / "runs" / name)
        assert why is None and row["test_mi"] == json.loads((dual / "runs" / name / "metrics.json").read_text())[
            "test_mi"]
    assert get("smoke").name == row["budget"]


def test_metrics_of_another_spec_are_redone(dual, tmp_path, capsys):
    out = _copy(dual, tmp_path / "dual")
    path = out / "runs" / "reference-s0" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "steps": 7}))
    assert experiment_main(["dual-verification", "--budget", "smoke", "--out", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert "redo reference-s0: its metrics.json was written for another run (steps 7, this run" in text


def test_a_folder_of_another_experiment_is_refused(dual, tmp_path, capsys):
    out = _copy(dual, tmp_path / "dual")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lagfam.lock"}
    rc = experiment_main(["pareto", "--budget", "smoke", "--out", str(out), "--jobs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {out} holds the results of experiment 'dual-verification', not 'pareto'")
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_the_reference_model_is_a_model_file_lagfam_sample_reads(dual, tmp_path, capsys):
    from lagrangian_family.backends.torch import load_model
    from lagrangian_family.cli import main

    folder = dual / "runs" / "reference-s0"
    model = load_model(folder)
    assert model.metadata["run"] == "reference-s0" and model.metadata["experiment_run"]["method"] == "reference"
    assert main(["sample", str(folder), "-n", "5", "--out", str(tmp_path / "s.npy")]) == 0
    capsys.readouterr()


def test_a_damaged_reference_model_is_redone(dual, tmp_path, capsys):
    out = _copy(dual, tmp_path / "dual")
    model = out / "runs" / "reference-s0" / "model.pt"
    import torch

    tensors = torch.load(model, weights_only=True)["tensors"]
    weight = next(v for k, v in tensors.items() if k.startswith("decoder") and k.endswith("weight"))
    raw = bytearray(model.read_bytes())
    raw[raw.index(weight.numpy().tobytes()) + 2] ^= 0x01  # one bit of one weight
    model.write_bytes(bytes(raw))
    assert experiment_main(["dual-verification", "--budget", "smoke", "--out", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert "redo reference-s0: its model.pt cannot be used: is not a readable model file" in text
    # redone to the same numbers (CPU runs are exact), so ε̂ and every LagVAE run stay valid
    assert text.count("skip ") == 3 and text.count("done ") == 1
