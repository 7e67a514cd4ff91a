"""Recipes: the one place that chooses how a model of the zoo (or any computable text objective)
is built and trained on a dataset.

``recipe("ali", data="mnist", budget="small")`` returns a :class:`Recipe`: the objective's text
and parameter values, the components (as :func:`~.model.component_spec` descriptions), the
estimators and critics, the training defaults, and for each choice one sentence saying why
(``recipe.reasons``). ``recipe.build()`` builds the components and compiles the loss;
``recipe.trainer(loss_fn, data)`` builds the :class:`~.train.Trainer` with the recipe's
optimisers; ``recipe.load_data()`` the training images as the model expects them. A recipe is
JSON-safe (``to_dict``/``from_dict``), so a run folder can rebuild the model without the
user's code.

What is chosen, and why (every choice is an option of :func:`recipe`, named in brackets):

* **Components from what the objective needs.** A term that scores x under the decoder
  (``log p(x|z)``) needs an explicit decoder: a Bernoulli MLP over binarised images, whose
  mean (the pixel probabilities) is the sample of p(x) in likelihood-free terms
  (``decoder_sample="mean"``): continuous, so the critic's gradient reaches the decoder even
  though the data are binary. An objective with no such term gets an implicit generator (a
  sigmoid MLP) trained on grey-level images (``binarize=None``): a critic separates binary
  data from continuous outputs at once, and the generator then gets no gradient. The encoder
  is a Gaussian MLP (reparameterised) unless the zoo model's paper says otherwise
  (:data:`ZOO_STRUCTURE`): BiGAN's and WAE's deterministic encoders, AAE's deterministic
  encoder, AVB's implicit noisy encoder, InfoGAN's code prior and Q network, CycleGAN's and
  DiscoGAN's deterministic image translators scored by a per-pixel mean l1 cycle cost
  (:class:`~.components.CycleCost`) with the colour-inverted digits as the second domain.
* **Critics** (every JS, W, f-divergence and density-ratio term): :class:`~.components.MLPCritic`.
  An unregularised discriminator of ALI, BiGAN or InfoGAN wins within ~1,000 steps on MNIST and
  the generator's gradient vanishes. Purely adversarial models whose every critic is a JS term's
  (ALI, BiGAN, InfoGAN) get the R1 penalty, gamma 10 on the critic's gradient at the data
  (``r1``; Mescheder et al. 2018): measured on MNIST at the small budget, ALI's samples covered
  10 digit classes with it and 9 with spectral normalisation, whose Lipschitz bound left
  salt-and-pepper noise in the samples (Fréchet distance 69.5 against 142), and BiGAN's 10
  against 8. The other critics have spectral normalisation on every layer
  (``spectral_norm=True``; Miyato et al. 2018), which bounds the critic's Lipschitz constant so
  it cannot saturate. Joint critics (over (x, z)) get dropout 0.2 (``critic_dropout``), as ALI's
  discriminator had (Dumoulin et al. 2017).
* **Optimisers.** Models whose only term on x is adversarial (ALI, BiGAN, InfoGAN, a custom
  objective with no likelihood or reconstruction of x) get the GAN literature's Adam with
  β1 = 0.5 and the same rate for both players (Radford et al. 2016, DCGAN: 2e-4, betas
  (0.5, 0.999); ALI used Adam 1e-4, β1 = 0.5). Two time-scales (Heusel et al. 2017, TTUR: a
  faster critic, ``critic_lr=4e-4``) is an option, not the default: on MNIST at the small budget
  it let the spectrally normalised critic win (ALI: 4 classes covered against 6 at equal
  rates). InfoGAN keeps its authors' rates (generator 1e-3, discriminator 2e-4) and their
  structure: Q's hidden layers are the discriminator's (``shared_trunk``), stepped with it on its
  loss plus the information term; Q's output layer is trained with the generator. Models with
  a likelihood or reconstruction term keep what trained them before: Adam 1e-3 for the model (a
  GAN learning rate slows their reconstruction, and they cover fewer classes), and Adam 1e-3
  with betas (0.5, 0.9) for their critics (the Trainer's defaults). A Wasserstein term gets
  WGAN-GP's five critic steps per model step (``n_critic``; Gulrajani et al. 2017); a JS term
  one.
* **Budgets** (:data:`BUDGETS`): ``smoke`` takes seconds on the 8x8 digits (the tests),
  ``small`` at most ten minutes per model on two CPU cores, ``paper`` is for a GPU. At the small
  budget on MNIST, purely adversarial models with JS critics (ALI, BiGAN, InfoGAN: no
  likelihood or reconstruction term) train 20,000 steps and the others 6,000: learning from a
  critic alone is slow (ALI covered 6 digit classes after 6,000 steps and 9 after 20,000,
  measured), and an adversarial MLP step is cheap (about 30 ms on one CPU thread with R1; ALI's
  20,000 steps took 6.2 minutes alone on two threads). A model with
  a likelihood or reconstruction term gets a 16-d latent, the GAN models 32 (``z_dim``): with
  32, prior samples of the short-trained WAE, AAE and beta-VAE fell where the aggregate
  posterior had no mass and covered 5-6 digit classes; with 16, 9 or more
  (measured; the papers used 8 to 10 on MNIST).

>>> r = recipe("ali", data="digits", budget="smoke")
>>> r.components["decoder"]["class"], r.training["binarize"], r.compile_options["estimators"], r.compile_options[
...     "critics"]["JS(q(x,z) || p(x,z))"]["config"]["spectral_norm"]
('DeterministicMLPDecoder', None, {'JS': 'gan:r1=10'}, False)
>>> recipe("vae", data="digits").training["model_optimizer"]["lr"]
0.001
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from lagrangian_family import zoo
from lagrangian_family.errors import ObjectiveError, closest
from lagrangian_family.symbolic.classify import Computability, as_objective, classify
from lagrangian_family.symbolic.terms import Divergence, ExpectedLog

__all__ = ["recipe", "Recipe", "BUDGETS", "DATASETS", "ZOO_STRUCTURE", "OPTIONS", "RecipeError", "share_layers"]


class RecipeError(ObjectiveError):
    """A recipe that cannot be made: an objective that is not computable, an unknown dataset,
    budget or option, or a model that needs a component the data cannot supply.

    >>> issubclass(RecipeError, ObjectiveError)
    True
    """


#: dataset -> the shape of one image (flat), its side, and where its images come from
DATASETS: dict[str, dict] = {
    "mnist": {"x_shape": (784,), "side": 28, "source": {"dataset": "mnist", "split": "train"}},
    "digits": {"x_shape": (64,), "side": 8, "source": {"dataset": "digits", "split": "train"}},
}

#: budget -> training steps and batch size per dataset ({"steps", "batch_size"}), and the network
#: sizes it affords (hidden widths, latent size; ``z_dim_reconstruction``, where given, is the latent
#: size of models with a likelihood or reconstruction term, ``z_dim`` that of the others;
#: ``steps_adversarial``, where given, the steps of purely adversarial models whose critics are all JS
#: critics with the data on their left: ALI, BiGAN, InfoGAN)
BUDGETS: dict[str, dict] = {
    "smoke": {"mnist": {"steps": 20, "batch_size": 32, "hidden": [64], "z_dim": 8},
              "digits": {"steps": 20, "batch_size": 32, "hidden": [32], "z_dim": 4},
              "about": "seconds: a few steps of small networks (the tests)"},
    "small": {"mnist": {"steps": 6000, "batch_size": 64, "hidden": [512, 512], "z_dim": 32,
                        "z_dim_reconstruction": 16, "steps_adversarial": 20_000},
              "digits": {"steps": 3000, "batch_size": 64, "hidden": [128, 128], "z_dim": 8},
              "about": "at most ten minutes per model on two CPU cores (about three for most models)"},
    "paper": {"mnist": {"steps": 100_000, "batch_size": 100, "hidden": [1024, 1024], "z_dim": 64},
              "digits": {"steps": 20_000, "batch_size": 100, "hidden": [256, 256], "z_dim": 16},
              "about": "the paper's network sizes; for a GPU"},
}

#: what each zoo model's own paper prescribes beyond what its objective needs:
#: {name: {"encoder"/"decoder"/"prior": kind, "why": sentence}}
ZOO_STRUCTURE: dict[str, dict] = {
    "bigan": {"encoder": "deterministic",
              "why": "BiGAN's encoder is deterministic, z = E(x) (Donahue et al. 2017); ALI's is stochastic"},
    "ali": {"encoder": "gaussian", "why": "ALI's encoder is a reparameterised Gaussian (Dumoulin et al. 2017)"},
    "wae": {"encoder": "deterministic",
            "why": "WAE-MMD's encoder is deterministic (Tolstikhin et al. 2018)"},
    "aae": {"encoder": "deterministic",
            "why": "the adversarial autoencoder's encoder is deterministic (Makhzani et al. 2016)"},
    "avb": {"encoder": "noisy",
            "why": "AVB's encoder is implicit, z = f(x, noise), its KL estimated by a density-ratio critic "
                   "(Mescheder et al. 2017)"},
    "infogan": {"encoder": "code", "prior": "code",
                "why": "InfoGAN's latent is a 10-way categorical code, 2 uniform continuous codes and 62 noise "
                       "dimensions, and Q infers the codes (Chen et al. 2016)",
                "training": {"lr": 1e-3, "critic_lr": 2e-4},
                "training_why": "InfoGAN's authors trained the generator with Adam 1e-3 and the "
                                "discriminator with Adam 2e-4, beta1 = 0.5 (Chen et al. 2016, released code); their "
                                "Q shares the discriminator's layers and optimiser.",
                "shared_why": " Here Q's hidden layers are the discriminator's, stepped with it on its loss plus the "
                              "information term, and Q's output layer is trained with the generator",
                "own_why": " Here Q is a network of its own (shared_trunk=False), trained with the generator"},
    "cyclegan": {"encoder": "translator", "decoder": "translator", "prior": "domain",
                 "why": "CycleGAN's z is an image of a second domain (here the colour-inverted digits, 1 - x) "
                        "and both maps are image translators with an l1 cycle cost (Zhu et al. 2017)"},
    "discogan": {"encoder": "translator", "decoder": "translator", "prior": "domain",
                 "why": "DiscoGAN's z is an image of a second domain (here the colour-inverted digits, 1 - x) "
                        "and both maps are image translators (Kim et al. 2017)"},
}

#: the R1 weight of the critics of purely adversarial models (Mescheder et al. 2018 used 10)
_R1_GAMMA = 10.0
_R1_WHY = ("no likelihood or reconstruction term: the critic is the model's only teacher, so it gets the R1 penalty "
           f"(gamma {_R1_GAMMA:g} on its gradient at the data; Mescheder et al. 2018) instead of spectral "
           "normalisation. "
           "Measured on MNIST at the small budget: ALI's samples covered 10 digit classes (confidence ratio 0.885, "
           "Frechet distance 69.5, probe 0.893) against 9 (0.824, 142, 0.879) with spectral normalisation, "
           "whose Lipschitz bound left salt-and-pepper noise in the samples; BiGAN's 10 against 8")

#: every option of :func:`recipe`, with what it sets (its default depends on the model; see the
#: module's docstring and ``recipe(...).reasons``)
OPTIONS: dict[str, str] = {
    "steps": "training steps (default: the budget's)",
    "batch_size": "examples per step (default: the budget's)",
    "hidden": "hidden widths of the MLP encoder, decoder and critics (default: the budget's)",
    "z_dim": "latent size (default: the budget's, smaller on MNIST for a likelihood or reconstruction term; "
             "InfoGAN: n_categories + n_continuous + n_noise)",
    "critic_hidden": "hidden widths of the critics (default: hidden)",
    "generator_batch_norm": "batch normalisation in the hidden layers of an implicit generator (default False)",
    "shared_trunk": "InfoGAN's Q on the discriminator's hidden layers (default True, as Chen et al.; False: Q is a "
                    "network of its own)",
    "spectral_norm": "spectral normalisation on every critic layer (default True, but False for purely adversarial "
                     "models with JS critics, which get R1; Miyato et al. 2018)",
    "critic_dropout": "dropout in the critics (default 0.2 for joint critics over (x, z), as ALI; else 0)",
    "r1": "R1 gradient penalty weight gamma on the critics of JS terms (default 10 for purely adversarial models "
          "such as ALI, BiGAN and InfoGAN, else 0: off; Mescheder et al. 2018)",
    "lr": "the model's Adam learning rate (default 2e-4 for purely adversarial models, else 1e-3)",
    "betas": "the model's Adam betas (default (0.5, 0.999) for purely adversarial models, else (0.9, 0.999))",
    "critic_lr": "the critics' Adam learning rate (default 2e-4 for purely adversarial models, InfoGAN's authors' "
                 "2e-4, else 1e-3; e.g. 4e-4 for TTUR)",
    "critic_betas": "the critics' Adam betas (default (0.5, 0.999) for purely adversarial models, else (0.5, 0.9))",
    "n_critic": "critic steps per model step (default 5 with a W term, as WGAN-GP; else 1)",
    "max_grad_norm": "gradient clipping (default None: off)",
    "binarize": "'stochastic' (once, seed 0), 'fixed' or None (grey levels); default: binary for a Bernoulli "
                "decoder, grey levels otherwise",
    "decoder_sample": "'mean' or 'sample': the sample of p(x) in likelihood-free terms (default 'mean')",
    "encoder": "'gaussian', 'deterministic', 'noisy', 'code' or 'translator' (default: the model's paper)",
    "decoder": "'bernoulli', 'generator' or 'translator' (default: from the objective's terms)",
    "domain": "the second domain's transform for CycleGAN/DiscoGAN (default 'invert')",
    "translator_scale": "the l1 cost's scale in the translators (default None: the number of pixels, a per-pixel "
                        "mean l1)",
    "n_categories": "InfoGAN's categorical code size (default 10)",
    "n_continuous": "InfoGAN's continuous codes (default 2)",
    "n_noise": "InfoGAN's noise dimensions (default 62; smoke: 4)",
    "seed": "the seed of the batch order and the initialisation (default 0)",
}

_GAN_LR, _GAN_CRITIC_LR, _GAN_BETAS = 2e-4, 2e-4, (0.5, 0.999)
_SHARED_WHY = ("Q's hidden layers are the discriminator's (Chen et al. 2016), stepped with the discriminator on its "
               "loss plus the information term: the code is read from the features that tell digits from fakes")
_Z_WHY = ("a likelihood or reconstruction term: a 16-d latent (the GAN models keep 32). Measured with "
          "bench/zoo_learns.py on MNIST at the small budget (bench/results/zoo_learns_small_mnist.jsonl), 16 "
          "instead of 32 took the classes the samples cover from 5 to 9 for WAE, 6 to 9 for AAE and 6 to 9 for "
          "beta-VAE, with confidence ratios up (0.67 to 0.72, 0.73 to 0.75, 0.79 to 0.82) and probes >= 0.87; 8 "
          "did worse for AAE (5 classes). Prior samples of a short-trained model with a larger latent fall where "
          "the aggregate posterior has no mass; the papers used small latents on MNIST "
          "(WAE and AAE 8: Tolstikhin et al. 2018, Makhzani et al. 2016; beta-VAE 10: Higgins et al. 2017)")


@dataclass(frozen=True)
class Recipe:
    """How one model is built and trained (see the module's docstring); JSON-safe.

    ``objective``: the objective's text (a zoo name resolved), its parameters bound separately
    in ``params`` (floats). ``data``: ``"mnist"`` or ``"digits"``; ``x_shape``: one example's
    shape. ``components``: ``{"encoder", "decoder", "prior"}`` specifications as
    :func:`~.model.build_component` reads them (the prior of CycleGAN/DiscoGAN is a
    ``DataSamplerPrior`` with a data source). ``compile_options``: keyword arguments of
    :func:`~.compile.compile_objective` beyond the components (``critics`` as specifications by
    term text, ``estimators``, ``decoder_sample``). ``training``: batch size, steps, each
    player's optimiser (name, lr, betas), ``n_critic``, ``max_grad_norm``, ``binarize``, ``seed``.
    ``domain``: the second domain's data source (CycleGAN/DiscoGAN) or None. ``reasons``: one
    sentence per choice.
    """

    objective: str
    params: dict
    data: str
    x_shape: tuple
    components: dict
    compile_options: dict
    training: dict
    domain: dict | None = None
    reasons: dict = field(default_factory=dict)
    name: str | None = None
    budget: str = "small"

    # -- building ---------------------------------------------------------------------------------
    def build_components(self, device=None) -> dict:
        """The encoder, decoder and prior as modules (fresh weights), seeded by ``training["seed"]``."""
        from lagrangian_family.data_sources import resolve_source

        from .components import DataSamplerPrior
        from .model import build_component

        torch.manual_seed(int(self.training.get("seed", 0)))
        out = {}
        for role in ("encoder", "decoder", "prior"):
            spec = self.components[role]
            if spec.get("class") == "DataSamplerPrior":
                source = spec["config"]["source"]
                out[role] = DataSamplerPrior(torch.from_numpy(resolve_source(source)), source=source)
            else:
                out[role] = build_component(spec, role=role)
        if device is not None:
            out = {k: v.to(device) for k, v in out.items()}
        return out

    def build_parts(self, device=None) -> tuple[dict, dict, dict]:
        """(components, critics, the other compile options): the recipe's modules built (on
        ``device``), the encoder's layers shared with a critic where the recipe says so
        (:func:`share_layers`), ready for ``compile_objective`` or a Lagrangian's ``compile``."""
        from .model import build_component

        comps = self.build_components(device)
        opts = dict(self.compile_options)
        critics = {t: build_component(s, role=f"critic:{t}") for t, s in (opts.pop("critics", None) or {}).items()}
        if device is not None:
            critics = {t: c.to(device) for t, c in critics.items()}
        share_layers(opts, comps, critics)
        return comps, critics, opts

    def build(self, example_x=None, device=None):
        """Build the components and the critics and compile the objective: a
        :class:`~.compile.CompiledObjective` with the recipe's parameter values as defaults."""
        from .compile import compile_objective

        comps, critics, opts = self.build_parts(device)
        if example_x is not None:
            example_x = torch.as_tensor(example_x)
            if device is not None:
                example_x = example_x.to(device)
        return compile_objective(self.objective, encoder=comps["encoder"], decoder=comps["decoder"],
                                 prior=comps["prior"], critics=critics or None, params=dict(self.params),
                                 example_x=example_x, **opts)

    def trainer(self, loss_fn, data, **overrides):
        """A :class:`~.train.Trainer` for ``loss_fn`` on ``data`` with the recipe's batch size,
        optimisers (Adam with each player's lr and betas), ``n_critic``, ``max_grad_norm`` and
        seed; ``overrides`` are passed to the Trainer (and win)."""
        from .train import Trainer

        t = self.training

        def adam(spec):
            return lambda params: torch.optim.Adam(params, lr=float(spec["lr"]), betas=tuple(spec["betas"]))

        kw = {"batch_size": int(t["batch_size"]), "model_optimizer": adam(t["model_optimizer"]),
              "critic_optimizer": adam(t["critic_optimizer"]), "n_critic": int(t["n_critic"]),
              "max_grad_norm": t.get("max_grad_norm"), "seed": int(t.get("seed", 0))}
        kw.update(overrides)
        return Trainer(loss_fn, data, **kw)

    def load_data(self, split: str = "train", data_dir=None) -> torch.Tensor:
        """The images of ``split`` as the model trains on them: float32 ``(n, *x_shape)``,
        binarised once (seed 0) when ``training["binarize"]`` says so, else grey levels in [0, 1]."""
        from lagrangian_family.data import binarize
        from lagrangian_family.data_sources import resolve_source

        source = dict(DATASETS[self.data]["source"], split=split)
        x = resolve_source(source, data_dir)
        mode = self.training.get("binarize")
        if mode is not None:
            x = binarize(x, mode, rng=0)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, *self.x_shape)

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The recipe as a JSON-safe dict (:meth:`from_dict` reads it back)."""
        d = {"objective": self.objective, "params": dict(self.params), "data": self.data,
             "x_shape": list(self.x_shape), "components": self.components, "compile_options": self.compile_options,
             "training": self.training, "domain": self.domain, "reasons": self.reasons, "name": self.name,
             "budget": self.budget}
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: Mapping) -> Recipe:
        """A recipe from :meth:`to_dict`'s dict; a :class:`RecipeError` for anything else."""
        need = ("objective", "params", "data", "x_shape", "components", "compile_options", "training")
        if not isinstance(d, Mapping) or any(k not in d for k in need):
            missing = [k for k in need if not isinstance(d, Mapping) or k not in d]
            raise RecipeError("not a recipe", expected="a dict from Recipe.to_dict() with " + ", ".join(need),
                              given=f"{type(d).__name__} missing {', '.join(missing)}",
                              fix="rebuild the recipe with recipe(...) and save recipe.to_dict()")
        if d["data"] not in DATASETS:
            raise RecipeError(f"a recipe for an unknown dataset {d['data']!r}", expected="one of "
                              + ", ".join(DATASETS), given=repr(d["data"]), fix="use 'mnist' or 'digits'")
        return cls(objective=str(d["objective"]), params={k: float(v) for k, v in d["params"].items()},
                   data=d["data"], x_shape=tuple(int(s) for s in d["x_shape"]),
                   components=copy.deepcopy(dict(d["components"])),
                   compile_options=copy.deepcopy(dict(d["compile_options"])),
                   training=copy.deepcopy(dict(d["training"])), domain=copy.deepcopy(d.get("domain")),
                   reasons=dict(d.get("reasons") or {}), name=d.get("name"), budget=d.get("budget", "small"))


