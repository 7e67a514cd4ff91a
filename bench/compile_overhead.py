"""Compile overhead: a compiled loss vs the same loss written by hand, per training step.

For VAE, β-VAE, InfoVAE (MMD) and LagVAE on the authors' MNIST network (MLP 784-1024-1024,
softplus, latent 64, Gaussian encoder, Bernoulli decoder) with batch 100 of random binary
images, time forward + backward of the compiled loss and of a hand-written loss that uses
the same estimators (the closed-form KL of torch.distributions, the same MMD function) on the
same networks. "GAN" is the adversarial case: ``JS(q(x) || p(x))`` with a deterministic
generator of the same size (64-1024-1024-784) and the default critic (784-256-256-1), one
step for both players: the compiled loss's naive ``out.loss.backward()`` (the two players
isolated, :mod:`lagrangian_family.backends.torch.estimators.isolation`) against the usual
hand-written step (the discriminator's loss on ``D(x)`` and ``D(G(z).detach())``, the
non-saturating generator's loss on ``D(G(z))`` differentiated in the generator only).
Steps are interleaved (hand, compiled, then compiled, hand, ...) after a
warm-up; "ratio" is the ratio of the medians, "paired" the median of the ratios of adjacent
steps (robust to load drift on a shared machine). Target: ratio <= 1.05. Not a test: nothing
is asserted.

    python bench/compile_overhead.py [--steps 100] [--warmup 20] [--hidden 1024] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributions import kl_divergence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lagrangian_family as lf  # noqa: E402
from lagrangian_family.backends.torch import (  # noqa: E402
    BernoulliMLPDecoder,
    DeterministicMLPDecoder,
    GaussianMLPEncoder,
    Lagrangian,
    StandardNormalPrior,
    compile_objective,
)
from lagrangian_family.backends.torch.metrics import mmd  # noqa: E402

X_DIM, Z_DIM, BATCH = 784, 64, 100


def hand_terms(enc, dec, prior, x):
    q = enc(x)
    z = q.rsample()
    nll = -dec(z).log_prob(x).mean()
    kl = kl_divergence(q, prior.distribution()).mean()
    return nll, kl, z


def hand_vae(enc, dec, prior, x):
    nll, kl, _ = hand_terms(enc, dec, prior, x)
    return nll + kl


def hand_beta_vae(enc, dec, prior, x, beta=4.0):
    nll, kl, _ = hand_terms(enc, dec, prior, x)
    return nll + beta * kl


def hand_infovae(enc, dec, prior, x, alpha=0.0, lam=1000.0):
    nll, kl, z = hand_terms(enc, dec, prior, x)
    return nll + (1 - alpha) * kl + (alpha + lam - 1) * mmd(z, prior.sample(x.shape[0]))


def make_hand_lagvae(lag, alpha1):
    def hand_lagvae(enc, dec, prior, x):
        nll, kl, z = hand_terms(enc, dec, prior, x)
        lam = lag.multipliers
        primal = alpha1 * kl if alpha1 >= 0 else alpha1 * -nll
        return primal + lam[0] * (nll + kl) + lam[1] * mmd(z, prior.sample(x.shape[0]))

    return hand_lagvae


def make_hand_gan_step(gen, critic, prior, x):
    gen_params = list(gen.parameters())

    def step():
        fake = gen(prior.sample(x.shape[0]))
        d_loss = F.softplus(-critic(x)).mean() + F.softplus(critic(fake.detach())).mean()
        g_loss = 0.5 * F.softplus(-critic(fake)).mean()
        d_loss.backward()
        g_loss.backward(inputs=gen_params)

    return step


def step_time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    enc = GaussianMLPEncoder(X_DIM, Z_DIM, hidden=(args.hidden, args.hidden))
    dec = BernoulliMLPDecoder(Z_DIM, X_DIM, hidden=(args.hidden, args.hidden))
    prior = StandardNormalPrior(Z_DIM)
    x = torch.bernoulli(torch.full((BATCH, X_DIM), 0.13))

    lag = Lagrangian.lagvae(-1.0, (90.0, 1e-3), init=[1.0, 100.0])
    cases = [
        ("VAE", compile_objective("vae", encoder=enc, decoder=dec, prior=prior), {}, hand_vae),
        ("beta-VAE", compile_objective(lf.zoo.get("beta_vae"), encoder=enc, decoder=dec, prior=prior),
         {"beta": 4.0}, hand_beta_vae),
        ("InfoVAE-MMD", compile_objective(lf.zoo.get("infovae"), encoder=enc, decoder=dec, prior=prior),
         {"alpha": 0.0, "lambda": 1000.0}, hand_infovae),
        ("LagVAE", compile_objective(lag, encoder=enc, decoder=dec, prior=prior), {}, make_hand_lagvae(lag, -1.0)),
    ]

    gen = DeterministicMLPDecoder(Z_DIM, X_DIM, hidden=(args.hidden, args.hidden))
    gan = compile_objective("JS(q(x) || p(x))", encoder=enc, decoder=gen, prior=prior)
    cases.append(("GAN", gan, {}, make_hand_gan_step(gen, gan.estimators[0].critic, prior, x)))

    def zero(module):
        for p in module.parameters():
            p.grad = None

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MLP {X_DIM}-{args.hidden}-{args.hidden}, "
          f"latent {Z_DIM}, batch {BATCH}, {args.steps} interleaved steps after {args.warmup} warm-up")
    print(f"{'model':<12} {'hand ms':>9} {'compiled ms':>12} {'overhead ms':>12} {'ratio':>7} {'paired':>7}")
    for name, compiled, kw, hand in cases:
        def run_compiled(compiled=compiled, kw=kw):
            zero(compiled)
            compiled(x, kw).loss.backward()

        def run_hand(hand=hand, compiled=compiled, name=name):
            zero(compiled)
            if name == "GAN":
                hand()  # both players' backward passes, as a hand-written GAN step does them
            else:
                hand(enc, dec, prior, x).backward()

        for _ in range(args.warmup):
            run_hand()
            run_compiled()
        th, tc = [], []
        for i in range(args.steps):
            if i % 2:
                th.append(step_time(run_hand))
                tc.append(step_time(run_compiled))
            else:
                tc.append(step_time(run_compiled))
                th.append(step_time(run_hand))
        mh, mc = statistics.median(th), statistics.median(tc)
        paired = statistics.median(c / h for c, h in zip(tc, th))
        print(f"{name:<12} {mh * 1e3:9.2f} {mc * 1e3:12.2f} {(mc - mh) * 1e3:12.3f} {mc / mh:7.3f} {paired:7.3f}")


if __name__ == "__main__":
    main()
