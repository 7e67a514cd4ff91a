"""The small traps of issue 9: aliases everywhere, what print says, the right fix for a shape
mismatch, a short typed error for data outside the decoder's support, a distribution prior that
moves with the compiled loss."""

import math

import pytest
import torch
from torch.distributions import AffineTransform, Independent, MultivariateNormal, Normal, TransformedDistribution

import lagrangian_family as lf
from lagrangian_family.backends.torch import (
    DeterministicMLPDecoder,
    Lagrangian,
    Trainer,
    compile_objective,
)

from .helpers import binary_data, gaussian_kl_to_standard, paper_mmd, tiny_models

# -- aliases: accepted the same way wherever they are accepted ------------------------------------

def hand_mmd_vae(enc, dec, x, lam):
    """InfoVAE with alpha = 1 by hand: NLL + lambda * MMD(q(z) || p(z)), samples in the backend's order."""
    q = enc(x)
    z = q.rsample()
    nll = -dec(z).log_prob(x).mean()
    return nll + lam * paper_mmd(z, torch.randn(x.shape[0], 2))


@pytest.mark.parametrize("how", ["zoo-name-call", "zoo-name-compile", "zoo-get-call", "zoo-get-bound", "trainer"])
def test_the_zoo_alias_lam_works_at_compile_and_call_time(how):
    enc, dec, prior = tiny_models()
    x = binary_data()
    lam = 7.0
    if how == "zoo-name-call":
        loss_fn = compile_objective("infovae", encoder=enc, decoder=dec, prior=prior)
        call = {"lam": lam}
    elif how == "zoo-name-compile":
        loss_fn = compile_objective("infovae", encoder=enc, decoder=dec, prior=prior, params={"lam": lam})
        call = {}
    elif how == "zoo-get-call":
        loss_fn = compile_objective(lf.zoo.get("infovae"), encoder=enc, decoder=dec, prior=prior)
        call = {"lam": lam, "alpha": 1.0}
    elif how == "zoo-get-bound":
        loss_fn = compile_objective(lf.zoo.get("infovae", lam=lam, alpha=1), encoder=enc, decoder=dec, prior=prior)
        call = {}
    else:  # the trainer passes its params to the loss
        loss_fn = compile_objective("infovae", encoder=enc, decoder=dec, prior=prior)
        trainer = Trainer(loss_fn, x, batch_size=len(x), params={"lam": lam}, progress=False)
        assert trainer.params == {"lam": lam}
        call = trainer.params
    torch.manual_seed(4)
    out = loss_fn(x, **call)
    torch.manual_seed(4)
    assert torch.allclose(out.value, hand_mmd_vae(enc, dec, x, lam).detach(), atol=1e-5)


def test_aliases_of_other_zoo_symbols():
    enc, _, prior = tiny_models()
    gen = DeterministicMLPDecoder(2, 6, hidden=(8,))
    x = binary_data()
    infogan = compile_objective(lf.zoo.get("infogan"), encoder=enc, decoder=gen, prior=prior)
    assert infogan.aliases == {"lam": "lambda_I"}
    infogan(x, lam=2.0)
    lag = Lagrangian.lagvae("alpha1", (90.0, 0.01)).compile(encoder=enc, decoder=tiny_models()[1], prior=prior)
    assert lag(x, alpha=-1.0).loss.requires_grad  # alpha names LagVAE's alpha1


