"""Maximum mean discrepancy between samples, and the MMD estimator of ``MMD(a || b)`` terms.

Convention (one place, stated once): ``MMD(a || b)`` denotes the *squared* MMD,
``E k(a, a') + E k(b, b') - 2 E k(a, b)``, estimated on the shared batch by the **biased
V-statistic** (means over all pairs, diagonal included) unless ``biased=False`` (the
U-statistic, diagonals excluded). Samples are flattened; joints concatenate x and z.

Kernels (``d`` is the flattened dimension of the samples):

* ``"paper"`` (default): ``k(a, b) = exp(-||a - b||^2 / d^2)``. This is the authors' code
  (ermongroup/lagvae ``utils.compute_kernel``: ``exp(-mean_dims((a - b)^2) / d)``, which is
  the same thing) and InfoVAE's. The authors multiply the MMD by 10^4 in the loss; here
  that factor is the term's coefficient, not part of the estimator.
* ``"rbf"``: a sum of Gaussian kernels ``exp(-||a - b||^2 / (2 s^2))`` over several bandwidths,
  ``2 s^2 = 2 d * scale * c`` for ``c`` in ``scales`` (default 0.1, 0.2, 0.5, 1, 2, 5, 10).
* ``"imq"``: the sum of inverse multiquadratics ``C / (C + ||a - b||^2)`` with
  ``C = 2 d * scale * c`` over the same ``scales`` (Tolstikhin et al., WAE; ``scale`` is the
  prior's variance, 1 for N(0, I)).

>>> import torch
>>> a = torch.zeros(4, 2); b = torch.ones(4, 2)
>>> round(float(mmd(a, b)), 4)   # 2 - 2 exp(-2/4)
0.7869
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.terms import Divergence, Term

from ..registry import Context, Estimate, Estimator, Reject, register_estimator
from .common import check_sample_divergence, side

SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
KERNELS = ("paper", "rbf", "imq")


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||^2`` for flattened samples, clamped at 0."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    aa = (a * a).sum(1)
    bb = (b * b).sum(1)
    return (aa[:, None] + bb[None, :] - 2.0 * (a @ b.T)).clamp_min(0.0)


def kernel_matrix(d2: torch.Tensor, dim: int, kernel: str = "paper", scales: Sequence[float] = SCALES,
                  scale: float = 1.0) -> torch.Tensor:
    """The kernel applied to a matrix of squared distances between ``dim``-dimensional samples."""
    if kernel == "paper":
        return torch.exp(d2 * (-1.0 / (dim * dim)))
    base = 2.0 * dim * scale
    if kernel == "rbf":
        return sum(torch.exp(d2 * (-1.0 / (base * c))) for c in scales)
    if kernel == "imq":
        return sum((base * c) / (base * c + d2) for c in scales)
    raise _unknown_kernel(kernel)


def _unknown_kernel(kernel) -> ObjectiveError:
    return ObjectiveError(f"unknown MMD kernel {kernel!r}", expected="one of " + ", ".join(map(repr, KERNELS)),
                          given=repr(kernel), fix="pass mmd_kernel='paper' (the authors' kernel), 'rbf' or 'imq', "
                          "or estimators={'MMD': 'mmd:kernel=imq'}")


def mmd(a: torch.Tensor, b: torch.Tensor, *, kernel: str = "paper", biased: bool = True,
        scales: Sequence[float] = SCALES, scale: float = 1.0) -> torch.Tensor:
    """The squared MMD between two batches of samples (see the module docstring).

    >>> import torch
    >>> x = torch.randn(50, 3)
    >>> abs(float(mmd(x, x))) < 1e-6
    True
    """
    n, m = a.shape[0], b.shape[0]
    a = a.reshape(n, -1)
    b = b.reshape(m, -1).to(a.dtype)
    dim = a.shape[1]
    u = torch.cat([a, b], 0)
    k = kernel_matrix(squared_distances(u, u), dim, kernel, scales, scale)
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    if biased:
        return kaa.mean() + kbb.mean() - 2.0 * kab.mean()
    if n < 2 or m < 2:
        raise ObjectiveError("the unbiased MMD needs at least two samples on each side",
                             expected="batches of n >= 2", given=f"{n} and {m} samples",
                             fix="use a batch of at least two examples, or the biased estimate (biased=True)")
    saa = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    sbb = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return saa + sbb - 2.0 * kab.mean()


class MMDEstimator(Estimator):
    """``MMD(a || b)`` on the shared samples: no critic, a path gradient through both sides.

    The V-statistic is a mean over pairs, not over examples: under distributed training it is
    computed on the samples of the whole global batch, gathered from every rank, not averaged
    over the ranks' shards (whose smaller batches would carry a larger O(1/n) bias)."""

    def __init__(self, term: Divergence, left, right, *, kernel: str = "paper", biased: bool = True,
                 scales: Sequence[float] = SCALES, scale: float = 1.0):
        super().__init__(term)
        if kernel not in KERNELS:  # a bad option, not a term this estimator cannot handle: no fallback
            raise _unknown_kernel(kernel)
        if not isinstance(biased, int) or biased not in (0, 1):  # bool, or 0/1 from "biased=0"
            raise ObjectiveError(f"bad MMD option biased={biased!r} for {term}", expected="True or False",
                                 given=repr(biased),
                                 fix="pass mmd_biased=False or estimators={'MMD': 'mmd:biased=false'}")
        (lk, self._left), (rk, self._right) = left, right
        self.requires = tuple(dict.fromkeys(lk + rk))
        self.kernel, self.biased, self.scales, self.scale = kernel, bool(biased), tuple(scales), float(scale)

    def forward(self, s) -> Estimate:
        """The MMD of the two sides' samples. Under distributed training (:attr:`sync` set) the
        samples of every rank are gathered and the MMD is computed on the global batch, its
        gradient scaled so that the ranks' average is the global batch's (:mod:`.distributed`)."""
        a, b = self._left(s), self._right(s)
        sync = self.sync
        if sync is not None and sync.world_size > 1:
            a, b = sync.gather(a, b)
            value = mmd(a, b, kernel=self.kernel, biased=self.biased, scales=self.scales, scale=self.scale)
            return Estimate(sync.scale_local_gradient(value))
        return Estimate(mmd(a, b, kernel=self.kernel, biased=self.biased, scales=self.scales, scale=self.scale))

    def extra_repr(self) -> str:
        return f"{self.term}, kernel={self.kernel!r}, biased={self.biased}"


def _mmd_factory(kernel: str | None):
    def factory(term: Term, ctx: Context) -> Estimator:
        check_sample_divergence(term)
        c = ctx.components
        opts = dict(ctx.options)
        k = opts.pop("kernel", kernel or ctx.settings.get("mmd_kernel", "paper"))
        biased = opts.pop("biased", ctx.settings.get("mmd_biased", True))
        scales = opts.pop("scales", SCALES)
        scale = opts.pop("scale", 1.0)
        if opts:
            raise Reject(f"unknown option(s) {', '.join(sorted(opts))}", fix="options: kernel, biased, scales, scale")
        return MMDEstimator(term, side(term.left, term, c), side(term.right, term, c), kernel=k, biased=biased,
                            scales=scales, scale=scale)

    return factory


register_estimator(Divergence, "MMD", name="mmd")(_mmd_factory(None))
register_estimator(Divergence, "MMD", name="mmd-paper")(_mmd_factory("paper"))
register_estimator(Divergence, "MMD", name="mmd-rbf")(_mmd_factory("rbf"))
register_estimator(Divergence, "MMD", name="mmd-imq")(_mmd_factory("imq"))
