"""One training run of the section 7 experiments, and a resumable parallel executor of many.

A run trains a Gaussian-MLP encoder and Bernoulli-MLP decoder (N(0, I) prior) on the
Lagrangian of LagVAE (paper eq. 17-18), built by :meth:`Lagrangian.lagvae
<lagrangian_family.backends.torch.Lagrangian.lagvae>`:

    α1·(Ī_q if α1 >= 0 else I̲_q) + λ1 (-ELBO - ε1) + λ2 (10^4 MMD(q(z) || p(z)) - 10^4 ε2)

* ``method="lagvae"``: λ starts at 1 and is ascended (RMSProp, clipped to [0.001, 100]);
* ``method="infovae"``: λ fixed (InfoVAE: the dual function with constant multipliers, paper
  section 6), InfoVAE's α with α1 = -α, λ1 on -ELBO, λ2 on the raw MMD;
* ``method="reference"``: α1 = 0 and λ fixed (eq. 19-20): its final constraint values are ε̂.

At the end it measures, on train and test images (fixed binarisations): -ELBO (= KL(q(x,z) ||
p(x,z)) + H_q(x)), its two parts, the raw MMD (batches of the training batch size, as the
constraint), and I_q by eq. 21 with a Gaussian KDE of q(z) (``metrics.mutual_information_kde``).
The metrics are written atomically (temporary file, then rename) as ``metrics.json`` in the
run's folder; :class:`Executor` skips runs whose ``metrics.json`` is valid for their spec
(:func:`check_metrics`: JSON, every metric present, finite and of its type, written for the same
spec and budget) and redoes the others, saying why.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .budgets import Budget

__all__ = ["RunSpec", "run", "run_stack", "evaluate", "Executor", "METRICS", "read_metrics", "check_metrics",
           "write_json_atomic", "machine", "noise_stream"]

METRICS = "metrics.json"


@dataclass
class RunSpec:
    """One run: ``name`` (its folder), ``method`` ("lagvae", "infovae", "reference"), the paper's
    ``alpha1`` (α1 < 0 maximises I_q), ``epsilon`` (ε1 in -ELBO nats, ε2 raw MMD; LagVAE only),
    ``multipliers`` (fixed λ on (-ELBO, raw MMD); InfoVAE and reference only), ``seed``,
    ``steps`` (default: the budget's), ``init_from`` (a ``model.pt`` of an earlier run, relative to
    the experiment's runs folder: the encoder and decoder start from it) and ``tags`` (the grid
    coordinates the report reads)."""

    name: str
    method: str
    alpha1: float = 0.0
    epsilon: tuple[float, float] | None = None
    multipliers: tuple[float, float] | None = None
    seed: int = 0
    steps: int | None = None
    init_from: str | None = None
    tags: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in ("lagvae", "infovae", "reference"):
            raise ValueError(f"unknown method {self.method!r}")
        if self.method == "lagvae" and self.epsilon is None:
            raise ValueError(f"run {self.name}: LagVAE needs epsilon")
        if self.method != "lagvae" and self.multipliers is None:
            raise ValueError(f"run {self.name}: {self.method} needs fixed multipliers")


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never half a file; a temporary
    left by a killed process is removed by the next write, see :mod:`lagrangian_family.files`)."""
    from lagrangian_family.files import atomic_write

    atomic_write(Path(path), json.dumps(obj, indent=1, sort_keys=True, default=float))


#: The numbers every finished run's metrics hold (finite), besides its identity.
METRIC_KEYS = tuple(f"{split}_{m}" for split in ("train", "test") for m in ("nll", "kl", "neg_elbo", "mmd", "mi")) + \
    ("lambda1", "lambda2", "time_total_s")


