"""One training run of any zoo model or computable text objective, in one run folder:
``lagfam train`` as a function (:func:`train_run`).

The run's recipe (:func:`.recipes.recipe`: the components the objective needs, the training
defaults, the second domain of CycleGAN and DiscoGAN, the reasons for each choice) builds the
compiled loss and its :class:`~.train.Trainer`; the run folder then holds:

==========================  ======================================================================
``run.json``                what the folder is a run of (model, data, budget, parameters, seed and
                            the recipe); written first, compared on every rerun
``checkpoint.pt``           the trainer's checkpoint (weights, optimisers, batch order, random
                            states): a rerun resumes from it exactly
``log.csv``                 the training log (one row per logged step)
``model.pt``                the trained model in the :func:`~.model.save_model` format:
                            ``lagfam sample RUN_DIR`` and :func:`~.model.load_model` rebuild it
                            without the user's code
``samples.png``             a grid of samples x ~ p(x) (decoder means or generator outputs)
``reconstructions.png``     test images above their reconstructions (models with an encoder)
``translations.png``        second-domain test images above their translations (CycleGAN, DiscoGAN)
``metrics.json``            the objective-independent metrics of :mod:`lagrangian_family.evaluate`
                            (with the real-data references), the targets of issue 8 and timings;
                            its presence (valid, finite, for this run) marks the run finished
``report.md``               the metrics as tables, the targets met or missed and why, the
                            recipe's reasons, the images
==========================  ======================================================================

Rerunning the same call resumes an interrupted run from its checkpoint and skips a finished one
(a ``metrics.json`` that is invalid, or written for another run, is redone). The folder is
locked while a run writes to it (:class:`~lagrangian_family.files.FolderLock`; ``wait=True``
waits for the holder). Bad input is refused before anything is written: a text objective in no
computability class, a model needing a component the data cannot supply, an ``out`` that is a
file or a folder holding something other than this run, a data folder without MNIST; every
such error is an :class:`~lagrangian_family.errors.ObjectiveError` and nothing already in
``out`` is removed.

Distributed (``torchrun ... -m lagrangian_family.cli train ...``): :func:`train_run` joins the
process group that ``torchrun`` describes (:func:`.distributed.init_from_env`), every rank
trains its shard of each global batch, and only rank 0 writes files and computes the metrics.

>>> import tempfile, os
>>> folder = os.path.join(tempfile.mkdtemp(), "vae")
>>> kw = dict(out=folder, data="digits", budget="smoke", steps=20, n_eval=100, progress=False, log=lambda s: None)
>>> result = train_run("vae", **kw)
>>> result.status, sorted(p.name for p in result.out.iterdir() if p.suffix in (".png", ".pt"))
('trained', ['checkpoint.pt', 'model.pt', 'reconstructions.png', 'samples.png'])
>>> train_run("vae", **kw).status      # the same call again: finished already
'skipped'
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.results import TARGETS, fmt, verdict

__all__ = ["RunResult", "train_run", "train_sweep", "sweep_points", "run_identity", "read_finished", "TARGETS",
           "RUN_FILE", "CHECKPOINT_FILE", "LOG_FILE", "METRICS_FILE", "REPORT_FILE", "SAMPLES_PNG",
           "RECONSTRUCTIONS_PNG", "TRANSLATIONS_PNG", "REFERENCE_DIR", "STACKS_DIR", "DATASETS", "DUAL_LR"]

#: What the folder is a run of (written before training starts).
RUN_FILE = "run.json"
#: The trainer's checkpoint (resume).
CHECKPOINT_FILE = "checkpoint.pt"
#: The CSV training log.
LOG_FILE = "log.csv"
#: The final metrics; a valid one marks the run finished.
METRICS_FILE = "metrics.json"
#: The Markdown report.
REPORT_FILE = "report.md"
#: PNG grids.
SAMPLES_PNG, RECONSTRUCTIONS_PNG, TRANSLATIONS_PNG = "samples.png", "reconstructions.png", "translations.png"
#: The data sets ``lagfam train`` trains on.
DATASETS = ("digits", "mnist")


#: The number of samples scored per data set (the reference uses as many real test images).
N_EVAL = {"mnist": 10000, "digits": 300}

#: Files of the run folder that the toolkit writes (a folder holding anything else is refused).
_OURS = {RUN_FILE, CHECKPOINT_FILE, LOG_FILE, "model.pt", METRICS_FILE, REPORT_FILE, SAMPLES_PNG,
         RECONSTRUCTIONS_PNG, TRANSLATIONS_PNG, ".lagfam.lock"}


@dataclass
class RunResult:
    """What :func:`train_run` did: ``status`` is ``"trained"`` (from scratch), ``"resumed"``
    (from a checkpoint), ``"skipped"`` (already finished) or ``"worker"`` (a rank other than 0 of
    a distributed run, which writes nothing); ``metrics`` is the content of ``metrics.json``
    (empty on other ranks); ``out`` the run folder."""

    out: Path
    status: str
    metrics: dict = field(default_factory=dict)


# -- identity of a run ------------------------------------------------------------------------------

def run_identity(model: str, *, data: str, budget: str, params: Mapping | None, seed: int, arch: str,
                 recipe: Mapping, lagrangian: str | None = None, slack: float | str | None = None) -> dict:
    """The description of a run that ``run.json`` and ``metrics.json`` carry: a rerun with the
    same identity resumes or skips; one with another identity is refused.

    >>> run_identity("vae", data="digits", budget="smoke", params={"beta": 2}, seed=0, arch="mlp", recipe={})["params"]
    {'beta': 2.0}
    """
    return {"model": str(model), "data": data, "budget": budget,
            "params": {str(k): _plain(v) for k, v in sorted((params or {}).items())}, "seed": int(seed),
            "arch": arch, "lagrangian": lagrangian,
            "slack": slack if slack is None or isinstance(slack, str) else float(slack),
            "recipe": json.loads(json.dumps(recipe, default=str))}


def _plain(v):
    if isinstance(v, bool) or isinstance(v, str):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _finite_numbers(obj) -> bool:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return True
    if isinstance(obj, (int, float)):
        return math.isfinite(obj)
    if isinstance(obj, Mapping):
        return all(_finite_numbers(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite_numbers(v) for v in obj)
    return False


def read_finished(out, identity: Mapping | None = None) -> tuple[dict | None, str | None]:
    """``(metrics, None)`` when ``out/metrics.json`` marks a finished run (JSON, every number
    finite, the sample scores present, written for ``identity`` when given, ``model.pt``
    present); else ``(None, why)`` (``why`` None when there is no ``metrics.json`` at all).

    >>> read_finished("/nonexistent")
    (None, None)
    """
    path = Path(out) / METRICS_FILE
    if not path.exists():
        return None, None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return None, f"its {METRICS_FILE} is not readable JSON ({type(e).__name__})"
    if not isinstance(m, dict) or not isinstance(m.get("samples"), dict) or "identity" not in m:
        return None, f"its {METRICS_FILE} lacks the sample scores or the run's identity"
    if not _finite_numbers(m):
        return None, f"its {METRICS_FILE} holds a value that is not a finite number"
    if identity is not None and m["identity"] != json.loads(json.dumps(identity)):
        return None, f"its {METRICS_FILE} was written for another run"
    if not (Path(out) / "model.pt").is_file():
        return None, "its model.pt is missing"
    return m, None


# -- checks before anything is written ----------------------------------------------------------------

def _check_folder(out: Path, identity: dict) -> None:
    """Refuse a folder that holds something other than this run (nothing in it is touched)."""
    if not out.exists():
        return
    entries = [p.name for p in out.iterdir() if not p.name.endswith(".lagfam-tmp")]
    run_file = out / RUN_FILE
    if run_file.exists():
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise ObjectiveError(f"{out} holds a damaged {RUN_FILE}", expected=f"a run folder whose {RUN_FILE} is "
                                 "the JSON that lagfam train wrote", given=f"{type(e).__name__}",
                                 fix=f"choose another --out, or remove {run_file} to start the run over") from e
        if saved != json.loads(json.dumps(identity)):
            diff = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            was = ", ".join(f"{k}={saved.get(k)!r}" for k in diff if k != "recipe")
            raise ObjectiveError(f"{out} holds another run", expected="the folder of this run (the same model, data, "
                                 "budget, parameters, seed and recipe), a new folder, or an empty one",
                                 given=f"a run that differs in {', '.join(diff)}" + (f" ({was})" if was else ""),
                                 fix="choose another --out (a folder per run)")
        return
    foreign = sorted(set(entries) - {".lagfam.lock"})
    if foreign:
        shown = ", ".join(foreign[:6]) + (", ..." if len(foreign) > 6 else "")
        raise ObjectiveError(f"{out} is not a run folder", expected=f"a new or empty folder, or a run folder that "
                             f"lagfam train wrote (it holds {RUN_FILE})", given=f"a folder holding {shown}",
                             fix="choose another --out; nothing in this folder was changed")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= 2**32 - 2:
        raise ObjectiveError(f"seed {seed!r} is not usable", expected="an integer from 0 to 2**32 - 2",
                             given=repr(seed), fix="e.g. --seed 0")
    return int(seed)


def _check_data(data: str, data_dir) -> str | None:
    """The MNIST folder (resolved and checked) for ``data="mnist"``, None for the digits."""
    if data not in DATASETS:
        raise ObjectiveError(f"unknown data {data!r}", expected="'digits' (scikit-learn's 8x8 digits, no download) "
                             "or 'mnist'", given=repr(data), fix="--data digits, or --data mnist --data-dir DIR")
    if data == "digits":
        return None
    from lagrangian_family.experiments.datasets import check_mnist_dir

    return str(check_mnist_dir(data_dir, validate=True).resolve())


# -- evaluation ---------------------------------------------------------------------------------------

def _labelled(data: str, data_dir):
    from lagrangian_family.evaluate import load_split

    return load_split(data, data_dir)


def _domain_images(recipe, images: np.ndarray) -> np.ndarray:
    """The second domain's version of ``images``: the recipe's source transform(s)."""
    from lagrangian_family import data_sources

    names = recipe.domain.get("transform") if isinstance(recipe.domain, Mapping) else None
    names = [] if names is None else [names] if isinstance(names, str) else list(names)
    x = np.asarray(images, dtype=np.float32)
    for n in names:
        x = data_sources.TRANSFORMS[n](x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _evaluation_domain(recipe) -> str | None:
    """The name in :data:`lagrangian_family.evaluate.DOMAINS` of the recipe's second domain."""
    from lagrangian_family.evaluate.domains import domain_name

    names = recipe.domain.get("transform") if isinstance(recipe.domain, Mapping) else None
    names = [] if names is None else [names] if isinstance(names, str) else list(names)
    if len(names) > 1:
        return None
    try:
        return domain_name(names[0] if names else "identity")
    except ObjectiveError:
        return None


