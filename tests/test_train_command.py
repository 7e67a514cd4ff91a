"""``lagfam train``: train -> the folder's contents -> sample -> resume and skip -> bad input, on
scikit-learn's digits at the smoke budget (seconds)."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

from lagrangian_family.cli import main
from lagrangian_family.images import read_png

STEPS = 200  # a checkpoint at step 100 (every max(100, steps // 20) steps)
N_EVAL = 200


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def train(capsys, out, model="vae", *extra):
    return run(capsys, "train", model, "--out", out, "--steps", STEPS, "--n-eval", N_EVAL, "--no-progress", *extra)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "vae"
    rc = main(["train", "vae", "--out", str(folder), "--steps", str(STEPS), "--n-eval", str(N_EVAL), "--no-progress"])
    assert rc == 0
    return folder


def _log_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_run_folder_holds_model_log_grids_metrics_and_report(vae_dir):
    names = {p.name for p in vae_dir.iterdir()}
    assert {"run.json", "checkpoint.pt", "log.csv", "model.pt", "samples.png", "reconstructions.png",
            "metrics.json", "report.md"} <= names
    assert not [n for n in names if n.endswith(".lagfam-tmp")]
    rows = _log_rows(vae_dir / "log.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # one row per logged step, up to the last
    m = json.loads((vae_dir / "metrics.json").read_text())
    assert m["steps"] == STEPS and m["status"] == "trained" and m["identity"]["model"] == "vae"
    assert m["samples"]["n"] == N_EVAL and m["samples"]["reference"]["n"] == N_EVAL
    assert 0.0 <= m["probe"]["accuracy"] <= 1.0 and m["enforces_consistency"] is True
    assert set(m["targets"]) == {"classes_covered", "confidence_ratio", "probe_accuracy"}
    for t in m["targets"].values():  # the verdict is the comparison with the threshold
        assert t["met"] == (t["value"] >= t["threshold"])
    report = (vae_dir / "report.md").read_text()
    assert "| mean classifier confidence |" in report and "linear probe accuracy" in report
    assert "![samples.png](samples.png)" in report and "-E_{q(x,z)}[log p(x|z)]" in report
    grid = read_png(vae_dir / "samples.png")  # 10 x 10 tiles of 8x8 pixels, scaled 3 times, padding 2
    assert grid.shape == (10 * 24 + 11 * 2, 10 * 24 + 11 * 2)


def test_metrics_are_the_evaluate_scores_of_what_lagfam_sample_writes(vae_dir, tmp_path, capsys):
    from lagrangian_family import evaluate as ev

    rc, _, _ = run(capsys, "sample", vae_dir, "-n", N_EVAL, "--out", tmp_path / "x.npy", "--seed", 0)
    assert rc == 0
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (N_EVAL, 64)
    s = ev.score_samples(x, "digits")
    m = json.loads((vae_dir / "metrics.json").read_text())["samples"]
    assert s["classes_covered"] == m["classes_covered"]
    assert math.isclose(s["confidence"], m["confidence"], rel_tol=1e-6)
    assert math.isclose(s["frechet_distance"], m["frechet_distance"], rel_tol=1e-6)


def test_the_model_file_rebuilds_without_user_code(vae_dir):
    from lagrangian_family.backends.torch import load_model

    model = load_model(vae_dir)
    assert model.metadata["run"]["model"] == "vae" and model.metadata["steps"] == STEPS
    assert tuple(model.sample(4, seed=1).shape) == (4, 64)


def test_a_finished_run_is_skipped(vae_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in vae_dir.iterdir()}
    rc, out, err = train(capsys, vae_dir)
    assert rc == 0 and out.startswith("skipped:") and "finished already" in err
    assert {p.name: p.stat().st_mtime_ns for p in vae_dir.iterdir() if p.name != ".lagfam.lock"} == \
        {k: v for k, v in before.items() if k != ".lagfam.lock"}


def interrupt_then_resume(capsys, monkeypatch, folder, model="vae"):
    """Train ``model`` into ``folder``, interrupted at step 150 (after the checkpoint of step 100),
    then again: it must say it was interrupted, then resume at step 100."""
    from lagrangian_family.backends.torch import Trainer

    original = Trainer.step

    def step_then_crash(self):
        if self.step_count == 150:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "step", step_then_crash)
    rc, _, err = train(capsys, folder, model)
    assert rc == 130 and "interrupted" in err and not (folder / "metrics.json").exists()
    monkeypatch.setattr(Trainer, "step", original)
    rc, out, err = train(capsys, folder, model)
    assert rc == 0 and out.startswith("resumed:") and "resuming at step 100" in err


def test_an_interrupted_run_resumes_exactly(vae_dir, tmp_path, capsys, monkeypatch):
    from lagrangian_family.backends.torch import load_model

    folder = tmp_path / "vae"
    interrupt_then_resume(capsys, monkeypatch, folder)
    a, b = load_model(vae_dir).loss_fn.state_dict(), load_model(folder).loss_fn.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert _log_rows(folder / "log.csv") == _log_rows(vae_dir / "log.csv")
    assert json.loads((folder / "metrics.json").read_text())["samples"] == \
        json.loads((vae_dir / "metrics.json").read_text())["samples"]


def test_an_invalid_metrics_file_is_redone(vae_dir, tmp_path, capsys):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(vae_dir, folder)
    (folder / "metrics.json").write_text('{"samples": {"confidence": NaN}, "identity": {}}')
    rc, out, err = train(capsys, folder)
    assert rc == 0 and "not a finite number" in err and out.startswith("resumed:")
    assert json.loads((folder / "metrics.json").read_text())["samples"]["n"] == N_EVAL


def test_cyclegan_translates_the_second_domain(tmp_path, capsys):
    folder = tmp_path / "cyclegan"
    rc, out, _ = run(capsys, "train", "cyclegan", "--out", folder, "--steps", 20, "--n-eval", 100, "--no-progress")
    assert rc == 0 and "translation kept" in out
    m = json.loads((folder / "metrics.json").read_text())
    assert 0.0 <= m["translation_kept"] <= 1.0 and "translation_kept" in m["targets"]
    assert (folder / "translations.png").is_file() and not (folder / "reconstructions.png").exists()
    rc, _, _ = run(capsys, "sample", folder, "-n", 5, "--out", tmp_path / "t.npy")
    assert rc == 0 and np.load(tmp_path / "t.npy").shape == (5, 64)


# -- bad input: a typed error, exit 2, nothing written -------------------------------------------------

def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else None


def _refused_before_writing(tmp_path, capsys, argv, message):
    """``lagfam train ARGV`` ends with exit 2 and ``message``, no traceback, and no run folder."""
    folder = tmp_path / "run"
    rc, _, err = run(capsys, "train", *argv, "--out", folder, "--steps", 5, "--no-progress")
    assert rc == 2 and message in err and "Traceback" not in err and not folder.exists()


@pytest.mark.parametrize("argv, message", [
    (["E_{q(z)}[JS(q(x|z) || p(x|z))]"], "no computability class"),
    (["vae", "--data", "cifar"], "unknown data"),
    (["vae", "--set", "beta=1e999999"], "too large a number"),
    (["vae", "--seed", "-1"], "--seed -1 is out of range"),
    (["not_a_model("], "error:"),
    (["vae", "--option", "decoder=generator"], "needs log p(x|z), which an implicit generator does not have"),
    (["vae", "--option", "no_such_option=1"], "unknown recipe option"),
    (["vae", "--option", "decoder"], "an --option needs NAME=VALUE"),
    (["beta_vae", "--set", "gamma=2"], "has no parameter"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys, argv, message):
    _refused_before_writing(tmp_path, capsys, argv, message)


def test_a_data_folder_without_mnist_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run(capsys, "train", "vae", "--data", "mnist", "--data-dir", empty, "--out", tmp_path / "run")
    assert rc == 2 and "MNIST" in err and not (tmp_path / "run").exists()


def test_a_folder_that_is_not_a_run_folder_is_left_alone(tmp_path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    rc, _, err = train(capsys, folder)
    assert rc == 2 and "is not a run folder" in err
    assert _snapshot(folder) == {"chapter1.tex": b"precious"}


def test_a_folder_of_another_run_is_left_alone(vae_dir, capsys):
    before = _snapshot(vae_dir)
    rc, _, err = train(capsys, vae_dir, "beta_vae", "--set", "beta=4")
    assert rc == 2 and "holds another run" in err and "model=" in err
    assert _snapshot(vae_dir) == before


def test_an_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = train(capsys, f)
    assert rc == 2 and "is a file" in err and f.read_text() == "x"


def test_a_busy_folder_is_refused(tmp_path, capsys):
    from lagrangian_family.files import FolderLock

    folder = tmp_path / "busy"
    folder.mkdir()
    with FolderLock(folder, command="another lagfam train"):
        # another process holds it: flock locks are per open file, so a second FolderLock in this
        # process conflicts as another process's would
        rc, _, err = train(capsys, folder)
    assert rc == 2 and "in use by another run" in err and "another lagfam train" in err
    assert sorted(os.listdir(folder)) == [".lagfam.lock"]


def test_torchrun_trains_on_two_ranks_and_rank_0_writes(tmp_path, capsys):
    """``torchrun --nproc_per_node 2 -m lagrangian_family.cli train ...``: one run folder, written
    once (one result line, one log row per step), which one process then finds finished."""
    from tests.backends.torch.ddp_helpers import torchrun

    def argv_of(folder):
        return ["train", "vae", "--out", str(folder), "--steps", "120", "--n-eval", "100", "--no-progress"]

    run2, folder = torchrun(["-m", "lagrangian_family.cli"], argv_of, lambda attempt: tmp_path / f"ddp{attempt}")
    argv = argv_of(folder)
    assert run2.returncode == 0, run2.stderr[-3000:]
    assert run2.stdout.count("trained:") == 1 and "Traceback" not in run2.stderr
    steps = [int(r["step"]) for r in _log_rows(folder / "log.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == 120
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 120
    rc, out, _ = run(capsys, *argv)
    assert rc == 0 and out.startswith("skipped:")


def test_the_readme_commands_run_as_written(tmp_path, capsys, monkeypatch):
    """The README's ``lagfam train`` block (``<!-- README command: train -->``), run in a fresh folder."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- README command: train -->\s*```console\n(.*?)```", readme, flags=re.S).group(1)
    commands = [ln.removeprefix("$ ") for ln in block.splitlines() if ln.startswith("$ lagfam ")]
    assert len(commands) == 3
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)[1:]
        rc, _, err = run(capsys, *argv, *(["--no-progress"] if argv[0] == "train" else []))
        assert rc == 0, err
    assert np.load(tmp_path / "samples.npy").shape == (1000, 64)
    assert read_png(tmp_path / "samples.png").ndim == 2
    b4 = json.loads((tmp_path / "runs" / "b4" / "metrics.json").read_text())
    assert b4["identity"]["params"] == {"beta": 4.0} and b4["identity"]["data"] == "digits"


