"""The zoo: the paper's models, each as its original objective in the text syntax.

Each entry is written as its own paper writes it (as a loss, with the conventions of
DESIGN.md: a GAN term is JS with the GAN's weight as coefficient, reconstruction costs
are negative log-likelihoods), with its parameters as symbols and their original
defaults, and a citation. Nothing here is a dual form: those are derived by
:func:`lagrangian_family.classify`.

>>> import lagrangian_family as lf
>>> "beta_vae" in lf.zoo.names()
True
>>> str(lf.zoo.get("beta_vae", beta=4))
'-E_{q(x,z)}[log p(x|z)] + 4 * E_{q(x)}[KL(q(z|x) || p(z))]'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import sympy

from lagrangian_family.errors import ObjectiveError, closest
from lagrangian_family.symbolic.objective import Objective, as_coefficient, symbol

NLL = "-E_{q(x,z)}[log p(x|z)]"
KL_ENC = "E_{q(x)}[KL(q(z|x) || p(z))]"
NLL_Z = "-E_{p(x,z)}[log q(z|x)]"


@dataclass(frozen=True)
class ZooEntry:
    """A named model: its original objective (text), parameters with defaults, and citation.

    ``options`` are discrete choices that change the text (InfoVAE's divergence), each a
    mapping from the option's value to a text template filled in with ``{option}``.
    ``multipliers`` names the symbols learned by dual ascent when the entry already is a
    Lagrangian (LagVAE's ``lambda_1``, ``lambda_2``).
    """

    name: str
    title: str
    text: str
    citation: str
    parameters: dict[str, float] = field(default_factory=dict)  # symbol name -> original default
    aliases: dict[str, str] = field(default_factory=dict)  # keyword -> symbol name (lam -> lambda)
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)  # option -> allowed values (first default)
    notes: str = ""
    #: the symbols of an objective that already is a Lagrangian (learned by dual ascent): its
    #: constraints are the divergences they multiply (:func:`lagrangian_family.lagrangian_form`)
    multipliers: tuple[str, ...] = ()

    def text_for(self, **options) -> str:
        """The objective's text with each option filled in (the first allowed value by default).

        >>> entry("infovae").text_for(divergence="KL").endswith("KL(q(z) || p(z))")
        True
        """
        chosen = {k: v[0] for k, v in self.options.items()}
        chosen.update(options)
        text = self.text
        for k, v in chosen.items():
            text = text.replace("{" + k + "}", v)
        return text

    @property
    def defaults(self) -> dict[sympy.Symbol, float]:
        """The original default value of each parameter, keyed by its symbol."""
        return {symbol(k): v for k, v in self.parameters.items()}


_DIVERGENCE_OF = {"mmd": "MMD", "kl": "KL", "js": "JS", "gan": "JS"}

_ENTRIES = [
    ZooEntry("vae", "Variational autoencoder", f"{NLL} + {KL_ENC}",
             "Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014"),
    ZooEntry("beta_vae", "β-VAE", f"{NLL} + beta * {KL_ENC}",
             "Higgins et al., beta-VAE: Learning Basic Visual Concepts with a Constrained Variational "
             "Framework, ICLR 2017", {"beta": 4.0}),
    ZooEntry("vmi", "Variational mutual information maximisation", NLL_Z,
             "Barber & Agakov, The IM algorithm: a variational approach to information maximization, NIPS 2003",
             notes="Enforces no consistency (paper, footnote 2)."),
    ZooEntry("infovae", "InfoVAE",
             f"{NLL} + (1 - alpha) * {KL_ENC} + (alpha + lambda - 1) * {{divergence}}(q(z) || p(z))",
             "Zhao, Song & Ermon, InfoVAE: Information Maximizing Variational Autoencoders, 2017",
             {"alpha": 1.0, "lambda": 1000.0}, {"lam": "lambda"}, {"divergence": ("MMD", "KL", "JS")},
             notes="alpha = 1 and an MMD divergence is the MMD-VAE; the paper's recommended lambda is 1000."),
    ZooEntry("mmd_vae", "MMD-VAE (InfoVAE with alpha = 1)", f"{NLL} + lambda * MMD(q(z) || p(z))",
             "Zhao, Song & Ermon, InfoVAE: Information Maximizing Variational Autoencoders, 2017",
             {"lambda": 1000.0}, {"lam": "lambda"}),
    ZooEntry("infogan", "InfoGAN", "JS(q(x) || p(x)) - lambda_I * E_{p(x,z)}[log q(z|x)]",
             "Chen et al., InfoGAN: Interpretable Representation Learning by Information Maximizing "
             "Generative Adversarial Nets, NIPS 2016", {"lambda_I": 1.0}, {"lam": "lambda_I"},
             notes="z is the structured code c; the paper's normalisation has lambda_I = 1."),
    ZooEntry("ali", "ALI", "JS(q(x,z) || p(x,z))",
             "Dumoulin et al., Adversarially Learned Inference, ICLR 2017"),
    ZooEntry("bigan", "BiGAN", "JS(q(x,z) || p(x,z))",
             "Donahue, Krähenbühl & Darrell, Adversarial Feature Learning, ICLR 2017"),
    ZooEntry("alice", "ALICE (explicit cycle consistency)", f"JS(q(x,z) || p(x,z)) + lambda_A * ({NLL})",
             "Li et al., ALICE: Towards Understanding Adversarial Learning for Joint Distribution Matching, "
             "NIPS 2017", {"lambda_A": 1.0}, {"lam": "lambda_A"}),
    ZooEntry("cyclegan", "CycleGAN",
             f"JS(q(x) || p(x)) + JS(q(z) || p(z)) + lambda_c * ({NLL} {NLL_Z.replace('-', '- ', 1)})",
             "Zhu et al., Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks, "
             "ICCV 2017", {"lambda_c": 10.0}, {"lam": "lambda_c"},
             notes="z is the second image domain: p(z) is its data (samples only); the l1 cycle losses are "
             "read as negative log-likelihoods (Laplace)."),
    ZooEntry("discogan", "DiscoGAN",
             f"JS(q(x) || p(x)) + JS(q(z) || p(z)) + {NLL} {NLL_Z.replace('-', '- ', 1)}",
             "Kim et al., Learning to Discover Cross-Domain Relations with Generative Adversarial Networks, "
             "ICML 2017", notes="CycleGAN's objective with unit reconstruction weights (l2 costs: Gaussian NLL)."),
    ZooEntry("as_vae", "Adversarial symmetric VAE",
             f"{NLL} {NLL_Z.replace('-', '- ', 1)} + KL(q(x,z) || p(x,z)) + KL(p(x,z) || q(x,z))",
             "Pu et al., Adversarial Symmetric Variational Autoencoder, NIPS 2017",
             notes="Symmetric joint KL plus both reconstruction terms (recalled with moderate confidence, "
             "see dual_forms.md)."),
    ZooEntry("aae", "Adversarial autoencoder", f"{NLL} + lambda * JS(q(z) || p(z))",
             "Makhzani et al., Adversarial Autoencoders, ICLR 2016 workshop", {"lambda": 1.0}, {"lam": "lambda"}),
    ZooEntry("wae", "Wasserstein autoencoder",
             f"{NLL} + lambda * {{divergence}}(q(z) || p(z))",
             "Tolstikhin et al., Wasserstein Auto-Encoders, ICLR 2018", {"lambda": 10.0}, {"lam": "lambda"},
             {"divergence": ("MMD", "JS")},
             notes="WAE-MMD (divergence='mmd') and WAE-GAN (divergence='js'); the cost c(x, G(z)) is read "
             "as a negative log-likelihood."),
    ZooEntry("vae_gan", "VAE-GAN", f"{NLL} + {KL_ENC} + lambda_G * JS(q(x) || p(x))",
             "Larsen et al., Autoencoding beyond pixels using a learned similarity metric, ICML 2016",
             {"lambda_G": 1.0}, {"lam": "lambda_G"}),
    ZooEntry("avb", "Adversarial variational Bayes", f"{NLL} + {KL_ENC}",
             "Mescheder, Nowozin & Geiger, Adversarial Variational Bayes, ICML 2017",
             notes="The VAE objective with an implicit encoder: E_q[log q(z|x) - log p(z)] is estimated by a "
             "discriminator T(x, z); the algebra is the VAE's."),
    ZooEntry("lagvae", "Lagrangian VAE (eq. 18, I_q replaced by its upper bound)",
             f"alpha1 * {KL_ENC} + lambda_1 * KL(q(x,z) || p(x,z)) + lambda_2 * MMD(q(z) || p(z))",
             "Zhao, Song & Ermon, The Information Autoencoding Family: A Lagrangian Perspective on Latent "
             "Variable Generative Models, UAI 2018", {"alpha1": 1.0, "lambda_1": 1.0, "lambda_2": 100.0},
             {"alpha": "alpha1", "lam1": "lambda_1", "lam2": "lambda_2"},
             notes="lambda_1, lambda_2 are learned by dual ascent (Algorithm 1); for alpha1 < 0 the lower bound "
             "E_q[log p(x|z)] replaces I_q (lf.zoo.get('lagvae', bound='lower')).",
             options={"bound": ("upper", "lower")}, multipliers=("lambda_1", "lambda_2")),
]
_BY_NAME = {e.name: e for e in _ENTRIES}
_LAGVAE_LOWER = ("alpha1 * E_{q(x,z)}[log p(x|z)] + lambda_1 * KL(q(x,z) || p(x,z)) "
                 "+ lambda_2 * MMD(q(z) || p(z))")


def names() -> list[str]:
    """The zoo's model names."""
    return list(_BY_NAME)


def normalise(name: str) -> str:
    """The zoo key of a model name written freely: 'Beta-VAE' -> 'beta_vae'."""
    return name.strip().lower().replace("-", "_")


def entry(name: str) -> ZooEntry:
    """The zoo entry of ``name`` (an :class:`ObjectiveError` naming the closest names if unknown)."""
    if not isinstance(name, str):
        raise ObjectiveError("a zoo name is a string", expected="one of " + ", ".join(_BY_NAME),
                             given=f"{type(name).__name__} {name!r}", fix="pass e.g. 'beta_vae'")
    key = normalise(name)
    if key not in _BY_NAME:
        near = closest(str(key), _BY_NAME)
        raise ObjectiveError(
            f"unknown model {name!r}",
            expected="one of " + ", ".join(_BY_NAME),
            given=repr(name),
            fix=("did you mean " + " or ".join(repr(n) for n in near) + "?") if near else "run `lagfam zoo`",
        )
    return _BY_NAME[key]


def get(name: str, **params) -> Objective:
    """The original objective of a zoo model, with parameters bound where given.

    Options (InfoVAE's and WAE's ``divergence``, LagVAE's ``bound``) choose the form;
    every other keyword binds a parameter (``lam`` is an alias of ``lambda``).

    >>> str(get("infovae", alpha=1, lam=1000))
    '-E_{q(x,z)}[log p(x|z)] + 1000 * MMD(q(z) || p(z))'
    """
    e = entry(name)
    options, values = {}, {}
    for k, v in params.items():
        if k in e.options:
            allowed = e.options[k]
            val = _DIVERGENCE_OF.get(str(v).lower(), str(v)) if k == "divergence" else str(v)
            if val not in allowed:
                raise ObjectiveError(f"unknown {k} for {e.name}", expected=" or ".join(map(repr, allowed)),
                                     given=repr(v), fix=f"pass {k}={allowed[0]!r}")
            options[k] = val
            continue
        sym = e.aliases.get(k, k)
        if sym not in e.parameters:
            known = list(e.parameters) + list(e.aliases) + list(e.options)
            raise ObjectiveError(
                f"{e.name} has no parameter {k!r}",
                expected=("one of " + ", ".join(known)) if known else "no parameters",
                given=repr(k),
                fix=f"see lf.zoo.entry({e.name!r}).parameters",
            )
        values[sym] = as_coefficient(v, context=f"the value of {k}")
    text = _LAGVAE_LOWER if (e.name == "lagvae" and options.get("bound") == "lower") else e.text_for(**options)
    obj = _parse(text)
    return obj.subs(values) if values else obj


@cache
def _parse(text: str) -> Objective:
    from lagrangian_family.symbolic.parse import parse

    return parse(text)
