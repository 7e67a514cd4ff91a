"""Recipes: every zoo model builds, compiles and trains at the smoke budget on the digits; the
defaults are what the documentation says; round trips; typed errors; the inverted domain."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lagrangian_family as lf
from lagrangian_family.backends.torch import Model, load_model, save_model
from lagrangian_family.backends.torch.components import CodePrior, LaplaceConvTranslator, MLPCritic
from lagrangian_family.backends.torch.recipes import BUDGETS, OPTIONS, Recipe, RecipeError, recipe
from lagrangian_family.data import load_digits
from lagrangian_family.data_sources import resolve_source

ADVERSARIAL_ONLY = ("ali", "bigan", "infogan")


@pytest.mark.parametrize("name", lf.zoo.names())
def test_every_zoo_model_builds_compiles_and_trains_at_smoke(name):
    r = recipe(name, data="digits", budget="smoke")
    x = r.load_data()
    assert tuple(x.shape[1:]) == r.x_shape == (64,)
    loss_fn = r.build(example_x=x[:8])
    before = [p.detach().clone() for p in loss_fn.model_parameters()]
    trainer = r.trainer(loss_fn, x, progress=False)
    history = trainer.train(r.training["steps"])
    assert trainer.step_count == r.training["steps"] == BUDGETS["smoke"]["digits"]["steps"]
    assert all(np.isfinite(row["loss"]) for row in history)
    moved = [not torch.equal(b, p.detach()) for b, p in zip(before, loss_fn.model_parameters())]
    assert any(moved)
    # the trainer got the recipe's optimisers
    assert trainer.model_optimizer.param_groups[0]["lr"] == r.training["model_optimizer"]["lr"]
    assert trainer.model_optimizer.param_groups[0]["betas"] == tuple(r.training["model_optimizer"]["betas"])
    if trainer.critic_optimizer is not None:
        assert trainer.critic_optimizer.param_groups[0]["lr"] == r.training["critic_optimizer"]["lr"]


@pytest.mark.parametrize("name", lf.zoo.names())
def test_round_trip_through_json(name):
    r = recipe(name, data="digits", budget="smoke")
    d = json.loads(json.dumps(r.to_dict()))
    assert Recipe.from_dict(d) == r
    assert Recipe.from_dict(d).to_dict() == d


@pytest.mark.parametrize("name", ["ali", "bigan", "alice", "as_vae", "avb"])
def test_joint_critics_have_dropout_and_spectral_norm_or_r1(name):
    # ALI and BiGAN (purely adversarial, JS critics only): R1 instead of spectral normalisation
    adversarial = name in ADVERSARIAL_ONLY
    r = recipe(name, data="digits", budget="smoke")
    loss_fn = r.build()
    critics = [e.critic for e in loss_fn.estimators if isinstance(getattr(e, "critic", None), torch.nn.Module)]
    assert critics and all(isinstance(c, MLPCritic) for c in critics)
    for c in critics:
        linears = [m for m in c.modules() if isinstance(m, torch.nn.Linear)]
        normalised = [torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in linears]
        assert linears and all(normalised) != adversarial and any(normalised) != adversarial
        assert any(isinstance(m, torch.nn.Dropout) and m.p == pytest.approx(0.2) for m in c.modules())
    r1 = [getattr(e, "r1", None) for e in loss_fn.estimators if type(e).__name__ == "GANEstimator"]
    if adversarial:
        assert r1 == [10.0]
    else:
        assert not any(r1)
    assert ("Mescheder" in r.reasons["critics"]) == adversarial


def test_overriding_r1_or_spectral_norm_on_a_purely_adversarial_model():
    def critic_and_reason(**kw):
        r = recipe("ali", data="digits", budget="smoke", **kw)
        return (r.compile_options["critics"]["JS(q(x,z) || p(x,z))"]["config"]["spectral_norm"],
                r.compile_options.get("estimators"), r.reasons["critics"])

    # r1=0 falls back to spectral normalisation: the critic is never left unregularised
    sn, est, why = critic_and_reason(r1=0.0)
    assert sn is True and est is None and why.startswith("spectral normalisation on every critic layer")
    # another gamma: the reason names it, not the default's measurement
    sn, est, why = critic_and_reason(r1=5.0)
    assert sn is False and est == {"JS": "gan:r1=5"} and "r1=5" in why and "Mescheder" not in why
    # spectral normalisation asked for: both
    sn, est, why = critic_and_reason(spectral_norm=True)
    assert sn is True and est == {"JS": "gan:r1=10"}
    # a generator option on a model without a generator is refused, not ignored
    with pytest.raises(RecipeError, match="generator_batch_norm"):
        recipe("vae", data="digits", generator_batch_norm=True)


@pytest.mark.parametrize("name", [*ADVERSARIAL_ONLY, "JS(q(x) || p(x))"])
def test_r1_adds_gamma_half_the_squared_gradient_at_the_data_to_the_critics_loss(name):
    # with a linear critic T(u) = w.u + b the gradient at every data point is w, so R1 adds exactly
    # (gamma / 2) ||w||^2 = 5 ||w||^2 to the critic's loss (by hand) and nothing to the model's
    kw = dict(data="digits", budget="smoke", critic_hidden=[])
    if name == "infogan":  # a linear critic has no hidden layers to lend Q
        kw["shared_trunk"] = False
    with_r1, without = recipe(name, **kw), recipe(name, **kw, r1=0.0, spectral_norm=False)
    x = with_r1.load_data()[:16]
    fn_r1, fn = with_r1.build(example_x=x[:4]), without.build(example_x=x[:4])
    fn.load_state_dict(fn_r1.state_dict())
    gan = next(e for e in fn_r1.estimators if type(e).__name__ == "GANEstimator")
    assert gan.r1 == 10.0 and not next(e for e in fn.estimators if type(e).__name__ == "GANEstimator").r1
    (linear,) = [m for m in gan.critic.modules() if isinstance(m, torch.nn.Linear)]
    outs = []
    for loss_fn in (fn_r1, fn):
        torch.manual_seed(5)
        out = loss_fn(x)
        outs.append((float(out.players["critic"].loss.detach()), float(out.players["model"].loss.detach())))
    assert outs[0][0] - outs[1][0] == pytest.approx(5.0 * float(linear.weight.detach().pow(2).sum()), rel=1e-4)
    assert outs[0][1] == pytest.approx(outs[1][1], rel=1e-6)


def test_spectral_norm_bounds_the_critic_layers():
    # the largest singular value of each normalised weight is 1 after enough power iterations
    torch.manual_seed(0)
    c = MLPCritic(10, hidden=(16, 16), spectral_norm=True)
    c.train()
    for _ in range(50):
        c(torch.randn(4, 10))
    for m in c.modules():
        if isinstance(m, torch.nn.Linear):
            assert torch.linalg.matrix_norm(m.weight.detach(), ord=2) == pytest.approx(1.0, abs=1e-3)


def test_options_turn_defaults_off_and_on():
    r = recipe("ali", data="digits", budget="smoke", spectral_norm=False, critic_dropout=0.0, r1=10.0)
    critic = next(iter(r.compile_options["critics"].values()))["config"]
    assert critic["spectral_norm"] is False and critic["dropout"] == 0.0
    assert r.compile_options["estimators"] == {"JS": "gan:r1=10"}
    loss_fn = r.build()
    gan = next(e for e in loss_fn.estimators if type(e).__name__ == "GANEstimator")
    assert gan.r1 == 10.0
    assert not any(torch.nn.utils.parametrize.is_parametrized(m, "weight")
                   for m in gan.critic.modules() if isinstance(m, torch.nn.Linear))
    assert recipe("ali", data="digits", lr=1e-4, steps=7).training["model_optimizer"]["lr"] == 1e-4
    assert recipe("ali", data="digits", steps=7).training["steps"] == 7


@pytest.mark.parametrize("name", ADVERSARIAL_ONLY)
def test_purely_adversarial_models_get_gan_defaults(name):
    r = recipe(name, data="digits")
    t = r.training
    lr, critic_lr = (1e-3, 2e-4) if name == "infogan" else (2e-4, 2e-4)  # InfoGAN: its authors' rates
    assert t["model_optimizer"] == {"name": "adam", "lr": lr, "betas": [0.5, 0.999]}
    assert t["critic_optimizer"] == {"name": "adam", "lr": critic_lr, "betas": [0.5, 0.999]}
    assert t["binarize"] is None  # grey levels: the generator's outputs are continuous
    assert r.components["decoder"]["config"]["output"] == "sigmoid"
    assert ("Chen et al." if name == "infogan" else "Radford") in r.reasons["optimisers"]


@pytest.mark.parametrize("name", ["vae", "aae", "wae", "alice", "vae_gan", "cyclegan"])
def test_models_with_a_reconstruction_term_keep_adam_1e3(name):
    r = recipe(name, data="digits")
    assert r.training["model_optimizer"]["lr"] == 1e-3


@pytest.mark.parametrize("name", ["vae", "beta_vae", "wae", "aae", "avb"])
def test_models_with_a_reconstruction_term_get_a_16d_latent_on_mnist(name):
    r = recipe(name, data="mnist", budget="small")
    assert r.components["prior"]["config"]["dim"] == 16
    assert r.components["encoder"]["config"]["z_dim"] == r.components["decoder"]["config"]["z_dim"] == 16
    assert "Tolstikhin" in r.reasons["z_dim"] and "bench/zoo_learns.py" in r.reasons["z_dim"]
    # an explicit z_dim wins; the digits and the other budgets keep theirs
    assert recipe(name, data="mnist", budget="small", z_dim=32).components["prior"]["config"]["dim"] == 32
    assert "z_dim" not in recipe(name, data="mnist", budget="small", z_dim=32).reasons
    assert recipe(name, data="digits", budget="small").components["prior"]["config"]["dim"] == 8
    assert recipe(name, data="mnist", budget="paper").components["prior"]["config"]["dim"] == 64


@pytest.mark.parametrize("name", ["ali", "bigan"])
def test_gan_models_keep_a_32d_latent_on_mnist(name):
    r = recipe(name, data="mnist", budget="small")
    assert r.components["prior"]["config"]["dim"] == 32 and "z_dim" not in r.reasons


@pytest.mark.parametrize("name", ADVERSARIAL_ONLY)
def test_purely_adversarial_models_train_longer_at_the_small_budget_on_mnist(name):
    r = recipe(name, data="mnist", budget="small")
    assert r.training["steps"] == BUDGETS["small"]["mnist"]["steps_adversarial"] == 20_000
    assert "20000 steps, not 6000" in r.reasons["steps"]
    # the other models, the other data and budgets, and an explicit steps= keep theirs
    assert recipe("vae", data="mnist", budget="small").training["steps"] == 6000
    assert recipe(name, data="digits", budget="small").training["steps"] == 3000
    assert recipe(name, data="mnist", budget="smoke").training["steps"] == 20
    explicit = recipe(name, data="mnist", budget="small", steps=100)
    assert explicit.training["steps"] == 100 and "steps" not in explicit.reasons


def test_wasserstein_term_gets_five_critic_steps():
    r = recipe("-E_{q(x,z)}[log p(x|z)] + W(q(z) || p(z))", data="digits", budget="smoke")
    assert r.training["n_critic"] == 5
    assert r.name is None and "W(q(z) || p(z))" in r.compile_options["critics"]


def test_text_objective_without_likelihood_gets_a_generator():
    r = recipe("JS(q(x) || p(x))", data="digits", budget="smoke")
    assert r.components["decoder"]["class"] == "DeterministicMLPDecoder"
    x = r.load_data()
    r.trainer(r.build(example_x=x[:4]), x, progress=False).train(3)


def test_zoo_parameters_and_aliases():
    assert recipe("beta_vae", data="digits").params == {"beta": 4.0}
    assert recipe("beta_vae", data="digits", params={"beta": 2}).params == {"beta": 2.0}
    assert recipe("aae", data="digits", params={"lam": 3}).params == {"lambda": 3.0}
    loss_fn = recipe("beta_vae", data="digits", budget="smoke", params={"beta": 2}).build()
    assert loss_fn.defaults["beta"] == 2.0


@pytest.mark.parametrize("kwargs, words", [
    ({"objective": "E_{q(z)}[JS(q(x|z) || p(x|z))]"}, "not computable"),
    ({"objective": "vae", "data": "cifar"}, "unknown dataset"),
    ({"objective": "vae", "budget": "huge"}, "unknown budget"),
    ({"objective": "vae", "arch": "resnet"}, "unknown architecture"),
    ({"objective": "vae", "stepz": 3}, "unknown recipe option"),
    ({"objective": "vae", "decoder": "generator"}, "needs log p(x|z)"),
    ({"objective": "vmi", "encoder": "deterministic"}, "needs log q(z|x)"),
    ({"objective": "vae", "binarize": None}, "Bernoulli decoder"),
    ({"objective": "beta_vae", "params": {"gamma": 1.0}}, "no parameter"),
    ({"objective": "ali", "shared_trunk": True}, "does not have"),
    ({"objective": "infogan", "critic_hidden": [16]}, "different widths"),
    ({"objective": "infogan", "critic_dropout": 0.2}, "dropout"),
    ({"objective": "infogan", "shared_trunk": "maybe"}, "not true or false"),
    ({"objective": "ali", "spectral_norm": "yes"}, "not true or false"),
    ({"objective": "vae", "hidden": "[16]"}, "not a list of layer widths"),
    ({"objective": "ali", "critic_hidden": [16, 0]}, "not a list of layer widths"),
])
def test_typed_errors(kwargs, words):
    objective = kwargs.pop("objective")
    with pytest.raises(RecipeError) as e:
        recipe(objective, **{"data": "digits", **kwargs})
    assert words in str(e.value) and "expected:" in str(e.value) and "fix:" in str(e.value)


def test_from_dict_rejects_what_is_no_recipe():
    with pytest.raises(RecipeError, match="not a recipe"):
        Recipe.from_dict({"objective": "vae"})


def test_every_option_is_documented():
    assert set(OPTIONS) >= {"spectral_norm", "critic_dropout", "r1", "lr", "critic_lr", "betas", "critic_betas",
                            "n_critic", "decoder_sample", "binarize", "steps", "batch_size"}
    doc = recipe.__module__ and __import__(recipe.__module__, fromlist=["x"]).__doc__
    for cited in ("Miyato", "Dumoulin", "Heusel", "Mescheder", "Gulrajani"):
        assert cited in doc


def test_inverted_domain_source_and_translation():
    x, _ = load_digits()
    inv = resolve_source({"dataset": "digits", "split": "all", "transform": "invert"})
    np.testing.assert_allclose(inv, 1.0 - x, atol=1e-7)
    r = recipe("cyclegan", data="digits", budget="smoke")
    assert r.domain == {"dataset": "digits", "split": "train", "transform": "invert"}
    loss_fn = r.build()
    prior = loss_fn.components.prior.obj
    train = resolve_source({"dataset": "digits", "split": "train"})
    np.testing.assert_allclose(prior.data.numpy(), 1.0 - train, atol=1e-7)
    model = Model(loss_fn)
    y = model.translate(torch.from_numpy(inv[:5]))
    assert tuple(y.shape) == (5, 64) and bool(((y >= 0) & (y <= 1)).all())


def test_translator_is_a_deterministic_map_scored_by_a_mean_l1():
    t = LaplaceConvTranslator(side=8, width=4)
    x = torch.rand(3, 64, requires_grad=True)
    d = t(x)
    assert d.scale == 64.0  # the number of pixels: -log p is the per-pixel mean l1 plus a constant
    assert torch.equal(d.rsample(), d.mean) and d.rsample().requires_grad
    target = torch.rand(3, 64)
    by_hand = -(target - d.mean).abs().mean(1) - 64 * np.log(2 * 64.0)
    torch.testing.assert_close(d.log_prob(target), by_hand)
    assert LaplaceConvTranslator(side=8, width=4, scale=0.5)(x).scale == 0.5


def test_code_prior_and_encoder_density():
    torch.manual_seed(0)
    p = CodePrior(4, 2, 3)
    z = p.sample_codes(6, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert z[:, :4].argmax(1).tolist() == [0, 1, 2, 3, 0, 1]
    assert bool((z[:, 4:6].abs() <= 1).all())
    r = recipe("infogan", data="digits", budget="smoke")
    loss_fn = r.build()
    q = loss_fn.encoder(torch.rand(6, 64))
    z = loss_fn.components.prior.obj.sample(6)
    k, m = 10, 2
    c, u, e = z[:, :k], z[:, k:k + m], z[:, k + m:]
    by_hand = ((c * torch.log_softmax(q.logits, -1)).sum(1)
               + torch.distributions.Normal(q.loc, q.scale).log_prob(u).sum(1)
               + torch.distributions.Normal(0.0, 1.0).log_prob(e).sum(1))
    torch.testing.assert_close(q.log_prob(z), by_hand)


def test_saved_recipe_model_loads(tmp_path):
    for name in ("ali", "infogan", "cyclegan"):
        r = recipe(name, data="digits", budget="smoke")
        x = r.load_data()
        loss_fn = r.build(example_x=x[:4])
        r.trainer(loss_fn, x, progress=False).train(2)
        folder = tmp_path / name
        folder.mkdir()
        save_model(folder / "model.pt", loss_fn, recipe=r.to_dict())
        model = load_model(folder)
        torch.testing.assert_close(model.sample(4, seed=3), Model(loss_fn).sample(4, seed=3))
        assert Recipe.from_dict(model.metadata["recipe"]) == r


def test_infogans_q_is_on_the_discriminators_hidden_layers_by_default(tmp_path):
    """Chen et al.'s structure: Q's hidden layers are the discriminator's (the same modules), stepped
    with the critic's optimiser; a saved model keeps them shared; shared_trunk=False gives Q its own."""
    r = recipe("infogan", data="digits", budget="smoke")
    assert r.compile_options["shared_trunk"] == "JS(q(x) || p(x))" and "Chen et al." in r.reasons["shared_trunk"]
    x = r.load_data()
    loss_fn = r.build(example_x=x[:4])
    critic = loss_fn.estimators[0].critic
    assert len(loss_fn.encoder.body) == len(critic.net) - 1
    assert all(a is b for a, b in zip(loss_fn.encoder.body, critic.net))
    trainer = r.trainer(loss_fn, x, progress=False)
    assert {id(p) for p in loss_fn.encoder.body.parameters()} <= {
        id(p) for g in trainer.critic_optimizer.param_groups for p in g["params"]}
    trainer.train(2)
    save_model(tmp_path / "model.pt", loss_fn)
    loaded = load_model(tmp_path).loss_fn
    assert len(loaded.encoder.body) == 2 and all(a is b for a, b in zip(loaded.encoder.body,
                                                                          loaded.estimators[0].critic.net))
    assert [id(p) for p in loaded.shared_parameters()] == [id(p) for p in loaded.encoder.body.parameters()]
    for a, b in zip(loaded.parameters(), loss_fn.parameters()):
        torch.testing.assert_close(a, b)

    own = recipe("infogan", data="digits", budget="smoke", shared_trunk=False)
    assert "shared_trunk" not in own.compile_options and "shared_trunk" not in own.reasons
    assert "network of its own" in own.reasons["optimisers"] and "hidden layers are the discriminator's" in \
        r.reasons["optimisers"]
    fn = own.build(example_x=x[:4])
    assert not fn.shared_parameters()
    assert not {id(p) for p in fn.encoder.parameters()} & {id(p) for p in fn.critic_parameters()}
