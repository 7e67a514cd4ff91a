"""Section 7.2, verification of Pareto improvements (the paper's figure 2).

LagVAE over a range of ε1 (the paper: 83, 84, ..., 95 nats of -ELBO with ε2 = 0.0005 MMD; a
smaller network reaches other values, so the smaller budgets set ε1 = ε̂1 + offsets from the
section 6 reference run and ε2 = ε̂2 + 0.5 ε̂2), both signs of α1; InfoVAE over the paper's grid
α in {1, -1}, λ1 in {1, 2, 5, 10}, λ2 in {1000, 2000, 5000, 10000} (32 runs), i.e. the same
Lagrangian with the multipliers fixed. InfoVAE's α maximises I_q when positive (α1 = -α).

A point is (-ELBO, MI) on train or test. For maximisation (LagVAE α1 < 0 against InfoVAE
α = 1) an InfoVAE point dominates a LagVAE point if it has both a lower -ELBO and a higher MI;
for minimisation (LagVAE α1 > 0 against InfoVAE α = -1), a lower -ELBO and a lower MI.

>>> lag = [dict(method="lagvae", alpha1=-1.0, name="L", train_neg_elbo=100.0, train_mi=30.0)]
>>> info = [dict(method="infovae", alpha1=-1.0, name="I", train_neg_elbo=99.0, train_mi=31.0)]
>>> [(d["infovae"], d["lagvae"]) for d in dominations(lag + info, "train", "max")]
[('I', 'L')]
"""

from __future__ import annotations

from .budgets import Budget
from .common import Context, epsilon_hat, init_from, reference_specs
from .runs import RunSpec

__all__ = ["infovae_specs", "lagvae_specs", "dominations", "findings", "run_experiment", "NAME"]

NAME = "pareto"
DIRECTIONS = {"max": "maximise I_q (LagVAE α1 < 0, InfoVAE α = 1)",
              "min": "minimise I_q (LagVAE α1 > 0, InfoVAE α = -1)"}


def infovae_specs(budget: Budget, seed: int = 0) -> list[RunSpec]:
    """InfoVAE over the grid: α (α1 = -α), λ1 on -ELBO, λ2 on the raw MMD, all fixed."""
    specs = []
    for a in budget.infovae_alphas:
        for l1 in budget.infovae_lambda1:
            for l2 in budget.infovae_lambda2:
                specs.append(RunSpec(f"infovae_alpha{a:+g}_l1-{l1:g}_l2-{l2:g}", "infovae", -float(a),
                                     multipliers=(float(l1), float(l2)), seed=seed, init_from=init_from(budget),
                                     tags={"infovae_alpha": float(a), "lambda1_fixed": float(l1),
                                           "lambda2_fixed": float(l2)}))
    return specs


def zoo_form(alpha1: float, lambda1: float, lambda2: float) -> tuple[float, float, float]:
    """(s, α', λ') such that the fixed-multiplier objective α1·bound + λ1·(-ELBO) + λ2·MMD equals
    s times the zoo's InfoVAE objective NLL + (1 - α')·KLenc + (α' + λ' - 1)·MMD (up to constants):
    s = λ1 + max(-α1, 0), α' = -α1 / s, λ' = λ2 / s - α' + 1.

    >>> zoo_form(-1.0, 2.0, 1000.0)   # InfoVAE α = 1 (maximise I_q), λ1 = 2, λ2 = 1000
    (3.0, 0.3333333333333333, 334.0)
    """
    s = lambda1 + max(-alpha1, 0.0)
    a = -alpha1 / s
    return s, a, lambda2 / s - a + 1.0


def check_zoo_forms(specs: list[RunSpec]) -> list[dict]:
    """For every InfoVAE run, whether its objective (the LagVAE Lagrangian with λ fixed, as the torch
    backend states it) is equivalent to s times the zoo's ``infovae`` (:func:`zoo_form`), decided by
    :func:`lagrangian_family.equivalent`."""
    import sympy

    import lagrangian_family as lf
    from lagrangian_family.backends.torch import Lagrangian
    from lagrangian_family.symbolic.objective import as_coefficient

    out = []
    for spec in specs:
        l1, l2 = spec.multipliers
        obj = Lagrangian.lagvae(spec.alpha1, (None, None), mmd_weight=1.0, init=(l1, l2)).fixed()
        s, a, lam = zoo_form(spec.alpha1, l1, l2)
        # the same map in exact rationals: floats like 1667.3333333333335 must not decide equivalence
        r = [as_coefficient(v, context="a run's multiplier") for v in (spec.alpha1, l1, l2)]
        s_q = r[1] + sympy.Max(-r[0], 0)
        a_q = -r[0] / s_q
        zoo = s_q * lf.zoo.get("infovae", alpha=a_q, lam=r[2] / s_q - a_q + 1)
        out.append({"name": spec.name, "scale": s, "zoo_alpha": a, "zoo_lambda": lam,
                    "equivalent": bool(lf.equivalent(obj, zoo))})
    return out


def lagvae_epsilons(budget: Budget, eps_hat: tuple[float, float]) -> tuple[list[float], float, str]:
    """(ε1 values, ε2, how they were chosen)."""
    e1, e2 = eps_hat
    if budget.pareto_eps1 is not None:
        eps1 = [float(e) for e in budget.pareto_eps1]
        how1 = "ε1 in {" + ", ".join(f"{e:g}" for e in eps1) + "} nats (the paper's values)"
    else:
        eps1 = [e1 + float(o) for o in budget.pareto_offsets]
        how1 = ("ε1 = ε̂1 + {" + ", ".join(f"{o:g}" for o in budget.pareto_offsets) + "} nats relative to the "
                f"reference run's ε̂1 = {e1:.2f} (instead of the paper's absolute 83..95)")
    if budget.pareto_eps2 is not None:
        eps2 = float(budget.pareto_eps2)
        how2 = f"ε2 = {eps2:g} (the paper's value)"
    else:
        eps2 = e2 * (1.0 + budget.gamma2_rel)
        how2 = f"ε2 = ε̂2 + {budget.gamma2_rel:g} ε̂2 = {eps2:.3g} (section 6)"
    return eps1, eps2, f"{how1}; {how2}"


