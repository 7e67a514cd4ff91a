"""The two players cannot be mixed up: each loss has gradients in its own parameters only.

For every zoo objective with a critic the model's loss has no gradient in the critics'
parameters and the critic's loss none in the model's (unless the user shares layers between a
critic and the encoder, as InfoGAN's recipe does: tested at the end). The naive loop (one optimiser over all
parameters, ``out.loss.backward()``) and the two-optimiser pattern make the same update, and
that update is the one a hand-written GAN step computes with plain autograd on the same
samples (the discriminator on detached fakes, the generator through the discriminator).
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import lagrangian_family as lf
from lagrangian_family.backends.torch import (
    DataSamplerPrior,
    DeterministicMLPDecoder,
    DeterministicMLPEncoder,
    GaussianMLPDecoder,
    GaussianMLPEncoder,
    LaplaceMLPDecoder,
    StandardNormalPrior,
    compile_objective,
)

X_DIM, Z_DIM, N = 5, 2, 24

# (zoo name or text, zoo options, compile options): every zoo objective that gets a critic,
# the zoo's options that swap in one, and the other critic estimators
CASES = {
    "infogan": ("infogan", {}, {}),
    "ali": ("ali", {}, {}),
    "bigan": ("bigan", {}, {}),
    "alice": ("alice", {}, {}),
    "cyclegan": ("cyclegan", {}, {}),
    "discogan": ("discogan", {}, {}),
    "as_vae": ("as_vae", {}, {}),
    "aae": ("aae", {}, {}),
    "vae_gan": ("vae_gan", {}, {}),
    "infovae-js": ("infovae", {"divergence": "js", "alpha": 0.5, "lam": 10}, {}),
    "infovae-kl": ("infovae", {"divergence": "kl", "alpha": 0.5, "lam": 10}, {}),
    "wae-gan": ("wae", {"divergence": "js", "lam": 10}, {}),
    "avb-implicit-encoder": ("avb", {}, {}),
    "gan-saturating": ("JS(q(x) || p(x))", {}, {"estimators": {"JS": "gan-saturating"}}),
    "wgan-gp": ("W(q(x,z) || p(x,z))", {}, {}),
    "fgan-pearson": ("D_f(q(z) || p(z))", {}, {"estimators": {"D_f": "fgan:pearson"}}),
}


def build(case: str, seed: int = 0):
    name, zoo_options, options = CASES[case]
    torch.manual_seed(seed)
    enc = GaussianMLPEncoder(X_DIM, Z_DIM, hidden=(8,))
    dec, prior = GaussianMLPDecoder(Z_DIM, X_DIM, hidden=(8,), scale=1.0), StandardNormalPrior(Z_DIM)
    if name in ("cyclegan", "discogan"):  # z is a second data domain, known by samples only
        dec, prior = LaplaceMLPDecoder(Z_DIM, X_DIM, hidden=(8,), scale=1.0), DataSamplerPrior(torch.randn(40, Z_DIM))
    if case == "avb-implicit-encoder":

        class NoisyEncoder(torch.nn.Module):  # a sampler z = f(x) + noise with no density
            def __init__(self):
                super().__init__()
                self.f = DeterministicMLPEncoder(X_DIM, Z_DIM, hidden=(8,))

            def forward(self, x):
                return self.f(x) + torch.randn(x.shape[0], Z_DIM)

        enc = NoisyEncoder()
    objective = lf.zoo.get(name, **zoo_options) if zoo_options else name  # a zoo name binds its defaults
    loss_fn = compile_objective(objective, encoder=enc, decoder=dec, prior=prior, **options)
    return loss_fn, torch.randn(N, X_DIM)


def grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def is_zero(gs) -> bool:
    return all(g is None or not g.abs().max() > 0 for g in gs)


@pytest.mark.parametrize("case", list(CASES))
def test_each_players_loss_has_gradients_in_its_own_parameters_only(case):
    loss_fn, x = build(case)
    model, critic = loss_fn.model_parameters(), loss_fn.critic_parameters()
    assert model and critic  # the case has both players
    out = loss_fn(x)
    m, c = out.players["model"].loss, out.players["critic"].loss
    assert is_zero(grads(m, critic))
    assert is_zero(grads(c, model))
    assert not is_zero(grads(m, model))
    assert not is_zero(grads(c, critic))
    # out.loss carries both: the model's gradient in the model, the critic's in the critics
    for g_out, g_player in zip(grads(out.loss, model + critic), grads(m, model) + grads(c, critic)):
        assert (g_out is None and g_player is None) or torch.allclose(g_out, g_player, atol=1e-7)
    # and its value is the model's loss
    assert torch.equal(out.loss.detach(), m.detach())


def test_gradients_stay_apart_in_a_lagrangian_with_an_adversarial_constraint():
    from lagrangian_family.backends.torch import Lagrangian

    lag = Lagrangian("-I_q(x;z)", [("KL(q(x,z) || p(x,z))", 10.0), ("JS(q(z) || p(z))", 0.01)])
    torch.manual_seed(0)
    loss_fn = lag.compile(encoder=GaussianMLPEncoder(X_DIM, Z_DIM, hidden=(8,)),
                          decoder=GaussianMLPDecoder(Z_DIM, X_DIM, hidden=(8,), scale=1.0),
                          prior=StandardNormalPrior(Z_DIM))
    out = loss_fn(torch.randn(N, X_DIM))
    critic = loss_fn.critic_parameters()
    assert critic
    for loss in [out.players["model"].loss, out.primal_loss, *out.constraint_losses.values()]:
        assert is_zero(grads(loss, critic))
    assert is_zero(grads(out.players["critic"].loss, loss_fn.model_parameters()))


# -- one step: the naive loop, two optimisers and plain autograd agree ----------------------------

def hand_gan(loss_fn, x):
    """JS(q(x) || p(x)), non-saturating: the generator's and the discriminator's losses by hand,
    drawing the samples in the backend's order (z ~ p(z), then x_p = G(z))."""
    gen, prior, d = loss_fn.decoder, loss_fn.prior, loss_fn.estimators[0].critic
    fake = gen(prior.sample(x.shape[0]))
    g_loss = 0.5 * (F.softplus(d(x)).mean() + F.softplus(-d(fake)).mean())
    d_loss = F.softplus(-d(x)).mean() + F.softplus(d(fake.detach())).mean()
    return g_loss, d_loss


