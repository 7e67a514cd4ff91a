"""lagrangian_of: the Lagrangian version of every zoo model compiles and steps on the digits;
ε from a reference run; typed errors."""

import math

import pytest
import torch

import lagrangian_family as lf
from lagrangian_family.backends.torch import (
    BernoulliMLPDecoder,
    DataSamplerPrior,
    GaussianMLPEncoder,
    GradientAscent,
    Lagrangian,
    StandardNormalPrior,
    Trainer,
    compile_objective,
    compile_with_recipe,
    epsilon_with_slack,
    lagrangian_of,
    load_model,
    measure_constraints,
    save_model,
)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data[:320] / 16.0, dtype=torch.float32)
    return (x > 0.5).float()


def _components(model, digits, z_dim=4, seed=0):
    torch.manual_seed(seed)
    if model in ("cyclegan", "discogan"):  # z is the second domain: the inverted digits
        return (GaussianMLPEncoder(64, 64, hidden=(32,)), BernoulliMLPDecoder(64, 64, hidden=(32,)),
                DataSamplerPrior(1.0 - digits))
    return (GaussianMLPEncoder(64, z_dim, hidden=(32,)), BernoulliMLPDecoder(z_dim, 64, hidden=(32,)),
            StandardNormalPrior(z_dim))


@pytest.mark.parametrize("model", [n for n in lf.zoo.names() if n != "vmi"])
def test_every_zoo_model_with_a_dual_form_compiles_and_steps_on_the_digits(model, digits):
    for preference in lf.PREFERENCES:
        form = lf.lagrangian_form(model, preference=preference)
        lag = lagrangian_of(model, preference=preference, epsilon=[1e6] * len(form.names))
        assert lag.names == form.names and lag.reference_multipliers == form.reference_multipliers
        enc, dec, prior = _components(model, digits)
        loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior, decoder_sample="mean")
        before = [p.detach().clone() for p in loss_fn.model_parameters()]
        trainer = Trainer(loss_fn, digits, batch_size=32, updater=GradientAscent(lag, lr=0.01), progress=False,
                          seed=0)
        rows = trainer.train(2)
        assert all(math.isfinite(v) for r in rows for k, v in r.items() if k.startswith("lambda"))
        assert any(not torch.equal(a, b) for a, b in zip(before, loss_fn.model_parameters()))
        # ε = 1e6 is never reached: every violation is negative, so λ falls from 1 (Algorithm 1's start)
        assert (lag.multipliers < 1.0).all()


def test_the_compiled_primal_is_the_preferences_bound(digits):
    """maximise-Iq at alpha 2: the primal is 2·E_q[-log p(x|z)] (the lower bound, negated), the
    same value as that text compiled on its own with the same noise."""
    enc, dec, prior = _components("lagvae", digits)
    x = digits[:50]
    lag = lagrangian_of("lagvae", preference="maximise-Iq", alpha=2.0, epsilon=[100.0, 0.1])
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    ref = compile_objective("-2 * E_{q(x,z)}[log p(x|z)]", encoder=enc, decoder=dec, prior=prior)
    torch.manual_seed(3)
    out = loss_fn(x)
    torch.manual_seed(3)
    assert torch.allclose(out.primal, ref(x).value, rtol=1e-6)
    lag_min = lagrangian_of("lagvae", preference="minimise-Iq", alpha=2.0, epsilon=[100.0, 0.1])
    out_min = lag_min.compile(encoder=enc, decoder=dec, prior=prior)(x)
    # the upper bound in closed form: 2·E_q(x)[KL(N(mu, s²) || N(0, I))]
    q = enc(x)
    mu, s = q.base_dist.loc, q.base_dist.scale
    kl = 0.5 * (mu ** 2 + s ** 2 - 1 - 2 * torch.log(s)).sum(-1).mean()
    assert torch.allclose(out_min.primal, 2 * kl.detach(), rtol=1e-5)


