"""Results of the experiments: the CSV of every run's final metrics, the plots (matplotlib, Agg
backend, PNG) and ``report.md`` (command, budget, machine, wall time per run, the findings
computed from the data)."""

from __future__ import annotations

import csv
import io
import statistics
import time
from pathlib import Path

from lagrangian_family.files import atomic_write

from .common import Context, fmt
from .runs import machine, write_json_atomic

__all__ = ["write_csv", "markdown_table", "write_dual_verification", "write_pareto", "plot_training"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_csv(rows: list[dict], path: Path) -> Path:
    """Every row, columns in order of first appearance (atomically: temporary file, rename).

    >>> import tempfile, pathlib
    >>> p = write_csv([{"a": 1}, {"a": 2, "b": 3}], pathlib.Path(tempfile.mkdtemp()) / "r.csv")
    >>> p.read_text().splitlines()
    ['a,b', '1,', '2,3']
    """
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols and k != "history":
                cols.append(k)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in cols})
    atomic_write(path, buf.getvalue())
    return path


def _savefig(fig, path: Path) -> None:
    """A figure as PNG, atomically (a plot cut short by a kill never replaces a whole one)."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A Markdown table of ``rows`` with ``columns`` as (header, key) pairs.

    >>> print(markdown_table([{"x": 1.5}], [("x value", "x")]))
    | x value |
    |---|
    | 1.500 |
    """
    head = "| " + " | ".join(h for h, _ in columns) + " |"
    sep = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(fmt(r.get(k)) if not isinstance(r.get(k), str) else r.get(k) for _, k in columns)
            + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _times(rows: list[dict], resumed: list[str]) -> str:
    t = [r["time_total_s"] for r in rows if "time_total_s" in r]
    if not t:
        return "no runs"
    alone = [r for r in rows if "time_total_s" in r and not r.get("stack_size")]
    stacked = [r for r in rows if "time_total_s" in r and r.get("stack_size")]
    lines = []
    if alone:
        ta = [r["time_total_s"] for r in alone]
        lines += [f"- {len(ta)} run(s) trained alone; wall time per run (training + evaluation, one process each): "
                  f"mean {statistics.mean(ta):.1f} s, min {min(ta):.1f} s, max {max(ta):.1f} s, sum "
                  f"{sum(ta) / 60:.1f} min; training throughput: mean "
                  f"{statistics.mean(r['steps_per_s'] for r in alone):.1f} steps/s per run."]
    if stacked:
        stacks: dict = {}
        for r in stacked:  # one stack: the runs that share its training wall time and size
            stacks.setdefault((r["stack_time_train_s"], r["stack_size"]), []).append(r)
        agg = sum(r["steps"] * r["stack_size"] / r["stack_time_train_s"] for r in stacked) / len(stacked)
        ts = [r["time_total_s"] for r in stacked]
        lines += [f"- {len(stacked)} run(s) trained as {len(stacks)} vectorised stack(s) of "
                  + ", ".join(str(int(k[1])) for k in stacks) + " run(s), one process per stack; training wall "
                  "time per stack: " + ", ".join(f"{k[0]:.0f} s" for k in stacks)
                  + f"; aggregate throughput: mean {agg:.1f} run-steps/s per stack (each run advanced at "
                  f"{statistics.mean(r['steps_per_s'] for r in stacked):.1f} steps/s); wall time per run (its share "
                  f"of its stack's training time plus its own evaluation, the `wall s` column): mean "
                  f"{statistics.mean(ts):.1f} s, min {min(ts):.1f} s, max {max(ts):.1f} s, sum {sum(ts) / 60:.1f} min."]
    lines.append(f"- evaluation: mean {statistics.mean(r['time_eval_s'] for r in rows):.1f} s per run.")
    if resumed:
        lines.append(f"- {len(resumed)} run(s) were finished by an earlier invocation and skipped: their times "
                     "are those of the invocation that ran them.")
    return "\n".join(lines)


