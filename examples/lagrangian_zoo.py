"""The Lagrangian version of zoo models (issue 8, item 5): the information moves in the chosen
direction while every constraint ends satisfied.

For each model (LagVAE, ALICE and InfoGAN by default) on scikit-learn's digits, with the
components, critics and optimisers that ``recipes.recipe(model, data="digits", budget=...)``
chooses for the original model (``compile_with_recipe``), and the evaluation module's split
(1,497 training images, of which the last 300 are held out for the dual updates, and 300 test
images that judge):

1. the reference run of section 6 (eq. 19): the model's dual-form constraints trained alone, with
   the original model's multipliers fixed (``lagrangian_of(...).reference()``), then measured on the
   held-out images: ε̂;
2. for the two directions of the model's information term (I_q for LagVAE and ALICE, I_p for
   InfoGAN), ``lagrangian_of(model, preference=..., reference=ε̂, slack=...)`` trained from the same
   initial weights, λ learned by RMSProp ascent (TF1 semantics, as the authors') on the
   constraints measured on held-out batches (``HeldOut``);
3. measured on the test images: every constraint's final value, its violation D − ε and the
   violation's standard error over batches; the primal's bound; and the information by estimators
   that do not know the objective: for I_q, eq. 21 (a KDE of q(z), the paper's estimate) and the
   accuracy of a linear probe predicting the digit from z; for I_p, a Barber-Agakov lower bound
   with fresh scikit-learn networks fitted to recover z from generated images (I_p >= H(z) +
   E log q̂(z|x), q̂ fitted on one half of the generated pairs and evaluated on the other; for
   InfoGAN's code the categorical code and the continuous codes, the noise left out), and for
   InfoGAN how well the categorical code picks the digit (``evaluate.code_recovery``).

Each run writes ``runs/<name>.json`` in the output folder (a finished run is skipped when the
script runs again); the README table is generated from those files.

    OMP_NUM_THREADS=1 python examples/lagrangian_zoo.py --out docs/results/lagrangian-zoo
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lagrangian_family.backends.torch import (
    HeldOut,
    RMSPropAscent,
    compile_with_recipe,
    lagrangian_of,
    measure_constraints,
)
from lagrangian_family.backends.torch.metrics import mutual_information_kde
from lagrangian_family.backends.torch.recipes import recipe
from lagrangian_family.errors import NonFiniteLossError, ObjectiveError
from lagrangian_family.files import atomic_write

#: recipe options of the models with a Bernoulli decoder: pixels binarised at 0.5, as the linear probe
#: reads the test images, and one hidden layer: with the small budget's two, the reference run of
#: LagVAE collapses its posterior (I_q 0.57 nats by eq. 21, -ELBO 24.5 on held-out images, against
#: 4.2 nats and 19.5 with one layer), which leaves the minimising direction nothing to remove
LIKELIHOOD_OPTIONS = {"binarize": "fixed", "hidden": [128]}

#: the slack of a JS constraint, in nats (JS <= log 2): a critic's estimate moves by a few hundredths
#: of a nat from step to step, so a tolerance below that could not be told from noise
JS_SLACK = 0.05

#: each demonstration: the objective given to lagrangian_of (and its keywords), the zoo model whose
#: recipe supplies components, critics and optimisers (with options), the information it moves, and
#: the slack per constraint (absolute in the constraint's units, or relative to ε̂)
MODELS = {
    "lagvae": {"objective": "lagvae", "recipe": "lagvae", "options": LIKELIHOOD_OPTIONS, "family": "q",
               "slack": {"KL(q(x,z) || p(x,z))": 1.0, "MMD(q(z) || p(z))": "50%"}},
    "alice": {"objective": "alice", "recipe": "alice", "options": LIKELIHOOD_OPTIONS, "family": "q",
              "slack": {"E_{q(z)}[KL(q(x|z) || p(x|z))]": 1.0, "JS(q(x,z) || p(x,z))": JS_SLACK}},
    # InfoGAN as its dual form says: recorded as refused or diverging (see the README's notes)
    "infogan": {"objective": "infogan", "recipe": "infogan", "options": {}, "family": "p",
                "slack": {"E_{p(x)}[KL(p(z|x) || q(z|x))]": 1.0, "JS(q(x) || p(x))": JS_SLACK}},
    # the same with a Gaussian q(z|x) over InfoGAN's whole latent, so that the f-GAN estimates compile
    "infogan-gaussian-q": {"objective": "infogan", "recipe": "infogan", "options": {"encoder": "gaussian"},
                           "family": "p",
                           "slack": {"E_{p(x)}[KL(p(z|x) || q(z|x))]": 1.0, "JS(q(x) || p(x))": JS_SLACK}},
    # InfoGAN with its estimable constraint only: max/min I_p subject to JS(q(x) || p(x)) <= eps
    "infogan-js": {"objective": "lambda_1 * JS(q(x) || p(x))", "recipe": "infogan", "options": {}, "family": "p",
                   "lagrangian": {"multipliers": ["lambda_1"], "params": {"lambda_1": 1.0},
                                  "require_consistency": False},
                   "slack": {"JS(q(x) || p(x))": JS_SLACK},
                   # the primal (-E_p[log q(z|x)] over 74 dimensions) is tens of nats, the JS below log 2:
                   # at lr 0.1, λ ascends too slowly to hold the constraint within the small budget; at 1.0
                   # it swings between its bounds (0.001 and 11) and the last iterate ended 0.025 nats over ε
                   "dual_lr": 0.3},
}
#: one batch size for every measurement (ε̂, the held-out dual updates, the test): the MMD's
#: V-statistic is biased by O(1/n), so values measured on batches of different sizes differ
MEASURE_BATCH = 60
HELD_OUT = 300


def _data(r):
    x = r.load_data("train")
    return x[:-HELD_OUT], x[-HELD_OUT:], r.load_data("test")


def _generate(dec, z):
    out = dec(z)
    return out.mean if hasattr(out, "mean") and not isinstance(out, torch.Tensor) else out


def _per_batch(loss_fn, x, batch: int = MEASURE_BATCH) -> np.ndarray:
    """Each constraint's value on consecutive test batches (rows), for a standard error."""
    return np.array([measure_constraints(loss_fn, x[i:i + batch], batch_size=batch).tolist()
                     for i in range(0, x.shape[0], batch)])