# -- the Lagrangian version (--lagrangian, --slack) ---------------------------------------------------

@pytest.fixture(scope="module")
def lagvae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "lagvae-max"
    rc = main(["train", "lagvae", "--lagrangian", "maximise-Iq", "--slack", "1.0", "--out", str(folder),
               "--steps", "150", "--n-eval", "100", "--no-progress"])
    assert rc == 0
    return folder


def test_a_lagrangian_run_sets_epsilon_from_its_reference_run(lagvae_dir):
    ref = json.loads((lagvae_dir / "reference" / "epsilon.json").read_text())
    assert ref["names"] == ["KL(q(x,z) || p(x,z))", "MMD(q(z) || p(z))"] and ref["steps"] == 150
    assert (lagvae_dir / "reference" / "log.csv").is_file()
    m = json.loads((lagvae_dir / "metrics.json").read_text())["lagrangian"]
    assert m["preference"] == "maximise-Iq" and m["slack"] == 1.0
    # section 6: ε = ε̂ + γ, constraint by constraint
    assert all(math.isclose(e, r + 1.0, rel_tol=1e-6) for e, r in zip(m["epsilon"], ref["measured"]))
    assert m["satisfied"] == [d <= e for d, e in zip(m["constraints"], m["epsilon"])]
    assert all(0.0 <= lam <= 100.0 for lam in m["multipliers"])
    report = (lagvae_dir / "report.md").read_text()
    assert "## The Lagrangian version: maximise-Iq" in report and "| `MMD(q(z) || p(z))` |" in report