def _steps(spec: RunSpec, budget: Budget) -> int:
    return int(spec.steps if spec.steps is not None else (budget.ref_steps if spec.method == "reference"
                                                          else budget.steps))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_metrics(run_dir: Path, spec: RunSpec | None = None,
                  budget: Budget | None = None) -> tuple[dict | None, str | None]:
    """``(metrics, None)`` for a finished run, ``(None, None)`` when the run has not finished (no
    ``metrics.json``), ``(None, why)`` when its ``metrics.json`` cannot be trusted: not JSON, not an
    object, a metric missing, not a number or not finite, or written for another spec or budget.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / METRICS).write_text("{}")
    >>> check_metrics(d)[1]  # doctest: +ELLIPSIS
    'its metrics.json lacks name, method, alpha1, ...'
    """
    p = Path(run_dir) / METRICS
    if not p.exists():
        return None, None
    try:
        with open(p) as f:
            row = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        return None, f"its metrics.json cannot be read ({e})"
    except json.JSONDecodeError as e:
        return None, f"its metrics.json is not valid JSON ({e.msg} at line {e.lineno})"
    if not isinstance(row, dict):
        return None, f"its metrics.json holds a {type(row).__name__}, not an object"
    identity = ("name", "method", "alpha1", "seed", "steps", "budget")
    missing = [k for k in identity + METRIC_KEYS if k not in row]
    if missing:
        return None, f"its metrics.json lacks {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
    bad = [k for k in METRIC_KEYS + ("alpha1",) if not _is_number(row[k]) or not math.isfinite(row[k])]
    if bad:
        return None, f"its metrics.json has {bad[0]} = {row[bad[0]]!r}, not a finite number"
    if spec is not None:
        want = {"name": spec.name, "method": spec.method, "alpha1": float(spec.alpha1), "seed": spec.seed,
                "init_from": spec.init_from or "", **spec.tags}
        if budget is not None:
            want.update(steps=_steps(spec, budget), budget=budget.name)
        if spec.epsilon is not None:
            want.update(eps1=float(spec.epsilon[0]), eps2=float(spec.epsilon[1]))
        for k, v in want.items():
            if row.get(k) != v:
                return None, f"its metrics.json was written for another run ({k} {row.get(k)!r}, this run {v!r})"
    return row, None


def _discard(path: Path) -> None:
    """Remove an untrusted result (a file, or a folder where a file should be)."""
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def read_metrics(run_dir: Path) -> dict | None:
    """The finished run's metrics, or None when the run has not finished or its metrics are invalid."""
    return check_metrics(run_dir)[0]


def machine() -> dict:
    """Platform, CPU count and library versions (for the report)."""
    import torch

    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# -- one run --------------------------------------------------------------------------------------

def _device(budget: Budget):
    import torch

    if budget.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(budget.device)


def build(spec: RunSpec, budget: Budget, x_dim: int, device=None, init_dir: Path | None = None):
    """(compiled Lagrangian, Lagrangian, updater or None) for a run, components seeded by ``spec.seed``
    (or loaded from ``init_dir / spec.init_from``)."""
    import torch

    from lagrangian_family.backends.torch import (
        BernoulliMLPDecoder,
        GaussianMLPEncoder,
        Lagrangian,
        RMSPropAscent,
        StandardNormalPrior,
    )

    device = device if device is not None else _device(budget)
    torch.manual_seed(spec.seed)
    enc = GaussianMLPEncoder(x_dim, budget.z_dim, hidden=budget.hidden).to(device)
    dec = BernoulliMLPDecoder(budget.z_dim, x_dim, hidden=budget.hidden).to(device)
    prior = StandardNormalPrior(budget.z_dim).to(device)
    if spec.init_from is not None:
        _load_model(Path(init_dir or ".") / spec.init_from, enc, dec, device)
    w = float(budget.mmd_weight)
    if spec.method == "lagvae":
        eps1, eps2 = spec.epsilon
        lag = Lagrangian.lagvae(float(spec.alpha1), (float(eps1), float(eps2) * w), mmd_weight=w, init=1.0)
    else:
        l1, l2 = spec.multipliers
        lag = Lagrangian.lagvae(float(spec.alpha1), (None, None), mmd_weight=w, init=(float(l1), float(l2) / w))
    lag = lag.to(device)
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=prior)
    updater = None
    if spec.method == "lagvae":
        updater = RMSPropAscent(lag, lr=budget.dual_lr, decay=0.9, eps=1e-10, lower=budget.dual_lower,
                                upper=budget.dual_upper)
    return loss_fn, lag, updater


