"""Adversarial estimators: each owns a critic network trained by the critic player.

All three compare samples of the term's two arguments (marginals x or z, or the joint
(x, z) as the concatenation of flattened x and z; see :mod:`.common`). The critic is built
by default (a small MLP sized from the data) or replaced by the user's network through
``critics={term or its text: module}``. Each call returns the divergence estimate at the
current critic (``value``), the model's gradient surrogate and the critic's loss, all from
one forward pass. The two players are kept apart (:mod:`.isolation`): the value and the
model's surrogate come from the critic with detached parameters on the samples with their
path gradient, the critic's loss from the critic's own parameters on the detached samples. So
the model's loss has no gradient in the critic's parameters and the critic's loss none in the
model's, and one optimiser over all parameters performs simultaneous gradient descent for
both players (``out.loss`` carries the critic's gradient at zero value). Layers a critic shares
with the encoder (InfoGAN's Q on the discriminator's trunk) are stepped with the critic on both
players' gradients (:meth:`.CompiledObjective.critic_parameters`).

**GAN** (``JS`` terms; names ``"gan"``: non-saturating, the default; ``"gan-saturating"``).
The critic's logit ``T`` gives ``D = sigmoid(T)``, the probability that a sample is from the
first argument a. The discriminator's objective is
``V = E_a[log D] + E_b[log(1 - D)]``, and at the optimal discriminator ``V = 2·JS(a || b) - log 4``.
So the estimate reported for ``JS(a || b)`` is ``(V + log 4) / 2``: a GAN whose loss is weighted
by w is the term ``w·JS(a || b)`` (the paper's InfoGAN normalisation), and its model gradient
is ``w/2`` times the usual GAN generator gradient. Saturating: the model minimises the
value itself. Non-saturating: the model's gradient is that of
``(E_a[-log(1 - D)] + E_b[-log D]) / 2`` (labels swapped, both sides, which is the usual
``-log D(G(z))`` on the generated side and ALI/BiGAN's rule on joints); the reported value
is still the JS estimate (``value.detach() + (surrogate - surrogate.detach())``).
Option ``r1=gamma`` (``"gan:r1=10"``) adds Mescheder, Geiger and Nowozin's (2018) R1 penalty
``(gamma / 2)·E_a[||grad_a T(a)||^2]`` on the first argument's (the data's) samples to the
critic's loss: it keeps the critic from growing steep around the data, where a saturated
discriminator gives the generator no gradient.

**f-GAN** (Nowozin, Cseke, Tomioka 2016; names ``"fgan"``, ``"fgan:<f>"``). The variational
bound ``D_f(a || b) >= E_a[g(V)] - E_b[f*(g(V))]`` with the output activation g of each f;
the critic maximises it, the model minimises it. Available f: ``kl`` (KL(a || b)),
``reverse_kl`` (KL(b || a)), ``pearson``, ``neyman``, ``squared_hellinger``, ``js`` (exactly JS:
Nowozin's JS generator gives 2·JS, halved here), ``gan`` (2·JS - log 4) and
``total_variation``. It is the default for KL divergences between marginals or joints
(``KL(q(z) || p(z))`` uses f = kl with a = q(z), ``KL(p(x,z) || q(x,z))`` f = kl with a = p(x,z)),
and the estimator of ``D_f`` terms, where the f must be named: ``estimators={"D_f": "fgan:pearson"}``.

**Adversarial density ratio** (name ``"avb"``, Mescheder et al. 2017): for the encoder KL
``E_{q(x)}[KL(q(z|x) || p(z))]`` with an implicit encoder (a sampler z = f(x, noise) with no
density). A logistic critic T(x, z) separates (x, z ~ q(z|x)) from (x, z ~ p(z)); at its optimum
T = log q(z|x) - log p(z), so the value is ``E_q[T(x, z)]`` and the model's gradient flows
through z into the encoder. Tried after the likelihood estimators (which need an explicit encoder).

**Wasserstein** (``W`` terms; name ``"wgan-gp"``, Gulrajani et al. 2017). Value
``E_a[f] - E_b[f]`` (the Kantorovich-Rubinstein dual at the current critic); the critic
maximises it with the gradient penalty ``gp * E[(||grad f(u)|| - 1)^2]`` on random
interpolates (``gp=10``); the model minimises the value.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from lagrangian_family.symbolic.terms import Divergence, Term

from ..registry import Context, Estimate, Estimator, Reject, register_estimator
from .common import check_sample_divergence, critic_output, default_critic, dimension, side
from .isolation import critic_paths

LOG4 = math.log(4.0)
LOG2 = math.log(2.0)


class Scores(NamedTuple):
    """The critic's scores of one call on its two paths (:mod:`.isolation`).

    ``a``, ``b``: scores of the samples of the first and second argument on the model path
    (gradient to the samples only): the value and the model's surrogate use these.
    ``critic_a``, ``critic_b``: the same on the critic path (gradient to the critic only): the
    critic's loss and its regularisers use these. ``samples_a``, ``samples_b``: the samples,
    detached (for penalties on the critic).
    """

    a: torch.Tensor
    b: torch.Tensor
    critic_a: torch.Tensor
    critic_b: torch.Tensor
    samples_a: torch.Tensor
    samples_b: torch.Tensor


class _CriticEstimator(Estimator):
    def __init__(self, term: Divergence, left, right, critic):
        super().__init__(term)
        (lk, self._left), (rk, self._right) = left, right
        self.requires = tuple(dict.fromkeys(lk + rk))
        self.critic = critic

    def scores(self, s) -> Scores:
        """The critic's :class:`Scores` of the two arguments' samples in ``s``, on both paths."""
        a, b = self._left(s), self._right(s)
        b = b.to(a.dtype)
        return Scores(*critic_paths(self.critic, a, b), a.detach(), b.detach())


class GANEstimator(_CriticEstimator):
    """JS(a || b) by a logistic discriminator: value ``(V + log 4) / 2`` (see the module doc)."""

    def __init__(self, term, left, right, critic, *, saturating: bool = False, r1: float = 0.0):
        super().__init__(term, left, right, critic)
        self.saturating = bool(saturating)
        self.r1 = float(r1)

    @staticmethod
    def _v(ta, tb):
        # V = E_a[log sigmoid(T)] + E_b[log(1 - sigmoid(T))]
        return -F.softplus(-ta).mean() - F.softplus(tb).mean()

    def forward(self, s) -> Estimate:
        sc = self.scores(s)
        value = (self._v(sc.a, sc.b) + LOG4) * 0.5
        critic_loss = -self._v(sc.critic_a, sc.critic_b)
        if self.r1 and torch.is_grad_enabled():  # Mescheder et al. 2018: (gamma/2) E_a[||grad T||^2]
            a = sc.samples_a.requires_grad_(True)
            (g,) = torch.autograd.grad(critic_output(self.critic, a).sum(), a, create_graph=True)
            critic_loss = critic_loss + 0.5 * self.r1 * g.pow(2).sum(1).mean()
        if self.saturating:
            return Estimate(value, critic_loss=critic_loss)
        surrogate = (F.softplus(sc.a).mean() + F.softplus(-sc.b).mean()) * 0.5
        return Estimate(value, surrogate=surrogate, critic_loss=critic_loss)

    def extra_repr(self) -> str:
        r1 = f", r1={self.r1:g}" if self.r1 else ""
        return f"{self.term}, {'saturating' if self.saturating else 'non-saturating'}{r1}"


def _f_kl(v):
    return v, torch.exp(v - 1.0)


def _f_reverse_kl(v):
    return -torch.exp(-v), v - 1.0


def _f_pearson(v):
    return v, 0.25 * v * v + v


def _f_neyman(v):
    return 1.0 - torch.exp(-v), 2.0 - 2.0 * torch.exp(-0.5 * v)


def _f_hellinger(v):
    return 1.0 - torch.exp(-v), torch.expm1(v)


def _f_js2(v):  # Nowozin's JS generator: the bound of 2·JS
    return LOG2 - F.softplus(-v), F.softplus(v) - LOG2


def _f_gan(v):
    return -F.softplus(-v), F.softplus(v)


def _f_tv(v):
    t = 0.5 * torch.tanh(v)
    return t, t


#: name -> (activation pair: v -> (g(v), f*(g(v))), factor on the bound)
F_DIVERGENCES = {
    "kl": (_f_kl, 1.0),
    "reverse_kl": (_f_reverse_kl, 1.0),
    "pearson": (_f_pearson, 1.0),
    "neyman": (_f_neyman, 1.0),
    "squared_hellinger": (_f_hellinger, 1.0),
    "js": (_f_js2, 0.5),
    "gan": (_f_gan, 1.0),
    "total_variation": (_f_tv, 1.0),
}


class FGANEstimator(_CriticEstimator):
    """D_f(a || b) by the f-GAN variational bound ``E_a[g(V)] - E_b[f*(g(V))]``."""

    def __init__(self, term, left, right, critic, *, f: str = "kl"):
        super().__init__(term, left, right, critic)
        if f not in F_DIVERGENCES:
            raise Reject(f"unknown f {f!r}", fix="use one of " + ", ".join(F_DIVERGENCES))
        self.f = f
        self._act, self._factor = F_DIVERGENCES[f]

    def _bound(self, ta, tb):
        ga, _ = self._act(ta)
        _, fb = self._act(tb)
        return ga.mean() - fb.mean()

    def forward(self, s) -> Estimate:
        sc = self.scores(s)
        bound = self._bound(sc.a, sc.b)
        value = bound * self._factor if self._factor != 1.0 else bound
        return Estimate(value, critic_loss=-self._bound(sc.critic_a, sc.critic_b))

    def extra_repr(self) -> str:
        return f"{self.term}, f={self.f!r}"


class WGANGPEstimator(_CriticEstimator):
    """W(a || b) by a critic with gradient penalty: value ``E_a[f] - E_b[f]``."""

    def __init__(self, term, left, right, critic, *, gp: float = 10.0):
        super().__init__(term, left, right, critic)
        self.gp = float(gp)

    def forward(self, s) -> Estimate:
        sc = self.scores(s)
        value = sc.a.mean() - sc.b.mean()
        critic_loss = sc.critic_b.mean() - sc.critic_a.mean()
        if self.gp and torch.is_grad_enabled():
            a, b = sc.samples_a, sc.samples_b
            m = min(a.shape[0], b.shape[0])
            eps = torch.rand(m, 1, device=a.device, dtype=a.dtype)
            u = (eps * a[:m] + (1.0 - eps) * b[:m]).requires_grad_(True)
            (g,) = torch.autograd.grad(critic_output(self.critic, u).sum(), u, create_graph=True)
            critic_loss = critic_loss + self.gp * ((g.norm(2, dim=1) - 1.0) ** 2).mean()
        return Estimate(value, critic_loss=critic_loss)

    def extra_repr(self) -> str:
        return f"{self.term}, gp={self.gp}"


class DensityRatioKL(Estimator):
    """E_{q(x)}[KL(q(z|x) || p(z))] as E_q[T(x, z)] with a logistic critic T (AVB)."""

    requires = ("z_q", "z_p")

    def __init__(self, term, critic):
        super().__init__(term)
        self.critic = critic

    def forward(self, s) -> Estimate:
        x = s.x.reshape(s.n, -1)
        zq, zp = s.z_q.reshape(s.n, -1), s.z_p.reshape(s.n, -1).to(s.z_q.dtype)
        x = x.to(zq.dtype)
        model_q, _, tq, tp = critic_paths(self.critic, torch.cat([x, zq], 1), torch.cat([x, zp], 1))
        critic_loss = F.softplus(-tq).mean() + F.softplus(tp).mean()
        return Estimate(model_q.mean(), critic_loss=critic_loss)


@register_estimator(Divergence, "KL", name="avb")
def avb(term: Term, ctx: Context) -> Estimator:
    _options(ctx)
    enc_kl = (isinstance(term, Divergence) and term.arity == "conditional" and str(term.left) == "q(z|x)"
              and str(term.right) == "p(z)")
    if not enc_kl:
        raise Reject(f"{term} is not the encoder KL E_{{q(x)}}[KL(q(z|x) || p(z))]", applicable=False)
    c = ctx.components
    if not c.encoder_rsample:
        raise Reject(f"{term} needs samples of q(z|x) with a path gradient, but the encoder ({c.encoder_name}) "
                     f"returns {c.encoder_desc}, which has no rsample")
    critic = ctx.critic if ctx.critic is not None else default_critic(c.x_dim + c.z_dim, ctx)
    return DensityRatioKL(term, critic)


def _sides_and_critic(term: Term, ctx: Context):
    check_sample_divergence(term)
    c = ctx.components
    left, right = side(term.left, term, c), side(term.right, term, c)
    critic = ctx.critic if ctx.critic is not None else default_critic(dimension(term.left, c), ctx)
    return left, right, critic


def _options(ctx: Context, *allowed: str) -> dict:
    extra = set(ctx.options) - set(allowed)
    if extra:
        raise Reject(f"unknown option(s) {', '.join(sorted(extra))}", fix="options: " + ", ".join(allowed))
    return dict(ctx.options)


@register_estimator(Divergence, "JS", name="gan")
def gan(term: Term, ctx: Context) -> Estimator:
    opts = _options(ctx, "saturating", "r1")
    left, right, critic = _sides_and_critic(term, ctx)
    return GANEstimator(term, left, right, critic, saturating=opts.get("saturating", False),
                        r1=opts.get("r1", 0.0))


@register_estimator(Divergence, "JS", name="gan-saturating")
def gan_saturating(term: Term, ctx: Context) -> Estimator:
    opts = _options(ctx, "r1")
    left, right, critic = _sides_and_critic(term, ctx)
    return GANEstimator(term, left, right, critic, saturating=True, r1=opts.get("r1", 0.0))


def _fgan_factory(default_f: str | None):
    def fgan(term: Term, ctx: Context) -> Estimator:
        opts = _options(ctx, "f")
        f = opts.get("f", default_f)
        if f is None:
            raise Reject(f"{term} is a D_f divergence but no f was named",
                         fix="pass estimators={'D_f': 'fgan:<f>'} with f one of " + ", ".join(F_DIVERGENCES))
        if f not in F_DIVERGENCES:
            raise Reject(f"unknown f {f!r}", fix="use one of " + ", ".join(F_DIVERGENCES))
        left, right, critic = _sides_and_critic(term, ctx)
        return FGANEstimator(term, left, right, critic, f=f)

    return fgan


register_estimator(Divergence, "KL", name="fgan")(_fgan_factory("kl"))  # after "avb" (defined above)
register_estimator(Divergence, "JS", name="fgan")(_fgan_factory("js"))
register_estimator(Divergence, "D_f", name="fgan")(_fgan_factory(None))


@register_estimator(Divergence, "W", name="wgan-gp")
def wgan_gp(term: Term, ctx: Context) -> Estimator:
    opts = _options(ctx, "gp")
    left, right, critic = _sides_and_critic(term, ctx)
    return WGANGPEstimator(term, left, right, critic, gp=opts.get("gp", 10.0))