def _header(ctx: Context, title: str, f: dict) -> list[str]:
    b = ctx.budget
    m = machine()
    wall = time.time() - ctx.started
    lines = [f"# {title}", "",
             f"- command: `{ctx.command}`",
             f"- budget: `{b.name}` ({b.description}): {b.network()}, Gaussian encoder, Bernoulli decoder, "
             f"N(0, I) prior; {b.dataset} stochastically binarised, batch {b.batch_size}, {b.steps} steps per run "
             f"({b.ref_steps} for the reference), Adam lr {b.lr:g} betas {tuple(b.betas)}; LagVAE's λ start at 1, "
             f"RMSProp lr {b.dual_lr:g} on λ, clipped to [{b.dual_lower:g}, {b.dual_upper:g}]; MMD kernel "
             f"exp(-|a-b|^2/d^2), biased, weighted {b.mmd_weight:g} in LagVAE's loss; MI by eq. 21 with a "
             f"Gaussian KDE (Scott) of q(z) fitted on {b.kde_fit_n} training images, averaged over {b.eval_n} "
             "train (disjoint from the fit) or test images.",
             f"- machine: {m['platform']}, {m['cpu_count']} CPU(s), Python {m['python']}, torch {m['torch']}"
             + (f", GPU {m['cuda']}" if m["cuda"] else ", no GPU") + f"; {ctx.jobs} parallel job(s), "
             + ("runs vectorised (stacks of runs with the same number of steps)." if getattr(ctx, "vectorise", False)
                else "one process per run (--no-vectorise)."),
             f"- wall time of this invocation: {wall / 60:.1f} min; ran {len(f.get('ran', []))} run(s), "
             f"skipped {len(f.get('resumed', []))} finished earlier.",
             f"- ε̂ from {b.ref_seeds} reference run(s) (α1 = 0, λ fixed at {tuple(b.ref_multipliers)} on "
             f"(-ELBO, {b.mmd_weight:g}·MMD)): ε̂1 = {f['eps_hat']['elbo']:.3f} nats of -ELBO, "
             f"ε̂2 = {f['eps_hat']['mmd']:.4g} (raw MMD).",
             "- units: KL(q(x,z) || p(x,z)) is measured as -ELBO, which is the KL plus the constant H_q(x) "
             "(paper, section 6), so ε1 is in -ELBO nats; MMD values and ε2 are the raw squared MMD.",
             ]
    for n in b.notes:
        lines.append(f"- note: {n}")
    return lines + [""]


# -- 7.1 ------------------------------------------------------------------------------------------

def plot_dual_verification(rows: list[dict], path: Path) -> Path:
    plt = _plt()
    lag = [r for r in rows if r.get("method") == "lagvae"]
    alphas = sorted({float(r["alpha1"]) for r in lag})
    cmap = {a: ("tab:blue" if a < 0 else "tab:red" if a > 0 else "black") for a in alphas}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, split in zip(axes[0], ("train", "test")):
        for a in alphas:
            rs = sorted((r for r in lag if float(r["alpha1"]) == a), key=lambda r: r["gamma1"])
            ls = "-" if abs(a) <= 1 else "--"
            ax.plot([r["gamma1"] for r in rs], [r[f"{split}_mi"] for r in rs], ls, marker="o", color=cmap[a],
                    alpha=0.5 if abs(a) > 1 else 1.0, label=f"α1 = {a:+g}")
        for r in rows:
            if r.get("method") == "reference":
                ax.axhline(r[f"{split}_mi"], color="tab:gray", ls=":", lw=1, label="reference θ* (ε̂)")
        ax.set_xlabel("slack γ1 (nats)")
        ax.set_ylabel("I_q(x;z) (KDE, nats)")
        ax.set_title(f"mutual information ({split})")
        ax.legend(fontsize=8)
    ax = axes[1][0]
    for a in alphas:
        rs = sorted((r for r in lag if float(r["alpha1"]) == a), key=lambda r: r["gamma1"])
        ax.plot([r["gamma1"] for r in rs], [r["train_neg_elbo"] - r["eps1"] for r in rs], marker="o",
                color=cmap[a], alpha=0.5 if abs(a) > 1 else 1.0, label=f"α1 = {a:+g}")
    ax.axhline(0, color="gray", lw=1)
    ax.set_xlabel("slack γ1 (nats)")
    ax.set_ylabel("-ELBO - ε1 (train, nats)")
    ax.set_title("constraint 1: ≤ 0 is satisfied")
    ax = axes[1][1]
    for a in alphas:
        rs = sorted((r for r in lag if float(r["alpha1"]) == a), key=lambda r: r["gamma1"])
        ax.plot([r["gamma1"] for r in rs], [r["train_mmd"] / r["eps2"] for r in rs], marker="o", color=cmap[a],
                alpha=0.5 if abs(a) > 1 else 1.0, label=f"α1 = {a:+g}")
    ax.axhline(1, color="gray", lw=1)
    ax.set_xlabel("slack γ1 (nats)")
    ax.set_ylabel("MMD / ε2 (train)")
    ax.set_title("constraint 2: ≤ 1 is satisfied")
    gammas = sorted({float(r["gamma1"]) for r in lag})
    if gammas and gammas[0] > 0 and gammas[-1] / gammas[0] >= 4:
        for ax in axes.flat:
            ax.set_xscale("log")
            ax.set_xticks(gammas, [f"{g:g}" for g in gammas])
            ax.minorticks_off()
    fig.suptitle("LagVAE: the sign of α1 decides whether I_q is maximised or minimised (paper, figure 1)")
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)
    return path