def _binary_inputs(recipe) -> bool:
    """Whether the model was trained on binarised images (its encoder then sees binary x)."""
    return recipe.training.get("binarize") is not None


def _has_encoder(loss_fn) -> bool:
    return loss_fn.components.encoder is not None


def _target(name: str, value, *, exempt: str | None = None) -> dict:
    threshold, what = TARGETS[name]
    met = None if value is None else bool(value >= threshold)
    return {"value": value, "threshold": threshold, "target": what, "met": met if exempt is None else None,
            "exempt": exempt}


def _evaluate(model, recipe, loss_fn, data: str, data_dir, n_eval: int, classification) -> dict:
    from lagrangian_family import evaluate as ev
    from lagrangian_family.data import binarize
    from lagrangian_family.sample_command import _samples

    split = _labelled(data, data_dir)
    n = min(int(n_eval), split.x_test.shape[0])
    out: dict = {}
    domain = recipe.domain is not None
    if domain:
        src = _domain_images(recipe, split.x_test[:n])
        translated = model.translate(torch.from_numpy(src)).reshape(n, -1).detach().cpu().double().numpy()
        samples = np.clip(translated, 0.0, 1.0).astype(np.float32)
        out["translation_kept"] = ev.translation_kept(samples, split.y_test[:n], data, domain="original",
                                                      data_dir=data_dir)
        back = _evaluation_domain(recipe)
        if back is not None and _has_encoder(loss_fn):
            enc = model.encode(torch.from_numpy(np.ascontiguousarray(split.x_test[:n], dtype=np.float32)))
            enc = np.clip(enc.reshape(n, -1).detach().cpu().double().numpy(), 0.0, 1.0)
            out["translation_kept_inverse"] = ev.translation_kept(enc, split.y_test[:n], data, domain=back,
                                                                  data_dir=data_dir)
    else:
        samples = _samples(model, n, 0, 1000)
    out["samples"] = ev.score_samples(samples, data, data_dir=data_dir)
    if _has_encoder(loss_fn) and not domain:
        pre = (lambda x: binarize(x, "fixed")) if _binary_inputs(recipe) else None
        probe = ev.probe_encoder(model.encoder, data, preprocess=pre, data_dir=data_dir,
                                 n_train=None if data == "digits" else ev.score.PROBE_TRAIN)
        out["probe"] = {k: v for k, v in probe.items() if isinstance(v, (int, float, str, bool))}
    code = _code_accuracy(model, recipe, data, data_dir)
    if code is not None:
        out["code"] = code
    enforces = bool(classification.dual is not None and classification.dual.enforces_consistency)
    exempt = None if enforces else ("the objective does not enforce consistency (no divergence with λ > 0 forces "
                                    "p(x,z) = q(x,z); paper, footnote 2), so its samples need not look like data")
    s = out["samples"]
    targets = {"classes_covered": _target("classes_covered", s["classes_covered"], exempt=exempt),
               "confidence_ratio": _target("confidence_ratio", s["confidence_ratio"], exempt=exempt)}
    if "probe" in out:
        targets["probe_accuracy"] = _target("probe_accuracy", out["probe"]["accuracy"], exempt=exempt)
    if "code" in out:
        targets["code_accuracy"] = _target("code_accuracy", out["code"]["accuracy"], exempt=exempt)
    if "translation_kept" in out:
        targets["translation_kept"] = _target("translation_kept", out["translation_kept"], exempt=exempt)
    out["targets"] = targets
    out["enforces_consistency"] = enforces
    return out