def test_a_lagrangian_run_folder_loads_as_the_compiled_lagrangian(lagvae_dir, tmp_path, capsys):
    from lagrangian_family.backends.torch import load_model
    from lagrangian_family.backends.torch.lagrangian import CompiledLagrangian

    model = load_model(lagvae_dir)
    assert isinstance(model.loss_fn, CompiledLagrangian)
    eps = json.loads((lagvae_dir / "metrics.json").read_text())["lagrangian"]["epsilon"]
    assert torch.allclose(model.loss_fn.lagrangian.epsilon, torch.tensor(eps))
    rc, _, _ = run(capsys, "sample", lagvae_dir, "-n", 4, "--out", tmp_path / "s.npy")
    assert rc == 0


def test_a_finished_lagrangian_run_is_skipped(lagvae_dir, capsys):
    rc, out, _ = run(capsys, "train", "lagvae", "--lagrangian", "maximise-Iq", "--slack", "1.0", "--out", lagvae_dir,
                     "--steps", "150", "--n-eval", "100", "--no-progress")
    assert rc == 0 and out.startswith("skipped:")


@pytest.mark.parametrize("argv, message", [
    (["vmi", "--lagrangian", "maximise-Ip", "--slack", "1"], "has no Lagrangian version"),
    (["vae", "--slack", "1"], "--slack without --lagrangian"),
    (["vae", "--lagrangian", "maximise-Iq"], "--lagrangian without --slack"),
    (["vae", "--lagrangian", "maximise-Iq", "--slack", "abc"], "is not a slack"),
    (["vae", "--lagrangian", "maximise-Iq", "--slack", "-1"], "slack"),
    (["vae", "--lagrangian", "more-info", "--slack", "1"], "error:"),
    (["infogan", "--lagrangian", "maximise-Ip", "--slack", "1"], "--option encoder=gaussian"),
])
def test_bad_lagrangian_input_is_refused_before_anything_is_written(tmp_path, capsys, argv, message):
    _refused_before_writing(tmp_path, capsys, argv, message)