# -- what an objective needs -----------------------------------------------------------------------

def _needs(form) -> dict:
    """What the terms of a computable form need of the components."""
    out = {"decoder_density": False, "encoder_density": False, "critic_terms": [], "joint_critic": False,
           "wasserstein": False, "adversarial": False, "likelihood": False}
    for term in form:
        if isinstance(term, ExpectedLog):
            d = term.density
            scope = set(d.vars) | set(d.given)
            if d.family == "p" and "x" in d.vars:
                out["decoder_density"] = out["likelihood"] = True
            if d.family == "q" and "z" in d.vars and "x" in scope:
                out["encoder_density"] = True
                out["likelihood"] = True
        elif isinstance(term, Divergence):
            if term.kind in ("JS", "W", "D_f"):
                out["adversarial"] = True
                out["wasserstein"] |= term.kind == "W"
            elif term.kind == "KL":
                dens = [term.left, term.right]
                if any(dd.family == "p" and "x" in dd.vars for dd in dens) and term.arity != "conditional":
                    out["likelihood"] = True  # KL(q(x,z) || p(x,z)) and kin: -ELBO, needs log p(x|z)
                    if any(dd.family == "q" and "x" in dd.vars for dd in dens):
                        out["decoder_density"] = True
    return out


def _translator_spec(role: str, prior_kind: str, side: int, budget: str, options: Mapping) -> dict:
    """The component spec of CycleGAN's and DiscoGAN's translator (the same for both directions);
    refused for a model whose z is not a second domain of images."""
    if prior_kind != "domain":
        direction = "of" if role == "decoder" else "to"
        raise RecipeError(f"a translator {role} maps images {direction} a second domain, which this model has not",
                          expected=f"{role}='translator' only for CycleGAN and DiscoGAN",
                          given=f"{role}='translator'",
                          fix="use decoder='bernoulli' or 'generator'" if role == "decoder"
                          else "use encoder='gaussian'")
    return {"class": "LaplaceConvTranslator", "config": {"side": side, "width": _translator_width(budget), "depth": 3,
                                                         "scale": options.get("translator_scale")}}