def dual_verification_text(f: dict) -> list[str]:
    """The findings of 7.1 as Markdown lines (every statement computed from ``f``)."""
    out = ["## Findings (computed from the runs)", ""]
    n = f["n_gamma"]
    for split in ("test", "train"):
        o = f["overall"][split]
        out.append(f"- {split} MI: MI(α1<0) > MI(α1=0) > MI(α1>0) (means over each sign) holds for "
                   f"{o['order_holds']} of {n} γ1; strictly (every α1<0 run above α1=0 above every α1>0 run) "
                   f"for {o['strict_order_holds']} of {n}; the sign alone separates the runs (every α1<0 above "
                   f"every α1>0) for {o['sign_decides']} of {n}; |α1| changes the outcome (a run of some |α1| "
                   f"on the wrong side of α1=0) for {o['magnitude_changes_outcome']} of {n}.")
    out.append(f"- constraints: {f['n_satisfied']} of {f['n_runs']} LagVAE runs end with -ELBO ≤ ε1 + "
               f"{f['tol_elbo']:g} nats and MMD ≤ (1 + {f['tol_mmd_rel']:g}) ε2 on the training data.")
    out.append("")
    out.append("| γ1 | split | MI by α1 | order holds | strict | sign decides | within-sign spread / gap | "
               "constraints satisfied |")
    out.append("|---|---|---|---|---|---|---|---|")
    for e in f["per_gamma"]:
        nsat = sum(s["satisfied"] for s in e["constraints"])
        for split in ("test", "train"):
            s = e[split]
            mi = ", ".join(f"{a}: {m:.2f}" for a, m in s["mi"].items())
            out.append(f"| {e['gamma1']:g} | {split} | {mi} | {fmt(s['order_holds'])} | "
                       f"{fmt(s['strict_order_holds'])} | {fmt(s['sign_decides'])} | "
                       f"{s['spread_within_sign']:.2f} / {s['gap']:.2f} | {nsat} of {len(e['constraints'])} |")
    out.append("")
    bad = [(e["gamma1"], c) for e in f["per_gamma"] for c in e["constraints"] if not c["satisfied"]]
    if bad:
        out.append("Runs outside the tolerance: " + "; ".join(
            f"γ1 = {g:g}, α1 = {c['alpha1']:+g} (-ELBO - ε1 = {c['elbo_excess']:+.2f} nats, MMD/ε2 = "
            f"{c['mmd_ratio']:.2f})" for g, c in bad) + ".")
        out.append("")
    return out


def write_dual_verification(ctx: Context, rows: list[dict], f: dict) -> dict:
    out = ctx.out
    paths = {"csv": write_csv(rows, out / "results.csv"), "plot": plot_dual_verification(rows, out / "mi_vs_slack.png")}
    write_json_atomic(out / "findings.json", f)
    paths["findings"] = out / "findings.json"
    lines = _header(ctx, "Section 7.1: verification of dual optimisation (LagVAE)", f)
    lines += ["ε = ε̂ + γ with γ1 in {" + ", ".join(f"{g:g}" for g in ctx.budget.gamma1) + "} nats and "
              f"γ2 = {ctx.budget.gamma2_rel:g} ε̂2; α1 in {{{', '.join(f'{a:+g}' for a in ctx.budget.alphas)}}}; "
              "every run of a γ1 starts from the same initialisation.", ""]
    lines += dual_verification_text(f)
    lines += ["![MI against the slack, and the constraints](mi_vs_slack.png)", "", "## Runs", ""]
    lag = sorted((r for r in rows if r["method"] == "lagvae"), key=lambda r: (r["gamma1"], r["alpha1"]))
    refs = [r for r in rows if r["method"] == "reference"]
    cols = [("run", "name"), ("γ1", "gamma1"), ("α1", "alpha1"), ("ε1", "eps1"), ("-ELBO train", "train_neg_elbo"),
            ("-ELBO test", "test_neg_elbo"), ("ε2", "eps2"), ("MMD train", "train_mmd"), ("MI train", "train_mi"),
            ("MI test", "test_mi"), ("λ1", "lambda1"), ("λ2 (raw)", "lambda2"), ("wall s", "time_total_s")]
    lines += [markdown_table(refs + lag, cols), "", "## Wall time", "", _times(rows, f.get("resumed", [])), "",
              "The CSV `results.csv` has every run's final metrics; each run's folder under `runs/` has its "
              "training log (`log.csv`) and `metrics.json`.", ""]
    atomic_write(out / "report.md", "\n".join(lines))
    paths["report"] = out / "report.md"
    return paths