def test_epsilon_from_a_reference_run(digits):
    """Section 6: train the constraints alone with the original model's multipliers (fixed),
    measure them on held-out data, add the slack."""
    train, held_out = digits[:256], digits[256:]
    lag = lagrangian_of("lagvae", preference="maximise-Iq", slack=[2.0, "50%"])
    assert torch.isnan(lag.epsilon).all() and lag.slack == [2.0, "50%"]
    ref = lag.reference()
    assert ref.multipliers.tolist() == [1.0, 100.0] and ref.primal == lf.Objective()
    enc, dec, prior = _components("lagvae", digits)
    ref_fn = ref.compile(encoder=enc, decoder=dec, prior=prior)
    Trainer(ref_fn, train, batch_size=32, progress=False, seed=0).train(20)
    assert ref.multipliers.tolist() == [1.0, 100.0]          # no updater: the weights stay fixed
    eps_hat = measure_constraints(ref_fn, held_out, batch_size=25)
    eps = epsilon_with_slack(lag, eps_hat, lag.slack)
    assert torch.allclose(eps, torch.stack([eps_hat[0] + 2.0, eps_hat[1] * 1.5]))
    assert torch.equal(lag.epsilon, eps)
    # the -ELBO measured is the reference's head on the same examples, weighted by batch size
    torch.manual_seed(0)
    again = measure_constraints(ref_fn, held_out, batch_size=64)
    assert abs(float(again[0] - eps_hat[0])) < 0.1 * abs(float(eps_hat[0])) + 1.0


def test_measure_constraints_weights_batches_by_size(digits):
    enc, dec, prior = _components("lagvae", digits)
    lag = lagrangian_of("lagvae", preference="maximise-Iq", epsilon=[1.0, 1.0])
    fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    x = digits[:10]
    torch.manual_seed(5)
    got = measure_constraints(fn, x, batch_size=4)            # batches of 4, 4, 2
    torch.manual_seed(5)
    with torch.no_grad():
        parts = [(fn(x[i:i + 4]), len(x[i:i + 4])) for i in (0, 4, 8)]
    want = sum(torch.stack(list(o.constraints.values())) * n for o, n in parts) / 10
    assert torch.allclose(got, want)


def test_calibrate_epsilon_uses_the_original_models_multipliers(digits):
    from lagrangian_family.backends.torch import calibrate_epsilon

    lag = lagrangian_of("alice", preference="minimise-Iq", slack=0.1)
    enc, dec, prior = _components("alice", digits)
    eps_hat = calibrate_epsilon(lag, digits[:256], encoder=enc, decoder=dec, prior=prior, gamma=lag.slack,
                                steps=3, batch_size=32, eval_batches=2, eval_data=digits[256:],
                                decoder_sample="mean", trainer={"seed": 0})
    assert torch.allclose(lag.epsilon, eps_hat + 0.1)
    assert lag.multipliers.tolist() == [1.0, 1.0]


def test_reference_and_epsilon_given_directly():
    lag = lagrangian_of("infogan", preference="maximise-Ip", reference={"JS(q(x) || p(x))": 0.3,
                                                                         "E_{p(x)}[KL(p(z|x) || q(z|x))]": 0.5},
                        slack={"JS(q(x) || p(x))": 0.05, "E_{p(x)}[KL(p(z|x) || q(z|x))]": "10%"})
    assert [round(e, 5) for e in lag.epsilon.tolist()] == [0.55, 0.35]
    lag = lagrangian_of("alice", preference="maximise-Iq", epsilon={"JS(q(x,z) || p(x,z))": 0.4,
                                                                     "E_{q(z)}[KL(q(x|z) || p(x|z))]": 30.0})
    assert [round(e, 5) for e in lag.epsilon.tolist()] == [30.0, 0.4]
    assert lagrangian_of("ali", preference="maximise-Iq", init="original").multipliers.tolist() == [1.0]