def _dims(term, x_dim: int, z_dim: int) -> int:
    vars_ = set(term.left.vars)
    return (x_dim if "x" in vars_ else 0) + (z_dim if "z" in vars_ else 0)


def _resolve(objective, params: Mapping | None):
    """(name or None, text, params as floats) of a zoo name, a text or an Objective."""
    given = dict(params or {})
    if isinstance(objective, str) and zoo.normalise(objective) in zoo.names():
        name = zoo.normalise(objective)
        entry = zoo.entry(name)
        values = {str(k): float(v) for k, v in entry.defaults.items()}
        for k, v in given.items():
            key = entry.aliases.get(str(k), str(k))
            if key not in values:
                raise RecipeError(f"{name} has no parameter {k!r}", expected="one of " + ", ".join(
                    [*values, *entry.aliases]) if values else "none", given=repr(k),
                    fix=f"drop it, or name one of {name}'s parameters")
            values[key] = float(v)
        return name, str(zoo.get(name)), values
    obj = as_objective(objective)
    return None, str(obj), {str(k): float(v) for k, v in given.items()}


def _translator_width(budget: str) -> int:
    return {"smoke": 4, "small": 16}.get(budget, 32)


def _adam(lr: float, betas) -> dict:
    return {"name": "adam", "lr": float(lr), "betas": [float(b) for b in betas]}


