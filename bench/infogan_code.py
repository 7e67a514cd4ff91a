"""Why InfoGAN's categorical code misses the digits at the small budget (issue 8's 70% target).

A hand-written InfoGAN on MNIST (grey levels), outside the toolkit's compiler, in the variants
that could explain the miss: an MLP generator and an MLP Q network of its own, trained with the
generator (the recipe with ``shared_trunk=False``), Q on the discriminator's trunk as in Chen et
al.'s code and the recipe's default (the
trunk, D's head and Q's head in the discriminator's optimiser, which minimises D's loss plus the
information term), batch normalisation in the generator (as their generator), and their
convolutional networks at a reduced width. LeakyReLU has slope 0.2 throughout (the recipe's
generator keeps torch's 0.01) and the batch-normalised generators use ReLU, as Chen et al.'s.
The rest is the recipe's: a 10-way
categorical code, 2 uniform codes and 62 noise dimensions, the R1 penalty (gamma 10) on the
discriminator (``--critic sn``: spectral normalisation instead, the recipe's earlier default),
non-saturating generator loss, Adam 1e-3 for the generator (and a separate Q), 2e-4 for
the discriminator, betas (0.5, 0.999), batch 64, λ = 1.

Each variant is judged as ``lagfam train`` judges InfoGAN: 10,000 samples drawn at known code
values, labelled by the evaluation module's digit classifier and matched to the codes by the
Hungarian algorithm (``evaluate.code_recovery``), and Q's code of the test images matched to
their labels (``evaluate.encoder_code_accuracy``). One JSON line per variant goes to ``--out``.

    OMP_NUM_THREADS=1 python bench/infogan_code.py [VARIANT ...] [--steps N] [--seed S] [--critic r1|sn]
        [--out FILE.jsonl]

Variants: separate, shared, separate-bn, shared-bn, conv-shared. Not a test: nothing is asserted.
In ``bench/results/infogan_code_small_mnist.jsonl`` the ``"critic": "sn"`` lines were run before
``--critic`` existed, by this script with spectral normalisation as its only discriminator (the
same code path as ``--critic sn``); the field was added to them afterwards.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from lagrangian_family.data import load_mnist  # noqa: E402
from lagrangian_family.evaluate import code_recovery, encoder_code_accuracy  # noqa: E402

K, M, N = 10, 2, 62  # InfoGAN's MNIST code: categorical, continuous, noise
Z = K + M + N
VARIANTS = ("separate", "shared", "separate-bn", "shared-bn", "conv-shared")


class _View(nn.Module):
    def __init__(self, *shape):
        super().__init__()
        self.shape = shape

    def forward(self, v):
        return v.reshape(v.shape[0], *self.shape)


R1_GAMMA = 10.0
_SPECTRAL = {"on": False}


def _sn(layer):
    return nn.utils.parametrizations.spectral_norm(layer) if _SPECTRAL["on"] else layer


def _leaky():
    return nn.LeakyReLU(0.2)


def build(variant: str):
    """(generator, trunk, D head, Q) and the two players' parameter lists."""
    conv, bn = variant.startswith("conv"), variant.endswith("bn") or variant.startswith("conv")
    if conv:  # Chen et al.'s MNIST networks at half width
        g = nn.Sequential(nn.Linear(Z, 7 * 7 * 64), nn.BatchNorm1d(7 * 7 * 64), nn.ReLU(), _View(64, 7, 7),
                          nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid(), _View(784))
        trunk = nn.Sequential(_View(1, 28, 28), _sn(nn.Conv2d(1, 32, 4, 2, 1)), _leaky(),
                              _sn(nn.Conv2d(32, 64, 4, 2, 1)), _leaky(), _View(7 * 7 * 64),
                              _sn(nn.Linear(7 * 7 * 64, 512)), _leaky())
    else:  # the recipe's small-budget MLPs (hidden 512, 512)
        if bn:
            g = nn.Sequential(nn.Linear(Z, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 512),
                              nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())
        else:
            g = nn.Sequential(nn.Linear(Z, 512), _leaky(), nn.Linear(512, 512), _leaky(), nn.Linear(512, 784),
                              nn.Sigmoid())
        trunk = nn.Sequential(_sn(nn.Linear(784, 512)), _leaky(), _sn(nn.Linear(512, 512)), _leaky())
    d_head = _sn(nn.Linear(512, 1))
    if "shared" in variant:
        q_head = nn.Linear(512, K + M)
        q = nn.Sequential(trunk, q_head)
        d_params = [*trunk.parameters(), *d_head.parameters(), *q_head.parameters()]
        g_params = list(g.parameters())
    else:
        q = nn.Sequential(nn.Linear(784, 512), _leaky(), nn.Linear(512, 512), _leaky(), nn.Linear(512, K + M))
        d_params = [*trunk.parameters(), *d_head.parameters()]
        g_params = [*g.parameters(), *q.parameters()]
    return g, trunk, d_head, q, d_params, g_params