def lagvae_specs(budget: Budget, eps_hat: tuple[float, float], seed: int = 0) -> list[RunSpec]:
    eps1, eps2, _ = lagvae_epsilons(budget, eps_hat)
    specs = []
    for a in budget.pareto_alphas:
        for i, e in enumerate(eps1):
            tag = {"eps1_target": e}
            if budget.pareto_eps1 is None:
                tag["eps1_offset"] = float(budget.pareto_offsets[i])
            specs.append(RunSpec(f"lagvae_alpha{a:+g}_eps1-{e:.2f}", "lagvae", float(a), epsilon=(e, eps2),
                                 seed=seed, init_from=init_from(budget), tags=tag))
    return specs


def _direction(r: dict) -> str | None:
    """"max" or "min" for a LagVAE or InfoVAE row (by the sign of its α1)."""
    a = float(r["alpha1"])
    return "max" if a < 0 else "min" if a > 0 else None


def dominations(rows: list[dict], split: str, direction: str, margin: float = 0.0) -> list[dict]:
    """The (InfoVAE, LagVAE) pairs of one direction where InfoVAE is better on both axes (by more
    than ``margin`` nats on each)."""
    lag = [r for r in rows if r.get("method") == "lagvae" and _direction(r) == direction]
    info = [r for r in rows if r.get("method") == "infovae" and _direction(r) == direction]
    e, m = f"{split}_neg_elbo", f"{split}_mi"
    out = []
    for li in lag:
        for ii in info:
            better_elbo = ii[e] < li[e] - margin
            better_mi = ii[m] > li[m] + margin if direction == "max" else ii[m] < li[m] - margin
            if better_elbo and better_mi:
                out.append({"infovae": ii["name"], "lagvae": li["name"], "infovae_neg_elbo": ii[e],
                            "lagvae_neg_elbo": li[e], "infovae_mi": ii[m], "lagvae_mi": li[m]})
    return out


def findings(rows: list[dict], margin: float = 0.5) -> dict:
    """For train and test and each direction: the dominating pairs (strict, and by more than
    ``margin`` nats on both axes), how many LagVAE points are dominated, and whether none is."""
    out: dict = {"margin": margin}
    for split in ("train", "test"):
        for d in DIRECTIONS:
            lag = [r for r in rows if r.get("method") == "lagvae" and _direction(r) == d]
            info = [r for r in rows if r.get("method") == "infovae" and _direction(r) == d]
            strict = dominations(rows, split, d)
            loose = dominations(rows, split, d, margin)
            out[f"{split}_{d}"] = {
                "n_lagvae": len(lag), "n_infovae": len(info),
                "pairs": strict, "n_pairs": len(strict),
                "dominated_lagvae": sorted({p["lagvae"] for p in strict}),
                "pairs_beyond_margin": loose, "n_pairs_beyond_margin": len(loose),
                "none_dominates": not strict,
            }
    out["none_dominates"] = all(out[f"{s}_{d}"]["none_dominates"] for s in ("train", "test") for d in DIRECTIONS)
    return out


def run_experiment(ctx: Context) -> dict:
    """Run (or resume) the experiment into ``ctx.out``: the reference run(s) and the InfoVAE grid
    first (they do not need ε; with ``warm_start`` they wait for the reference model), then the
    LagVAE runs; writes the CSV, plot and report."""
    from . import report

    b = ctx.budget
    n_info = len(b.infovae_alphas) * len(b.infovae_lambda1) * len(b.infovae_lambda2)
    n_lag = len(b.pareto_alphas) * len(b.pareto_eps1 if b.pareto_eps1 is not None else b.pareto_offsets)
    ctx.log(f"section 7.2 (Pareto), budget {b.name}: {b.network()}, {b.steps} steps per run, "
            f"{n_lag} LagVAE + {n_info} InfoVAE runs + {b.ref_seeds} reference run(s), {ctx.jobs} job(s)")
    with ctx.executor() as ex:
        ref_f = ex.map(reference_specs(b))
        info_f = ex.map(infovae_specs(b)) if not b.warm_start else []
        refs = ctx.results(ref_f)
        if b.warm_start:  # they start from the reference model: submitted once it exists
            info_f = ex.map(infovae_specs(b))
        eps = epsilon_hat(refs, b)
        ctx.log(f"  ε̂ = ({eps[0]:.3f} nats of -ELBO, {eps[1]:.3g} MMD) from {len(refs)} reference run(s)")
        lag_f = ex.map(lagvae_specs(b, eps))
        info = ctx.results(info_f)
        lag = ctx.results(lag_f)
    rows = refs + lag + info
    f = findings(rows)
    f["zoo_forms"] = check_zoo_forms(infovae_specs(b))
    eps1, eps2, how = lagvae_epsilons(b, eps)
    f.update({"eps_hat": {"elbo": eps[0], "mmd": eps[1]}, "eps1": eps1, "eps2": eps2, "epsilon_choice": how,
              "resumed": list(ex.resumed), "ran": list(ex.ran)})
    paths = report.write_pareto(ctx, rows, f)
    return {"rows": rows, "findings": f, "paths": paths}
