"""Train a small VAE on scikit-learn's digits, save it as a run folder, load it back, use it.

* ``save_model(run_dir, loss_fn)`` writes ``run_dir/model.pt``: objective, parameters, component
  specifications, estimator choices and weights in one checksummed file;
* ``load_model(run_dir)`` rebuilds it without this script's code (built-in components);
* the loaded model samples, encodes and reconstructs, and writes PNG grids: samples,
  reconstructions as pairs of rows, and a latent traversal;
* ``lagfam sample run_dir -n 100 --out samples.npy`` is the same from the command line.

    python examples/torch_save_load_sample.py [--steps 1500] [--out runs/example-vae]
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
    StandardNormalPrior,
    Trainer,
    compile_objective,
    load_model,
    save_model,
)
from lagrangian_family.cli import main as lagfam  # noqa: E402
from lagrangian_family.data import binarize, load_digits  # noqa: E402
from lagrangian_family.images import latent_traversal, save_grid, save_pairs  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default="runs/example-vae")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    x = torch.from_numpy(binarize(load_digits()[0], rng=0))
    loss_fn = compile_objective("vae", encoder=GaussianMLPEncoder(64, 4, hidden=(128,)),
                                decoder=BernoulliMLPDecoder(4, 64, hidden=(128,)), prior=StandardNormalPrior(4))
    Trainer(loss_fn, x, batch_size=64, progress=False, seed=0).train(args.steps)

    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(run_dir, loss_fn, data="sklearn digits, binarised", steps=args.steps)

    model = load_model(run_dir)  # no reference to loss_fn: everything comes from the file
    with torch.no_grad():
        print(f"-ELBO on the digits: {float(model(x).value):.2f} nats")
    save_grid(model.sample(64, seed=0), run_dir / "samples.png", nrow=8, scale=3)
    save_pairs(x[:10], model.reconstruct(x[:10]), run_dir / "reconstructions.png", scale=3)
    latent_traversal(model, run_dir / "traversal.png", x=x[0], scale=3)
    rc = lagfam(["sample", str(run_dir), "-n", "100", "--out", str(run_dir / "samples.npy")])
    print(f"wrote {run_dir}/: model.pt, samples.png, reconstructions.png, traversal.png, samples.npy")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