def codes(n: int, categories: torch.Tensor | None = None):
    """z = [one-hot c, u ~ U(-1, 1)^2, e ~ N(0, I)^62] and c."""
    c = torch.randint(0, K, (n,)) if categories is None else categories
    return torch.cat([F.one_hot(c, K).float(), torch.rand(n, M) * 2 - 1, torch.randn(n, N)], 1), c


def info_loss(q, x, z, c):
    """−E[log q(c, u | x)] up to constants: cross-entropy on c, squared error (std 1) on u."""
    out = q(x)
    return F.cross_entropy(out[:, :K], c) + 0.5 * ((out[:, K:] - z[:, K:K + M]) ** 2).sum(1).mean()


def run(variant: str, steps: int, seed: int, images: torch.Tensor, critic: str = "r1") -> dict:
    torch.manual_seed(seed)
    _SPECTRAL["on"] = critic == "sn"
    g, trunk, d_head, q, d_params, g_params = build(variant)
    shared = "shared" in variant
    opt_d = torch.optim.Adam(d_params, lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(g_params, lr=1e-3, betas=(0.5, 0.999))
    t0 = time.process_time()
    for _ in range(steps):
        real = images[torch.randint(0, images.shape[0], (64,))]
        z, c = codes(64)
        fake = g(z)
        if critic == "r1":  # Mescheder et al. 2018: (gamma / 2) E_data ||grad D||^2
            real = real.requires_grad_(True)
        score_real = d_head(trunk(real))
        loss_d = F.softplus(-score_real).mean() + F.softplus(d_head(trunk(fake.detach()))).mean()
        if critic == "r1":
            (grad,) = torch.autograd.grad(score_real.sum(), real, create_graph=True)
            loss_d = loss_d + 0.5 * R1_GAMMA * grad.pow(2).sum(1).mean()
        if shared:  # Chen et al.: the discriminator's optimiser also minimises the information term
            loss_d = loss_d + info_loss(q, fake.detach(), z, c)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d_head(trunk(fake))).mean() + info_loss(q, fake, z, c)
        opt_g.zero_grad()
        loss_g.backward(inputs=g_params)
        opt_g.step()
    cpu = time.process_time() - t0
    g.eval()
    q.eval()
    with torch.no_grad():
        cat = torch.arange(10_000) % K
        samples = g(codes(10_000, cat)[0]).numpy()
        recovered = code_recovery(samples, cat.numpy(), "mnist")["accuracy"]
        encoder = encoder_code_accuracy(lambda b: q(torch.as_tensor(b, dtype=torch.float32))[:, :K], "mnist")
    return {"variant": variant, "critic": critic, "steps": steps, "seed": seed, "code_recovery": recovered,
            "encoder_code_accuracy": encoder, "cpu_minutes": cpu / 60, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", default=list(VARIANTS), help=", ".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--critic", choices=("r1", "sn"), default="r1",
                    help="R1 (gamma 10, the recipe's default) or spectral normalisation on the discriminator")
    ap.add_argument("--out", default=None, help="append one JSON line per variant to this file")
    args = ap.parse_args(argv)
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        print(f"error: unknown variant(s) {', '.join(bad)}; expected some of {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    x, _ = load_mnist(None, "train")
    images = torch.tensor(x.reshape(-1, 784) / 255.0, dtype=torch.float32)
    for v in args.variants:
        rec = run(v, args.steps, args.seed, images, args.critic)
        print(f"{v:12s} {args.critic} steps {rec['steps']:6d}  code recovered {rec['code_recovery']:.3f}  "
              f"Q on test images {rec['encoder_code_accuracy']:.3f}  {rec['cpu_minutes']:.1f} CPU min", flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