@pytest.mark.parametrize("kwargs, match", [
    ({"slack": -1.0}, "bad slack"),
    ({"slack": "abc"}, "bad slack"),
    ({"slack": [1.0]}, "wrong number of slacks"),
    ({"slack": {"JS(q(x,z) || p(x,z))": 1.0}}, "the slack names the constraints"),
    ({"slack": 1.0, "epsilon": [1.0, 2.0]}, "both epsilon and a reference"),
    ({"reference": [1.0, 2.0]}, "a reference without a slack"),
    ({"reference": [1.0, float("nan")], "slack": 1.0}, "bad measured values"),
    ({"epsilon": {"JS(q(x,z) || p(x,z))": 1.0}}, "epsilon names the constraints"),
    ({"init": "paper"}, "bad initial multipliers"),
    ({"preference": "maximise-information"}, "unknown information preference"),
])
def test_bad_arguments_are_typed_errors(kwargs, match):
    kw = {"preference": "maximise-Iq", **kwargs}
    with pytest.raises(lf.ObjectiveError, match=match):
        lagrangian_of("alice", **kw)


def test_models_without_a_lagrangian_version_are_typed_errors():
    with pytest.raises(lf.ObjectiveError, match="do not enforce consistency"):
        lagrangian_of("vmi", preference="maximise-Ip")
    with pytest.raises(lf.ObjectiveError, match="no dual form"):
        lagrangian_of("-JS(q(x) || p(x))", preference="maximise-Ip")
    with pytest.raises(lf.ObjectiveError, match="a compiled Lagrangian"):
        measure_constraints(torch.nn.Linear(2, 2), torch.zeros(3, 2))


def test_a_lagrangian_version_saves_and_loads(tmp_path, digits):
    lag = lagrangian_of("alice", preference="maximise-Iq", epsilon=[30.0, 0.4], init=[2.0, 3.0])
    enc, dec, prior = _components("alice", digits)
    fn = lag.compile(encoder=enc, decoder=dec, prior=prior, decoder_sample="mean")
    save_model(tmp_path, fn, data="digits")
    back = load_model(tmp_path).loss_fn.lagrangian
    assert isinstance(back, Lagrangian)
    assert back.names == lag.names and back.primal == lag.primal
    assert torch.equal(back.epsilon, lag.epsilon) and torch.equal(back.multipliers, lag.multipliers)


def test_held_out_updater_steps_on_held_out_violations(digits):
    """HeldOut feeds the wrapped updater D - ε of the next held-out batch, not the training batch's:
    checked against GradientAscent fed by hand with the same batch's violations."""
    from lagrangian_family.backends.torch import HeldOut

    enc, dec, prior = _components("lagvae", digits)
    lag = lagrangian_of("lagvae", preference="maximise-Iq", epsilon=[30.0, 0.01])
    fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    held = digits[256:]
    up = HeldOut(GradientAscent(lag, lr=0.1), fn, held, batch_size=40)
    torch.manual_seed(7)
    up.step(object())                                       # the training step's output is ignored
    got = lag.multipliers.clone()
    lag.multipliers.fill_(1.0)
    fn.eval()
    torch.manual_seed(7)
    with torch.no_grad():
        v = fn(held[:40]).violations
    GradientAscent(lag, lr=0.1).step(v)
    assert torch.allclose(got, lag.multipliers)
    assert up.position == 40 and fn.training is False      # our fn.eval() above; HeldOut restores the mode
    state = up.state_dict()
    up.step()
    up.load_state_dict(state)
    assert up.position == 40
    with pytest.raises(lf.ObjectiveError, match="wraps a dual updater"):
        HeldOut(object(), fn, held)
    with pytest.raises(lf.ObjectiveError, match="no held-out data"):
        HeldOut(GradientAscent(lag), fn, torch.zeros(0, 64))


def test_held_out_updater_trains_in_the_trainer_and_resumes(digits, tmp_path):
    from lagrangian_family.backends.torch import HeldOut

    def run(steps, resume=None):
        enc, dec, prior = _components("lagvae", digits)
        lag = lagrangian_of("lagvae", preference="maximise-Iq", epsilon=[30.0, 0.01])
        fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
        t = Trainer(fn, digits[:256], batch_size=32, updater=HeldOut(GradientAscent(lag, lr=0.05), fn, digits[256:],
                                                                    batch_size=16), progress=False, seed=0)
        if resume:
            t.load(resume)
        t.train(steps)
        t.save(tmp_path / f"ck{steps}.pt")
        return lag.multipliers.clone(), t.updater.position

    full = run(6)
    run(3)
    resumed = run(3, tmp_path / "ck3.pt")
    assert torch.equal(full[0], resumed[0]) and full[1] == resumed[1]