def _load_model(path: Path, enc, dec, device) -> None:
    """Load the encoder and decoder of ``model.pt`` (a model file of
    :func:`~lagrangian_family.backends.torch.save_model`, verified as it is read) or raise
    :class:`~lagrangian_family.backends.torch.model.ModelFileError`."""
    from lagrangian_family.backends.torch.model import ModelFileError, load_model

    model = load_model(path, map_location=device)
    for name, module, saved in (("encoder", enc, model.encoder), ("decoder", dec, model.decoder)):
        try:
            module.load_state_dict(saved.state_dict())
        except RuntimeError as e:
            raise ModelFileError(
                f"{path} does not fit this run's {name}: {str(e).splitlines()[0]}",
                expected=f"the {name} of the run it starts from, with this budget's network",
                given=str(e).splitlines()[0], fix="rerun the reference run (delete its folder) or use its budget"
            ) from e


def _batches(x, size: int):
    for i in range(0, x.shape[0], size):
        yield x[i:i + size]


def evaluate(loss_fn, data, budget: Budget, device=None) -> dict:
    """-ELBO (with NLL and KL parts), raw MMD and the KDE mutual information, on train and test.

    The KDE of q(z) is fitted on the first ``kde_fit_n`` training images; the train metrics use
    the next ``eval_n`` training images (disjoint from the fit), the test metrics the first
    ``eval_n`` test images.
    """
    import torch
    from torch.distributions import kl_divergence

    from lagrangian_family.backends.torch import metrics

    enc, dec, prior = loss_fn.encoder, loss_fn.decoder, loss_fn.prior
    device = device if device is not None else next(enc.parameters()).device
    n_tr = data.train_bin.shape[0]
    fit_n = min(budget.kde_fit_n, max(n_tr // 2, 1))
    fit_x = data.train_bin[:fit_n].to(device)
    splits = {"train": data.train_bin[fit_n:fit_n + budget.eval_n], "test": data.test_bin[:budget.eval_n]}
    out: dict = {}
    was = enc.training, dec.training
    enc.eval()
    dec.eval()
    try:
        with torch.no_grad():
            for split, x in splits.items():
                x = x.to(device)
                nll = kl = mmd_sum = 0.0
                n = n_mmd = 0
                for xb in _batches(x, 500):
                    q = enc(xb)
                    z = q.sample()
                    nll += float(-dec(z).log_prob(xb).sum())
                    kl += float(kl_divergence(q, prior.distribution()).sum())
                    n += xb.shape[0]
                for xb in _batches(x, budget.batch_size):
                    if xb.shape[0] < budget.batch_size and n_mmd:
                        break
                    z = enc(xb).sample()
                    mmd_sum += float(metrics.mmd(z, prior.sample(z.shape[0])))
                    n_mmd += 1
                out[f"{split}_nll"] = nll / n
                out[f"{split}_kl"] = kl / n
                out[f"{split}_neg_elbo"] = (nll + kl) / n
                out[f"{split}_mmd"] = mmd_sum / n_mmd
                out[f"{split}_mi"] = float(metrics.mutual_information_kde(enc, fit_x, x))
                out[f"{split}_n"] = int(x.shape[0])
    finally:
        enc.train(was[0])
        dec.train(was[1])
    out["kde_fit_n"] = int(fit_n)
    return out


def _run_dir(spec: RunSpec, out_dir: Path | None, *, fresh_log: bool = True) -> Path | None:
    """The run's folder with its ``spec.json``, cleared of what an earlier attempt left: temporaries
    of killed processes, old metrics, and (unless ``fresh_log`` is False: a stack resumed from its
    checkpoint) the training log."""
    if out_dir is None:
        return None
    from lagrangian_family.files import remove_stale_temporaries

    run_dir = Path(out_dir) / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    _discard(run_dir / METRICS)  # a run done again: its old metrics are not its result
    write_json_atomic(run_dir / "spec.json", asdict(spec))
    if fresh_log and (run_dir / "log.csv").exists():  # a run interrupted earlier starts over
        (run_dir / "log.csv").unlink()
    return run_dir


def _optimizer(budget: Budget, device):
    """The model's optimiser: Adam, fused (one pass per element; the same arithmetic whether the
    parameters are one run's or a stack's)."""
    import torch

    lr, betas, fused = budget.lr, tuple(budget.betas), device.type in ("cpu", "cuda")
    return lambda p: torch.optim.Adam(p, lr=lr, betas=betas, fused=fused)


def noise_stream(device):
    """A generator in the state of ``device``'s global generator: the stream a run built by
    :func:`build` draws its reparameterisation noise and prior samples from (``build`` seeds it
    with the run's seed; the initialisation draws first). The vectorised path draws each run's
    noise from such a generator, so a run gets the same noise in a stack as alone.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> g = noise_stream("cpu")
    >>> bool(torch.equal(torch.randn(3, generator=g), torch.randn(3)))
    True
    """
    import torch

    device = torch.device(device)
    g = torch.Generator(device=device)
    g.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return g


def _use_stream(g, device) -> None:
    """Make ``g``'s state the global state of ``device`` (a stacked run's evaluation then draws what
    the same run trained alone would draw)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(g.get_state(), device)
    else:
        torch.set_rng_state(g.get_state())


def _row(spec: RunSpec, budget: Budget, steps: int, lag, ev: dict, t_train: float, t_eval: float, device,
         extra: dict | None = None) -> dict:
    """The run's metrics (a row of the results CSV)."""
    import torch

    w = float(budget.mmd_weight)
    lam = lag.multipliers.tolist()
    row = {
        "name": spec.name, "method": spec.method, "alpha1": float(spec.alpha1), "seed": spec.seed, "steps": steps,
        "init_from": spec.init_from or "",
        **{k: v for k, v in spec.tags.items()},
        "lambda1": lam[0], "lambda2": lam[1] * w,
        **ev,
        "time_train_s": t_train, "time_eval_s": t_eval, "time_total_s": t_train + t_eval,
        "steps_per_s": steps / t_train if t_train > 0 else math.nan,
        "device": str(device), "threads": torch.get_num_threads(), "budget": budget.name,
        **(extra or {}),
    }
    if spec.epsilon is not None:
        eps1, eps2 = float(spec.epsilon[0]), float(spec.epsilon[1])
        row.update({"eps1": eps1, "eps2": eps2,
                    "violation_elbo": ev["train_neg_elbo"] - eps1, "violation_mmd": ev["train_mmd"] - eps2,
                    "satisfied_elbo": bool(ev["train_neg_elbo"] <= eps1 + budget.tol_elbo),
                    "satisfied_mmd": bool(ev["train_mmd"] <= eps2 * (1.0 + budget.tol_mmd_rel))})
    return row


def _write_results(spec: RunSpec, run_dir: Path | None, loss_fn, row: dict) -> None:
    """``model.pt`` of a reference run (later runs may start from it: budget.warm_start), then
    ``metrics.json`` (last: its presence marks the run finished)."""
    if run_dir is None:
        return
    if spec.method == "reference":  # the one model-file format: lagfam sample and load_model read it
        from lagrangian_family.backends.torch.model import save_model

        save_model(run_dir / "model.pt", loss_fn, run=spec.name, experiment_run=asdict(spec))
    write_json_atomic(run_dir / METRICS, row)


def run(spec: RunSpec, budget: Budget, data, out_dir: Path | None = None, *, progress: bool = False,
        progress_desc: str | None = None) -> dict:
    """Train and evaluate one run; write ``metrics.json`` (and ``log.csv``) into ``out_dir/spec.name``.

    Returns the flat metrics (the row of the results CSV) with ``history`` (the logged rows)
    when called in-process."""
    import torch

    from lagrangian_family.backends.torch import Trainer

    from .datasets import StochasticBatches

    device = _device(budget)
    run_dir = _run_dir(spec, out_dir)
    log_csv = run_dir / "log.csv" if run_dir is not None else None
    steps = _steps(spec, budget)
    t0 = time.perf_counter()
    loss_fn, lag, updater = build(spec, budget, data.x_dim, device, out_dir)
    batches = StochasticBatches(data.train, budget.batch_size, seed=spec.seed + 1, device=device)
    trainer = Trainer(loss_fn, batches, batch_size=budget.batch_size, updater=updater,
                      model_optimizer=_optimizer(budget, device),
                      log_csv=log_csv, log_every=max(1, steps // max(1, budget.log_points)),
                      progress=False, seed=spec.seed)
    history = _train(trainer, steps, progress, progress_desc or spec.name)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    ev = evaluate(loss_fn, data, budget, device)
    t_eval = time.perf_counter() - t1
    row = _row(spec, budget, steps, lag, ev, t_train, t_eval, device)
    _write_results(spec, run_dir, loss_fn, row)
    return {**row, "history": history}


def _stack_checkpoint(specs: Sequence[RunSpec], budget: Budget, out_dir: Path | None) -> Path | None:
    """Where a stack's checkpoint lives: named by a hash of its runs' specs and the budget, so a rerun
    of the same stack finds it and no other stack does."""
    if out_dir is None:
        return None
    text = json.dumps([budget.to_dict(), [asdict(s) for s in specs]], sort_keys=True, default=str)
    return Path(out_dir) / ".stacks" / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.pt"


def run_stack(specs: Sequence[RunSpec], budget: Budget, data, out_dir: Path | None = None, *,
              progress: bool = False) -> list:
    """Train runs with the same number of steps as one vectorised stack, then evaluate each.

    Each run is built as :func:`run` builds it (seed, warm start, Lagrangian, updater, batch
    sampler) and draws its noise from :func:`noise_stream`, so its result does not depend on the
    other runs of the stack, and equals :func:`run`'s up to the rounding of batched against
    unbatched matrix products. Returns, per spec, its row (as :func:`run` returns it, without
    ``history``) or the :class:`~lagrangian_family.backends.torch.NonFiniteLossError` that froze it
    (the others are unaffected). With ``budget.checkpoint_every`` the stack is checkpointed in
    ``out_dir/.stacks/`` and a rerun of the same stack resumes exactly."""
    import torch

    from lagrangian_family.backends.torch.vectorised import VectorisedTrainer

    from .datasets import StochasticBatches

    specs = list(specs)
    counts = {_steps(s, budget) for s in specs}
    if len(counts) != 1:
        raise ValueError(f"a stack needs runs with one number of steps, got {sorted(counts)}")
    steps = counts.pop()
    device = _device(budget)
    ckpt = _stack_checkpoint(specs, budget, out_dir) if budget.checkpoint_every else None
    resume = ckpt is not None and ckpt.is_file()
    t0 = time.perf_counter()
    dirs, loss_fns, lags, updaters, noise, batches = [], [], [], [], [], []
    for spec in specs:
        dirs.append(_run_dir(spec, out_dir, fresh_log=not resume))
        loss_fn, lag, updater = build(spec, budget, data.x_dim, device, out_dir)
        loss_fns.append(loss_fn)
        lags.append(lag)
        updaters.append(updater)
        noise.append(noise_stream(device))
        batches.append(StochasticBatches(data.train, budget.batch_size, seed=spec.seed + 1, device=device))
    if ckpt is not None:
        ckpt.parent.mkdir(exist_ok=True)
    trainer = VectorisedTrainer(loss_fns, batches, batch_size=budget.batch_size, updaters=updaters, noise=noise,
                                model_optimizer=_optimizer(budget, device),
                                log_csv=[d / "log.csv" if d is not None else None for d in dirs],
                                log_every=max(1, steps // max(1, budget.log_points)), progress=progress,
                                checkpoint=ckpt, checkpoint_every=budget.checkpoint_every)
    if resume:
        trainer.load(ckpt)  # verified; each run's log is cut back to the checkpoint's step
    trainer.train(steps - trainer.step_count)
    trainer.unstack()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_stack = time.perf_counter() - t0
    m_runs = len(specs)
    extra = {"stack_size": m_runs, "stack_time_train_s": t_stack}
    out: list = []
    for m, spec in enumerate(specs):
        if m in trainer.failures:
            err = trainer.failures[m]
            out.append(type(err)(f"run {spec.name}: {err}"))
            continue
        t1 = time.perf_counter()
        _use_stream(noise[m], device)
        ev = evaluate(loss_fns[m], data, budget, device)
        t_eval = time.perf_counter() - t1
        # time_train_s: the run's share of the stack's training time; steps_per_s: the rate each run of the
        # stack advanced at (the stack's aggregate is stack_size times this)
        row = _row(spec, budget, steps, lags[m], ev, t_stack / m_runs, t_eval, device, extra)
        row["steps_per_s"] = steps / t_stack if t_stack > 0 else math.nan
        _write_results(spec, dirs[m], loss_fns[m], row)
        out.append(row)
    if ckpt is not None and ckpt.exists():
        ckpt.unlink()
    return out


def _train(trainer, steps: int, progress: bool, desc: str) -> list[dict]:
    """Train, with one tqdm bar over all steps when ``progress`` (the Trainer's own bar is off)."""
    if not progress:
        return trainer.train(steps)
    from tqdm.auto import tqdm

    chunk = max(1, steps // 50)
    history: list[dict] = []
    with tqdm(total=steps, desc=desc, unit="step", leave=True) as bar:
        done = 0
        while done < steps:
            k = min(chunk, steps - done)
            rows = trainer.train(k)
            history += rows
            done += k
            bar.update(k)
            if rows:
                r = rows[-1]
                post = {"-ELBO": f"{r.get('constraint KL(q(x,z) || p(x,z))', math.nan):.1f}"}
                for key, v in r.items():
                    if key.startswith("lambda "):
                        post["λ" + ("1" if "KL" in key else "2")] = f"{v:.3g}"
                bar.set_postfix(post, refresh=False)
    return history


# -- many runs --------------------------------------------------------------------------------------

_WORKER_DATA: dict = {}


def _watch_parent(parent: int) -> None:
    """Exit when the parent process is gone (a killed ``lagfam experiment``): no orphan keeps
    writing into a folder whose lock died with its parent."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker() -> None:
    import threading

    import torch

    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="watch-parent").start()

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def _worker_data(dataset_args: tuple):
    from .datasets import load

    key = dataset_args
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()
        name, data_dir, n_train, n_test = dataset_args
        _WORKER_DATA[key] = load(name, data_dir, n_train=n_train, n_test=n_test)
    return _WORKER_DATA[key]


def _worker(spec: RunSpec, budget: Budget, dataset_args: tuple, out_dir: str) -> dict:
    """Run one spec in a worker process (data loaded once per process)."""
    done, _ = check_metrics(Path(out_dir) / spec.name, spec, budget)
    if done is not None:
        return done
    row = run(spec, budget, _worker_data(dataset_args), Path(out_dir))
    row.pop("history", None)
    return row


def _stack_worker(specs: list[RunSpec], budget: Budget, dataset_args: tuple, out_dir: str) -> list:
    """Run specs as one stack in a worker process: per spec, its row or the error that froze it."""
    return run_stack(specs, budget, _worker_data(dataset_args), Path(out_dir))


def _chunks(items: list, parts: int) -> list[list]:
    """``items`` in ``parts`` contiguous pieces of near-equal length (none empty).

    >>> _chunks(list(range(5)), 2)
    [[0, 1, 2], [3, 4]]
    """
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, i = [], 0
    for p in range(parts):
        n = size + (p < extra)
        out.append(items[i:i + n])
        i += n
    return out


class _Deferred(Future):
    """A run submitted to a vectorising executor: asking for its result trains every pending run."""

    def __init__(self, executor: Executor):
        super().__init__()
        self._executor = executor

    def result(self, timeout=None):
        self._executor.flush()
        return super().result(timeout)

    def exception(self, timeout=None):
        self._executor.flush()
        return super().exception(timeout)


class Executor:
    """Run specs in ``jobs`` worker processes (``jobs=1``: in this process), skipping finished ones.

    ``submit(spec)`` returns a future of the run's metrics; a spec whose folder already holds a
    valid ``metrics.json`` (:func:`check_metrics`) completes at once with the stored metrics
    (``resumed`` counts them); an invalid one is removed and the run done again, with a line to
    ``log`` saying why (``redone`` lists them). ``on_done(spec, row)`` is called in the main
    process as each run finishes.

    With ``vectorise=True`` submitted runs wait until a result is asked for (or the executor
    closes); then all waiting runs with the same number of steps train as vectorised stacks
    (:func:`run_stack`), each group split into at most ``jobs`` stacks, one per process (one
    thread each). A run frozen by its NaN guard fails its own future only.
    """

    def __init__(self, budget: Budget, dataset_args: tuple, out_dir: Path, jobs: int = 1,
                 on_done: Callable[[RunSpec, dict, bool], None] | None = None,
                 log: Callable[[str], None] | None = None, vectorise: bool = False):
        self.budget, self.dataset_args, self.out_dir = budget, dataset_args, Path(out_dir)
        self.jobs = max(1, int(jobs))
        self.on_done = on_done
        self.log = log if log is not None else (lambda s: None)
        self.vectorise = bool(vectorise)
        self.redone: list[str] = []
        self.resumed: list[str] = []
        self.ran: list[str] = []
        self.stacks: list[list[str]] = []
        self._pool = None
        self._data = None
        self._pending: list[tuple[RunSpec, Future]] = []

    def __enter__(self):
        if self.jobs > 1:
            import multiprocessing as mp

            self._pool = ProcessPoolExecutor(self.jobs, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker)
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.flush()
            else:
                for _, fut in self._pending:
                    fut.cancel()
                self._pending = []
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=exc[0] is None, cancel_futures=exc[0] is not None)
        return False

    def _finish(self, spec: RunSpec, fut: Future, resumed: bool) -> None:
        if Future.exception(fut) is None:
            (self.resumed if resumed else self.ran).append(spec.name)
            if self.on_done is not None:
                self.on_done(spec, Future.result(fut), resumed)

    def _local_data(self):
        if self._data is None:
            from .datasets import load

            name, data_dir, n_train, n_test = self.dataset_args
            self._data = load(name, data_dir, n_train=n_train, n_test=n_test)
        return self._data

    def _in_process(self, fn, *args):
        """``fn(*args)`` in this process with one torch thread, as in the workers."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args)
        finally:
            torch.set_num_threads(threads)

    def submit(self, spec: RunSpec) -> Future:
        done, why = check_metrics(self.out_dir / spec.name, spec, self.budget)
        if done is not None and spec.method == "reference":  # later runs start from its model: it must load
            from lagrangian_family.backends.torch.model import ModelFileError, load_model

            model = self.out_dir / spec.name / "model.pt"
            try:
                load_model(model)
            except ModelFileError as e:
                done, why = None, "its model.pt cannot be used: " + str(e).splitlines()[0].split(f"{model} ", 1)[-1]
        if done is not None:
            fut: Future = Future()
            fut.set_result(done)
            self._finish(spec, fut, True)
            return fut
        if why is not None:
            self.log(f"  redo {spec.name}: {why}")
            self.redone.append(spec.name)
            _discard(self.out_dir / spec.name / METRICS)
        if self.vectorise:
            fut = _Deferred(self)
            self._pending.append((spec, fut))
            return fut
        if self._pool is None:
            fut = Future()
            try:
                row = self._in_process(run, spec, self.budget, self._local_data(), self.out_dir)
                row.pop("history", None)
                fut.set_result(row)
            except Exception as e:  # surfaced by fut.result()
                fut.set_exception(e)
            self._finish(spec, fut, False)
            return fut
        fut = self._pool.submit(_worker, spec, self.budget, self.dataset_args, str(self.out_dir))
        fut.add_done_callback(lambda f, s=spec: self._finish(s, f, False))
        return fut

    def map(self, specs: Sequence[RunSpec]) -> list[Future]:
        return [self.submit(s) for s in specs]

    def _resolve(self, chunk: list[tuple[RunSpec, Future]], outcome) -> None:
        """Set the futures of a stack's runs from its outcome (a list of rows and errors, or one error)."""
        for i, (spec, fut) in enumerate(chunk):
            item = outcome[i] if isinstance(outcome, list) else outcome
            if isinstance(item, BaseException):
                fut.set_exception(item)
            else:
                fut.set_result(item)
            self._finish(spec, fut, False)

    def flush(self) -> None:
        """Train every waiting run now (vectorised mode): group them by number of steps, split each
        group into at most ``jobs`` stacks, run the stacks (in parallel processes when ``jobs > 1``)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        groups: dict[int, list[tuple[RunSpec, Future]]] = {}
        for item in pending:
            groups.setdefault(_steps(item[0], self.budget), []).append(item)
        chunks = [c for g in groups.values() for c in _chunks(g, self.jobs)]
        self.stacks += [[s.name for s, _ in c] for c in chunks]
        if self._pool is None:
            for chunk in chunks:
                try:
                    outcome = self._in_process(run_stack, [s for s, _ in chunk], self.budget, self._local_data(),
                                               self.out_dir)
                except Exception as e:  # surfaced by each run's future
                    outcome = e
                self._resolve(chunk, outcome)
            return
        from concurrent.futures import as_completed

        futs = {self._pool.submit(_stack_worker, [s for s, _ in c], self.budget, self.dataset_args,
                                  str(self.out_dir)): c for c in chunks}
        for f in as_completed(futs):
            self._resolve(futs[f], f.exception() if f.exception() is not None else f.result())