def recipe(objective, *, data: str = "mnist", arch: str = "mlp", params: Mapping | None = None,
           budget: str = "small", **options) -> Recipe:
    """The :class:`Recipe` for a zoo name or a computable text objective on ``data``.

    ``data``: ``"mnist"`` (28x28) or ``"digits"`` (scikit-learn's 8x8); ``arch``: ``"mlp"``
    (convolutional translators for CycleGAN/DiscoGAN either way); ``params``: symbol values
    (a zoo model's defaults otherwise; its aliases such as ``lam`` work); ``budget``: a key of
    :data:`BUDGETS`. ``options``: any of :data:`OPTIONS`, each overriding the default the
    module's docstring explains.

    Raises :class:`RecipeError` (an :class:`~lagrangian_family.ObjectiveError`) for an
    objective that is not computable, an unknown dataset, budget, architecture or option, and a
    model that needs a component the choice cannot supply (an implicit decoder asked for
    log p(x|z)).

    >>> r = recipe("infogan", data="digits", budget="smoke")
    >>> r.components["prior"]["class"], r.params
    ('CodePrior', {'lambda_I': 1.0})
    >>> recipe("cyclegan", data="digits").domain["transform"]
    'invert'
    """
    if data not in DATASETS:
        near = closest(str(data), DATASETS)
        raise RecipeError(f"unknown dataset {data!r}", expected="one of " + ", ".join(map(repr, DATASETS)),
                          given=repr(data), fix=f"did you mean {near[0]!r}?" if near else "use data='mnist'")
    if budget not in BUDGETS:
        raise RecipeError(f"unknown budget {budget!r}", expected="one of " + ", ".join(map(repr, BUDGETS)),
                          given=repr(budget), fix="use budget='small' (two CPU cores) or 'smoke' (seconds)")
    if arch != "mlp":
        raise RecipeError(f"unknown architecture {arch!r}", expected="'mlp'", given=repr(arch), fix="use arch='mlp'")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        near = [n for k in unknown for n in closest(k, OPTIONS)]
        raise RecipeError(f"unknown recipe option(s) {', '.join(unknown)}", expected="options among "
                          + ", ".join(OPTIONS), given=", ".join(unknown),
                          fix=("did you mean " + " or ".join(map(repr, near)) + "?") if near else "see OPTIONS")
    name, text, values = _resolve(objective, params)
    c = classify(as_objective(text))
    if c.computability is Computability.NOT_COMPUTABLE or c.computable_form is None:
        raise RecipeError(f"the objective {text} is not computable, so no recipe can train it",
                          expected="an objective in a computability class (likelihood-based, unary or binary "
                          "likelihood-free)", given="; ".join(getattr(c, "reasons", ()) or ()) or "no class",
                          fix="rewrite the offending term (lf.classify(objective) explains which)")
    form = c.computable_form
    needs = _needs(form)
    size = BUDGETS[budget][data]
    ds = DATASETS[data]
    x_dim, side = int(ds["x_shape"][0]), int(ds["side"])
    o = dict(options)
    reasons: dict[str, str] = {}
    structure = ZOO_STRUCTURE.get(name or "", {})
    hidden = _widths(o, "hidden", size["hidden"])
    z_key = "z_dim_reconstruction" if needs["decoder_density"] and "z_dim_reconstruction" in size else "z_dim"
    z_dim = int(o.get("z_dim", size[z_key]))
    if z_key != "z_dim" and "z_dim" not in o:
        reasons["z_dim"] = _Z_WHY

    # -- prior -----------------------------------------------------------------------------------
    prior_kind = structure.get("prior", "normal")
    domain = None
    if prior_kind == "code":
        k, m = int(o.get("n_categories", 10)), int(o.get("n_continuous", 2))
        noise = int(o.get("n_noise", 62 if budget != "smoke" else 4))
        prior = {"class": "CodePrior", "config": {"n_categories": k, "n_continuous": m, "n_noise": noise}}
        z_dim = k + m + noise
        reasons.pop("z_dim", None)  # the code's size, not the budget's latent size
        reasons["prior"] = structure["why"]
    elif prior_kind == "domain":
        transform = o.get("domain", "invert")
        domain = {"dataset": ds["source"]["dataset"], "split": "train", "transform": transform}
        prior = {"class": "DataSamplerPrior", "config": {"source": domain}}
        z_dim = x_dim
        reasons.pop("z_dim", None)  # z is the second domain: its size is the data's
        reasons["prior"] = (structure["why"] + "; the second domain is drawn independently of the first, so "
                            "no pairs are seen in training (pairs by label only judge the translations)")
    else:
        prior = {"class": "StandardNormalPrior", "config": {"dim": z_dim}}
        reasons["prior"] = "p(z) = N(0, I), the paper's prior"

    # -- decoder ---------------------------------------------------------------------------------
    dec_kind = o.get("decoder", structure.get("decoder"))
    if dec_kind is None:
        dec_kind = "bernoulli" if needs["decoder_density"] else "generator"
    if needs["decoder_density"] and dec_kind == "generator":
        raise RecipeError(f"the objective {text} needs log p(x|z), which an implicit generator does not have",
                          expected="an explicit decoder ('bernoulli' or 'translator') for a term that scores x",
                          given="decoder='generator'", fix="drop decoder='generator' (the recipe picks 'bernoulli')")
    if dec_kind == "bernoulli":
        decoder = {"class": "BernoulliMLPDecoder", "config": {"z_dim": z_dim, "x_shape": [x_dim], "hidden": hidden,
                                                              "activation": "Softplus"}}
        reasons["decoder"] = ("a term scores x under the decoder (log p(x|z)), so the decoder is explicit: Bernoulli "
                              "over binarised pixels, as the paper's MNIST models")
    elif dec_kind == "generator":
        decoder = {"class": "DeterministicMLPDecoder", "config": {"z_dim": z_dim, "x_shape": [x_dim],
                                                                  "hidden": hidden, "activation": "LeakyReLU",
                                                                  "output": "sigmoid"}}
        reasons["decoder"] = ("no term needs log p(x|z), so the decoder is an implicit generator with sigmoid "
                              "outputs: continuous images in [0, 1] that carry the critic's gradient")
    elif dec_kind == "translator":
        decoder = _translator_spec("decoder", prior_kind, side, budget, o)
        reasons["decoder"] = structure.get("why", "") + ("; the translation is deterministic and scored by the l1 cost "
                                                         "over the number of pixels, so -lambda_c log p(x|z) is "
                                                         "CycleGAN's lambda times a per-pixel mean l1")
    else:
        raise RecipeError(f"unknown decoder kind {dec_kind!r}", expected="'bernoulli', 'generator' or 'translator'",
                          given=repr(dec_kind), fix="use decoder='bernoulli'")

    # -- encoder ---------------------------------------------------------------------------------
    enc_kind = o.get("encoder", structure.get("encoder", "gaussian"))
    if needs["encoder_density"] and enc_kind in ("deterministic", "noisy"):
        raise RecipeError(f"the objective {text} needs log q(z|x), which an implicit encoder does not have",
                          expected="an explicit encoder ('gaussian', 'code' or 'translator')",
                          given=f"encoder={enc_kind!r}", fix="use encoder='gaussian'")
    if enc_kind == "gaussian":
        encoder = {"class": "GaussianMLPEncoder", "config": {"x_dim": x_dim, "z_dim": z_dim, "hidden": hidden,
                                                             "activation": "Softplus", "min_log_scale": -10.0,
                                                             "max_log_scale": 10.0}}
        reasons["encoder"] = structure.get("why", "a reparameterised Gaussian encoder: log q(z|x) exists and "
                                           "samples carry a path gradient")
    elif enc_kind == "deterministic":
        encoder = {"class": "DeterministicMLPEncoder", "config": {"x_dim": x_dim, "z_dim": z_dim, "hidden": hidden,
                                                                  "activation": "Softplus"}}
        reasons["encoder"] = structure.get("why", "a deterministic encoder z = f(x)")
    elif enc_kind == "noisy":
        encoder = {"class": "NoisyMLPEncoder", "config": {"x_dim": x_dim, "z_dim": z_dim, "noise_dim": z_dim,
                                                          "hidden": hidden, "activation": "Softplus"}}
        reasons["encoder"] = structure.get("why", "an implicit stochastic encoder z = f(x, noise)")
    elif enc_kind == "code":
        if prior_kind != "code":
            raise RecipeError("a code encoder infers InfoGAN's code, which this model's prior is not",
                              expected="encoder='code' only for InfoGAN", given="encoder='code'",
                              fix="use encoder='gaussian'")
        encoder = {"class": "CodeEncoder", "config": {"x_dim": x_dim, **prior["config"], "hidden": hidden,
                                                      "activation": "LeakyReLU"}}
        reasons["encoder"] = ("Q: a categorical over the 10-way code and a Gaussian over the continuous codes; the "
                              "noise is not inferred (Chen et al. 2016)")
    elif enc_kind == "translator":
        encoder = _translator_spec("encoder", prior_kind, side, budget, o)
        reasons["encoder"] = "the map from the digits to the second domain, the same translator as the decoder"
    else:
        raise RecipeError(f"unknown encoder kind {enc_kind!r}", expected="'gaussian', 'deterministic', 'noisy', "
                          "'code' or 'translator'", given=repr(enc_kind), fix="use encoder='gaussian'")
    components = {"encoder": encoder, "decoder": decoder, "prior": prior}

    # -- estimators and critics -------------------------------------------------------------------
    critic_terms = _critic_terms(text, components, values, x_dim)
    purely_adversarial = bool(critic_terms) and not needs["decoder_density"] and dec_kind != "translator"
    if _flag(o, "generator_batch_norm", False):
        if dec_kind != "generator":
            raise RecipeError("generator_batch_norm applies to an implicit generator, but this model's decoder is "
                              f"{decoder['class']}", expected="generator_batch_norm with a model whose decoder is "
                              "an implicit generator (no term scores x under the decoder)",
                              given="generator_batch_norm=True", fix="drop generator_batch_norm")
        decoder["config"]["batch_norm"] = True
        reasons["generator_batch_norm"] = ("batch normalisation in the generator's hidden layers, as DCGAN's "
                                           "(Radford et al. 2016) and BiGAN's and InfoGAN's MNIST generators")
    js_terms = [t for t in form if isinstance(t, Divergence) and t.kind == "JS"]
    # a purely adversarial model whose every critic is a JS term's with the data on its left (R1 penalises
    # the critic's gradient at the left argument's samples): R1 on the critics instead of spectral norm
    critic_divs = {str(t): t for t in form if str(t) in critic_terms}
    r1_default = (purely_adversarial and set(critic_divs) == set(critic_terms)
                  and all(t.kind == "JS" and t.left.family == "q" for t in critic_divs.values()))
    r1 = float(o.get("r1", _R1_GAMMA if r1_default else 0.0))
    spectral = _flag(o, "spectral_norm", not (r1_default and r1 > 0))
    critic_hidden = _widths(o, "critic_hidden", hidden)
    critics = {}
    for term_text, (in_dim, joint) in critic_terms.items():
        drop = float(o.get("critic_dropout", 0.2 if joint else 0.0))
        critics[term_text] = {"class": "MLPCritic", "config": {"in_dim": in_dim, "hidden": critic_hidden,
                                                               "dropout": drop, "spectral_norm": spectral,
                                                               "activation": "LeakyReLU"}}
    compile_options: dict = {"decoder_sample": o.get("decoder_sample", "mean")}
    if critics:
        compile_options["critics"] = critics
        if spectral:
            reasons["critics"] = ("spectral normalisation on every critic layer (Miyato et al. 2018) bounds the "
                                  "critic's Lipschitz constant, so it cannot saturate and starve the model of gradient")
        elif r1_default and "spectral_norm" not in o and "r1" not in o:
            reasons["critics"] = _R1_WHY
        elif r1 and js_terms:
            reasons["critics"] = f"spectral normalisation off; the R1 penalty (r1={r1:g}) regularises the JS critics"
        else:
            reasons["critics"] = "spectral normalisation off (spectral_norm=False)"
        if any(j for _, j in critic_terms.values()):
            reasons["critic_dropout"] = ("dropout 0.2 in joint critics over (x, z), as ALI's discriminator "
                                         "(Dumoulin et al. 2017)")
    shared = _flag(o, "shared_trunk", enc_kind == "code")
    if shared:
        compile_options["shared_trunk"] = _shared_trunk(enc_kind, critic_terms, critic_hidden, hidden, x_dim,
                                                        float(o.get("critic_dropout", 0.0)))
        reasons["shared_trunk"] = (_SHARED_WHY if "shared_trunk" not in o
                                   else "Q's hidden layers are the discriminator's (shared_trunk=True)")
    if r1 and js_terms:
        compile_options["estimators"] = {"JS": f"gan:r1={r1:g}"}
        reasons["r1"] = f"R1 penalty gamma = {r1:g} on the data side of every JS critic (Mescheder et al. 2018)"
    reasons["decoder_sample"] = ("the decoder's mean is the sample of p(x) in likelihood-free terms: continuous, so "
                                 "the critic's gradient reaches the decoder although the data are binary")

    # -- training ---------------------------------------------------------------------------------
    paper_training = structure.get("training", {})
    if purely_adversarial and paper_training:
        model_opt = _adam(o.get("lr", paper_training["lr"]), o.get("betas", _GAN_BETAS))
        critic_opt = _adam(o.get("critic_lr", paper_training["critic_lr"]), o.get("critic_betas", _GAN_BETAS))
        reasons["optimisers"] = structure["training_why"] + structure["shared_why" if shared else "own_why"]
    elif purely_adversarial:
        model_opt = _adam(o.get("lr", _GAN_LR), o.get("betas", _GAN_BETAS))
        critic_opt = _adam(o.get("critic_lr", _GAN_CRITIC_LR), o.get("critic_betas", _GAN_BETAS))
        reasons["optimisers"] = ("no likelihood or reconstruction of x: the GAN literature's Adam 2e-4 with "
                                 "beta1 = 0.5 for both players (Radford et al. 2016; ALI: Dumoulin et al. 2017); a "
                                 "faster critic (TTUR, critic_lr=4e-4) let the critic win on MNIST at this budget")
    else:
        model_opt = _adam(o.get("lr", 1e-3), o.get("betas", (0.9, 0.999)))
        critic_opt = _adam(o.get("critic_lr", 1e-3), o.get("critic_betas", (0.5, 0.9)))
        reasons["optimisers"] = ("a likelihood or reconstruction term trains the model: Adam 1e-3 (a GAN learning "
                                 "rate slows the reconstruction), critics Adam 1e-3 with betas (0.5, 0.9)"
                                 if critics else "Adam 1e-3, as the paper's section 7 models")
    n_critic = int(o.get("n_critic", 5 if needs["wasserstein"] else 1))
    if needs["wasserstein"]:
        reasons["n_critic"] = "five critic steps per model step for a Wasserstein critic (Gulrajani et al. 2017)"
    if "binarize" in o:
        binarize = o["binarize"]
    else:
        binarize = "stochastic" if dec_kind == "bernoulli" else None
    if dec_kind == "bernoulli" and binarize is None:
        raise RecipeError("a Bernoulli decoder scores binary images, but binarize=None keeps grey levels",
                          expected="binarize='stochastic' or 'fixed' with a Bernoulli decoder", given="binarize=None",
                          fix="drop binarize=None")
    if binarize not in (None, "stochastic", "fixed"):
        raise RecipeError(f"unknown binarisation {binarize!r}", expected="'stochastic', 'fixed' or None",
                          given=repr(binarize), fix="use binarize='stochastic'")
    reasons["binarize"] = ("binarised once (Bernoulli draws, seed 0): the Bernoulli decoder scores binary pixels"
                           if binarize else "grey levels in [0, 1]: no term scores x under a Bernoulli decoder, and a "
                           "critic would tell binary data from continuous outputs at once")
    steps = size["steps"]
    if r1_default and "steps_adversarial" in size and "steps" not in o:
        steps = size["steps_adversarial"]
        reasons["steps"] = (f"{steps} steps, not {size['steps']}: with no likelihood or reconstruction term the "
                            "model learns from its critic alone, and slowly (measured on MNIST: ALI covered 6 digit "
                            "classes with probe 0.81 after 6000 steps, 9 with 0.88 after 20000, with spectral "
                            "normalisation); with R1 a step costs about 30 ms on one CPU thread: 20000 steps of ALI "
                            "took 6.2 minutes alone on two threads and 10 beside another run, within the small "
                            "budget's ten minutes")
    if dec_kind == "translator" and budget == "small":
        steps = steps // 3
        reasons["steps"] = ("a third of the small budget's steps: a step of two convolutional translators costs "
                            "about three times an adversarial MLP model's (measured: 91 against 29 ms on one CPU "
                            "thread), and the small budget is a wall time per model")
    training = {"steps": int(o.get("steps", steps)), "batch_size": int(o.get("batch_size", size["batch_size"])),
                "model_optimizer": model_opt, "critic_optimizer": critic_opt, "n_critic": n_critic,
                "max_grad_norm": o.get("max_grad_norm"), "binarize": binarize, "seed": int(o.get("seed", 0))}
    r = Recipe(objective=text, params=values, data=data, x_shape=tuple(ds["x_shape"]), components=components,
               compile_options=compile_options, training=training, domain=domain, reasons=reasons, name=name,
               budget=budget)
    return Recipe.from_dict(r.to_dict())  # JSON-safe by construction: the same object a run folder rebuilds


