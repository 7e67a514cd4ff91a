"""LagVAE on binarised sklearn digits, data-parallel over processes with ``torch.distributed``.

    torchrun --nproc_per_node 2 examples/ddp_lagvae.py [--steps 2000] [--out runs/ddp_lagvae]

(``python examples/ddp_lagvae.py`` runs the same thing in one process.) Every rank runs this
script; the only distributed line is ``init_from_env()``, which joins the process group that
torchrun describes (gloo on CPU, NCCL on GPUs, one device per rank). Everything else is the
single-process code: the Trainer finds the process group and

* draws each global batch of ``--batch-size`` examples in the single-process order, each rank
  taking its shard (so ``--batch-size`` must be a multiple of the number of ranks);
* averages each player's gradient over the ranks, and steps the multipliers λ on the constraint
  estimates averaged over the ranks (the MMD on the samples of the whole global batch), so every
  rank holds the same λ at every step, the one a single process would hold;
* writes the CSV log, the TensorBoard logs (with ``--tensorboard``) and the checkpoint from rank
  0 only. Interrupt it and run the same command again (with any number of processes): it resumes
  from ``--out/checkpoint.pt``.

ε comes from a reference run (the paper's section 6: ε = ε̂ + γ), itself distributed. At the end
rank 0 prints λ as every rank holds it (gathered: the rows are equal) and the mutual
information, -ELBO and MMD of the trained model on held-out digits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lagrangian_family.backends.torch import (  # noqa: E402
    BernoulliMLPDecoder,
    GaussianMLPEncoder,
    GradientAscent,
    Lagrangian,
    StandardNormalPrior,
    Trainer,
    calibrate_epsilon,
    init_from_env,
    metrics,
)


def digits():
    """1500 training and 297 held-out digits (8x8, one fixed binarisation): the same on every rank."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(x, generator=g)
    perm = torch.randperm(x.shape[0], generator=g)
    return x[perm[:1500]], x[perm[1500:]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--ref-steps", type=int, default=1000, help="steps of the reference run that sets epsilon")
    ap.add_argument("--batch-size", type=int, default=100, help="the global batch (a multiple of the ranks)")
    ap.add_argument("--alpha1", type=float, default=-1.0, help="-1 maximises I_q, +1 minimises it")
    ap.add_argument("--mmd-weight", type=float, default=100.0)
    ap.add_argument("--out", default="runs/ddp_lagvae", help="folder of the log and the checkpoint")
    ap.add_argument("--tensorboard", action="store_true", help="TensorBoard logs in OUT/tensorboard")
    args = ap.parse_args(argv)

    sync = init_from_env()  # None outside torchrun: one process
    rank, world = (sync.rank, sync.world_size) if sync is not None else (0, 1)
    device = torch.device("cuda", torch.cuda.current_device()) if sync is not None and sync.backend == "nccl" \
        else torch.device("cpu")
    out = Path(args.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    train, test = (t.to(device) for t in digits())

    torch.manual_seed(0)  # the same weights on every rank (the Trainer also copies rank 0's)
    enc = GaussianMLPEncoder(64, 8, hidden=(256, 256)).to(device)
    dec = BernoulliMLPDecoder(8, 64, hidden=(256, 256)).to(device)
    prior = StandardNormalPrior(8).to(device)
    lag = Lagrangian.lagvae(args.alpha1, mmd_weight=args.mmd_weight)

    resume = (out / "checkpoint.pt").exists()  # every rank sees the same folder
    if not resume:  # ε = ε̂ + γ from a reference run, λ = (1, 100) in the units of w·MMD (eq. 19-20)
        eps_hat = calibrate_epsilon(lag, train, encoder=enc, decoder=dec, prior=prior,
                                    multipliers=[1.0, 100.0 / args.mmd_weight], steps=args.ref_steps,
                                    batch_size=args.batch_size, eval_batches=10)
        lag.set_epsilon(eps_hat + torch.tensor([1.0, 0.5 * float(eps_hat[1])], device=device))

    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior).to(device)
    trainer = Trainer(loss_fn, train, batch_size=args.batch_size, updater=GradientAscent(lag, lr=1e-2),
                      seed=0, log_csv=out / "log.csv", log_every=50, checkpoint=out / "checkpoint.pt",
                      checkpoint_every=500, tensorboard=out / "tensorboard" if args.tensorboard else None)
    if resume:
        trainer.load(out / "checkpoint.pt")  # on every rank (ε and λ included), written by any number of ranks
    trainer.train(max(0, args.steps - trainer.step_count))

    lams = lag.multipliers.detach().cpu().unsqueeze(0)
    if sync is not None:  # every rank's λ (row r: rank r's), to show that they are the same
        (lams,) = sync.gather(lams)
    if rank == 0:
        print(f"{world} rank(s); epsilon = {[round(v, 3) for v in lag.epsilon.tolist()]} "
              f"(-ELBO, {args.mmd_weight:g}*MMD)")
        for r, lam in enumerate(lams.tolist()):
            print(f"rank {r}: lambda = {[round(v, 6) for v in lam]}")
        with torch.no_grad():
            z = enc(test).rsample()
            mmd = float(metrics.mmd(z, prior.sample(z.shape[0]))) * args.mmd_weight
            nelbo = float(metrics.negative_elbo(enc, dec, prior, test))
        mi = metrics.mutual_information_kde(enc, train, test)
        print(f"held-out: MI(KDE) {mi:.2f} nats, -ELBO {nelbo:.2f}, {args.mmd_weight:g}*MMD {mmd:.3f}")
    if sync is not None:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()