def _code_accuracy(model, recipe, data: str, data_dir) -> dict | None:
    """InfoGAN (a prior with a categorical code, ``sample_codes``): the digits drawn at each
    value of the code, matched to the code by the Hungarian algorithm (``accuracy``), and the
    encoder's (Q's) categorical code of real test images matched to their labels
    (``encoder_accuracy``); None for other priors."""
    prior = model.prior
    if not callable(getattr(prior, "sample_codes", None)) or not getattr(prior, "n_categories", 0):
        return None
    from lagrangian_family import evaluate as ev

    k = int(prior.n_categories)
    n = N_EVAL[data]
    labels = torch.arange(n) % k
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        x = model.decode(prior.sample_codes(n, labels)).reshape(n, -1).cpu().double().numpy()
    rec = ev.code_recovery(np.clip(x, 0.0, 1.0), labels.numpy(), data, data_dir=data_dir)
    out = {"accuracy": rec["accuracy"], "n": rec["n"], "n_categories": k,
           "mapping": {str(a): int(b) for a, b in rec["mapping"].items()}}
    if model.loss_fn.components.encoder is not None:
        def q_code(batch):
            return model.encode(batch)[:, :k]
        out["encoder_accuracy"] = ev.encoder_code_accuracy(q_code, data, data_dir=data_dir)
    return out


# -- images -------------------------------------------------------------------------------------------

def _grids(out: Path, model, recipe, data: str, data_dir) -> list[str]:
    from lagrangian_family.images import save_grid, save_pairs

    shape = tuple(model.x_shape)
    image_shape = (8, 8) if int(np.prod(shape)) == 64 else (28, 28) if int(np.prod(shape)) == 784 else None
    scale = 3 if image_shape == (8, 8) else 1
    written = []
    split = _labelled(data, data_dir)
    if recipe.domain is not None:
        src = _domain_images(recipe, split.x_test[:10])
        tr = model.translate(torch.from_numpy(src)).reshape(10, -1).clamp(0, 1)
        save_pairs(src, tr, out / TRANSLATIONS_PNG, nrow=10, image_shape=image_shape, scale=scale)
        written.append(TRANSLATIONS_PNG)
        samples = model.translate(torch.from_numpy(_domain_images(recipe, split.x_test[:100]))).reshape(100, -1)
    else:
        samples = model.sample(100, seed=0).reshape(100, -1)
    save_grid(samples.clamp(0, 1), out / SAMPLES_PNG, nrow=10, image_shape=image_shape, scale=scale)
    written.insert(0, SAMPLES_PNG)
    if recipe.domain is None and _has_encoder(model.loss_fn):
        x = split.x_test[:10]
        if _binary_inputs(recipe):
            from lagrangian_family.data import binarize

            x = binarize(x, "fixed")
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        save_pairs(xt, model.reconstruct(xt).reshape(10, -1).clamp(0, 1), out / RECONSTRUCTIONS_PNG, nrow=10,
                   image_shape=image_shape, scale=scale)
        written.append(RECONSTRUCTIONS_PNG)
    return written


# -- the report ---------------------------------------------------------------------------------------

_fmt = fmt


def _target_lines(targets: Mapping, shares: list[float]) -> list[str]:
    lines = ["| target | value | threshold | met |", "|---|---|---|---|"]
    for t in targets.values():
        met = "exempt" if t.get("exempt") else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {_fmt(t['value'])} | {_fmt(t['threshold'])} | {met} |")
    status, text = verdict(targets, shares)
    return lines + ["", text[0].upper() + text[1:]]


def _lagrangian_lines(lm: Mapping) -> list[str]:
    """The Lagrangian run's section of the report: ε from the reference run, the constraints at
    the end against ε, λ, and the information bound before and after."""
    ref = lm["reference"]
    lines = [f"## The Lagrangian version: {lm['preference']}", "",
             f"Constraints D_i <= ε_i with ε = ε̂ + slack {lm['slack']} (section 6), ε̂ measured on the test images "
             f"after a reference run of {ref['steps']} steps at the original multipliers {ref['multipliers']} "
             "(`reference/`); λ by projected gradient ascent. Values in the units of the compiled constraints "
             "(constants dropped: a joint KL as -ELBO; the information bounds likewise, up to an entropy).", "",
             "| constraint | reference ε̂ | ε | at the end (test) | satisfied | λ at the end |",
             "|---|---|---|---|---|---|"]
    for i, name in enumerate(lm["names"]):
        lines.append(f"| `{name}` | {_fmt(ref['measured'][i])} | {_fmt(lm['epsilon'][i])} | "
                     f"{_fmt(lm['constraints'][i])} | {'yes' if lm['satisfied'][i] else '**no**'} | "
                     f"{_fmt(lm['multipliers'][i])} |")
    fam = "I_p" if lm["preference"].endswith("Ip") else "I_q"
    maximise = lm["preference"].startswith("max")
    bound = "lower" if maximise else "upper"
    before, after = (-ref["primal"], -lm["primal"]) if maximise else (ref["primal"], lm["primal"])
    moved = after > before if maximise else after < before
    lines += ["", f"The {bound} bound of {fam} that Algorithm 1 optimises (test images): reference "
              f"{_fmt(before)}, Lagrangian run {_fmt(after)}: it moved "
              f"{'in the chosen direction' if moved else '**against the chosen direction**'}; "
              + ("every constraint ends satisfied." if all(lm["satisfied"]) else
                 "**not every constraint ends satisfied**."), ""]
    return lines