def test_compile_with_recipe_gives_every_critic_term_a_recipe_critic():
    from lagrangian_family.backends.torch.components import MLPCritic
    from lagrangian_family.backends.torch.recipes import recipe

    r = recipe("alice", data="digits", budget="smoke")
    lag = lagrangian_of("alice", preference="minimise-Iq", epsilon=[30.0, 0.5])
    fn = compile_with_recipe(lag, r)
    critics = {t: e.critic for t, e in zip(fn._texts, fn.estimators) if getattr(e, "critic", None) is not None}
    assert set(critics) == {"JS(q(x,z) || p(x,z))", "KL(q(z) || p(z))"}  # the constraint's KL(q(z) || p(z)) too
    assert all(isinstance(c, MLPCritic) for c in critics.values())
    # the JS critic over (x, z) is the recipe's (dropout for a joint critic), the KL critic over z one of its kind
    assert critics["JS(q(x,z) || p(x,z))"].config["dropout"] == 0.2
    assert critics["KL(q(z) || p(z))"].config["dropout"] == 0.0 and critics["KL(q(z) || p(z))"].config["in_dim"] == 4
    out = fn(r.load_data("train")[:16])
    assert set(out.constraints) == set(lag.names)
    # InfoGAN's dual-form constraint needs reparameterised samples of q(z); the recipe's code encoder has none
    with pytest.raises(lf.ObjectiveError, match="cannot be trained with the components"):
        compile_with_recipe(lagrangian_of("infogan", preference="maximise-Ip").reference(),
                            recipe("infogan", data="digits", budget="smoke"))


def test_a_constraint_set_chosen_by_hand():
    with pytest.raises(lf.ObjectiveError, match="do not enforce consistency"):
        lagrangian_of("lambda_1 * JS(q(x) || p(x))", preference="maximise-Ip", multipliers=["lambda_1"],
                      params={"lambda_1": 1.0})
    lag = lagrangian_of("lambda_1 * JS(q(x) || p(x))", preference="maximise-Ip", multipliers=["lambda_1"],
                        params={"lambda_1": 2.0}, require_consistency=False)
    assert lag.names == ("JS(q(x) || p(x))",) and lag.reference_multipliers == (2.0,)


def test_the_readme_example_runs(capsys):
    from tests.test_readme_examples import run

    ns = run("lagrangian_of")
    lag = ns["lag"]
    assert lag.names == ("E_{q(z)}[KL(q(x|z) || p(x|z))]", "JS(q(x,z) || p(x,z))")
    assert torch.isfinite(lag.epsilon).all() and ns["updater"].updater.updates == 20
    assert "maximise I_q(x;z) through its lower bound" in capsys.readouterr().out


def test_the_demonstration_script_at_the_smoke_budget(tmp_path):
    """examples/lagrangian_zoo.py: the reference run, both directions, the JSON and the generated
    README (the numbers are those of a few steps: only the pipeline is checked)."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "lagrangian_zoo.py"
    spec = importlib.util.spec_from_file_location("lagrangian_zoo_example", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    threads = torch.get_num_threads()
    try:
        assert demo.main(["--out", str(tmp_path), "--models", "lagvae", "--budget", "smoke"]) == 0
    finally:
        torch.set_num_threads(threads)
    runs = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")}
    assert set(runs) == {"lagvae-reference", "lagvae-maximise-Iq", "lagvae-minimise-Iq"}
    mx = runs["lagvae-maximise-Iq"]
    assert mx["bound"] == "lower" and runs["lagvae-minimise-Iq"]["bound"] == "upper"
    assert mx["epsilon"][0] == pytest.approx(runs["lagvae-reference"]["epsilon_hat"][0] + 1.0)
    text = (tmp_path / "README.md").read_text()
    assert "## lagvae" in text and "| maximise-Iq |" in text and "## Summary" in text
    assert demo.main(["--out", str(tmp_path), "--models", "nope"]) == 2
