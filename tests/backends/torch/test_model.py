"""Save, load and use a trained model: one file, rebuilt without the user's code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import lagrangian_family as lf
from lagrangian_family.backends import torch as lft
from lagrangian_family.backends.torch import (
    BernoulliMLPDecoder,
    DataSamplerPrior,
    DeterministicMLPDecoder,
    DeterministicMLPEncoder,
    GaussianMLPEncoder,
    Lagrangian,
    LaplaceMLPDecoder,
    Model,
    ModelFileError,
    StandardNormalPrior,
    Trainer,
    build_component,
    compile_objective,
    component_spec,
    load_model,
    save_model,
)
from lagrangian_family.backends.torch.model import FORMAT, FORMAT_VERSION, MODEL_FILE
from lagrangian_family.data import load_digits

from .helpers import binary_data, tiny_models


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def loss_at_seed(loss_fn, x, seed=7, **params):
    torch.manual_seed(seed)
    out = loss_fn(x, **params)
    return out


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    x, _ = load_digits()
    return torch.bernoulli(torch.from_numpy(x[:400]), generator=torch.Generator().manual_seed(0))


# -- round trips ------------------------------------------------------------------------------------

def test_vae_round_trip_same_parameters_samples_and_loss(tmp_path):
    enc, dec, prior = tiny_models()
    x = binary_data()
    loss_fn = compile_objective("beta_vae", encoder=enc, decoder=dec, prior=prior, params={"beta": 3.0})
    Trainer(loss_fn, x, batch_size=16, progress=False, seed=0).train(5)
    path = save_model(tmp_path / "vae.pt", loss_fn, data="synthetic", steps=5)
    model = load_model(path)
    assert isinstance(model, Model) and model.metadata == {"data": "synthetic", "steps": 5}
    assert same_state(loss_fn, model.loss_fn)
    assert type(model.encoder) is GaussianMLPEncoder and type(model.decoder) is BernoulliMLPDecoder
    assert model.loss_fn.defaults == {"beta": 3.0}
    a, b = loss_at_seed(loss_fn, x), loss_at_seed(model.loss_fn, x)
    assert torch.equal(a.value, b.value) and a.terms.keys() == b.terms.keys()
    assert torch.equal(Model(loss_fn).sample(9, seed=3), model.sample(9, seed=3))
    # a new β per call still works on the loaded loss (the symbol is kept, not baked in)
    assert not torch.equal(loss_at_seed(model.loss_fn, x, beta=1.0).value, b.value)


def test_loading_leaves_the_global_random_state_alone(tmp_path):
    enc, dec, prior = tiny_models()
    path = save_model(tmp_path / "m.pt", compile_objective("vae", encoder=enc, decoder=dec, prior=prior))
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    load_model(path)
    assert torch.equal(torch.rand(3), expected)


def test_lagrangian_round_trip_restores_multipliers_and_bounds(tmp_path):
    enc, dec, prior = tiny_models()
    x = binary_data()
    lag = Lagrangian.lagvae(alpha1=-1.0, epsilon=(4.0, 0.01))
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    Trainer(loss_fn, x, batch_size=16, progress=False, seed=0, updater=lft.GradientAscent(lag, lr=0.5)).train(4)
    lam = lag.multipliers.clone()
    assert not torch.equal(lam, torch.ones(2))  # the updater moved them
    model = load_model(save_model(tmp_path / "lag.pt", loss_fn))
    loaded = model.loss_fn
    assert isinstance(loaded, lft.CompiledLagrangian)
    assert torch.equal(loaded.lagrangian.multipliers, lam)
    assert torch.equal(loaded.lagrangian.epsilon, torch.tensor([4.0, 0.01]))
    assert loaded.lagrangian.names == lag.names and str(loaded.lagrangian.primal) == str(lag.primal)
    a, b = loss_at_seed(loss_fn, x), loss_at_seed(loaded, x)
    assert torch.equal(a.value, b.value) and torch.equal(a.violations, b.violations)


def test_critic_weights_and_estimator_choices_are_restored(tmp_path):
    enc, dec, prior = tiny_models()
    x = binary_data()
    text = "-E_{q(x,z)}[log p(x|z)] + 10 * MMD(q(z) || p(z)) + JS(q(x) || p(x))"
    loss_fn = compile_objective(text, encoder=enc, decoder=dec, prior=prior, decoder_sample="mean",
                                estimators={"JS": "gan-saturating", "MMD": "mmd:kernel=imq"}, critic_hidden=12)
    Trainer(loss_fn, x, batch_size=16, progress=False, seed=0).train(3)
    model = load_model(save_model(tmp_path / "critic.pt", loss_fn))
    assert same_state(loss_fn, model.loss_fn)
    by_class = {type(e).__name__: e for e in model.loss_fn.estimators}
    assert by_class["GANEstimator"].saturating is True
    assert by_class["MMDEstimator"].kernel == "imq"
    assert by_class["GANEstimator"].critic[0].out_features == 12
    assert model.loss_fn.components.decoder_sample == "mean"
    assert len(model.loss_fn.critic_parameters()) == len(loss_fn.critic_parameters()) == 6
    a, b = loss_at_seed(loss_fn, x), loss_at_seed(model.loss_fn, x)
    assert torch.equal(a.value, b.value)
    assert torch.equal(a.players["critic"].loss, b.players["critic"].loss)


def test_user_critic_of_standard_layers_needs_no_code(tmp_path):
    enc, dec, prior = tiny_models()
    critic = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Dropout(0.1), nn.Linear(5, 1))
    loss_fn = compile_objective("-E_{q(x,z)}[log p(x|z)] + JS(q(x) || p(x))", encoder=enc, decoder=dec, prior=prior,
                                decoder_sample="mean", critics={"JS": critic})
    model = load_model(save_model(tmp_path / "m.pt", loss_fn))
    [loaded] = [e.critic for e in model.loss_fn.estimators if hasattr(e, "critic")]
    assert repr(loaded) == repr(critic) and loaded is not critic
    assert same_state(loss_fn, model.loss_fn)


class MyEncoder(nn.Module):
    """A user's encoder with a config (rebuildable from its class) ..."""

    def __init__(self, x_dim: int, z_dim: int):
        super().__init__()
        self.config = {"x_dim": x_dim, "z_dim": z_dim}
        self.lin = nn.Linear(x_dim, 2 * z_dim)

    def forward(self, x):
        loc, s = self.lin(x).chunk(2, -1)
        return Independent(Normal(loc, nn.functional.softplus(s) + 1e-3), 1)


