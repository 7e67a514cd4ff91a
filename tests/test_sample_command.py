"""``lagfam sample RUN_DIR -n N --out FILE.npy``: end to end on a tiny model trained here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lagrangian_family.cli import main
from lagrangian_family.data import load_digits
from lagrangian_family.images import read_png


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from lagrangian_family.backends.torch import (
        BernoulliMLPDecoder,
        GaussianMLPEncoder,
        StandardNormalPrior,
        Trainer,
        compile_objective,
        save_model,
    )

    torch.manual_seed(0)
    x = torch.bernoulli(torch.from_numpy(load_digits()[0][:300]), generator=torch.Generator().manual_seed(0))
    loss_fn = compile_objective("vae", encoder=GaussianMLPEncoder(64, 3, hidden=(32,)),
                                decoder=BernoulliMLPDecoder(3, 64, hidden=(32,)), prior=StandardNormalPrior(3))
    Trainer(loss_fn, x, batch_size=50, progress=False, seed=0).train(50)
    folder = tmp_path_factory.mktemp("run")
    save_model(folder, loss_fn, data="digits")
    (folder / "log.csv").write_text("step,loss\n")
    return folder


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_samples_are_decoder_means_of_seeded_prior_draws(run_dir, tmp_path, capsys):
    out = tmp_path / "x.npy"
    rc, text, err = run(capsys, "sample", run_dir, "-n", 30, "--out", out, "--seed", 5)
    assert rc == 0 and err == "" and "30 samples" in text
    x = np.load(out)
    assert x.shape == (30, 64) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # by hand: StandardNormalPrior draws torch.randn(n, 3); the sample is sigmoid(decoder logits)
    from lagrangian_family.backends.torch import load_model

    dec = load_model(run_dir).decoder
    torch.manual_seed(5)
    z = torch.randn(30, 3)
    with torch.no_grad():
        expected = torch.sigmoid(dec.net(z)).numpy()
    assert np.allclose(x, expected, atol=1e-6)
    # the same seed gives the same file, another seed another one; the model file itself works too
    rc, _, _ = run(capsys, "sample", run_dir / "model.pt", "-n", 30, "--out", tmp_path / "y.npy", "--seed", 5)
    assert rc == 0 and np.array_equal(np.load(tmp_path / "y.npy"), x)
    run(capsys, "sample", run_dir, "-n", 30, "--out", tmp_path / "z.npy", "--seed", 6)
    assert not np.array_equal(np.load(tmp_path / "z.npy"), x)


def test_grid_is_written_with_the_samples(run_dir, tmp_path, capsys):
    rc, _, _ = run(capsys, "sample", run_dir, "-n", 12, "--out", tmp_path / "x.npy", "--grid", tmp_path / "g.png")
    assert rc == 0
    x, img = np.load(tmp_path / "x.npy"), read_png(tmp_path / "g.png")
    # 8x8 digits enlarged 3 times, 10 per row, padding 2
    assert img.shape == (2 + 2 * 26, 2 + 10 * 26)
    assert np.array_equal(img[2:26, 2:26], np.rint(x[0].reshape(8, 8) * 255).astype(np.uint8).repeat(3, 0).repeat(3, 1))


@pytest.mark.parametrize("case", ["n0", "negative", "no_folder", "not_run", "missing", "damaged", "grid_folder"])
def test_bad_input_exits_2_and_writes_nothing(run_dir, tmp_path, capsys, case):
    out = tmp_path / "out" / "x.npy"
    out.parent.mkdir()
    args = [run_dir, "-n", 5, "--out", out]
    if case == "n0":
        args[2] = 0
    elif case == "negative":
        args[2] = -4
    elif case == "no_folder":
        args[4] = tmp_path / "absent" / "x.npy"
    elif case == "not_run":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("hi")
        args[0] = tmp_path / "empty"
    elif case == "missing":
        args[0] = tmp_path / "nowhere"
    elif case == "damaged":
        bad = tmp_path / "bad"
        bad.mkdir()
        data = (run_dir / "model.pt").read_bytes()
        (bad / "model.pt").write_bytes(data[:-100])
        args[0] = bad
    elif case == "grid_folder":
        args += ["--grid", tmp_path / "absent" / "g.png"]
    rc, text, err = run(capsys, "sample", *args)
    assert rc == 2 and text == "" and err.startswith("error: ") and "Traceback" not in err
    assert "fix:" in err
    assert list(out.parent.iterdir()) == []


def test_translations_of_the_second_domain(tmp_path, capsys):
    from lagrangian_family.backends.torch import (
        DataSamplerPrior,
        GaussianMLPEncoder,
        LaplaceMLPDecoder,
        compile_objective,
        save_model,
    )
    from lagrangian_family.data_sources import resolve_source

    torch.manual_seed(0)
    source = {"dataset": "digits", "split": "test"}
    domain = torch.from_numpy(resolve_source(source))
    dec = LaplaceMLPDecoder(64, 64, hidden=(16,), scale=1.0)
    loss_fn = compile_objective("cyclegan", encoder=GaussianMLPEncoder(64, 64, hidden=(16,)), decoder=dec,
                                prior=DataSamplerPrior(domain, source=source))
    save_model(tmp_path, loss_fn)
    rc, _, err = run(capsys, "sample", tmp_path, "-n", 7, "--out", tmp_path / "t.npy")
    assert rc == 0, err
    with torch.no_grad():
        expected = dec(domain[:7]).mean.clamp(0, 1).numpy()  # the first 7 images of the domain, translated
    assert np.allclose(np.load(tmp_path / "t.npy"), expected, atol=1e-6)
    # a model saved without a source needs --data: an .npy of the domain's images
    bare = tmp_path / "bare"
    bare.mkdir()
    save_model(bare, compile_objective("cyclegan", encoder=GaussianMLPEncoder(64, 64, hidden=(16,)), decoder=dec,
                                       prior=DataSamplerPrior(domain)))
    rc, _, err = run(capsys, "sample", bare, "-n", 3, "--out", tmp_path / "u.npy")
    assert rc == 2 and "prior" in err and not (tmp_path / "u.npy").exists()
    np.save(tmp_path / "domain.npy", domain.numpy()[10:20])
    rc, _, err = run(capsys, "sample", bare, "-n", 3, "--out", tmp_path / "u.npy", "--data", tmp_path / "domain.npy")
    assert rc == 0, err
    with torch.no_grad():
        assert np.allclose(np.load(tmp_path / "u.npy"), dec(domain[10:13]).mean.clamp(0, 1).numpy(), atol=1e-6)


def test_the_save_load_sample_example_runs(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "torch_save_load_sample.py"
    spec = importlib.util.spec_from_file_location("example_save_load_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--steps", "20", "--out", str(tmp_path / "run")]) == 0
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["model.pt", "reconstructions.png", "samples.npy", "samples.png", "traversal.png"]
    assert np.load(tmp_path / "run" / "samples.npy").shape == (100, 64)
    assert "-ELBO on the digits" in capsys.readouterr().out