def test_an_alias_with_its_symbol_or_an_ambiguous_alias_is_an_error():
    enc, dec, prior = tiny_models()
    x = binary_data()
    loss_fn = compile_objective("infovae", encoder=enc, decoder=dec, prior=prior)
    with pytest.raises(lf.ObjectiveError, match="given twice") as e:
        loss_fn(x, lam=1.0, **{"lambda": 2.0})
    assert "lam=1.0 and lambda=2.0" in str(e.value)
    with pytest.raises(lf.ObjectiveError, match="given twice"):
        compile_objective("infovae", encoder=enc, decoder=dec, prior=prior, params={"lam": 1.0, "lambda": 2.0})
    # params then keywords: the keyword wins, whichever name each uses
    torch.manual_seed(1)
    a = loss_fn(x, {"lambda": 2.0}, lam=5.0, alpha=1.0).value
    torch.manual_seed(1)
    assert torch.allclose(a, hand_mmd_vae(enc, dec, x, 5.0).detach(), atol=1e-5)
    both = compile_objective("-E_{q(x,z)}[log p(x|z)] + lambda * MMD(q(z) || p(z)) + lambda_I * KL(q(z) || p(z))",
                             encoder=enc, decoder=dec, prior=prior)
    with pytest.raises(lf.ObjectiveError, match="ambiguous") as e:
        both(x, lam=1.0, lambda_I=1.0)
    assert "'lambda', 'lambda_I'" in str(e.value)
    with pytest.raises(lf.ObjectiveError, match="unknown parameter 'lamb'") as e:
        loss_fn(x, lamb=1.0)
    assert "lam (alias of lambda)" in str(e.value)


# -- print(loss_fn) says how each term is estimated -----------------------------------------------

def test_print_says_closed_form_or_sampled_and_the_estimator_of_each_term():
    enc, dec, prior = tiny_models()
    closed = str(compile_objective("vae", encoder=enc, decoder=dec, prior=prior))
    assert ("E_{q(x)}[KL(q(z|x) || p(z))] <- likelihood: KL(q(z|x) || p(z)) in closed form "
            "(Independent(Normal) || Independent(Normal))") in closed
    assert "E_{q(x,z)}[log p(x|z)] <- likelihood: Monte Carlo at z ~ q(z|x) (reparameterised) of log p(x|z)" in closed
    sampled = str(compile_objective("vae", encoder=enc, decoder=dec, prior=prior, estimators={"KL": "mc"}))
    assert ("E_{q(x)}[KL(q(z|x) || p(z))] <- mc: KL sampled, Monte Carlo at z ~ q(z|x) (reparameterised) "
            "of log q(z|x) - log p(z)") in sampled
    joint = str(compile_objective("KL(q(x,z) || p(x,z)) + 10 * MMD(q(z) || p(z)) + KL(p(z) || q(z))",
                                  encoder=enc, decoder=dec, prior=prior))
    assert ("KL(q(x,z) || p(x,z)) <- likelihood: KL(q(z|x) || p(z)) in closed form "
            "(Independent(Normal) || Independent(Normal)); Monte Carlo at z ~ q(z|x) (reparameterised) "
            "of -log p(x|z)") in joint
    assert "MMD(q(z) || p(z)) <- mmd: kernel='paper', biased=True" in joint
    assert "KL(p(z) || q(z)) <- fgan: sampled, with a trained critic" in joint
    gan = str(compile_objective("JS(q(x) || p(x))", encoder=enc, decoder=DeterministicMLPDecoder(2, 6, hidden=(8,)),
                                prior=prior))
    assert "JS(q(x) || p(x)) <- gan: sampled, with a trained critic, non-saturating" in gan


# -- the decoder's shape and support ----------------------------------------------------------------

def test_a_decoder_whose_shape_does_not_match_x_gets_a_shape_fix():
    enc, dec, prior = tiny_models()
    images = binary_data().reshape(-1, 1, 2, 3)  # the same 6 values per example, as 1x2x3 images
    with pytest.raises(lf.ObjectiveError) as e:
        compile_objective("vae", encoder=enc, decoder=dec, prior=prior, example_x=images)
    msg = str(e.value)
    assert "shape (6,)" in msg and "(1, 2, 3)" in msg
    assert "reshape the data to (n, 6)" in msg and "x_shape=(1, 2, 3)" in msg
    assert "binar" not in msg