class MyDecoder(nn.Module):
    """... and one without (only an instance will do)."""

    def __init__(self, z_dim: int, x_dim: int):
        super().__init__()
        self.lin = nn.Linear(z_dim, x_dim)

    def forward(self, z):
        return Independent(torch.distributions.Bernoulli(logits=self.lin(z)), 1)


def test_custom_modules_are_supplied_at_load_time(tmp_path):
    torch.manual_seed(0)
    loss_fn = compile_objective("vae", encoder=MyEncoder(6, 2), decoder=MyDecoder(2, 6), prior=StandardNormalPrior(2))
    path = save_model(tmp_path / "custom.pt", loss_fn)
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    assert "MyEncoder" in str(e.value) and "MyDecoder" in str(e.value) and "modules=" in str(e.value)
    with pytest.raises(ModelFileError) as e:
        load_model(path, modules={"MyEncoder": MyEncoder})
    assert "MyDecoder" in str(e.value) and "'decoder'" in str(e.value)
    model = load_model(path, modules={"MyEncoder": MyEncoder, "decoder": MyDecoder(2, 6)})
    assert same_state(loss_fn, model.loss_fn)
    x = binary_data()
    assert torch.equal(loss_at_seed(loss_fn, x).value, loss_at_seed(model.loss_fn, x).value)


