"""A small trainer: one step per player, dual updates, logs, checkpoints that resume exactly.

Each step draws a batch, calls the compiled loss once, and from that one forward pass
takes the model player's gradient (with respect to the encoder, decoder and prior only) and
the critic player's gradient (with respect to the critics only); both optimisers step, then
the dual updater (if any) ascends the multipliers on the violations. With ``n_critic > 1``
the critics get ``n_critic - 1`` extra steps on fresh batches first (WGAN-GP's habit).

Checkpoints hold the compiled loss's ``state_dict`` (components, critics, multipliers),
both optimisers, the updater, the batch sampler and the random states of torch (CPU and
CUDA), numpy and Python, so a resumed run continues exactly as the uninterrupted one on
CPU (when the data is a tensor or an indexable dataset; an arbitrary iterable restarts).

>>> import torch
>>> from lagrangian_family.backends.torch import (compile_objective, GaussianMLPEncoder,
...     BernoulliMLPDecoder, StandardNormalPrior)
>>> torch.manual_seed(0)
<torch._C.Generator object at ...>
>>> loss_fn = compile_objective("vae", encoder=GaussianMLPEncoder(6, 2, hidden=(8,)),
...     decoder=BernoulliMLPDecoder(2, 6, hidden=(8,)), prior=StandardNormalPrior(2))
>>> data = torch.bernoulli(torch.full((40, 6), 0.5))
>>> trainer = Trainer(loss_fn, data, batch_size=10, progress=False)
>>> history = trainer.train(3)
>>> trainer.step_count, len(history)
(3, 1)
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["Trainer", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the term(s) responsible."""


class _TensorBatches:
    """Shuffled epochs over an indexable dataset, with a checkpointable state."""

    def __init__(self, data, batch_size: int, seed: int):
        self.data = data
        self.n = len(data)
        if self.n == 0:
            raise ValueError("the dataset is empty")
        self.batch_size = min(int(batch_size), self.n)
        self.gen = torch.Generator()
        self.gen.manual_seed(int(seed))
        self.perm = torch.randperm(self.n, generator=self.gen)
        self.pos = 0
        self.epoch = 0

    def next(self):
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        if isinstance(self.data, torch.Tensor):
            return self.data[idx]
        items = [self.data[int(i)] for i in idx]
        first = items[0]
        if isinstance(first, (tuple, list)):
            return torch.stack([torch.as_tensor(it[0]) for it in items])
        return torch.stack([torch.as_tensor(it) for it in items])

    def state_dict(self):
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, s):
        self.gen.set_state(s["gen"])
        self.perm = s["perm"].clone()
        self.pos = int(s["pos"])
        self.epoch = int(s["epoch"])


class _IterableBatches:
    def __init__(self, data):
        self.data = data
        self.it = iter(data)

    def next(self):
        try:
            b = next(self.it)
        except StopIteration:
            self.it = iter(self.data)
            b = next(self.it)
        return b[0] if isinstance(b, (tuple, list)) else b

    def state_dict(self):
        return {}

    def load_state_dict(self, s):
        pass


def _rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _optimizer(spec, params, default):
    if isinstance(spec, torch.optim.Optimizer):
        return spec
    if not params:
        return None
    if spec is None:
        return default(params)
    return spec(params)


def _check_player_optimizer(optimizer, role: str, other: list, other_role: str) -> None:
    """An optimiser given for one player must not hold the other player's parameters: the
    Trainer steps each player with its own gradient, so a shared optimiser would step the other
    player's parameters a second time, on stale gradients."""
    if optimizer is None:
        return
    theirs = {id(p) for p in other}
    mixed = sum(id(p) in theirs for g in optimizer.param_groups for p in g["params"])
    if mixed:
        from lagrangian_family.errors import ObjectiveError

        raise ObjectiveError(
            f"the {role} optimizer holds {mixed} parameter(s) of the {other_role}",
            expected=f"an optimizer over loss_fn.{role}_parameters() only (the Trainer gives each player its own)",
            given=f"{type(optimizer).__name__} over parameters that include loss_fn.{other_role}_parameters()",
            fix=f"build it over loss_fn.{role}_parameters(), or pass a factory (e.g. {role}_optimizer=lambda p: "
            "torch.optim.Adam(p, lr=1e-3)); for one optimizer over everything, write the loop yourself: "
            "out.loss.backward() trains each player on its own loss")


def _scalar(t) -> float:
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