# -- 7.2 ------------------------------------------------------------------------------------------

def plot_pareto(rows: list[dict], f: dict, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    for i, split in enumerate(("train", "test")):
        for j, d in enumerate(("max", "min")):
            ax = axes[i][j]
            lag = sorted((r for r in rows if r["method"] == "lagvae" and (r["alpha1"] < 0) == (d == "max")),
                         key=lambda r: r[f"{split}_neg_elbo"])
            info = [r for r in rows if r["method"] == "infovae" and (r["alpha1"] < 0) == (d == "max")]
            ax.scatter([r[f"{split}_neg_elbo"] for r in info], [r[f"{split}_mi"] for r in info], marker="x",
                       color="tab:gray", label="InfoVAE (λ fixed)")
            ax.plot([r[f"{split}_neg_elbo"] for r in lag], [r[f"{split}_mi"] for r in lag], "o-",
                    color="tab:blue" if d == "max" else "tab:red", label="LagVAE (λ learned)")
            for p in f[f"{split}_{d}"]["pairs"]:
                ax.plot([p["infovae_neg_elbo"], p["lagvae_neg_elbo"]], [p["infovae_mi"], p["lagvae_mi"]], ":",
                        color="orange", lw=1)
            refs = [r for r in rows if r["method"] == "reference"]
            ax.scatter([r[f"{split}_neg_elbo"] for r in refs], [r[f"{split}_mi"] for r in refs], marker="s",
                       color="black", label="reference (α1 = 0)")
            ax.set_xlabel(f"-ELBO ({split}, nats): consistency, lower is better")
            ax.set_ylabel(f"I_q(x;z) (KDE, {split}, nats)")
            n = f[f"{split}_{d}"]["n_pairs"]
            ax.set_title(f"{'maximise' if d == 'max' else 'minimise'} MI, {split}: "
                         f"{n} dominating pair{'s' if n != 1 else ''}", fontsize=10)
            ax.legend(fontsize=8)
    fig.suptitle("LagVAE against InfoVAE (paper, figure 2); dotted: InfoVAE better on both axes")
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)
    return path


def pareto_text(f: dict) -> list[str]:
    from .pareto import DIRECTIONS

    out = ["## Findings (computed from the runs)", ""]
    verdict = "no InfoVAE point dominates a LagVAE point" if f["none_dominates"] else \
        "some InfoVAE points dominate LagVAE points"
    out.append(f"- Overall: {verdict} (dominates: lower -ELBO and higher MI when maximising, lower -ELBO and "
               "lower MI when minimising).")
    for split in ("train", "test"):
        for d, what in DIRECTIONS.items():
            s = f[f"{split}_{d}"]
            line = (f"- {split}, {what}: {s['n_pairs']} dominating (InfoVAE, LagVAE) pair(s) of "
                    f"{s['n_infovae']} x {s['n_lagvae']}; {len(s['dominated_lagvae'])} of {s['n_lagvae']} LagVAE "
                    f"points dominated; {s['n_pairs_beyond_margin']} pair(s) by more than {f['margin']:g} nats on "
                    "both axes.")
            if s["pairs"]:
                shown = sorted(s["pairs"], key=lambda p: p["lagvae_neg_elbo"] - p["infovae_neg_elbo"])[-3:]
                line += " Largest: " + "; ".join(
                    f"{p['infovae']} ({p['infovae_neg_elbo']:.2f}, {p['infovae_mi']:.2f}) over {p['lagvae']} "
                    f"({p['lagvae_neg_elbo']:.2f}, {p['lagvae_mi']:.2f})" for p in shown) + "."
            out.append(line)
    out.append("")
    return out