class MyCritic(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.config = {"d": d}
        self.lin = nn.Linear(d, 1)

    def forward(self, u):
        return self.lin(u).squeeze(-1)


def test_custom_critic_and_custom_estimator_are_named_with_their_key(tmp_path):
    from lagrangian_family.backends.torch.registry import Estimate, Estimator

    class ZeroMMD(Estimator):
        def forward(self, s):
            return Estimate(torch.zeros(()))

    enc, dec, prior = tiny_models()
    [mmd_term] = list(lf.parse("MMD(q(z) || p(z))"))
    text = "-E_{q(x,z)}[log p(x|z)] + MMD(q(z) || p(z)) + JS(q(x) || p(x))"
    loss_fn = compile_objective(text, encoder=enc, decoder=dec, prior=prior, decoder_sample="mean",
                                critics={"JS": MyCritic(6)}, estimators={"MMD": ZeroMMD(mmd_term)})
    path = save_model(tmp_path / "m.pt", loss_fn)
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    assert "needs 2 things" in str(e.value)
    assert "'critic:JS(q(x) || p(x))'" in str(e.value) and "MyCritic" in str(e.value) and "ZeroMMD" in str(e.value)
    with pytest.raises(ModelFileError) as e:
        load_model(path, modules={"MyCritic": MyCritic})
    assert "ZeroMMD" in str(e.value) and "estimators=" in str(e.value)
    model = load_model(path, modules={"MyCritic": MyCritic}, estimators={"MMD(q(z) || p(z))": ZeroMMD(mmd_term)})
    assert same_state(loss_fn, model.loss_fn)
    model = load_model(path, modules={"critic:JS(q(x) || p(x))": MyCritic(6)},
                       estimators={"MMD(q(z) || p(z))": ZeroMMD(mmd_term)})
    assert same_state(loss_fn, model.loss_fn)


def test_weights_that_do_not_fit_are_a_typed_error(tmp_path):
    torch.manual_seed(0)
    loss_fn = compile_objective("vae", encoder=MyEncoder(6, 2), decoder=MyDecoder(2, 6), prior=StandardNormalPrior(2))
    path = save_model(tmp_path / "custom.pt", loss_fn)

    class Wider(MyDecoder):
        def __init__(self):
            nn.Module.__init__(self)
            self.lin = nn.Linear(2, 6)
            self.extra = nn.Linear(3, 3)

    with pytest.raises(ModelFileError) as e:
        load_model(path, modules={"MyEncoder": MyEncoder, "decoder": Wider()})
    assert "decoder.extra.weight" in str(e.value) and "not in the file" in str(e.value)


def test_distribution_prior_and_float64(tmp_path):
    torch.manual_seed(0)
    enc = GaussianMLPEncoder(6, 2, hidden=(8,)).double()
    dec = BernoulliMLPDecoder(2, 6, hidden=(8,)).double()
    prior = Independent(Normal(torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([2.0, 0.25],
                                                                                            dtype=torch.float64)), 1)
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    model = load_model(save_model(tmp_path / "p.pt", loss_fn))
    p = model.prior
    if not isinstance(p, Independent):  # a distribution wrapped as a module (its tensors are buffers)
        p = p.distribution()
    assert isinstance(p, Independent) and isinstance(p.base_dist, Normal)
    assert torch.equal(p.base_dist.loc, prior.base_dist.loc) and torch.equal(p.base_dist.scale, prior.base_dist.scale)
    assert next(model.loss_fn.parameters()).dtype == torch.float64
    x = binary_data().double()
    assert torch.equal(loss_at_seed(loss_fn, x).value, loss_at_seed(model.loss_fn, x).value)


def test_data_prior_is_stored_by_its_source(tmp_path):
    images = torch.from_numpy(load_digits()[0][:50])
    enc = GaussianMLPEncoder(64, 64, hidden=(8,))
    dec = LaplaceMLPDecoder(64, 64, hidden=(8,), scale=1.0)
    src = {"dataset": "digits", "split": "all"}
    loss_fn = compile_objective("cyclegan", encoder=enc, decoder=dec, prior=DataSamplerPrior(images, source=src))
    path = save_model(tmp_path / "cycle.pt", loss_fn)
    tensors = torch.load(path, weights_only=True)["tensors"]
    assert not any(k.startswith("prior") for k in tensors)  # the images are not in the file
    model = load_model(path)
    assert model.prior_is_domain and model.prior.source == src
    assert torch.equal(model.prior.data, torch.from_numpy(load_digits()[0]))  # resolved from the source
    z = images[:4]
    assert torch.allclose(model.translate(z), dec(z).mean.clamp(0, 1))
    # without a source, prior= supplies the images, and forgetting it says how
    bare = compile_objective("cyclegan", encoder=enc, decoder=dec, prior=DataSamplerPrior(images))
    path2 = save_model(tmp_path / "bare.pt", bare)
    with pytest.raises(ModelFileError) as e:
        load_model(path2)
    assert "prior=" in str(e.value)
    assert torch.equal(load_model(path2, prior=images).prior.data, images)


def test_images_for_a_prior_that_is_no_data_domain_are_refused(tmp_path):
    enc, dec, prior = tiny_models()
    path = save_model(tmp_path / "m.pt", compile_objective("vae", encoder=enc, decoder=dec, prior=prior))
    with pytest.raises(ModelFileError, match="no data domain"):
        load_model(path, prior=torch.zeros(10, 2))


def test_run_folder_layout(tmp_path):
    enc, dec, prior = tiny_models()
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    assert save_model(tmp_path, loss_fn) == tmp_path / MODEL_FILE
    assert same_state(load_model(tmp_path).loss_fn, loss_fn)


# -- using a model ------------------------------------------------------------------------------------

def test_sample_is_decoder_means_of_prior_draws():
    enc, dec, prior = tiny_models()
    model = Model(compile_objective("vae", encoder=enc, decoder=dec, prior=prior))
    x = model.sample(20, seed=4)
    torch.manual_seed(4)
    z = torch.randn(20, 2)  # what StandardNormalPrior draws
    assert x.shape == (20, 6) and torch.allclose(x, torch.sigmoid(dec.net(z)))
    assert ((x >= 0) & (x <= 1)).all()
    assert model.sample(5, mean=False).unique().tolist() in ([0.0], [1.0], [0.0, 1.0])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(lf.ObjectiveError):
            model.sample(bad)


def test_generator_output_is_clipped_to_the_data_range():
    torch.manual_seed(0)
    gen = DeterministicMLPDecoder(2, 6, hidden=(8,))
    gen.net[-1].bias.data.fill_(5.0)
    loss_fn = compile_objective("ali", encoder=DeterministicMLPEncoder(6, 2, hidden=(8,)), decoder=gen,
                                prior=StandardNormalPrior(2))
    assert float(Model(loss_fn).sample(10).max()) == 1.0
    assert float(Model(loss_fn, x_range=None).sample(10).min()) > 1.0


def test_encode_is_the_encoder_mean_and_decode_the_decoder_mean():
    enc, dec, prior = tiny_models()
    model = Model(compile_objective("vae", encoder=enc, decoder=dec, prior=prior))
    x = binary_data(5)
    h = enc.act(enc.body(x))
    assert torch.allclose(model.encode(x), enc.head(h)[:, :2])  # the loc half of the head
    z = torch.randn(5, 2)
    assert torch.allclose(model.decode(z), torch.sigmoid(dec.net(z)))
    assert model.encode(x[0]).shape == (1, 2)  # one example without its batch dimension
    with pytest.raises(lf.ObjectiveError) as e:
        model.encode(torch.zeros(3, 7))
    assert "(n, 6)" in str(e.value)
    with pytest.raises(lf.ObjectiveError):
        model.translate(z)  # the prior is no data domain


def test_inference_restores_training_mode():
    enc, dec, prior = tiny_models()
    model = Model(compile_objective("vae", encoder=enc, decoder=dec, prior=prior))
    model.train()
    model.sample(3)
    assert all(m.training for m in model.modules())


def test_reconstruction_of_a_trained_model_beats_a_random_one(digits, tmp_path):
    torch.manual_seed(0)

    def fresh():
        return (GaussianMLPEncoder(64, 4, hidden=(64,)), BernoulliMLPDecoder(4, 64, hidden=(64,)),
                StandardNormalPrior(4))

    random_model = Model(compile_objective("vae", encoder=fresh()[0], decoder=fresh()[1], prior=fresh()[2]))
    enc, dec, prior = fresh()
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    Trainer(loss_fn, digits[:300], batch_size=50, progress=False, seed=0).train(300)
    model = load_model(save_model(tmp_path / "vae.pt", loss_fn))
    test = digits[300:]
    err_trained = float(((model.reconstruct(test) - test) ** 2).sum(1).mean())
    err_random = float(((random_model.reconstruct(test) - test) ** 2).sum(1).mean())
    assert err_trained < 0.7 * err_random


# -- component specifications ---------------------------------------------------------------------------

BUILT_INS = [
    lambda: lft.GaussianMLPEncoder(6, 2, hidden=(8, 4), activation=nn.ReLU, min_log_scale=-5.0),
    lambda: lft.GaussianConvEncoder(channels=1, image_size=8, z_dim=3, width=4, hidden=16),
    lambda: lft.DeterministicMLPEncoder(6, 2, hidden=(5,), activation=nn.Tanh),
    lambda: lft.BernoulliMLPDecoder(2, (1, 2, 3), hidden=(7,)),
    lambda: lft.GaussianMLPDecoder(2, 6, hidden=(8,), scale=0.3),
    lambda: lft.GaussianMLPDecoder(2, 6, hidden=(8,)),
    lambda: lft.LaplaceMLPDecoder(2, 6, hidden=(), scale=0.5),
    lambda: lft.BernoulliConvDecoder(z_dim=3, channels=1, image_size=8, width=4, hidden=16),
    lambda: lft.GaussianConvDecoder(z_dim=3, channels=1, image_size=8, width=4, hidden=16),
    lambda: lft.DeterministicMLPDecoder(2, 6, hidden=(8,), output="sigmoid"),
    lambda: lft.StandardNormalPrior(5),
]


@pytest.mark.parametrize("make", BUILT_INS)
def test_every_builtin_component_is_rebuilt_from_its_spec(make):
    m = make()
    spec = component_spec(m)
    assert not spec.get("custom") and spec["class"] == type(m).__name__
    rebuilt = build_component(spec)
    assert type(rebuilt) is type(m) and repr(rebuilt) == repr(m)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}