def hand_infogan(loss_fn, x, lam=1.0):
    """JS(q(x) || p(x)) - lambda * E_{p(x,z)}[log q(z|x)]: the GAN's losses plus the information
    term, whose samples are drawn after the fake (z ~ p(z), x_p = G(z), then q(z|x_p))."""
    enc, gen, prior = loss_fn.encoder, loss_fn.decoder, loss_fn.prior
    d = loss_fn.estimators[[type(e).__name__ for e in loss_fn.estimators].index("GANEstimator")].critic
    z = prior.sample(x.shape[0])
    fake = gen(z)
    info = enc(fake).log_prob(z).mean()
    g_loss = 0.5 * (F.softplus(d(x)).mean() + F.softplus(-d(fake)).mean()) - lam * info
    d_loss = F.softplus(-d(x)).mean() + F.softplus(d(fake.detach())).mean()
    return g_loss, d_loss


def hand_ali(loss_fn, x):
    """JS(q(x,z) || p(x,z)), non-saturating on both sides (ALI/BiGAN's rule)."""
    enc, gen, prior, d = loss_fn.encoder, loss_fn.decoder, loss_fn.prior, loss_fn.estimators[0].critic
    zq = enc(x).rsample()
    zp = prior.sample(x.shape[0])
    a, b = torch.cat([x, zq], 1), torch.cat([gen(zp), zp], 1)
    g_loss = 0.5 * (F.softplus(d(a)).mean() + F.softplus(-d(b)).mean())
    d_loss = F.softplus(-d(a.detach())).mean() + F.softplus(d(b.detach())).mean()
    return g_loss, d_loss