def _report(out: Path, identity: Mapping, metrics: Mapping, recipe, classification, command: str,
            images: list[str]) -> str:
    from lagrangian_family import evaluate as ev

    c = classification
    rank = c.computability.rank
    lines = [f"# `{identity['model']}` on {identity['data']}, budget {identity['budget']}", "",
             f"Command: `{command}`", ""]
    lines += [f"- objective: `{c.objective}`",
              f"- class: {c.computability}" + (f" (T{rank})" if rank else ""),
              f"- dual form: `L ≡ {c.dual.objective()}`" if c.dual is not None
              else f"- dual form: none ({c.dual_reason})",
              f"- consistency: {'enforced' if metrics['enforces_consistency'] else 'not enforced'}",
              f"- parameters: {json.dumps(identity['params']) if identity['params'] else 'defaults'}; "
              f"seed {identity['seed']}",
              f"- training: {metrics['steps']} steps in {metrics['train_minutes']:.1f} min "
              f"({metrics['machine']}), evaluation {metrics['eval_minutes']:.1f} min",
              ""]
    reasons = dict(recipe.reasons or {})
    if reasons:
        lines += ["## Why these components and defaults (the recipe)", ""]
        lines += [f"- **{k}**: {r}" for k, r in reasons.items()] + [""]
        comps = ", ".join(f"{role} `{spec.get('class')}`" for role, spec in recipe.components.items())
        t = recipe.training
        lines += [f"Components: {comps}. Training: {t['steps']} steps of batch {t['batch_size']}, model Adam "
                  f"lr {t['model_optimizer']['lr']:g}, critic Adam lr {t['critic_optimizer']['lr']:g}, "
                  f"n_critic {t['n_critic']}; the full recipe is in `run.json`.", ""]
    lines += ["## Samples, judged by a digit classifier that never sees the objective", ""]
    extra = {}
    if "probe" in metrics:
        extra["linear probe accuracy of the digit from z (test images)"] = (metrics["probe"]["accuracy"], None)
    if "code" in metrics:
        extra["InfoGAN: digits drawn at each code value, matched to the code (Hungarian)"] = (
            metrics["code"]["accuracy"], None)
        if "encoder_accuracy" in metrics["code"]:
            extra["InfoGAN: Q's code of test images, matched to their labels"] = (
                metrics["code"]["encoder_accuracy"], None)
    if "translation_kept" in metrics:
        extra["translations keeping their digit"] = (metrics["translation_kept"], None)
    if "translation_kept_inverse" in metrics:
        extra["translations into the second domain keeping their digit"] = (metrics["translation_kept_inverse"], None)
    what = ("translations of second-domain test images" if "translation_kept" in metrics
            else "decoder means (or generator outputs) of z ~ p(z)")
    lines += [f"Samples: {what}.", "", ev.format_table(metrics["samples"], extra), ""]
    if "lagrangian" in metrics:
        lines += _lagrangian_lines(metrics["lagrangian"])
    lines += ["## Targets (issue 8, small budget on MNIST)", ""]
    lines += _target_lines(metrics["targets"], metrics["samples"]["class_shares"]) + [""]
    if identity["budget"] != "small" or identity["data"] != "mnist":
        lines += ["(The targets are set for the small budget on MNIST; this run is "
                  f"{identity['budget']} on {identity['data']}.)", ""]
    lines += ["## Images", ""] + [f"![{name}]({name})" for name in images] + [""]
    lines += ["## Files", "",
              f"`model.pt` (load with `lagrangian_family.backends.torch.load_model`, or `lagfam sample {out.name} "
              "-n N --out FILE.npy`), `log.csv` (training log), `metrics.json` (these numbers), "
              f"`run.json` (what this folder is a run of), `{CHECKPOINT_FILE}` (resume; not needed to sample).", ""]
    return "\n".join(lines)


def _computable(model: str, params: Mapping | None):
    """The classification of ``model`` (a zoo name or a text objective, ``params`` bound), refused
    unless it is in a computability class (a loss can be compiled only for those)."""
    from lagrangian_family.cli import _objective_of
    from lagrangian_family.symbolic.classify import classify

    if not isinstance(model, str) or not model.strip():
        raise ObjectiveError("no model to train", expected="a zoo name (lagfam zoo) or an objective in the text syntax",
                             given=repr(model), fix="e.g. lagfam train vae")
    obj, _ = _objective_of(model, dict(params or {}))
    c = classify(obj)
    if c.computability.rank is None:
        reasons = "; ".join(c.reasons) if c.reasons else str(c.computability)
        raise ObjectiveError("the objective cannot be trained: it is in no computability class",
                             expected="an objective whose terms can all be estimated from samples of q(x,z) and "
                                      "p(x,z) (likelihood-based, unary or binary likelihood-free; lagfam classify "
                                      "says which)", given=f"{c.objective} ({reasons})",
                             fix="rewrite the terms named above as the reason says (lagfam classify shows the "
                                 "classification of any objective)")
    return c


# -- the Lagrangian version (issue 8 item 5) -----------------------------------------------------------

#: The reference run's sub-folder of a Lagrangian run.
REFERENCE_DIR = "reference"
#: The dual ascent's learning rate of ``--lagrangian`` runs.
DUAL_LR = 1e-2
#: The multipliers' range of ``--lagrangian`` runs (the authors' upper clip).
DUAL_RANGE = (0.0, 100.0)