def write_pareto(ctx: Context, rows: list[dict], f: dict) -> dict:
    out = ctx.out
    paths = {"csv": write_csv(rows, out / "results.csv"), "plot": plot_pareto(rows, f, out / "pareto.png")}
    write_json_atomic(out / "findings.json", f)
    paths["findings"] = out / "findings.json"
    b = ctx.budget
    lines = _header(ctx, "Section 7.2: Pareto improvements (LagVAE against InfoVAE)", f)
    lines += [f"LagVAE: {f['epsilon_choice']}; α1 in {{{', '.join(f'{a:+g}' for a in b.pareto_alphas)}}}. "
              f"InfoVAE: the same Lagrangian with λ fixed, α in {{{', '.join(f'{a:g}' for a in b.infovae_alphas)}}} "
              f"(α1 = -α), λ1 in {{{', '.join(f'{x:g}' for x in b.infovae_lambda1)}}} on -ELBO, λ2 in "
              f"{{{', '.join(f'{x:g}' for x in b.infovae_lambda2)}}} on the raw MMD.", ""]
    zf = f.get("zoo_forms", [])
    if zf:
        n_eq = sum(z["equivalent"] for z in zf)
        lines += [f"Each InfoVAE objective here, α1·bound + λ1·(-ELBO) + λ2·MMD, is s times the zoo's `infovae` "
                  "(NLL + (1 - α')·KL + (α' + λ' - 1)·MMD) with s = λ1 + max(-α1, 0), α' = -α1/s, "
                  f"λ' = λ2/s - α' + 1: `lf.equivalent` confirms it for {n_eq} of {len(zf)} grid points "
                  "(Adam is invariant to the scale s).", ""]
    lines += pareto_text(f)
    lines += ["![MI against -ELBO, train and test](pareto.png)", "", "## Runs", ""]
    key = {"reference": 0, "lagvae": 1, "infovae": 2}
    ordered = sorted(rows, key=lambda r: (key[r["method"]], r["alpha1"], r.get("eps1", 0.0),
                                          r.get("lambda1_fixed", 0.0), r.get("lambda2_fixed", 0.0)))
    cols = [("run", "name"), ("α1", "alpha1"), ("ε1", "eps1"), ("ε2", "eps2"), ("-ELBO train", "train_neg_elbo"),
            ("MI train", "train_mi"), ("-ELBO test", "test_neg_elbo"), ("MI test", "test_mi"),
            ("MMD train", "train_mmd"), ("λ1", "lambda1"), ("λ2 (raw)", "lambda2"), ("wall s", "time_total_s")]
    lines += [markdown_table(ordered, cols), "", "## Wall time", "", _times(rows, f.get("resumed", [])), "",
              "The CSV `results.csv` has every run's final metrics; each run's folder under `runs/` has its "
              "training log (`log.csv`) and `metrics.json`.", ""]
    atomic_write(out / "report.md", "\n".join(lines))
    paths["report"] = out / "report.md"
    return paths


# -- the demo -------------------------------------------------------------------------------------

def plot_training(history: list[dict], eps: tuple[float, float], mmd_weight: float, path: Path,
                  reference: list[dict] | None = None, title: str = "LagVAE training") -> Path:
    """Training curves (-ELBO and MMD against their ε) and the λ trajectories, from the logged rows."""
    plt = _plt()
    kl, mm = "constraint KL(q(x,z) || p(x,z))", "constraint MMD(q(z) || p(z))"
    l1, l2 = "lambda KL(q(x,z) || p(x,z))", "lambda MMD(q(z) || p(z))"
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    steps = [r["step"] for r in history]
    for ax, key, e, lab, scale in ((axes[0], kl, eps[0], "-ELBO (nats)", 1.0),
                                    (axes[1], mm, eps[1], "MMD(q(z) || p(z)) (raw)", 1.0 / mmd_weight)):
        if reference:
            ax.plot([r["step"] for r in reference], [r[key] * scale for r in reference], color="tab:gray", lw=1,
                    label="reference run (α1 = 0, λ fixed)")
        ax.plot(steps, [r[key] * scale for r in history], color="tab:blue", lw=1, label="LagVAE")
        ax.axhline(e, color="tab:red", ls="--", label="ε")
        ax.set_xlabel("step")
        ax.set_ylabel(lab)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[0].set_title("constraint 1: KL(q(x,z)||p(x,z)) as -ELBO")
    axes[1].set_title("constraint 2: MMD(q(z)||p(z))")
    ax = axes[2]
    ax.plot(steps, [r[l1] for r in history], label="λ1 (-ELBO)")
    ax.plot(steps, [r[l2] for r in history], label=f"λ2 ({mmd_weight:g}·MMD)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("multiplier")
    ax.set_title("Lagrange multipliers (dual ascent)")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)
    return path

