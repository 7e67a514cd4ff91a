"""Likelihood-based terms: Monte Carlo on the shared samples, analytic KL where torch has it.

A term that is likelihood-based on its own (``t1_expansion(term)`` is not None) is a
combination of five atoms, each an average over one of the two sampling joints:

===========================  ======================================  ==========================
atom                         per example i                            needs
===========================  ======================================  ==========================
E_{q(x,z)}[log q(z|x)]       log q(z_q,i | x_i)                       explicit encoder
E_{q(x,z)}[log p(x|z)]       log p(x_i | z_q,i)                       explicit decoder
E_{q(z)}[log p(z)]           log p(z_q,i)                             explicit prior
E_{p(x,z)}[log p(x|z)]       log p(x_p,i | z_p,i)                     explicit decoder
E_{p(x,z)}[log q(z|x)]       log q(z_p,i | x_p,i)                     explicit encoder
===========================  ======================================  ==========================

(E_{q(x)}[log q(x)] and E_{p(z)}[log p(z)] are the constants the algebra drops.)
Log-densities are summed over the data dimensions of an example; estimates are batch means.

With ``analytic=True`` (the default, estimator name ``"likelihood"``), the pair
``c·E_q[log q(z|x)] - c·E_q[log p(z)]`` is replaced by ``c·E_{q(x)}[KL(q(z|x) || p(z))]``
computed by ``torch.distributions.kl_divergence`` when torch has that pair of
distributions registered; so ``KL(q(x,z) || p(x,z))`` is estimated as -ELBO = NLL + KL
(up to the constant H_q(x)) with the KL in closed form. ``"mc"`` is pure Monte Carlo.

Samples that cannot be reparameterised (a discrete encoder, a Bernoulli decoder's x_p)
get a score-function surrogate with a leave-one-out baseline b_i (the mean of the others):
``surrogate = value + mean((f_i - b_i).detach() * log r(sample_i))``; the model's loss is
``value.detach() + (surrogate - surrogate.detach())``, so the reported value is unchanged.
"""

from __future__ import annotations

import torch
from torch.distributions import kl_divergence

from lagrangian_family.symbolic.classify import t1_expansion
from lagrangian_family.symbolic.terms import Divergence, Term

from ..registry import Context, Estimate, Estimator, Reject, register_estimator
from ..samples import Components, Samples, describe, per_example

#: (frame, density text) of each likelihood atom -> (sample keys, component it needs, role)
ATOMS = {
    ("q", "q(z|x)"): (("z_q",), "encoder"),
    ("q", "p(x|z)"): (("dec_q",), "decoder"),
    ("q", "p(z)"): (("z_q",), "prior"),
    ("p", "p(x|z)"): (("x_p",), "decoder"),
    ("p", "q(z|x)"): (("enc_p",), "encoder"),
}


def _loo_baseline(f: torch.Tensor) -> torch.Tensor:
    n = f.shape[0]
    if n < 2:
        return torch.zeros_like(f)
    return (f.sum() - f) / (n - 1)


def analytic_kl_available(c: Components) -> bool:
    """Whether E_{q(x)}[KL(q(z|x) || p(z))] has a closed form for these components."""
    if not (c.encoder_explicit and c.prior.explicit) or c.q_example is None or c.prior_example is None:
        return False
    try:
        with torch.no_grad():
            k = kl_divergence(c.q_example, c.prior_example)
        per_example(k, c.q_example.batch_shape[0] if c.q_example.batch_shape else 1)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