STEPS = {"JS(q(x) || p(x))": hand_gan, "infogan": hand_infogan, "ali": hand_ali}


def assert_parameters(expected, *loss_fns):
    """Each loss_fn's model then critic parameters equal ``expected``, one by one."""
    for loss_fn in loss_fns:
        got = loss_fn.model_parameters() + loss_fn.critic_parameters()
        assert len(got) == len(expected)
        for p, e in zip(got, expected):
            assert torch.allclose(p.detach(), e, atol=1e-6), (p, e)


def gan_setup(objective):
    torch.manual_seed(0)
    enc = GaussianMLPEncoder(X_DIM, Z_DIM, hidden=(8,))
    gen = DeterministicMLPDecoder(Z_DIM, X_DIM, hidden=(8,))
    loss_fn = compile_objective(objective, encoder=enc, decoder=gen, prior=StandardNormalPrior(Z_DIM))
    return loss_fn, torch.randn(N, X_DIM)


@pytest.mark.parametrize("objective", list(STEPS))
def test_naive_loop_two_optimisers_and_autograd_by_hand_make_the_same_update(objective):
    lr = 0.1
    base, x = gan_setup(objective)
    assert base.critic_parameters()

    # expected: plain autograd on the hand-written losses
    hand = copy.deepcopy(base)
    torch.manual_seed(3)
    g_loss, d_loss = STEPS[objective](hand, x)
    model, critic = hand.model_parameters(), hand.critic_parameters()
    g_model = torch.autograd.grad(g_loss, model, allow_unused=True)
    g_critic = torch.autograd.grad(d_loss, critic)
    expected = [p.detach() - lr * g if g is not None else p.detach() for p, g in zip(model, g_model)]
    expected += [p.detach() - lr * g for p, g in zip(critic, g_critic)]

    # the naive loop: one optimiser over every parameter, out.loss.backward()
    naive = copy.deepcopy(base)
    opt = torch.optim.SGD(naive.parameters(), lr=lr)
    torch.manual_seed(3)
    out = naive(x)
    opt.zero_grad()
    out.loss.backward()
    opt.step()

    # two optimisers, one per player
    two = copy.deepcopy(base)
    opt_m = torch.optim.SGD(two.model_parameters(), lr=lr)
    opt_c = torch.optim.SGD(two.critic_parameters(), lr=lr)
    torch.manual_seed(3)
    out2 = two(x)
    opt_m.zero_grad()
    opt_c.zero_grad()
    out2.players["model"].backward()
    out2.players["critic"].backward()
    opt_m.step()
    opt_c.step()

    assert_parameters(expected, naive, two)
    # the step moved every critic parameter (the check can fail)
    assert any(not torch.equal(p.detach(), q.detach()) for p, q in zip(base.critic_parameters(),
                                                                       naive.critic_parameters()))


def test_reported_value_is_the_estimate_of_the_current_critic():
    """out.value of a GAN term is (V + log 4) / 2 at the current discriminator, computed by hand."""
    loss_fn, x = gan_setup("JS(q(x) || p(x))")
    torch.manual_seed(5)
    out = loss_fn(x)
    torch.manual_seed(5)
    d = loss_fn.estimators[0].critic
    with torch.no_grad():
        fake = loss_fn.decoder(loss_fn.prior.sample(N))
        v = -F.softplus(-d(x)).mean() - F.softplus(d(fake)).mean()
    assert torch.allclose(out.value, (v + torch.log(torch.tensor(4.0))) / 2, atol=1e-6)


def test_evaluation_without_gradients_runs_the_critic_once():
    loss_fn, x = gan_setup("JS(q(x) || p(x))")
    calls = []
    critic = loss_fn.estimators[0].critic
    handle = critic.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            loss_fn(x)
        assert len(calls) == 1
        loss_fn(x)  # training: the critic's own path, then the model's with frozen parameters
        assert len(calls) == 3
    finally:
        handle.remove()