# -- sweeps (--set beta=1,4 --seeds 2) ------------------------------------------------------------------

def test_a_sweep_trains_one_folder_per_grid_point_as_one_stack(tmp_path, capsys):
    from lagrangian_family.backends.torch import load_model

    folder = tmp_path / "sweep"
    argv = ["train", "beta_vae", "--set", "beta=1,4", "--seeds", "2", "--out", folder, "--steps", 60,
            "--n-eval", 100, "--no-progress"]
    rc, out, err = run(capsys, *argv)
    assert rc == 0 and "training 4 runs as one vectorised stack" in err
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == ["beta=1_seed=0", "beta=1_seed=1", "beta=4_seed=0", "beta=4_seed=1"]
    for name in names:
        m = json.loads((folder / name / "metrics.json").read_text())
        assert m["trainer"] == "VectorisedTrainer (a stack of 4)" and m["steps"] == 60
        assert m["identity"]["params"]["beta"] == float(name[5]) and m["identity"]["seed"] == int(name[-1])
        model = load_model(folder / name)  # the plain objective, not the stack's Lagrangian
        assert type(model.loss_fn).__name__ == "CompiledObjective" and model.loss_fn.defaults["beta"] == float(name[5])
        assert _log_rows(folder / name / "log.csv")[-1]["step"] == "60"
    # the runs differ: each has its own seed and β
    w = [load_model(folder / n).encoder.head.weight for n in names]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    rc, out, _ = run(capsys, *argv)
    assert rc == 0 and out.count("skipped:") == 4


def test_no_vectorise_trains_each_point_with_the_trainer(tmp_path, capsys):
    folder = tmp_path / "sweep"
    rc, _, err = run(capsys, "train", "beta_vae", "--set", "beta=1,4", "--out", folder, "--steps", 30,
                     "--n-eval", 100, "--no-progress", "--no-vectorise")
    assert rc == 0 and "vectorised stack" not in err
    for name in ("beta=1_seed=0", "beta=4_seed=0"):
        m = json.loads((folder / name / "metrics.json").read_text())
        assert m["trainer"] == "Trainer" and (folder / name / "checkpoint.pt").is_file()


def test_runs_that_cannot_be_stacked_train_alone(tmp_path, capsys):
    folder = tmp_path / "sweep"
    rc, _, err = run(capsys, "train", "ali", "--seeds", "2", "--out", folder, "--steps", 10, "--n-eval", 100,
                     "--no-progress")
    assert rc == 0 and err.count("trained alone (it cannot be stacked") == 2
    assert json.loads((folder / "seed=1" / "metrics.json").read_text())["trainer"] == "Trainer"


def test_a_bad_grid_point_is_refused_before_anything_is_written(tmp_path, capsys):
    folder = tmp_path / "sweep"
    rc, _, err = run(capsys, "train", "beta_vae", "--set", "beta=1,1e999999", "--out", folder, "--steps", 5)
    assert rc == 2 and "too large" in err and not folder.exists()
    rc, _, err = run(capsys, "train", "beta_vae", "--set", "beta=1,2", "--lagrangian", "maximise-Iq", "--slack", "1",
                     "--out", folder)
    assert rc == 2 and "a sweep trains plain runs" in err and not folder.exists()


def test_infogans_shared_trunk_resumes_exactly(tmp_path, capsys, monkeypatch):
    """InfoGAN's Q shares the discriminator's layers: a run interrupted after its checkpoint resumes
    to the same weights, bit for bit, as the uninterrupted run, and the saved model keeps them shared."""
    from lagrangian_family.backends.torch import load_model

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train(capsys, whole, "infogan")[0] == 0
    interrupt_then_resume(capsys, monkeypatch, cut, "infogan")
    a, b = load_model(whole).loss_fn, load_model(cut).loss_fn
    assert b.encoder.body[0] is b.estimators[0].critic.net[0]
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