def _flag(o: Mapping, name: str, default: bool) -> bool:
    """The option ``name`` as a bool (true/false, or 1/0), else a RecipeError."""
    v = o.get(name, default)
    if isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)):
        return bool(v)
    raise RecipeError(f"the option {name} is not true or false", expected="true or false", given=f"{name}={v!r}",
                      fix=f"pass {name}=true or {name}=false")


def _widths(o: Mapping, name: str, default) -> list[int]:
    """The option ``name`` as a list of layer widths (one width alone is one layer), else a RecipeError."""
    v = o.get(name, default)
    v = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if isinstance(v, (list, tuple)) and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in v):
        return [int(h) for h in v]
    raise RecipeError(f"the option {name} is not a list of layer widths", expected="positive integers, e.g. "
                      f"{name}=256,256 (--option) or {name}=[256, 256]", given=f"{name}={v!r}",
                      fix=f"pass {name}=256,256")


def _shared_trunk(enc_kind: str, critic_terms: dict, critic_hidden: list, hidden: list, x_dim: int,
                  dropout: float) -> str:
    """The term whose critic lends Q its hidden layers (``shared_trunk``), or a RecipeError."""
    on_x = [t for t, (d, joint) in critic_terms.items() if not joint and d == x_dim]
    if enc_kind != "code" or len(on_x) != 1:
        raise RecipeError("shared_trunk puts InfoGAN's Q network on the hidden layers of the critic of x, which this "
                          "model does not have", expected="shared_trunk with InfoGAN's code encoder and one critic "
                          "of x alone", given=f"encoder {enc_kind!r}, critics of x alone: {on_x or 'none'}",
                          fix="drop shared_trunk")
    if dropout:
        raise RecipeError("Q cannot share the hidden layers of a critic with dropout: it would read dropped-out "
                          "features", expected="critic_dropout=0 with shared_trunk",
                          given=f"critic_dropout={dropout:g}",
                          fix="drop critic_dropout, or pass shared_trunk=False")
    if list(critic_hidden) != list(hidden):
        raise RecipeError("Q and the discriminator cannot share hidden layers of different widths",
                          expected=f"critic_hidden equal to hidden ({hidden})", given=f"critic_hidden={critic_hidden}",
                          fix="drop critic_hidden, or pass shared_trunk=False")
    return on_x[0]