class LikelihoodEstimator(Estimator):
    """Monte Carlo over likelihood atoms, with the encoder KL in closed form when possible.

    ``atoms`` is a list of ((frame, density text), coefficient); ``kl_coef`` the coefficient
    of E_{q(x)}[KL(q(z|x) || p(z))] computed analytically.
    """

    def __init__(self, term: Term, atoms, kl_coef: float, components: Components):
        super().__init__(term)
        self.atoms = [(key, float(c)) for key, c in atoms]
        self.kl_coef = float(kl_coef)
        self.prior = components.prior
        self.q_atoms = [(key[1], c) for key, c in self.atoms if key[0] == "q"]
        self.p_atoms = [(key[1], c) for key, c in self.atoms if key[0] == "p"]
        req: list[str] = ["q_dist"] if self.kl_coef else []
        for key, _ in self.atoms:
            req += ATOMS[key][0]
        if self.p_atoms:
            req += ["z_p"]
        self.requires = tuple(dict.fromkeys(req))
        c = components
        self._how = {"q": "reparameterised" if c.encoder_rsample else "score-function gradient",
                     "p": "reparameterised" if c.decoder_rsample or not c.decoder_explicit
                     else "score-function gradient"}
        prior = describe(c.prior_example) if c.prior_example is not None else c.prior.name
        self._kl_pair = f"{c.encoder_desc} || {prior}"

    def extra_repr(self) -> str:
        """The term, then how each part is estimated: the KL in closed form or sampled, the Monte
        Carlo atoms with the samples they are evaluated at.

        >>> import torch, lagrangian_family as lf
        >>> from lagrangian_family.backends.torch import (compile_objective, GaussianMLPEncoder,
        ...     BernoulliMLPDecoder, StandardNormalPrior)
        >>> parts = dict(enc=GaussianMLPEncoder(4, 2, hidden=(8,)), dec=BernoulliMLPDecoder(2, 4, hidden=(8,)))
        >>> for name in ("likelihood", "mc"):
        ...     loss_fn = compile_objective("E_{q(x)}[KL(q(z|x) || p(z))]", encoder=parts["enc"],
        ...         decoder=parts["dec"], prior=StandardNormalPrior(2), estimators={"KL": name})
        ...     print(loss_fn.estimators[0].describe())
        likelihood: KL(q(z|x) || p(z)) in closed form (Independent(Normal) || Independent(Normal))
        mc: KL sampled, Monte Carlo at z ~ q(z|x) (reparameterised) of log q(z|x) - log p(z)
        """
        parts = []
        if self.kl_coef:
            parts.append(f"{_coef(self.kl_coef)}KL(q(z|x) || p(z)) in closed form ({self._kl_pair})")
        sampled_kl = "KL" in str(self.term) and not self.kl_coef
        for frame, atoms, at in (("q", self.q_atoms, "z ~ q(z|x)"), ("p", self.p_atoms, "(z, x) ~ p(z) p(x|z)")):
            if atoms:
                text = _sum(atoms)
                parts.append(f"{'KL sampled, ' if sampled_kl else ''}Monte Carlo at {at} ({self._how[frame]}) "
                             f"of {text}")
        if not parts:
            parts.append("a constant (0)")
        return f"{self.term}, " + "; ".join(parts)

    def _atom(self, s: Samples, frame: str, dens: str) -> torch.Tensor:
        key = (frame, dens)
        v = s.cache.get(key)
        if v is None:
            if frame == "q":
                if dens == "q(z|x)":
                    v = per_example(s.q_dist.log_prob(s.z_q), s.n)
                elif dens == "p(x|z)":
                    v = per_example(s.dec_q.log_prob(s.x), s.n)
                else:
                    v = self.prior.log_prob(s.z_q)
            elif dens == "p(x|z)":
                v = per_example(s.dec_p.log_prob(s.x_p), s.n)
            else:
                v = per_example(s.enc_p.log_prob(s.z_p), s.n)
            s.cache[key] = v
        return v

    def _values(self, s: Samples, frame: str, atoms) -> torch.Tensor:
        f = None
        for dens, c in atoms:
            v = self._atom(s, frame, dens)
            v = v * c if c != 1.0 else v
            f = v if f is None else f + v
        return f

    def _kl(self, s: Samples) -> torch.Tensor:
        k = s.cache.get("kl_enc")
        if k is None:
            k = per_example(kl_divergence(s.q_dist, self.prior.distribution()), s.n).mean()
            s.cache["kl_enc"] = k
        return k

    def forward(self, s: Samples) -> Estimate:
        value = None
        score = None
        if self.kl_coef:
            k = self._kl(s)
            value = k * self.kl_coef if self.kl_coef != 1.0 else k
        if self.q_atoms:
            f = self._values(s, "q", self.q_atoms)
            m = f.mean()
            value = m if value is None else value + m
            if s.z_q_logp is not None:
                score = ((f - _loo_baseline(f)).detach() * s.z_q_logp).mean()
        if self.p_atoms:
            f = self._values(s, "p", self.p_atoms)
            m = f.mean()
            value = m if value is None else value + m
            if s.x_p_logp is not None:
                sp = ((f - _loo_baseline(f)).detach() * s.x_p_logp).mean()
                score = sp if score is None else score + sp
        if value is None:  # a term that is a pure constant
            value = torch.zeros((), device=s.x.device, dtype=s.x.dtype if s.x.is_floating_point() else None)
        if score is not None:
            return Estimate(value, surrogate=value + score)
        return Estimate(value)