def test_every_exported_component_class_sets_a_config():
    import inspect

    classes = [getattr(lft.components, n) for n in lft.components.__all__]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, nn.Module)]
    assert len(classes) >= 11
    for c in classes:  # the convention every engineer follows; the round trips above check the values
        sources = [inspect.getsource(k.__init__) for k in c.__mro__
                   if "__init__" in vars(k) and issubclass(k, nn.Module) and k is not nn.Module]
        assert any("self.config = " in src for src in sources), c.__name__


def test_a_builtin_whose_config_is_wrong_is_caught_when_saving():
    enc = lft.GaussianMLPEncoder(6, 2, hidden=(8,))
    enc.config = {**enc.config, "hidden": [9]}
    with pytest.raises(ModelFileError, match="does not rebuild"):
        component_spec(enc)
    del enc.config
    with pytest.raises(ModelFileError, match="no config"):
        component_spec(enc)


def test_data_shape_other_than_the_decoders_is_kept(tmp_path):
    torch.manual_seed(0)
    images = torch.bernoulli(torch.full((8, 1, 8, 8), 0.4))
    loss_fn = compile_objective("ali", encoder=lft.GaussianConvEncoder(1, 8, z_dim=3, width=4, hidden=16),
                                decoder=DeterministicMLPDecoder(3, 64, hidden=(8,), output="sigmoid"),
                                prior=StandardNormalPrior(3), example_x=images)
    assert loss_fn.x_shape == (1, 8, 8)
    model = load_model(save_model(tmp_path / "m.pt", loss_fn))
    assert model.x_shape == (1, 8, 8) and model.encode(images).shape == (8, 3)
    assert torch.equal(loss_at_seed(loss_fn, images).value, loss_at_seed(model.loss_fn, images).value)