def test_the_naive_adam_loop_trains_the_critic_to_separate_the_data():
    """With one Adam over all parameters and a frozen generator, the critic's value rises towards
    log 2 (the JS of two far-apart distributions): it is trained on its own objective."""
    loss_fn, _ = gan_setup("JS(q(x) || p(x))")
    x = torch.randn(64, X_DIM) + 6.0
    for p in loss_fn.model_parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    with torch.no_grad():
        before = float(loss_fn(x).value)
    for _ in range(150):
        out = loss_fn(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(loss_fn(x).value)
    assert after > 0.6 > before  # log 2 = 0.693


def test_the_trainer_refuses_an_optimizer_that_holds_the_other_players_parameters():
    from lagrangian_family.backends.torch import Trainer

    loss_fn, x = gan_setup("JS(q(x) || p(x))")
    with pytest.raises(lf.ObjectiveError, match="the model optimizer holds") as e:
        Trainer(loss_fn, x, model_optimizer=torch.optim.Adam(loss_fn.parameters()), progress=False)
    assert "model_parameters()" in str(e.value)
    with pytest.raises(lf.ObjectiveError, match="the critic optimizer holds"):
        Trainer(loss_fn, x, critic_optimizer=torch.optim.Adam(loss_fn.parameters()), progress=False)
    trainer = Trainer(loss_fn, x, model_optimizer=torch.optim.Adam(loss_fn.model_parameters()), progress=False)
    assert trainer.critic_optimizer is not None


# -- a critic that shares layers with the encoder: InfoGAN's Q on the discriminator's trunk ---------

def shared_infogan(lam=1.0):
    """InfoGAN whose Q network (a Gaussian encoder here) has the discriminator's first layer as its
    own, as Chen et al. built it: one nn.Linear object in both modules."""
    from torch import nn

    torch.manual_seed(0)
    trunk = nn.Linear(X_DIM, 8)
    critic = nn.Sequential(trunk, nn.LeakyReLU(0.2), nn.Linear(8, 1))
    enc = GaussianMLPEncoder(X_DIM, Z_DIM, hidden=(8,))
    enc.body[0] = trunk
    gen = DeterministicMLPDecoder(Z_DIM, X_DIM, hidden=(8,))
    loss_fn = compile_objective("infogan", encoder=enc, decoder=gen, prior=StandardNormalPrior(Z_DIM),
                                critics={"JS(q(x) || p(x))": critic}, params={"lam": lam})
    return loss_fn, trunk, torch.randn(N, X_DIM)


def test_shared_layers_are_the_critics_and_follow_both_players_gradients():
    """The shared layer is stepped with the critic, on the discriminator's loss plus the information
    term (the authors' discriminator step), the rest of Q and the generator on the generator's loss:
    all checked against the hand-written InfoGAN losses with plain autograd."""
    base, trunk, x = shared_infogan()
    shared = {id(p) for p in trunk.parameters()}
    assert {id(p) for p in base.shared_parameters()} == shared
    assert not shared & {id(p) for p in base.model_parameters()}
    assert shared <= {id(p) for p in base.critic_parameters()}
    assert len(base.model_parameters()) + len(base.critic_parameters()) == len(list(base.parameters()))
    lr = 0.1

    hand = copy.deepcopy(base)
    torch.manual_seed(3)
    enc, gen, prior = hand.encoder, hand.decoder, hand.prior
    d = hand.estimators[[type(e).__name__ for e in hand.estimators].index("GANEstimator")].critic
    z = prior.sample(N)
    fake = gen(z)
    info = enc(fake).log_prob(z).mean()
    g_loss = 0.5 * (F.softplus(d(x)).mean() + F.softplus(-d(fake)).mean()) - info
    d_loss = F.softplus(-d(x)).mean() + F.softplus(d(fake.detach())).mean() - info
    model, critic = hand.model_parameters(), hand.critic_parameters()
    g_model = torch.autograd.grad(g_loss, model, retain_graph=True, allow_unused=True)
    g_critic = torch.autograd.grad(d_loss, critic)
    expected = [p.detach() - lr * g if g is not None else p.detach() for p, g in zip(model, g_model)]
    expected += [p.detach() - lr * g for p, g in zip(critic, g_critic)]

    naive = copy.deepcopy(base)  # one optimiser, out.loss.backward(): the same update
    opt = torch.optim.SGD(naive.parameters(), lr=lr)
    torch.manual_seed(3)
    naive(x).loss.backward()
    opt.step()

    two = copy.deepcopy(base)  # one optimiser per player
    opt_m = torch.optim.SGD(two.model_parameters(), lr=lr)
    opt_c = torch.optim.SGD(two.critic_parameters(), lr=lr)
    torch.manual_seed(3)
    out = two(x)
    # off the shared layer the critic's gradient is its own loss's; on it, the model's is added
    c = out.players["critic"]
    head = list(two.estimators[0].critic[2].parameters())
    for a, b in zip(torch.autograd.grad(c.gradient_loss, head, retain_graph=True),
                    torch.autograd.grad(c.loss, head, retain_graph=True)):
        assert torch.equal(a, b)
    on_trunk = [torch.autograd.grad(f, [two.estimators[0].critic[0].weight], retain_graph=True)[0]
                for f in (c.gradient_loss, c.loss)]
    assert not torch.allclose(*on_trunk)
    out.players["model"].backward()
    out.players["critic"].backward()
    opt_m.step()
    opt_c.step()
    assert_parameters(expected, naive, two)
    # the information term moved the shared layer: without it the critic's step differs
    g_gan_only = torch.autograd.grad(F.softplus(-d(x)).mean() + F.softplus(d(fake.detach())).mean(), critic)
    assert any(not torch.allclose(a, b) for a, b in zip(g_gan_only, g_critic))


def _hand_infogan_grads(m, x):
    """The hand-written InfoGAN step's gradients: the generator's loss in the model's parameters,
    the discriminator's loss plus the information term in the critic's (shared layers included)."""
    enc, gen, prior, d = m.encoder, m.decoder, m.prior, m.estimators[0].critic
    z = prior.sample(x.shape[0])
    fake = gen(z)
    info = enc(fake).log_prob(z).mean()
    g_loss = 0.5 * (F.softplus(d(x)).mean() + F.softplus(-d(fake)).mean()) - info
    d_loss = F.softplus(-d(x)).mean() + F.softplus(d(fake.detach())).mean() - info
    model, critic = m.model_parameters(), m.critic_parameters()
    return (model, torch.autograd.grad(g_loss, model, retain_graph=True, allow_unused=True),
            critic, torch.autograd.grad(d_loss, critic))


def _clipped(gs, max_norm):
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs if g is not None]))
    scale = min(1.0, max_norm / (float(total) + 1e-6))
    return [None if g is None else g * scale for g in gs]