def _lagrangian_of(model: str, preference: str | None, slack, params: Mapping | None, dual_lr):
    """The Lagrangian of ``model`` with ε unset and ``slack`` kept (None without ``preference``)."""
    if preference is None:
        if slack is not None:
            raise ObjectiveError("--slack without --lagrangian", expected="--slack with --lagrangian PREFERENCE",
                                 given=f"--slack {slack}", fix="add e.g. --lagrangian maximise-Iq, or drop --slack")
        return None
    if slack is None:
        raise ObjectiveError("--lagrangian without --slack", expected="the slack γ of ε = ε̂ + γ (section 6)",
                             given=f"--lagrangian {preference}", fix="add e.g. --slack 1.0")
    if isinstance(dual_lr, bool) or not isinstance(dual_lr, (int, float)) or not 0 < dual_lr < math.inf:
        raise ObjectiveError(f"dual_lr={dual_lr!r} is not a learning rate", expected="a finite number > 0",
                             given=repr(dual_lr), fix=f"e.g. {DUAL_LR}")
    from .lagrangian import lagrangian_of

    return lagrangian_of(model, preference=preference, slack=slack, params=dict(params or {}))


def _compile_lagrangian(lag, recipe, example_x):
    """``lag`` compiled with fresh components and critics of the recipe (a constraint whose critic
    the recipe did not specify gets the compiler's default critic)."""
    comps, critics, opts = recipe.build_parts()
    try:
        return lag.compile(encoder=comps["encoder"], decoder=comps["decoder"], prior=comps["prior"],
                           critics=critics or None, example_x=example_x, lenient=True, **opts)
    except ObjectiveError as e:
        if "rsample" not in str(e):
            raise
        raise ObjectiveError(f"the Lagrangian's constraints {', '.join(lag.names)} cannot be estimated with the "
                             "recipe's encoder", expected="an encoder whose samples carry a path gradient for the "
                             "f-GAN estimate of a constraint over p(x,z)", given=str(e).splitlines()[0] + ": "
                             + (e.given or ""), fix="pass --option encoder=gaussian (a reparameterised Gaussian "
                             "q(z|x)) for the Lagrangian version") from e


def _dual_updater(lag, lr: float):
    from .updaters import GradientAscent

    return GradientAscent(lag, lr=float(lr), lower=DUAL_RANGE[0], upper=DUAL_RANGE[1])