def test_torch_layers_and_unknown_modules():
    seq = nn.Sequential(nn.Conv2d(1, 3, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(3), nn.LeakyReLU(0.1),
                        nn.Flatten(), nn.Linear(12, 1))
    assert repr(build_component(component_spec(seq))) == repr(seq)
    spec = component_spec(MyDecoder(2, 3))
    assert spec == {"class": f"{__name__}.MyDecoder", "custom": True}
    wrapped = nn.utils.parametrizations.spectral_norm(nn.Linear(3, 3))
    assert component_spec(wrapped)["custom"] is True  # a parametrised layer is not a plain torch.nn layer


# -- damaged and foreign files ----------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path) -> Path:
    enc, dec, prior = tiny_models()
    return save_model(tmp_path / "m.pt", compile_objective("vae", encoder=enc, decoder=dec, prior=prior))


def test_truncated_file_is_a_typed_error(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable model file"):
        load_model(saved)


def test_modified_weights_fail_the_checksum(saved):
    payload = torch.load(saved, weights_only=True)
    key = next(iter(payload["tensors"]))
    payload["tensors"][key] = payload["tensors"][key] + 1.0
    torch.save(payload, saved)
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(saved)


def test_foreign_and_newer_files(saved, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="format tag"):
        load_model(other)
    text = tmp_path / "text.pt"
    text.write_text("not a model")
    with pytest.raises(ModelFileError):
        load_model(text)
    payload = torch.load(saved, weights_only=True)
    payload["version"] = FORMAT_VERSION + 1
    torch.save(payload, saved)
    with pytest.raises(ModelFileError, match="newer"):
        load_model(saved)
    assert payload["format"] == FORMAT


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["LAGFAM_TEST_MARKER"]),))