def share_layers(options: dict, components: Mapping, critics: Mapping) -> None:
    """Pop a recipe's ``shared_trunk`` from its compile ``options`` and put the built encoder's
    hidden layers on that term's built critic (:func:`~.components.share_trunk`); nothing where
    the critic is not among ``critics`` (a Lagrangian version that does not keep that term)."""
    from .components import share_trunk

    term = options.pop("shared_trunk", None)
    if term is not None and term in critics:
        share_trunk(components["encoder"], critics[term])


def _critic_terms(text: str, components: dict, values: dict, x_dim: int) -> dict:
    """{term text: (critic input size, joint?)} for the terms whose estimator trains a critic with
    these kinds of component: found by compiling once with tiny networks of the same kinds (the
    registry decides, not a copy of its rules)."""
    from lagrangian_family.data_sources import resolve_source  # noqa: F401  (registers "invert")

    from .compile import compile_objective
    from .components import DataSamplerPrior
    from .model import build_component

    tiny = copy.deepcopy(components)
    for role in ("encoder", "decoder"):
        cfg = tiny[role]["config"]
        if "hidden" in cfg:
            cfg["hidden"] = [4]
        if "width" in cfg:
            cfg["width"] = 2
    built = {}
    with torch.random.fork_rng():
        for role in ("encoder", "decoder", "prior"):
            spec = tiny[role]
            if spec["class"] == "DataSamplerPrior":
                built[role] = DataSamplerPrior(torch.rand(4, x_dim))
            else:
                built[role] = build_component(spec, role=role)
        try:
            fn = compile_objective(text, encoder=built["encoder"], decoder=built["decoder"], prior=built["prior"],
                                   params=values, decoder_sample="mean")
        except ObjectiveError as e:
            raise RecipeError(f"the objective {text} cannot be trained with the components the recipe chose",
                              expected="components that supply every term (see the reasons below)", given=str(e),
                              fix="choose other components with the encoder=/decoder= options") from e
    z_dim = int(math.prod(fn.components.z_shape))
    out = {}
    for t, est in zip(fn._terms, fn.estimators):
        if isinstance(getattr(est, "critic", None), torch.nn.Module):
            if isinstance(t, Divergence) and t.arity == "conditional":  # AVB's ratio over (x, z)
                out[str(t)] = (x_dim + z_dim, True)
            else:
                out[str(t)] = (_dims(t, x_dim, z_dim), set(t.left.vars) == {"x", "z"})
    return out
