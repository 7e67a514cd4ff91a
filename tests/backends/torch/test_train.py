"""The trainer: exact resume from checkpoints, NaN errors naming the term, logs and callbacks."""

import csv
import random

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

import lagrangian_family as lf
from lagrangian_family.backends.torch import (
    DeterministicMLPEncoder,
    GaussianMLPDecoder,
    Lagrangian,
    NonFiniteLossError,
    StandardNormalPrior,
    Trainer,
    compile_objective,
    paper_preset,
)

from .helpers import FixedGaussian, binary_data, tiny_models


def _vae_plus_gan(seed):
    enc, dec, prior = tiny_models(seed)
    # a likelihood term, an analytic KL, an MMD and an adversarial term with its own critic
    text = ("-E_{q(x,z)}[log p(x|z)] + E_{q(x)}[KL(q(z|x) || p(z))] + 10 * MMD(q(z) || p(z)) "
            "+ JS(q(z) || p(z))")
    torch.manual_seed(seed + 100)  # the critic's initialisation
    return compile_objective(text, encoder=enc, decoder=dec, prior=prior)


def _lagvae(seed):
    enc, dec, prior = tiny_models(seed)
    lag = Lagrangian.lagvae(-1.0, (3.0, 0.01))
    return compile_objective(lag, encoder=enc, decoder=dec, prior=prior), lag


def _state(loss_fn):
    return {k: v.clone() for k, v in loss_fn.state_dict().items()}


def _assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("with_updater", [False, True])
def test_resume_continues_exactly(tmp_path, with_updater):
    data = binary_data(48)
    n = 7

    def make(seed):
        if with_updater:
            fn, lag = _lagvae(seed)
            return fn, paper_preset(lag)
        return _vae_plus_gan(seed), None

    # uninterrupted: 2N steps
    fn, up = make(0)
    torch.manual_seed(42)
    np.random.seed(0)
    random.seed(0)
    Trainer(fn, data, batch_size=10, updater=up, progress=False, seed=3).train(2 * n)
    full = _state(fn)

    # interrupted: N steps, checkpoint, a fresh process state, resume, N steps
    fn1, up1 = make(0)
    torch.manual_seed(42)
    np.random.seed(0)
    random.seed(0)
    t1 = Trainer(fn1, data, batch_size=10, updater=up1, progress=False, seed=3, checkpoint=tmp_path / "ck.pt")
    t1.train(n)
    torch.manual_seed(999)  # the checkpoint must restore the random states
    np.random.seed(9)
    random.seed(9)
    fn2, up2 = make(5)  # different initial weights: all must come from the checkpoint
    t2 = Trainer(fn2, data, batch_size=10, updater=up2, progress=False, seed=11)
    t2.load(tmp_path / "ck.pt")
    assert t2.step_count == n
    t2.train(n)
    _assert_bitwise_equal(full, _state(fn2))
    if with_updater:
        assert not torch.equal(fn2.lagrangian.multipliers, torch.ones(2))


class _Overflowing(torch.nn.Module):
    """A 'decoder' whose mean is so large that (x - mean)^2 overflows float32: log p(x|z) = -inf."""

    def forward(self, z):
        loc = torch.full((z.shape[0], 6), 3e38)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)


def test_infinite_loss_names_the_term():
    torch.manual_seed(0)
    enc = FixedGaussian([0.0, 0.0])  # finite KL: only the decoder's term overflows
    fn = compile_objective("vae", encoder=enc, decoder=_Overflowing(), prior=StandardNormalPrior(2))
    with pytest.raises(NonFiniteLossError, match=r"E_\{q\(x,z\)\}\[log p\(x\|z\)\] = -inf"):
        Trainer(fn, torch.randn(8, 6), batch_size=8, progress=False).train(2)


def test_non_finite_data_names_the_examples():
    enc, dec, prior = tiny_models()
    fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    data = binary_data(8)
    data[3, 2] = float("inf")
    data[5, 0] = float("nan")
    trainer = Trainer(fn, data, batch_size=8, progress=False, seed=0)
    before = _state(fn)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train(2)
    message = str(info.value)
    # the whole dataset is one batch: the examples 3 and 5 of the data, wherever the shuffle put them
    perm = trainer.batches.last_index.tolist()
    rows = sorted([perm.index(3), perm.index(5)])
    assert f"2 of its 8 examples: rows {rows[0]}, {rows[1]} of the batch (examples 3, 5 of the dataset)" in message
    assert "step 1" in message and "Clean the data" in message
    _assert_bitwise_equal(before, _state(fn))  # nothing was updated
    assert trainer.step_count == 0


def test_exploding_learning_rate_names_the_component():
    """Finite but huge weights make the encoder's Normal get a NaN mean: torch's argument check
    (a ValueError) becomes a NonFiniteLossError naming the encoder."""
    enc, dec, prior = tiny_models()
    fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    with torch.no_grad():  # finite weights, as after a few steps at a learning rate far too high
        enc.body[0].weight.fill_(3e38)  # two pixels on: the hidden units overflow to inf
        enc.head.weight.copy_(torch.tensor([1.0, -1.0]).repeat(enc.head.weight.shape[0], 8))  # inf - inf = nan
    data = torch.ones(16, 6)
    expected = r"the encoder returned a distribution with invalid parameters \(loc of Normal"
    with pytest.raises(NonFiniteLossError, match=expected) as info:
        Trainer(fn, data, batch_size=8, progress=False).train(1)
    assert "every parameter is finite" in str(info.value) and "3e+38" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)

def test_nan_parameters_name_the_component():
    enc, dec, prior = tiny_models()
    fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    with torch.no_grad():
        dec.net[0].weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"decoder\.net\.0\.weight"):
        Trainer(fn, binary_data(), batch_size=8, progress=False).train(2)


def test_training_reduces_the_vae_loss_and_logs_csv(tmp_path):
    enc, dec, prior = tiny_models()
    fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    data = binary_data(64)
    log = tmp_path / "log.csv"
    seen = []
    trainer = Trainer(fn, data, batch_size=32, progress=False, log_csv=log, log_every=5,
                      callback=lambda t, out: seen.append(t.step_count) and False)
    hist = trainer.train(60)
    assert hist[-1]["loss"] < hist[0]["loss"]
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and rows[0]["step"] == "5"
    assert "E_{q(x,z)}[log p(x|z)]" in rows[0]
    assert seen == list(range(1, 61))


def test_callback_can_stop_training():
    enc, dec, prior = tiny_models()
    fn = compile_objective("vae", encoder=enc, decoder=dec, prior=prior)
    trainer = Trainer(fn, binary_data(), batch_size=8, progress=False, callback=lambda t, out: t.step_count >= 3)
    trainer.train(100)
    assert trainer.step_count == 3


def test_wae_gan_with_deterministic_encoder_and_critic_steps():
    """An adversarial autoencoder: a deterministic encoder, a Gaussian decoder, a critic on z."""
    torch.manual_seed(0)
    enc = DeterministicMLPEncoder(6, 2, hidden=(16,))
    dec = GaussianMLPDecoder(2, 6, hidden=(16,), scale=1.0)
    fn = compile_objective(lf.zoo.get("wae", divergence="js"), encoder=enc, decoder=dec,
                           prior=StandardNormalPrior(2), params={"lambda": 1.0}, estimators={"JS": "gan"})
    assert len(fn.critic_parameters()) > 0
    data = torch.randn(64, 6)
    trainer = Trainer(fn, data, batch_size=16, n_critic=2, progress=False)
    critic_before = [p.detach().clone() for p in fn.critic_parameters()]
    trainer.train(3)
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, fn.critic_parameters()))