def _coef(c: float) -> str:
    return "" if c == 1 else "-" if c == -1 else f"{c:g}·"


def _sum(atoms) -> str:
    """``log q(z|x) - log p(z)`` from [(density, coefficient)]."""
    out = ""
    for i, (dens, c) in enumerate(atoms):
        mag = abs(c)
        body = f"log {dens}" if mag == 1 else f"{mag:g}·log {dens}"
        sign = ("-" if c < 0 else "") if i == 0 else (" - " if c < 0 else " + ")
        out += sign + body
    return out


def _atoms_of(term: Term):
    expansion = t1_expansion(term)
    if expansion is None:
        raise Reject(f"{term} is not likelihood-based on its own",
                     fix="estimate it from samples (a divergence between marginals or joints), "
                     "or let classify() rewrite it", applicable=False)
    atoms = []
    for t, c in expansion.items():
        key = (t.frame, str(t.density))
        if key not in ATOMS:  # pragma: no cover - t1_expansion only returns these
            raise Reject(f"{t} is not a likelihood atom")
        if not c.is_number:  # pragma: no cover - term expansions have numeric coefficients
            raise Reject(f"symbolic coefficient {c} inside {term}")
        atoms.append((key, float(c)))
    return atoms


def _check_components(term: Term, atoms, c: Components) -> None:
    for key, _ in atoms:
        role = ATOMS[key][1]
        frame, dens = key
        if role == "encoder" and not c.encoder_explicit:
            raise Reject(f"{term} needs log {dens} under {frame}(x,z), but the encoder "
                         f"({c.encoder_name}) is implicit (it returns a tensor, not a distribution)",
                         fix="use an explicit encoder returning a torch distribution, or replace the term by a "
                         "likelihood-free divergence")
        if role == "decoder" and not c.decoder_explicit:
            raise Reject(f"{term} needs log {dens} under {frame}(x,z), but the decoder "
                         f"({c.decoder_name}) is implicit (it returns a tensor, not a distribution)",
                         fix="use an explicit decoder (e.g. BernoulliMLPDecoder or GaussianMLPDecoder), or "
                         "replace the term by a likelihood-free divergence such as JS(q(x) || p(x))")
        if role == "prior" and not c.prior.explicit:
            raise Reject(f"{term} needs log p(z), but the prior ({c.prior.name}) gives samples only",
                         fix="use a prior with log_prob (e.g. StandardNormalPrior), or compare q(z) and p(z) "
                         "with a likelihood-free divergence")


def _fold(atoms, analytic: bool, c: Components):
    """Take c·log q(z|x) - c·log p(z) under q out of the atoms as c·KL(q(z|x) || p(z))."""
    d = dict(atoms)
    a, b = d.get(("q", "q(z|x)")), d.get(("q", "p(z)"))
    if not analytic or a is None or b is None or a != -b or not analytic_kl_available(c):
        return atoms, 0.0
    rest = [(k, v) for k, v in atoms if k not in (("q", "q(z|x)"), ("q", "p(z)"))]
    return rest, a


def _likelihood_factory(analytic: bool):
    def factory(term: Term, ctx: Context) -> Estimator:
        if isinstance(term, Divergence) and term.opaque:
            raise Reject(f"{term} is a {term.kind} divergence, not likelihood-based", applicable=False)
        atoms = _atoms_of(term)
        _check_components(term, atoms, ctx.components)
        use_analytic = ctx.options.get("analytic", analytic)
        rest, kl_coef = _fold(atoms, use_analytic, ctx.components)
        return LikelihoodEstimator(term, rest, kl_coef, ctx.components)

    return factory


likelihood = _likelihood_factory(True)
monte_carlo = _likelihood_factory(False)

for _key in ((Term, None), (Divergence, "KL")):
    register_estimator(*_key, name="likelihood")(likelihood)
    register_estimator(*_key, name="mc")(monte_carlo)