@pytest.mark.parametrize("when", ["call", "compile"])
def test_non_binary_x_for_a_bernoulli_decoder_is_a_short_typed_error(when):
    enc, dec, prior = tiny_models()
    x = torch.bernoulli(torch.full((500, 6), 0.5))
    x[0, 3], x[7, 1] = 0.25, 1.5
    with pytest.raises(lf.ObjectiveError) as e:
        if when == "call":
            compile_objective("vae", encoder=enc, decoder=dec, prior=prior)(x)
        else:
            compile_objective("vae", encoder=enc, decoder=dec, prior=prior, example_x=x)
    msg = str(e.value)
    assert "outside the support" in msg and "x in {0, 1}" in msg
    assert "2 of 3000 values outside it, e.g. 0.25 at index (0, 3); x ranges over [0, 1.5]" in msg
    assert "binarize" in msg
    assert "tensor(" not in msg and len(msg) < 700  # no printed tensor
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_support_is_checked_only_where_the_decoder_scores_the_data():
    enc, dec, prior = tiny_models()
    x = torch.rand(16, 6)
    # the data only meets a critic here: continuous x is fine with a Bernoulli decoder's mean
    loss_fn = compile_objective("JS(q(x) || p(x))", encoder=enc, decoder=dec, prior=prior, decoder_sample="mean")
    assert math.isfinite(float(loss_fn(x).value))
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    assert math.isfinite(float(loss_fn(torch.bernoulli(x)).value))


# -- a torch.distributions prior moves with the compiled loss -------------------------------------

def test_a_distribution_prior_follows_double_and_gives_the_hand_formula():
    enc, dec, _ = tiny_models()
    prior = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior).double()
    x = binary_data().double()
    torch.manual_seed(2)
    out = loss_fn(x)
    assert out.value.dtype == torch.float64
    assert loss_fn.prior.distribution().base_dist.loc.dtype == torch.float64
    torch.manual_seed(2)
    q = enc(x)  # enc and dec are the compiled loss's own modules, now float64
    hand = -dec(q.rsample()).log_prob(x).mean() + gaussian_kl_to_standard(q).mean()
    assert torch.allclose(out.value, hand.detach(), atol=1e-10)


def test_a_distribution_prior_is_in_the_state_dict_and_loads():
    enc, dec, _ = tiny_models()
    loss_fn = compile_objective("vae", encoder=enc, decoder=dec, prior=Normal(torch.zeros(2), torch.ones(2)))
    assert {"prior.loc", "prior.scale"} <= set(loss_fn.state_dict())
    state = loss_fn.state_dict()
    state["prior.loc"] = torch.tensor([1.0, -1.0])
    loss_fn.load_state_dict(state)
    assert torch.equal(loss_fn.prior.distribution().loc, torch.tensor([1.0, -1.0]))
    z = torch.zeros(1, 2)
    assert torch.allclose(loss_fn.prior.log_prob(z), torch.tensor([-math.log(2 * math.pi) - 1.0]))


def test_structured_distribution_priors_move_too():
    enc, dec, _ = tiny_models()
    x = binary_data().double()
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    mvn = compile_objective("vae", encoder=enc, decoder=dec, prior=MultivariateNormal(torch.zeros(2), cov)).double()
    assert mvn(x).value.dtype == torch.float64
    enc, dec, _ = tiny_models()
    affine = TransformedDistribution(Independent(Normal(torch.zeros(2), torch.ones(2)), 1),
                                     [AffineTransform(torch.tensor([2.0, 0.0]), torch.tensor([3.0, 3.0]), event_dim=1)])
    loss_fn = compile_objective("-E_{q(x,z)}[log p(x|z)] + E_{q(x,z)}[log q(z|x)] - E_{q(x,z)}[log p(z)]",
                                encoder=enc, decoder=dec, prior=affine).double()
    d = loss_fn.prior.distribution()
    assert d.transforms[0].loc.dtype == torch.float64 and d.base_dist.base_dist.scale.dtype == torch.float64
    # log p(z) of z = 2 + 3 u, u ~ N(0, 1), per dimension: log N((z - 2) / 3) - log 3
    z = torch.tensor([[5.0, 3.0]], dtype=torch.float64)
    by_hand = Normal(0.0, 1.0).log_prob(torch.tensor([1.0, 1.0])).sum() - 2 * math.log(3.0)
    assert torch.allclose(loss_fn.prior.log_prob(z), by_hand.double())
    assert loss_fn(x).value.dtype == torch.float64