def _reference_run(folder: Path, lag, recipe, train, data_dir, total: int, seed: int, progress: bool, writer: bool,
                   log) -> dict:
    """Train the reference problem (the constraints at the original multipliers, ε = 0, no
    updater) in ``folder`` (resumable), measure its constraints on the test images, set ε = ε̂ +
    slack; returns ``{"names", "measured", "epsilon", "steps", "train_minutes"}`` (also saved as
    ``folder/epsilon.json``, which a rerun reads instead of training again)."""
    from lagrangian_family.files import atomic_write

    from .lagrangian import epsilon_with_slack, measure_constraints

    done = folder / "epsilon.json"
    if done.exists():
        try:
            saved = json.loads(done.read_text(encoding="utf-8"))
            if saved.get("names") == list(lag.names) and _finite_numbers(saved) and saved.get("steps") == total:
                epsilon_with_slack(lag, saved["measured"], lag.slack)
                log(f"{folder}: reference run finished already (ε̂ = {saved['measured']})")
                return saved
        except (OSError, ValueError, UnicodeDecodeError, ObjectiveError):
            pass
        log(f"{folder}: the reference run's epsilon.json is not usable; redoing it")
    if writer:
        folder.mkdir(exist_ok=True)
    ref = lag.reference()
    ref_fn = _compile_lagrangian(ref, recipe, train[:8])
    trainer = recipe.trainer(ref_fn, train, log_csv=folder / LOG_FILE, checkpoint=folder / CHECKPOINT_FILE,
                             checkpoint_every=max(100, total // 20), seed=seed, progress=progress)
    if (folder / CHECKPOINT_FILE).exists():
        trainer.load(folder / CHECKPOINT_FILE)
        log(f"{folder}: resuming the reference run at step {trainer.step_count} of {total}")
    t0 = time.perf_counter()
    if total - trainer.step_count > 0:
        log(f"{folder}: the reference run (section 6): {total} steps at the original multipliers "
            f"{list(ref.multipliers.tolist())}")
        trainer.train(total - trainer.step_count)
    measured = measure_constraints(ref_fn, recipe.load_data("test", data_dir))
    eps = epsilon_with_slack(lag, measured, lag.slack)
    result = {"names": list(lag.names), "measured": measured.tolist(), "epsilon": eps.tolist(), "steps": total,
              "multipliers": ref.multipliers.tolist(), "train_minutes": (time.perf_counter() - t0) / 60,
              "primal": _mean_primal(lag, ref_fn, recipe.load_data("test", data_dir))}
    if writer:
        atomic_write(done, json.dumps(result, indent=1))
    return result


def _mean_primal(lag, fitted_fn, test) -> float:
    """The primal (the information bound Algorithm 1 uses, signed by the preference) of the model
    whose components ``fitted_fn`` holds, on ``test``: ``lag`` compiled on those components."""
    c = fitted_fn.components
    full = lag.compile(encoder=c.encoder, decoder=c.decoder, prior=c.prior.obj if hasattr(c.prior, "obj") else c.prior,
                       lenient=True, **{k: v for k, v in fitted_fn.compile_options.items() if k == "decoder_sample"})
    was = [m.training for m in (c.encoder, c.decoder)]
    total, n = 0.0, 0
    full.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for i in range(0, test.shape[0], 100):
                x = test[i:i + 100]
                total += float(full(x).primal) * x.shape[0]
                n += x.shape[0]
    finally:
        c.encoder.train(was[0])
        c.decoder.train(was[1])
    return total / n


def _lagrangian_metrics(lag, loss_fn, reference: dict, recipe, data_dir) -> dict:
    """The constraints at the end (test images) against ε, λ, and the information bound of the
    reference and of the Lagrangian run."""
    from .lagrangian import measure_constraints

    test = recipe.load_data("test", data_dir)
    measured = measure_constraints(loss_fn, test).tolist()
    eps = lag.epsilon.tolist()
    pref = lag.form.preference if getattr(lag, "form", None) is not None else ""
    return {"preference": pref, "names": list(lag.names), "slack": lag.slack, "reference": reference,
            "epsilon": eps, "constraints": measured, "satisfied": [bool(d <= e) for d, e in zip(measured, eps)],
            "multipliers": lag.multipliers.tolist(), "primal": _mean_primal(lag, loss_fn, test),
            "primal_reference": reference["primal"]}


# -- the run ------------------------------------------------------------------------------------------

def _machine() -> str:
    import platform

    threads = torch.get_num_threads()
    dev = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else f"CPU, {threads} torch thread(s)"
    return f"{platform.machine()} {dev}, {os.cpu_count()} cores, torch {torch.__version__}"


def _lock(out: Path, wait: bool, log: Callable[[str], None]):
    from lagrangian_family.files import FolderLock

    lock = FolderLock(out, command=" ".join(["lagfam", *sys.argv[1:]]) if sys.argv else "lagfam")
    lock.acquire(wait=wait, on_wait=lambda who: log(f"waiting: {out} is in use by {who}"))
    if lock.previous:
        log(f"note: the previous run on {out} (PID {lock.previous.get('pid', '?')}) did not finish; "
            "continuing from its checkpoint")
    return lock


def train_run(model: str, *, out, data: str = "digits", budget: str = "smoke", params: Mapping | None = None,
              seed: int = 0, arch: str = "mlp", data_dir=None, progress: bool = True, tensorboard=None,
              wait: bool = False, lagrangian: str | None = None, slack: float | None = None,
              n_eval: int | None = None, steps: int | None = None, options: Mapping | None = None,
              dual_lr: float = DUAL_LR, command: str | None = None,
              log: Callable[[str], None] | None = None) -> RunResult:
    """Train ``model`` (a zoo name or a computable text objective) into the run folder ``out``
    (see the module docstring for its files), or resume or skip it; returns a :class:`RunResult`.

    ``data``: ``"digits"`` (no download) or ``"mnist"`` (IDX files in ``data_dir``, default
    ``$LAGFAM_DATA`` or ``../shared/data/mnist``). ``budget``: ``"smoke"``, ``"small"`` or
    ``"paper"`` (the recipe's :data:`~.recipes.BUDGETS`). ``params``: values of the objective's
    parameters (``{"beta": 4}``). ``seed``: initialisation, batch order and noise. ``arch``:
    the recipe's architecture (``"mlp"``, ``"conv"``). ``tensorboard``: a folder for TensorBoard
    logs. ``wait``: wait for another run holding ``out``. ``lagrangian``: train the Lagrangian
    version of the model instead (:func:`.lagrangian.lagrangian_of`; a preference such as
    ``"maximise-Iq"`` or ``"minimise-Ip"``): its dual form's divergences become constraints
    D_i <= ε_i with ε = ε̂ + ``slack`` (section 6), ε̂ measured on the test images after a reference
    run (the constraints at the original model's multipliers, the same recipe and steps, in
    ``out/reference/``), and λ is ascended by projected gradient ascent at ``dual_lr``
    (:class:`~.updaters.GradientAscent`, λ in [0, 100]). ``n_eval``: samples scored (default 10,000 on MNIST,
    300 on the digits). ``steps``: the budget's number of steps overridden (tests).
    ``options``: the recipe's options (:data:`.recipes.OPTIONS`: ``{"decoder": "generator"}``,
    ``{"lr": 1e-4}``, ...), each overriding a default the recipe explains.
    ``command``: the command line recorded in the report. ``log``: progress messages
    (default: stderr).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    from lagrangian_family.files import atomic_write, check_output_folder

    from . import recipes
    from .distributed import _initialised, init_from_env

    seed = _check_seed(seed)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ObjectiveError(f"steps={steps!r} is not a number of steps", expected="a positive integer",
                             given=repr(steps), fix="leave it to the budget")
    out = check_output_folder(out, "--out")
    if isinstance(tensorboard, (str, os.PathLike)):
        tensorboard = check_output_folder(tensorboard, "--tensorboard")
    classification = _computable(model, params)
    lag = _lagrangian_of(model, lagrangian, slack, params, dual_lr)
    data_dir = _check_data(data, data_dir)
    opts = dict(options or {})
    if "seed" in opts:
        raise ObjectiveError("the seed is not a recipe option here", expected="seed=... (--seed)",
                             given=f"seed={opts['seed']!r} among the options", fix="pass --seed N")
    if steps is not None:
        opts["steps"] = int(steps)
    recipe = recipes.recipe(model, data=data, arch=arch, params=dict(params or {}), budget=budget, seed=seed, **opts)
    identity = run_identity(model, data=data, budget=budget, params=params, seed=seed, arch=arch,
                            recipe=recipe.to_dict(), lagrangian=lagrangian, slack=slack)
    if lag is not None:
        identity["dual_lr"] = float(dual_lr)
    total = int(recipe.training["steps"])

    joined = "WORLD_SIZE" in os.environ and not _initialised()
    sync = init_from_env() if "WORLD_SIZE" in os.environ else None
    try:
        writer = sync is None or sync.rank == 0

        # everything that can be refused is refused before the folder is touched
        _check_folder(out, identity)
        train = recipe.load_data("train", data_dir)
        loss_fn = recipe.build(example_x=train[:8]) if lag is None else _compile_lagrangian(lag, recipe, train[:8])
        finished, why = read_finished(out, identity)
        if finished is not None:
            log(f"{out}: finished already (delete {out / METRICS_FILE} to evaluate again)")
            return RunResult(out, "skipped", finished)
        if why is not None:
            log(f"{out}: redoing the evaluation: {why}")

        if writer:
            out.mkdir(parents=True, exist_ok=True)
        lock = _lock(out, wait, log) if writer else None
        try:
            if writer:
                finished, _ = read_finished(out, identity)  # a run we waited for (--wait) may have finished it
                if finished is not None:
                    log(f"{out}: finished by the run we waited for")
                    return RunResult(out, "skipped", finished)
                atomic_write(out / RUN_FILE, json.dumps(identity, indent=1, sort_keys=True))
            reference = None
            if lag is not None:  # section 6: ε = ε̂ + slack, ε̂ the constraints of a reference run
                reference = _reference_run(out / REFERENCE_DIR, lag, recipe, train, data_dir, total, seed, progress,
                                           writer, log)
            extra = {} if lag is None else {"updater": _dual_updater(lag, dual_lr)}
            trainer = recipe.trainer(loss_fn, train, log_csv=out / LOG_FILE, checkpoint=out / CHECKPOINT_FILE,
                                     checkpoint_every=max(100, total // 20), seed=seed, progress=progress,
                                     tensorboard=tensorboard, **extra)
            status = "trained"
            if (out / CHECKPOINT_FILE).exists():
                trainer.load(out / CHECKPOINT_FILE)
                status = "resumed"
                log(f"{out}: resuming at step {trainer.step_count} of {total}")
            t0 = time.perf_counter()
            remaining = total - trainer.step_count
            if remaining > 0:
                trainer.train(remaining)
            train_seconds = time.perf_counter() - t0
            if not writer:
                return RunResult(out, "worker")
            metrics = _finish(out, loss_fn, recipe, identity, classification, lag, reference, data_dir,
                              n_eval or N_EVAL[data], trainer.step_count, status, train_seconds,
                              command or _default_command(model, data, budget, params, seed, out))
            return RunResult(out, status, metrics)
        finally:
            if lock is not None:
                lock.release()
    finally:
        if sync is not None:
            _leave(sync, joined, failed=sys.exc_info()[0] is not None)


def _leave(sync, joined: bool, *, failed: bool) -> None:
    """End a distributed run on this rank: wait for every rank (the writer evaluates after training
    while the others are done), then leave the process group if this run joined it. A rank that
    exits with the group's gloo threads alive aborts ("terminate called without an active
    exception"). After a failure the barrier is skipped (the other ranks may be inside a
    collective that will never complete; torchrun stops them)."""
    import torch.distributed as dist

    if not failed:
        sync.barrier()
    if joined:
        dist.destroy_process_group()


def _finish(out: Path, loss_fn, recipe, identity: dict, classification, lag, reference, data_dir, n_eval: int,
            steps: int, status: str, train_seconds: float, command: str, trainer_kind: str = "Trainer") -> dict:
    """Write what a trained run leaves: ``model.pt`` (checked by loading it as ``lagfam sample``
    does), the grids, ``metrics.json`` and ``report.md``; returns the metrics."""
    from lagrangian_family.files import atomic_write

    from .model import load_model, save_model

    data = recipe.data
    t1 = time.perf_counter()
    save_model(out, loss_fn, data=data, run=identity, steps=steps)
    loaded = load_model(out, data_dir=data_dir)  # what lagfam sample will read
    images = _grids(out, loaded, recipe, data, data_dir)
    metrics = _evaluate(loaded, recipe, loss_fn, data, data_dir, n_eval, classification)
    if lag is not None:
        metrics["lagrangian"] = _lagrangian_metrics(lag, loss_fn, reference, recipe, data_dir)
    metrics.update({"identity": json.loads(json.dumps(identity)), "steps": steps, "status": status,
                    "trainer": trainer_kind, "train_minutes": train_seconds / 60,
                    "eval_minutes": (time.perf_counter() - t1) / 60, "machine": _machine(),
                    "objective": str(classification.objective),
                    "class": f"T{classification.computability.rank}" if classification.computability.rank
                    else str(classification.computability)})
    text = _report(out, identity, metrics, recipe, classification, command, images)
    atomic_write(out / METRICS_FILE, json.dumps(metrics, indent=1, sort_keys=True, default=float))
    atomic_write(out / REPORT_FILE, text)
    return metrics


def _default_command(model, data, budget, params, seed, out) -> str:
    import shlex

    parts = ["lagfam", "train", model, "--data", data, "--budget", budget]
    for k, v in (params or {}).items():
        parts += ["--set", f"{k}={v}"]
    return " ".join(shlex.quote(p) for p in [*parts, "--seed", str(seed), "--out", str(out)])


# -- sweeps (issue 11 item 2) -------------------------------------------------------------------------

#: The sweep folder's checkpoints of vectorised stacks.
STACKS_DIR = ".stacks"


def _point_name(params: Mapping, seed: int) -> str:
    """The run folder of one grid point: ``beta=4_seed=0`` (``seed=0`` alone for an empty grid).

    >>> _point_name({"beta": 4.0, "lam": 0.5}, 1)
    'beta=4_lam=0.5_seed=1'
    """
    parts = [f"{k}={float(v):g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in params.items()]
    return "_".join([*parts, f"seed={int(seed)}"])


def sweep_points(grid: Mapping[str, list], seeds: list[int]) -> list[tuple[dict, int]]:
    """Every ``(params, seed)`` of a grid (the product of the values of each name) and seeds.

    >>> sweep_points({"beta": [1, 4]}, [0, 1])
    [({'beta': 1}, 0), ({'beta': 1}, 1), ({'beta': 4}, 0), ({'beta': 4}, 1)]
    """
    import itertools

    names = list(grid)
    for n in names:
        if not isinstance(grid[n], (list, tuple)) or not grid[n]:
            raise ObjectiveError(f"the grid of {n} has no values", expected="a non-empty list of values",
                                 given=repr(grid[n]), fix=f"e.g. --set {n}=1,2,4")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ObjectiveError("bad seeds for a sweep", expected="distinct seeds", given=repr(seeds), fix="--seeds 2")
    return [(dict(zip(names, values)), int(seed)) for values in itertools.product(*(grid[n] for n in names))
            for seed in seeds]


def _shadow(loss_fn, recipe):
    """A compiled Lagrangian that shares ``loss_fn``'s components and whose loss is its objective:
    the objective (parameters bound) as the primal, and one constraint, -ELBO, with λ fixed at 0.
    :class:`~.vectorised.VectorisedTrainer` trains compiled Lagrangians only; training the shadow
    trains ``loss_fn``'s own modules."""
    from lagrangian_family.symbolic.classify import as_objective

    from .lagrangian import Lagrangian

    obj = as_objective(recipe.objective).subs(recipe.params)
    c = loss_fn.components
    return Lagrangian(obj, [("KL(q(x,z) || p(x,z))", 0.0)], init=0.0).compile(
        encoder=c.encoder, decoder=c.decoder, prior=c.prior.obj, decoder_sample=loss_fn.compile_options.get(
            "decoder_sample", "sample"))


def train_sweep(model: str, *, out, grid: Mapping[str, list] | None = None, seeds: list[int] = (0,),
                vectorise: bool = True, data: str = "digits", budget: str = "smoke", data_dir=None,
                progress: bool = True, wait: bool = False, n_eval: int | None = None, steps: int | None = None,
                options: Mapping | None = None, arch: str = "mlp", command: str | None = None,
                log: Callable[[str], None] | None = None) -> list[RunResult]:
    """Train ``model`` at every point of ``grid`` (``{"beta": [1, 2, 4]}``) and seed, one run
    folder per point under ``out`` (``out/beta=1_seed=0``, ...), as :func:`train_run` trains
    one; returns their :class:`RunResult`.

    With ``vectorise`` (the default) the unfinished runs that can share one stacked model
    (:func:`.vectorised.stack_key`: the section 7 family, Gaussian MLP encoder, Bernoulli MLP
    decoder, N(0, I), terms among log p(x|z), KL(q(z|x) || p(z)), -ELBO, MMD; the same
    optimiser, batch size and steps) train together as one
    :class:`~.vectorised.VectorisedTrainer` (checkpointed in ``out/.stacks/``: an interrupted
    sweep resumes each stack exactly); every other run trains alone with the
    :class:`~.train.Trainer`, as ``vectorise=False`` trains them all. Each run draws its own
    batches and noise, so its result does not depend on the runs it is stacked with; the two
    paths draw different noise (the Trainer from torch's global generator, a stack from one
    generator per run), so they agree in distribution, not bit for bit. Every point is checked
    before anything is written; finished runs are skipped.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    from lagrangian_family.files import atomic_write, check_output_folder

    from . import recipes
    from .vectorised import VectorisedTrainer, stack_key

    root = check_output_folder(out, "--out")
    points = sweep_points(dict(grid or {}), [int(s) for s in seeds])
    data_dir = _check_data(data, data_dir)
    opts = dict(options or {})
    if steps is not None:
        opts["steps"] = int(steps)
    common = dict(data=data, budget=budget, data_dir=data_dir, progress=progress, wait=wait, n_eval=n_eval,
                  options=opts, arch=arch, log=log)
    plans = []
    for params, seed in points:  # everything is checked before anything is written
        _check_seed(seed)
        classification = _computable(model, params)
        recipe = recipes.recipe(model, data=data, arch=arch, params=dict(params), budget=budget, seed=seed, **opts)
        identity = run_identity(model, data=data, budget=budget, params=params, seed=seed, arch=arch,
                                recipe=recipe.to_dict())
        folder = root / _point_name(params, seed)
        _check_folder(folder, identity)
        plans.append({"params": params, "seed": seed, "recipe": recipe, "identity": identity, "out": folder,
                      "classification": classification})
    results: dict[Path, RunResult] = {}
    todo = []
    for p in plans:
        finished, _ = read_finished(p["out"], p["identity"])
        if finished is not None:
            results[p["out"]] = RunResult(p["out"], "skipped", finished)
        elif vectorise and not (p["out"] / CHECKPOINT_FILE).exists():
            todo.append(p)
    groups: dict[tuple, list] = {}
    if todo:
        train = todo[0]["recipe"].load_data("train", data_dir)
        for p in todo:
            p["loss_fn"] = p["recipe"].build(example_x=train[:8])
            try:
                p["shadow"] = _shadow(p["loss_fn"], p["recipe"])
                key = stack_key(p["shadow"])
            except ObjectiveError as e:
                log(f"{p['out'].name}: trained alone (it cannot be stacked: {str(e).splitlines()[0]})")
                continue
            t = p["recipe"].training
            key = (key, json.dumps(t["model_optimizer"], sort_keys=True), t["batch_size"], t["steps"],
                   t.get("max_grad_norm"))
            groups.setdefault(key, []).append(p)
    root.mkdir(parents=True, exist_ok=True)
    for group in groups.values():
        if len(group) < 2:
            continue
        locks = []
        try:
            for p in group:
                p["out"].mkdir(exist_ok=True)
                locks.append(_lock(p["out"], wait, log))
                atomic_write(p["out"] / RUN_FILE, json.dumps(p["identity"], indent=1, sort_keys=True))
            t = group[0]["recipe"].training
            total, spec = int(t["steps"]), t["model_optimizer"]
            name = _stack_name([p["out"].name for p in group])
            (root / STACKS_DIR).mkdir(exist_ok=True)
            ckpt = root / STACKS_DIR / f"{name}.pt"

            def adam(params, spec=spec):
                return torch.optim.Adam(params, lr=float(spec["lr"]), betas=tuple(spec["betas"]), fused=True)

            vt = VectorisedTrainer([p["shadow"] for p in group], [train] * len(group), batch_size=int(t["batch_size"]),
                                   seeds=[p["seed"] for p in group], model_optimizer=adam,
                                   max_grad_norm=t.get("max_grad_norm"), log_csv=[p["out"] / LOG_FILE for p in group],
                                   progress=progress, checkpoint=ckpt, checkpoint_every=max(100, total // 20))
            status = "trained"
            if ckpt.exists():
                vt.load(ckpt)
                status = "resumed"
                log(f"{root}: resuming a stack of {len(group)} runs at step {vt.step_count} of {total}")
            log(f"{root}: training {len(group)} runs as one vectorised stack: "
                + ", ".join(p["out"].name for p in group))
            t0 = time.perf_counter()
            if total - vt.step_count > 0:
                vt.train(total - vt.step_count)
            vt.unstack()
            seconds = (time.perf_counter() - t0) / len(group)
            for m, p in enumerate(group):
                if m in vt.failures:
                    log(f"{p['out'].name}: failed: {str(vt.failures[m]).splitlines()[0]}")
                    results[p["out"]] = RunResult(p["out"], "failed")
                    continue
                metrics = _finish(p["out"], p["loss_fn"], p["recipe"], p["identity"], p["classification"], None,
                                  None, data_dir, n_eval or N_EVAL[data], vt.step_count, status, seconds,
                                  command or _default_command(model, data, budget, p["params"], p["seed"], p["out"]),
                                  trainer_kind=f"VectorisedTrainer (a stack of {len(group)})")
                results[p["out"]] = RunResult(p["out"], status, metrics)
            if ckpt.exists():
                ckpt.unlink()  # every run of the stack is finished
        finally:
            for lock in locks:
                lock.release()
    for p in plans:
        if p["out"] not in results:
            results[p["out"]] = train_run(model, out=p["out"], params=p["params"], seed=p["seed"],
                                          command=command or _default_command(model, data, budget, p["params"],
                                                                              p["seed"], p["out"]), **common)
    return [results[p["out"]] for p in plans]


def _stack_name(names: list[str]) -> str:
    """A short stable name for a stack of runs (its checkpoint's file name).

    >>> _stack_name(["beta=1_seed=0", "beta=4_seed=0"]) == _stack_name(["beta=1_seed=0", "beta=4_seed=0"])
    True
    """
    import hashlib

    return "stack-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