#: generated pairs for the Barber-Agakov bounds, and the regressors' iterations, per budget
INFO_SIZE = {"smoke": (400, 30), "small": (4000, 300)}


def _ba_gaussian(xa, xb, za, zb, entropy_per_dim, seed, max_iter: int = 300) -> float:
    """Barber-Agakov: H(z) + E log N(z; f(x), σ²) with f a fresh MLP regressor and σ² fitted on
    the first half, the expectation on the second half."""
    from sklearn.neural_network import MLPRegressor

    reg = MLPRegressor(hidden_layer_sizes=(128,), max_iter=max_iter, random_state=seed).fit(xa, za)
    var = np.maximum(((reg.predict(xa) - za) ** 2).mean(0), 1e-6)
    mse = ((reg.predict(xb) - zb) ** 2).mean(0)
    return float(np.sum(entropy_per_dim - 0.5 * np.log(2 * np.pi * var) - 0.5 * mse / var))


def _information(fn, x_train, x_test, prior_class: str, seed: int, budget: str = "small") -> dict:
    """Estimates of the model's information that do not know its objective."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from lagrangian_family.evaluate import code_recovery, probe_encoder

    enc, dec, prior = fn.encoder, fn.decoder, fn.prior
    n, iters = INFO_SIZE.get(budget, INFO_SIZE["small"])
    out = {}
    torch.manual_seed(seed)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if prior_class == "CodePrior":
            k, m = prior.n_categories, prior.n_continuous
            z = prior.sample(n)
            xg = _generate(dec, z).numpy()
            c, u = z[:, :k].argmax(1).numpy(), z[:, k:k + m].numpy()
            xa, xb, ca, cb, ua, ub = train_test_split(xg, c, u, test_size=0.5, random_state=seed)
            clf = MLPClassifier(hidden_layer_sizes=(128,), max_iter=iters, random_state=seed).fit(xa, ca)
            p = np.clip(clf.predict_proba(xb)[np.arange(len(cb)), np.searchsorted(clf.classes_, cb)], 1e-12, 1)
            i_c = float(math.log(k) + np.log(p).mean())
            i_u = _ba_gaussian(xa, xb, ua, ub, math.log(2.0), seed, iters)  # u uniform on [-1, 1]: H = log 2 per code
            out.update({"I_p_code_lower_bound": i_c + i_u, "I_p_categorical": i_c, "I_p_continuous": i_u})
            codes = torch.arange(500) % k
            imgs = _generate(dec, prior.sample_codes(500, codes)).numpy()
            out["code_recovery"] = float(code_recovery(imgs, codes.numpy(), "digits")["accuracy"])
        else:
            z = prior.sample(n)
            xg = _generate(dec, z).numpy()
            xa, xb, za, zb = train_test_split(xg, z.numpy(), test_size=0.5, random_state=seed)
            out["I_p_lower_bound"] = _ba_gaussian(xa, xb, za, zb, 0.5 * math.log(2 * math.pi * math.e), seed, iters)
            out["I_q_kde"] = float(mutual_information_kde(enc, x_train, x_test))
            out["probe_accuracy"] = float(probe_encoder(enc, "digits",
                                                        preprocess=lambda a: (a > 0.5).astype(np.float32))["accuracy"])
    return out


def _samples(fn) -> dict:
    from lagrangian_family.evaluate import score_samples

    torch.manual_seed(123)
    with torch.no_grad():
        x = _generate(fn.decoder, fn.prior.sample(500)).numpy()
    s = score_samples(x, "digits")
    return {"classes_covered": int(s["classes_covered"]), "confidence": float(s["confidence"]),
            "confidence_real": float(s["reference"]["confidence"])}


def _train(r, loss_fn, x_train, steps: int, updater) -> tuple[list[dict], float, list[list[float]]]:
    """Train with the recipe's trainer. Returns rows every ``steps // 50`` steps (λ, and the means
    over the interval of the training batches' and the held-out batches' violations), the CPU
    seconds, and the held-out violations of every step."""
    every = max(1, steps // 50)
    rows: list[dict] = []
    held: list[list[float]] = []
    names = loss_fn.lagrangian.names
    acc = {"train": [], "held": []}

    def log(trainer, out):
        if out.violations is not None:
            acc["train"].append(out.violations.tolist())
        if isinstance(updater, HeldOut) and updater.last is not None:
            acc["held"].append(updater.last.tolist())
            held.append(updater.last.tolist())
        if trainer.step_count % every == 0:
            row = {"step": trainer.step_count}
            row.update({f"lambda {n}": float(v) for n, v in zip(names, loss_fn.lagrangian.multipliers)})
            for key, label in (("train", "violation"), ("held", "held-out violation")):
                if acc[key]:
                    row.update({f"{label} {n}": float(v) for n, v in zip(names, np.mean(acc[key], 0))})
                acc[key] = []
            rows.append(row)

    t = time.process_time()
    trainer = r.trainer(loss_fn, x_train, updater=updater, progress=False, callback=log)
    trainer.train(steps)
    return rows, time.process_time() - t, held


def _write(path: Path, record: dict) -> None:
    atomic_write(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _done(path: Path, recipe_dict: dict | None = None) -> dict | None:
    """A finished run's record, or None: missing, unreadable, unfinished, or (given
    ``recipe_dict``) made with another recipe than the current one, so that it is redone."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not rec.get("finished"):
        return None
    if recipe_dict is not None and rec.get("recipe") != recipe_dict:
        print(f"{path.name}: made with another recipe, redone", flush=True)
        return None
    return rec