def test_nothing_in_a_file_is_executed(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    monkeypatch.setenv("LAGFAM_TEST_MARKER", str(marker))
    evil = tmp_path / "evil.pt"
    for protocol in (2, pickle.DEFAULT_PROTOCOL):
        with open(evil, "wb") as f:
            pickle.dump({"format": FORMAT, "obj": _Payload()}, f, protocol=protocol)
        with pytest.raises(ModelFileError):
            load_model(evil)
        assert not marker.exists()
    _Payload().__reduce__()[0](*_Payload().__reduce__()[1])  # the payload does act when it is run
    assert marker.exists()


def test_missing_paths_and_folders(tmp_path):
    enc, dec, prior = tiny_models()
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    with pytest.raises(ModelFileError, match="does not exist"):
        save_model(tmp_path / "nope" / "m.pt", loss_fn)
    assert not (tmp_path / "nope").exists()
    with pytest.raises(ModelFileError, match="no model file"):
        load_model(tmp_path)  # a folder without model.pt
    with pytest.raises(ModelFileError):
        save_model(tmp_path / "m.pt", loss_fn, note=object())  # metadata that cannot be stored
    with pytest.raises(ModelFileError):
        save_model(tmp_path / "m.pt", nn.Linear(2, 2))
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    enc, dec, prior = tiny_models()
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    path = save_model(tmp_path / "m.pt", loss_fn)
    before = path.read_bytes()

    def broken(obj, f, *a, **k):
        f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        save_model(path, loss_fn)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_modules_shared_by_the_encoder_and_a_critic_stay_shared(tmp_path):
    """A layer that is the encoder's and a critic's at saving is one module again after loading,
    so further training steps it once; a file whose shared names are not in the model is refused."""
    import json

    from .test_players import shared_infogan

    loss_fn, trunk, x = shared_infogan()
    path = save_model(tmp_path / "model.pt", loss_fn)
    model = load_model(path)
    enc, critic = model.loss_fn.encoder, model.loss_fn.estimators[0].critic
    assert enc.body[0] is critic[0]
    assert {id(p) for p in model.loss_fn.shared_parameters()} == {id(p) for p in critic[0].parameters()}
    torch.testing.assert_close(critic[0].weight, trunk.weight)

    from lagrangian_family.backends.torch.model import _read_file, _write_file

    spec, tensors = _read_file(path, "cpu")
    assert spec["ties"] == [["estimators.0.critic.0", "encoder.body.0"]]  # the critic's module is the owner
    for ties in ([["estimators.0.critic.7", "encoder.body.0"]], [["", "decoder"]], [["encoder", "encoder.body"]],
                 [["encoder.body.0"]], "encoder", [[1, 2]]):
        spec["ties"] = ties
        bad = tmp_path / "bad.pt"
        _write_file(bad, json.loads(json.dumps(spec)), tensors)
        with pytest.raises(ModelFileError, match="shared modules"):
            load_model(bad)


def test_a_spectrally_normalised_shared_trunk_is_saved_and_loaded_as_the_critics(tmp_path):
    """The shared layers are the critic's as it built them (spectrally normalised: r1=0 brings spectral
    normalisation back): the encoder's saved config rebuilds the rest, and loading puts the critic's
    layers back in Q."""
    from lagrangian_family.backends.torch.recipes import recipe

    r = recipe("infogan", data="digits", budget="smoke", r1=0.0)
    x = r.load_data()
    loss_fn = r.build(example_x=x[:4])
    r.trainer(loss_fn, x, progress=False).train(2)
    model = load_model(save_model(tmp_path / "model.pt", loss_fn))
    enc, critic = model.loss_fn.encoder, model.loss_fn.estimators[0].critic
    assert all(a is b for a, b in zip(enc.body, critic.net))
    assert len(enc.body) == len(critic.net) - 1
    assert torch.nn.utils.parametrize.is_parametrized(enc.body[0], "weight")
    loss_fn.eval()
    model.loss_fn.eval()
    images = torch.as_tensor(x[:8])
    torch.testing.assert_close(model.loss_fn.encoder(images).logits, loss_fn.encoder(images).logits)