@pytest.mark.parametrize("max_norm", [None, 0.05])
def test_the_trainer_steps_shared_layers_with_the_critic_as_the_hand_written_step(max_norm):
    from lagrangian_family.backends.torch import Trainer

    lr = 0.1
    base, trunk, x = shared_infogan()
    hand = copy.deepcopy(base)
    torch.manual_seed(3)
    model, g_model, critic, g_critic = _hand_infogan_grads(hand, x)
    if max_norm is not None:  # each player's gradients clipped together (torch's clip_grad_norm_)
        g_model, g_critic = _clipped(g_model, max_norm), _clipped(g_critic, max_norm)
    expected = [p.detach() - lr * g if g is not None else p.detach() for p, g in zip(model, g_model)]
    expected += [p.detach() - lr * g for p, g in zip(critic, g_critic)]

    fn = copy.deepcopy(base)
    trainer = Trainer(fn, x, batch_size=N, progress=False, seed=0, max_grad_norm=max_norm,
                      model_optimizer=lambda p: torch.optim.SGD(p, lr=lr),
                      critic_optimizer=lambda p: torch.optim.SGD(p, lr=lr))
    held = {id(p) for g in trainer.critic_optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in fn.shared_parameters()} <= held
    torch.manual_seed(3)
    trainer.step()
    assert_parameters(expected, fn)