def _lagrangian(spec: dict, preference: str, **kw):
    return lagrangian_of(spec["objective"], preference=preference, **spec.get("lagrangian", {}), **kw)


def run_model(name: str, budget: str, out: Path, dual_lr: float, dual_every: int = 1) -> None:
    spec = MODELS[name]
    family, slack = spec["family"], spec["slack"]
    dual_lr = spec.get("dual_lr", dual_lr)
    r = recipe(spec["recipe"], data="digits", budget=budget, **spec["options"])
    steps, seed = r.training["steps"], r.training["seed"]
    prior_class = r.components["prior"]["class"]
    x_train, x_val, x_test = _data(r)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    ref_path = runs / f"{name}-reference.json"
    ref = _done(ref_path, r.to_dict())
    base = _lagrangian(spec, f"maximise-I{family}")
    head = {"model": name, "objective": spec["objective"], "names": list(base.names), "steps": steps,
            "recipe": r.to_dict()}
    if ref is None:
        try:
            ref_fn = compile_with_recipe(base.reference(), r)
        except ObjectiveError as e:
            ref = {**head, "preference": "reference (eq. 19)", "refused": str(e), "finished": True}
            _write(ref_path, ref)
            print(f"{name}: refused: {str(e).splitlines()[0]}", flush=True)
            return
        try:
            _, cpu, _ = _train(r, ref_fn, x_train, steps, None)
        except NonFiniteLossError as e:
            ref = {**head, "preference": "reference (eq. 19)", "refused": "diverged: " + str(e), "finished": True}
            _write(ref_path, ref)
            print(f"{name}: reference diverged: {str(e).splitlines()[0]}", flush=True)
            return
        eps_hat = measure_constraints(ref_fn, x_val, batch_size=MEASURE_BATCH)
        per = _per_batch(ref_fn, x_test)
        ref = {**head, "preference": "reference (eq. 19)", "reference_multipliers": list(base.reference_multipliers),
               "epsilon_hat": eps_hat.tolist(), "constraints": per.mean(0).tolist(), "cpu_seconds": cpu,
               "information": _information(ref_fn, x_train, x_test, prior_class, seed, budget),
               "samples": _samples(ref_fn), "finished": True}
        _write(ref_path, ref)
        print(f"{name} reference: {dict(zip(ref['names'], np.round(ref['epsilon_hat'], 4)))} {ref['information']}",
              flush=True)
    if "refused" in ref:
        return
    for direction in ("maximise", "minimise"):
        pref = f"{direction}-I{family}"
        path = runs / f"{name}-{pref}.json"
        if _done(path, r.to_dict()) is not None:
            continue
        lag = _lagrangian(spec, pref, reference=ref["epsilon_hat"], slack=slack, init="original")
        try:
            loss_fn = compile_with_recipe(lag, r)
        except ObjectiveError as e:
            _write(path, {**head, "preference": pref, "refused": str(e), "finished": True})
            print(f"{name} {pref}: refused: {str(e).splitlines()[0]}", flush=True)
            continue
        dual = RMSPropAscent(lag, lr=dual_lr, lower=0.001, upper=1000.0, every=dual_every)
        updater = HeldOut(dual, loss_fn, x_val, batch_size=MEASURE_BATCH)
        try:
            rows, cpu, held = _train(r, loss_fn, x_train, steps, updater)
        except NonFiniteLossError as e:  # an estimate that is not bounded below: recorded, not hidden
            _write(path, {**head, "preference": pref, "refused": "diverged: " + str(e), "finished": True})
            print(f"{name} {pref}: diverged: {str(e).splitlines()[0]}", flush=True)
            continue
        per = _per_batch(loss_fn, x_test)
        values = per.mean(0)
        se = per.std(0, ddof=1) / math.sqrt(per.shape[0])
        eps = lag.epsilon.numpy()
        with torch.no_grad():
            torch.manual_seed(seed)
            primal = float(loss_fn(x_test).primal)
        rec = {**head, "preference": pref, "epsilon": eps.tolist(),
               "slack": [slack[n] for n in lag.names], "cpu_seconds": cpu,
               "constraints": values.tolist(), "violations": (values - eps).tolist(),
               "violation_se": se.tolist(), "multipliers": lag.multipliers.tolist(), "primal_bound": primal,
               # the held-out violations of the last 10% of the steps: a primal-dual method holds the
               # constraints on average over its iterates, and a critic's estimate moves from step to step
               "held_out_tail_mean": np.mean(held[-max(1, steps // 10):], 0).tolist(),
               "held_out_tail_sd": np.std(held[-max(1, steps // 10):], 0).tolist(),
               "bound": lag.form.bound,
               "information": _information(loss_fn, x_train, x_test, prior_class, seed, budget),
               "samples": _samples(loss_fn), "dual_lr": dual_lr, "dual_every": dual_every,
               "curve": rows,
               "finished": True}
        _write(path, rec)
        print(f"{name} {pref}: violations {np.round(rec['violations'], 4)} ± {np.round(se, 4)}, "
              f"information {rec['information']}", flush=True)


def _fmt(v, digits=3) -> str:
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


NOTES = """Notes. `infogan` is InfoGAN's Lagrangian as its dual form says: constraints
E_p(x)[KL(p(z|x) || q(z|x))] and JS(q(x) || p(x)). The first is infinite for a deterministic
generator (p(z|x) has no density), and its computable form KL(p(x,z) || q(x,z)) - KL(p(x) || q(x))
is a difference of two divergences from the data distribution, which has no density either: with the
recipe's categorical code it does not compile (the f-GAN critic of the joint KL needs reparameterised
samples of q(z|x)), and with a Gaussian q(z|x) over the whole latent (`infogan-gaussian-q`) it
compiles, but its adversarial estimates are not bounded below, which the reference run, minimising
them, finds (what it gave is below). `infogan-js` keeps the estimable constraint alone,
JS(q(x) || p(x)) <= eps (`require_consistency=False`: it does not tie q(z|x) to the generator);
its minimising direction needs the upper bound of I_p, E_p(z)[KL(p(x|z) || q(x))], whose computable
form has the same joint KL, so it is refused with the recipe's code encoder for the same reason."""


def _key(rec) -> str:
    info = rec["information"]
    return next(k for k in ("I_q_kde", "I_p_code_lower_bound") if k in info)


def readme(out: Path, command: str) -> str:
    """The README of the results, generated from the runs' JSON files."""
    recs = {}
    for p in sorted((out / "runs").glob("*.json")):
        r = _done(p)
        if r is not None:
            recs[(r["model"], r["preference"])] = r
    lines = ["# The Lagrangian version of zoo models (issue 8, item 5)", "",
             "Generated by `examples/lagrangian_zoo.py` from `runs/*.json` (do not edit by hand).", "",
             f"Command: `{command}`", "",
             "Data: scikit-learn's digits (the evaluation module's split: the last 300 of the 1,497 training images "
             "are held out for ε̂ and the dual updates, the other 1,197 train the model, and every number below is "
             "measured on the 300 test images). Components, critics and optimisers: the recipe of the original model "
             "(`recipes.recipe(model, data='digits', budget=...)`, in each run's JSON), with a critic of the recipe's "
             "kind for every term of the Lagrangian that needs one (`compile_with_recipe`). ε = ε̂ + slack, ε̂ from "
             "the reference run (section 6, eq. 19: the constraints alone with the original model's multipliers, "
             "measured on the held-out images). λ starts at the original model's multipliers (`init='original'`) and "
             "ascends by RMSProp (TF1 semantics) on the constraints measured on held-out batches (`HeldOut`; the "
             "mean of `dual_every` batches per update, in each run's JSON with `dual_lr`), clipped to [0.001, 1000]. "
             f"Every constraint is measured on batches of {MEASURE_BATCH} (the MMD's "
             "V-statistic is biased by O(1/n)).", "",
             "Information, estimated without the objective: I_q by eq. 21 (KDE of q(z), nats) and the test accuracy "
             "of a linear probe of the digit from z; I_p by a Barber-Agakov lower bound with fresh scikit-learn "
             "networks recovering z from generated images (nats; for InfoGAN the categorical and continuous codes, "
             "and the share of generated digits the categorical code picks, Hungarian-matched). A constraint counts "
             "as satisfied when its test violation D − ε at the final iterate is at most twice its standard error over "
             "the test batches; next to it, the mean and standard deviation of the held-out violations over the last "
             "10% of the steps (a primal-dual method holds constraints on average over its iterates, and a critic's "
             "estimate moves from step to step) "
             f"(batches of {MEASURE_BATCH} images).", ""]
    models = [m for m in MODELS if any(k[0] == m for k in recs)]
    models += [m for m, _ in recs if m not in models]
    lines += ["## Summary", "",
              "| model | constraints | information (estimate) | reference | maximise | minimise | moved both ways "
              "| constraints satisfied (test) |", "|---|---|---|---|---|---|---|---|"]
    for m in models:
        fam = MODELS.get(m, {}).get("family", "q")
        rf, mx, mn = (recs.get((m, p)) for p in ("reference (eq. 19)", f"maximise-I{fam}", f"minimise-I{fam}"))
        names = ", ".join(f"`{n}`" for n in (rf or {}).get("names", []))

        def cell(r, key):
            if r is None:
                return "not run"
            if "refused" in r:
                return "diverged" if r["refused"].startswith("diverged: ") else "refused"
            return f"{r['information'][key]:.3g}"

        def sat(r):
            if r is None or "refused" in r or "violations" not in r:
                return "–"
            return "yes" if all(d <= 2 * e for d, e in zip(r["violations"], r["violation_se"])) else "**no**"

        key = _key(rf) if rf is not None and "refused" not in rf else "–"
        if key == "–":
            lines.append(f"| {m} | {names} | – | {cell(rf, key)} | – | – | – | – |")
            continue
        moved = "–"
        if all(r is not None and "refused" not in r for r in (mx, mn)):
            a, b, c = mx["information"][key], mn["information"][key], rf["information"][key]
            moved = "yes" if a > c > b else "**no**"
        lines.append(f"| {m} | {names} | {key} | {cell(rf, key)} | {cell(mx, key)} | {cell(mn, key)} | {moved} | "
                     f"max {sat(mx)}, min {sat(mn)} |")
    lines += ["", NOTES, ""]
    for m in models:
        fam = MODELS.get(m, {}).get("family", "q")
        ref = recs.get((m, "reference (eq. 19)"))
        lines += [f"## {m}", "", f"Moves I_{fam}. Constraints: " + ", ".join(f"`{n}`" for n in
                                                                            (ref or {}).get("names", [])), ""]
        keys = None
        rows, refused = [], []
        for pref in ("reference (eq. 19)", f"maximise-I{fam}", f"minimise-I{fam}"):
            r = recs.get((m, pref))
            if r is None:
                continue
            if "refused" in r:
                why = r["refused"]
                label = "diverged" if why.startswith("diverged: ") else "refused"
                refused.append(f"- {pref}: {label}: " + " / ".join(why.removeprefix("diverged: ").splitlines()))
                continue
            info = r["information"]
            keys = keys or [k for k in ("I_q_kde", "probe_accuracy", "I_p_lower_bound", "I_p_code_lower_bound",
                                        "I_p_categorical", "I_p_continuous", "code_recovery") if k in info]
            if "violations" in r:
                cons = "<br>".join(f"{n}: {_fmt(v)}, ε {_fmt(e)}, {_fmt(d)} ± {_fmt(s, 2)} (held out, last 10%: "
                                   f"{_fmt(tm, 2)}, sd {_fmt(ts, 2)})" for n, v, e, d, s, tm, ts in
                                   zip(r["names"], r["constraints"], r["epsilon"], r["violations"],
                                       r["violation_se"], r["held_out_tail_mean"], r["held_out_tail_sd"]))
                ok = all(d <= 2 * s for d, s in zip(r["violations"], r["violation_se"]))
                sat = "yes" if ok else "**no**"
                lam = ", ".join(_fmt(v) for v in r["multipliers"])
                bound = f"{r['primal_bound']:.4g} ({r['bound']})"
            else:
                cons = "<br>".join(f"{n}: {_fmt(v)} (ε̂ {_fmt(e)})" for n, v, e in
                                   zip(r["names"], r["constraints"], r["epsilon_hat"]))
                sat, lam, bound = "", "fixed " + ", ".join(_fmt(v) for v in r["reference_multipliers"]), ""
            s = r["samples"]
            cells = " | ".join(f"{info[k]:.3g}" for k in keys)
            rows.append(f"| {pref} | {cells} | {bound} | {cons} | {sat} | {lam} | "
                        f"{s['classes_covered']}, {s['confidence']:.2f} (real {s['confidence_real']:.2f}) | "
                        f"{r['cpu_seconds']:.0f} |")
        lines += refused + ([""] if refused else [])
        if keys is None:
            continue
        lines.append("| run | " + " | ".join(keys) + " | primal bound | constraint: value, ε, violation ± se | "
                     "satisfied | λ | classes covered, confidence | CPU s |")
        lines.append("|---" * (len(keys) + 7) + "|")
        lines += rows
        mx, mn, rf = recs.get((m, f"maximise-I{fam}")), recs.get((m, f"minimise-I{fam}")), ref
        if mx and mn and rf and not any("refused" in r for r in (mx, mn, rf)):
            key = _key(rf)
            a, b, c = mx["information"][key], mn["information"][key], rf["information"][key]
            moved = a > c > b
            lines += ["", f"Information ({key}): maximise {a:.3g}, reference {c:.3g}, minimise {b:.3g}: "
                      + ("moves in the chosen direction both ways." if moved else
                         "**does not move in the chosen direction both ways**.")]
            sat = [all(d <= 2 * s for d, s in zip(r["violations"], r["violation_se"])) for r in (mx, mn)]
            lines.append("Constraints on the test images: " + ("all satisfied in both runs." if all(sat) else
                                                               "**not all satisfied** (see the table)."))
        lines.append("")
    lines += [f"Machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the demonstration and write the README."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/results/lagrangian-zoo")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--budget", choices=("smoke", "small"), default="small")
    ap.add_argument("--dual-lr", type=float, default=0.1)
    ap.add_argument("--dual-every", type=int, default=5, help="held-out batches averaged per dual update")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for m in args.models.split(","):
        if m not in MODELS:
            print(f"error: unknown model {m!r}; expected one of {', '.join(MODELS)}", file=sys.stderr)
            return 2
        run_model(m, args.budget, out, args.dual_lr, args.dual_every)
    command = "OMP_NUM_THREADS=1 python examples/lagrangian_zoo.py " + " ".join(sys.argv[1:] if argv is None else argv)
    atomic_write(out / "README.md", readme(out, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