class Trainer:
    """Train a compiled objective (or compiled Lagrangian).

    ``data``: a tensor ``(N, ...)``, an indexable dataset (items ``x`` or ``(x, ...)``), or any
    iterable of batches. ``model_optimizer``/``critic_optimizer``: an optimiser or a factory
    ``params -> optimiser`` (defaults: Adam 1e-3; Adam 1e-3 with betas (0.5, 0.9) for critics).
    ``updater``: a dual updater (:mod:`.updaters`) for a compiled Lagrangian. ``params``: symbol
    values bound for the whole run. ``callback(trainer, out)`` runs after every step; returning
    True stops training. ``log_csv``: a path to append logs every ``log_every`` steps.
    ``checkpoint``: a path saved every ``checkpoint_every`` steps and at the end of ``train``.
    ``seed``: the batch order's seed (default: drawn from torch's global generator).
    """

    def __init__(self, loss_fn: nn.Module, data, *, batch_size: int = 100, model_optimizer=None,
                 critic_optimizer=None, updater=None, params: Mapping | None = None, n_critic: int = 1,
                 callback: Callable | None = None, log_csv: str | os.PathLike | None = None, log_every: int = 10,
                 progress: bool = True, checkpoint: str | os.PathLike | None = None,
                 checkpoint_every: int | None = None, seed: int | None = None, max_grad_norm: float | None = None):
        self.loss_fn = loss_fn
        self.params = dict(params or {})
        self.updater = updater
        self.n_critic = max(1, int(n_critic))
        self.callback = callback
        self.log_csv = log_csv
        self.log_every = max(1, int(log_every))
        self.progress = progress
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.max_grad_norm = max_grad_norm
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        if isinstance(data, torch.Tensor) or (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
            self.batches = _TensorBatches(data, batch_size, seed)
        else:
            self.batches = _IterableBatches(data)
        self.model_params = list(loss_fn.model_parameters())
        self.critic_params = list(loss_fn.critic_parameters())
        self.model_optimizer = _optimizer(model_optimizer, self.model_params,
                                          lambda p: torch.optim.Adam(p, lr=1e-3))
        self.critic_optimizer = _optimizer(critic_optimizer, self.critic_params,
                                           lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.5, 0.9)))
        _check_player_optimizer(self.model_optimizer, "model", self.critic_params, "critic")
        _check_player_optimizer(self.critic_optimizer, "critic", self.model_params, "model")
        self.step_count = 0
        self._device = None
        self._csv_fields: list[str] | None = None

    # -- data -----------------------------------------------------------------------------------
    def device(self) -> torch.device:
        """The device of the loss's first parameter or buffer (CPU when it has none)."""
        if self._device is None:
            for t in list(self.loss_fn.parameters()) + list(self.loss_fn.buffers()):
                self._device = t.device
                break
            else:
                self._device = torch.device("cpu")
        return self._device

    def next_batch(self) -> torch.Tensor:
        """The next training batch, on :meth:`device` (a new shuffle at each epoch's start)."""
        x = self.batches.next()
        x = torch.as_tensor(x)
        return x if x.device == self.device() else x.to(self.device())

    # -- one step ---------------------------------------------------------------------------------
    @staticmethod
    def _apply(loss, params, optimizer, retain: bool, max_norm):
        grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()

    def _check(self, out) -> None:
        loss = _scalar(out.loss)
        critic = out.players["critic"].loss
        closs = _scalar(critic) if critic is not None else 0.0
        if math.isfinite(loss) and math.isfinite(closs):
            return
        bad = [f"{t} = {float(v)}" for t, v in out.terms.items() if not math.isfinite(float(v))]
        if not math.isfinite(closs):
            bad.append(f"critic loss = {closs}")
        where = "; ".join(bad) if bad else "no single term (the coefficients or their sum overflowed)"
        raise NonFiniteLossError(f"the loss became {loss} at step {self.step_count + 1}: non-finite {where}. "
                                 "Lower the learning rate, check the data range, or clip gradients "
                                 "(max_grad_norm=...)")

    def _forward(self, x):
        """The loss on a batch; a failure caused by non-finite parameters is reported as such."""
        try:
            return self.loss_fn(x, self.params)
        except (ValueError, RuntimeError) as err:
            bad = [n for n, p in self.loss_fn.named_parameters() if not torch.isfinite(p).all()]
            if not bad:
                raise
            raise NonFiniteLossError(
                f"at step {self.step_count + 1} the parameters {', '.join(bad[:5])}"
                f"{' ...' if len(bad) > 5 else ''} are no longer finite (a previous update diverged), so the "
                f"forward pass failed ({type(err).__name__}: {str(err).splitlines()[0]}). Lower the learning "
                "rate, clip gradients (max_grad_norm=...), or check the data") from err

    def critic_step(self) -> None:
        """One critic-only update on a fresh batch."""
        if self.critic_optimizer is None:
            return
        out = self._forward(self.next_batch())
        c = out.players["critic"]
        if c.loss is not None:
            self._apply(c.loss, self.critic_params, self.critic_optimizer, False, self.max_grad_norm)

    def step(self):
        """One training step; returns the step's :class:`~.compile.LossOutput`."""
        for _ in range(self.n_critic - 1):
            self.critic_step()
        out = self._forward(self.next_batch())
        self._check(out)
        critic = out.players["critic"]
        has_critic = critic.loss is not None and self.critic_optimizer is not None and critic.loss.requires_grad
        if self.model_optimizer is not None and out.loss.requires_grad:
            self._apply(out.loss, self.model_params, self.model_optimizer, has_critic, self.max_grad_norm)
        if has_critic:
            self._apply(critic.loss, self.critic_params, self.critic_optimizer, False, self.max_grad_norm)
        if self.updater is not None and out.violations is not None:
            self.updater.step(out.violations)
        self.step_count += 1
        return out

    # -- logs -----------------------------------------------------------------------------------
    def record(self, out) -> dict:
        """The log row of a step's :class:`.LossOutput`: losses, terms, constraints, λ (floats)."""
        row = {"step": self.step_count, "loss": _scalar(out.loss), "value": _scalar(out.value)}
        c = out.players["critic"].loss
        if c is not None:
            row["critic_loss"] = _scalar(c)
        row.update({t: _scalar(v) for t, v in out.terms.items()})
        for n, v in out.constraints.items():
            row[f"constraint {n}"] = _scalar(v)
        if out.multipliers is not None:
            names = getattr(getattr(self.loss_fn, "lagrangian", None), "names", None) or []
            for i, v in enumerate(out.multipliers.tolist()):
                row[f"lambda {names[i] if i < len(names) else i}"] = v
        return row

    def _write(self, row: dict) -> None:
        if self.log_csv is None:
            return
        new = not os.path.exists(self.log_csv) or os.path.getsize(self.log_csv) == 0
        if self._csv_fields is None:
            if not new:
                with open(self.log_csv, newline="") as f:
                    header = next(csv.reader(f), None)
                self._csv_fields = header or list(row)
            else:
                self._csv_fields = list(row)
        with open(self.log_csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._csv_fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    # -- the loop -------------------------------------------------------------------------------
    def train(self, steps: int) -> list[dict]:
        """Run ``steps`` steps; returns the logged rows (every ``log_every`` steps and the last).

        A NaN or infinite loss raises :class:`NonFiniteLossError` naming the term(s)."""
        from tqdm import tqdm

        history = []
        bar = tqdm(total=steps, disable=not self.progress, leave=False)
        try:
            for i in range(steps):
                out = self.step()
                if self.step_count % self.log_every == 0 or i == steps - 1:
                    row = self.record(out)
                    history.append(row)
                    self._write(row)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
                bar.update(1)
                every = self.checkpoint_every
                if self.checkpoint is not None and every and self.step_count % every == 0:
                    self.save(self.checkpoint)
                if self.callback is not None and self.callback(self, out):
                    break
        finally:
            bar.close()
        if self.checkpoint is not None:
            self.save(self.checkpoint)
        return history

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs: step, weights, optimisers, dual updater, batches, RNGs."""
        return {
            "step": self.step_count,
            "loss_fn": self.loss_fn.state_dict(),
            "model_optimizer": self.model_optimizer.state_dict() if self.model_optimizer else None,
            "critic_optimizer": self.critic_optimizer.state_dict() if self.critic_optimizer else None,
            "updater": self.updater.state_dict() if self.updater is not None else None,
            "batches": self.batches.state_dict(),
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`: the run continues as the one that saved it."""
        self.step_count = int(state["step"])
        self.loss_fn.load_state_dict(state["loss_fn"])
        if self.model_optimizer is not None and state["model_optimizer"] is not None:
            self.model_optimizer.load_state_dict(state["model_optimizer"])
        if self.critic_optimizer is not None and state["critic_optimizer"] is not None:
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.updater is not None and state["updater"] is not None:
            self.updater.load_state_dict(state["updater"])
        self.batches.load_state_dict(state["batches"])
        _set_rng_state(state["rng"])

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint (atomically: a temporary file, then a rename)."""
        tmp = f"{path}.tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save`; training then continues exactly."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
