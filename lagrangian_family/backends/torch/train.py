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
They are versioned, checksummed and written atomically (:mod:`.checkpoint`); :meth:`Trainer.load`
verifies the file and that the state fits this trainer, all or nothing, and cuts the CSV log
back to the checkpoint's step.

**Distributed training** (``torch.distributed``, launched by ``torchrun``; :mod:`.distributed`):
when a process group is initialised (or with ``distributed=True``) the Trainer trains on every
rank: ``batch_size`` is the global batch, of which each rank takes one shard; the state is
broadcast from rank 0; each player's gradient is averaged over the ranks; the dual step uses the
constraint estimates averaged over the ranks, so λ is the same on every rank; rank 0 writes the
logs and checkpoints, which resume on any number of ranks. **TensorBoard** (``tensorboard=``, the
``tensorboard`` extra; :mod:`.tensorboard`): the logged rows under clean tags, and sample grids.

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
import numbers
import os
import random
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from lagrangian_family.errors import NonFiniteLossError, ObjectiveError

from .checkpoint import CheckpointError
from .distributed import DistributedError, RankSync, rank_seed, reduce_output

__all__ = ["Trainer", "NonFiniteLossError"]




class _TensorBatches:
    """Shuffled epochs over an indexable dataset, with a checkpointable state."""

    def __init__(self, data, batch_size: int, seed: int, shard: tuple[int, int] = (0, 1)):
        self.data = data
        self.n = len(data)
        if self.n == 0:
            raise ObjectiveError("the training data is empty", expected="at least one example", given="0 examples",
                                 fix="check how the data was loaded")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ObjectiveError(f"batch_size={batch_size!r} is not a batch size", expected="a positive integer",
                                 given=repr(batch_size), fix="e.g. batch_size=100")
        self.batch_size = min(int(batch_size), self.n)
        self.rank, self.world_size = shard
        if self.batch_size % self.world_size:
            w = self.world_size
            cut = f" (cut to the {self.n} examples)" if self.batch_size < batch_size else ""
            raise ObjectiveError(f"the global batch of {self.batch_size} examples does not split into {w} equal "
                                 "shards", expected=f"a batch_size that is a multiple of the {w} ranks (batch_size is "
                                 "the global batch)", given=f"batch_size={batch_size}{cut}",
                                 fix=f"e.g. batch_size={max(w, self.batch_size // w * w)}")
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
        if self.world_size > 1:  # this rank's contiguous shard of the global batch
            b = self.batch_size // self.world_size
            idx = idx[self.rank * b:(self.rank + 1) * b]
        self.last_index = idx
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


def _rank_sync(distributed) -> RankSync | None:
    """The Trainer's ``distributed`` argument as the ranks to train on (None: one process)."""
    if isinstance(distributed, RankSync):
        return distributed
    if distributed is None:
        import torch.distributed as dist

        return RankSync() if dist.is_available() and dist.is_initialized() else None
    if distributed is True:
        return RankSync()
    if distributed is False:
        return None
    raise ObjectiveError("a bad distributed argument", expected="None (train on the process group when one is "
                         "initialised), True, False or a RankSync", given=repr(distributed), fix="distributed=True")


def _scalar(t) -> float:
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


def _listing(items: list, n: int = 8) -> str:
    """``1, 4, 7`` (at most ``n`` items, then how many more)."""
    head = ", ".join(str(i) for i in items[:n])
    return head + (f" and {len(items) - n} more" if len(items) > n else "")


def _culprit(module: nn.Module, err: BaseException) -> str:
    """The component whose code raised ``err`` (the innermost named submodule on its traceback)."""
    import traceback

    names = {id(m): n for n, m in module.named_modules() if n}
    found = None
    for frame, _ in traceback.walk_tb(err.__traceback__):
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in names:
            found = names[id(owner)]  # the innermost wins
    if found is None:
        return "a component"
    top = found.split(".")[0]
    return f"the {top}" if top == found else f"the {top} ({found})"


def _distribution_argument(line: str) -> str:
    """``loc of Normal`` from torch's message ``Expected parameter loc (...) of distribution Normal(...)``."""
    import re

    m = re.search(r"parameter (\w+) .*?of distribution (\w+)", line)
    return f"{m.group(1)} of {m.group(2)} is NaN or infinite" if m else line[:120]


def _largest_parameter(module: nn.Module) -> str:
    best, where = 0.0, "none"
    for n, p in module.named_parameters():
        if p.numel():
            v = float(p.detach().abs().max())
            if v >= best:
                best, where = v, n
    return f"|{where}| = {best:.3g}"


class Trainer:
    """Train a compiled objective (or compiled Lagrangian).

    ``data``: a tensor ``(N, ...)``, an indexable dataset (items ``x`` or ``(x, ...)``), or any
    iterable of batches. ``model_optimizer``/``critic_optimizer``: an optimiser or a factory
    ``params -> optimiser`` (defaults: Adam 1e-3; Adam 1e-3 with betas (0.5, 0.9) for critics).
    ``updater``: a dual updater (:mod:`.updaters`) for a compiled Lagrangian. ``params``: symbol
    values bound for the whole run. ``callback(trainer, out)`` runs after every step; returning
    True stops training. ``log_csv``: a path to append logs every ``log_every`` steps (one row per
    step: rows of steps after the trainer's own, left by an interrupted run, are dropped when it
    resumes). ``checkpoint``: a path saved every ``checkpoint_every`` steps and at the end of
    ``train`` (:mod:`.checkpoint`). A batch holding NaN or inf raises :class:`NonFiniteLossError`
    naming its examples before the forward pass.
    ``seed``: the batch order's seed (default: drawn from torch's global generator).

    ``distributed``: None (the default) trains on every rank of the ``torch.distributed`` process
    group when one is initialised (``torchrun``; :func:`.distributed.init_from_env`), True requires
    one, False trains this process alone; a :class:`~.distributed.RankSync` names a subgroup.
    Distributed, ``batch_size`` is the global batch (a multiple of the number of ranks) and each
    rank takes its shard of it (a dataset that is an iterable yields the rank's own shard); the
    seed (rank 0's when drawn) also seeds each rank's random stream at each step from (seed,
    step, rank); every rank must build the Trainer and call ``train``, ``save`` and ``load``
    (rank 0 writes, the others wait); ``callback`` runs on every rank and training stops when it
    returns True on any. See :mod:`.distributed` for what is averaged how.

    ``tensorboard``: a folder, a ``SummaryWriter`` or a :class:`~.tensorboard.TensorBoardLogger`:
    the logged rows as TensorBoard scalars under clean tags, and sample grids (the ``tensorboard``
    extra). The CSV log is unchanged.
    """

    def __init__(self, loss_fn: nn.Module, data, *, batch_size: int = 100, model_optimizer=None,
                 critic_optimizer=None, updater=None, params: Mapping | None = None, n_critic: int = 1,
                 callback: Callable | None = None, log_csv: str | os.PathLike | None = None, log_every: int = 10,
                 progress: bool = True, checkpoint: str | os.PathLike | None = None,
                 checkpoint_every: int | None = None, seed: int | None = None, max_grad_norm: float | None = None,
                 distributed: bool | RankSync | None = None, tensorboard=None):
        self.loss_fn = loss_fn
        #: the ranks this Trainer trains on (a :class:`~.distributed.RankSync`), or None in one process
        self.sync = _rank_sync(distributed)
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
        explicit = seed is not None
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        if self.sync is not None:
            seed = self._agree_on_seed(seed, explicit)
        #: the run's seed: the batch order's, and under distributed training each rank's random stream's
        self.seed = int(seed)
        shard = (0, 1) if self.sync is None else (self.sync.rank, self.sync.world_size)
        if isinstance(data, torch.Tensor) or (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
            self.batches = _TensorBatches(data, batch_size, seed, shard)
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
        self._log_synced = False
        if self.sync is not None:
            self._share_state()
        from .tensorboard import as_logger

        #: the TensorBoard logger (rank 0 only), or None
        self.tensorboard = as_logger(tensorboard) if self.is_writer else None
        if self.tensorboard is not None:
            self.tensorboard.bind(loss_fn)

    # -- ranks ----------------------------------------------------------------------------------
    @property
    def is_writer(self) -> bool:
        """Whether this process writes logs and checkpoints: rank 0, or the only process."""
        return self.sync is None or self.sync.rank == 0

    def _agree_on_seed(self, seed: int, explicit: bool) -> int:
        """The seed every rank uses: the one given (the same on every rank that gives one), else rank 0's."""
        rows = self.sync.gather_ints([int(explicit), int(seed)]).tolist()
        given = {s for e, s in rows if e}
        if len(given) > 1:
            raise DistributedError("the ranks were given different seeds", expected="the same seed on every rank "
                                   "(it fixes the global batch order)", given=f"seeds {sorted(given)}",
                                   fix="pass the same seed=... on every rank, or none (rank 0's is used)")
        return given.pop() if given else rows[0][1]

    def _share_state(self) -> None:
        """Check that every rank built the same loss, then copy rank 0's parameters and buffers
        (multipliers included) to every rank, as DistributedDataParallel does when it is built."""
        fn = self.loss_fn
        tensors = list(fn.named_parameters()) + list(fn.named_buffers())
        signature = ";".join(f"{n}:{tuple(t.shape)}:{t.dtype}" for n, t in tensors)
        signature += f"|model {len(self.model_params)}|critic {len(self.critic_params)}"
        self.sync.same(signature, "loss function (the names, shapes and dtypes of its parameters and buffers)")
        self.sync.broadcast_([t for _, t in tensors], src=0)

    def _distributing(self):
        """A context in which the loss computes on this rank's shard of the global batch."""
        import contextlib

        fn, sync = self.loss_fn, self.sync
        if sync is None or not callable(getattr(fn, "distribute", None)):
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def ctx():
            before = fn.sync
            fn.distribute(sync)
            try:
                yield
            finally:
                fn.distribute(before if before is not None else False)

        return ctx()

    def _agree_on_batch(self, x) -> None:
        """Every rank checks its shard (finite, of the compiled shape, in the decoder's support)
        and the ranks agree before the forward pass, so that a bad shard stops every rank, and
        that the shards are of one size."""
        err = None
        try:
            self._check_batch(x)
            fn = self.loss_fn
            if callable(getattr(fn, "check_x", None)):
                fn.check_x(x)
            if getattr(fn, "_scores_x", False):
                from .samples import support_error

                c = fn.components
                err = support_error(x, c.x_support, f"the decoder ({c.decoder_name}, {c.decoder_desc})",
                                    f" (rank {self.sync.rank}'s shard of the batch of step {self.step_count + 1})")
        except (NonFiniteLossError, ObjectiveError) as e:
            err = e
        n = int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() > 0 else -1
        rows = self.sync.gather_ints([int(err is not None), n])
        bad = [r for r in range(self.sync.world_size) if rows[r, 0]]
        if bad:
            if err is not None:
                raise err
            raise DistributedError(f"rank {bad[0]}'s shard of the batch of step {self.step_count + 1} is bad; "
                                   f"rank {self.sync.rank} stops with it", expected="good data on every rank",
                                   given=f"a bad shard on rank {', '.join(map(str, bad))}",
                                   fix=f"read the error rank {bad[0]} printed")
        sizes = rows[:, 1].tolist()
        if len(set(sizes)) > 1:
            raise DistributedError("the ranks' shards of the batch differ in size", expected="shards of one size "
                                   "(the gradient is the mean of the ranks' gradients)", given=f"sizes {sizes}",
                                   fix="give every rank batches of the same size (a tensor or indexable dataset is "
                                       "sharded by the Trainer)")

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
    def _gradients(self, loss, params, retain: bool):
        grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
        if self.sync is not None:
            grads = self.sync.mean_gradients(grads, params)
        return grads

    @staticmethod
    def _update(grads, params, optimizer, max_norm):
        for p, g in zip(params, grads):
            p.grad = g
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()

    def _apply(self, loss, params, optimizer, retain: bool, max_norm):
        self._update(self._gradients(loss, params, retain), params, optimizer, max_norm)

    def _check(self, out) -> None:
        values = out.player_values
        loss = _scalar(values["model"] if "model" in values else out.loss)
        critic = values.get("critic", out.players["critic"].loss)
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

    def _check_batch(self, x) -> None:
        """A batch holding NaN or inf stops training here, naming its examples, before any term
        (or a distribution's argument check) meets the bad value."""
        if not isinstance(x, torch.Tensor) or not (x.is_floating_point() or x.is_complex()):
            return
        if bool(torch.isfinite(x).all()):
            return
        flat = x.reshape(x.shape[0], -1) if x.dim() > 0 else x.reshape(1, 1)
        rows = (~torch.isfinite(flat)).any(dim=1).nonzero().flatten().tolist()
        first = flat[rows[0]][~torch.isfinite(flat[rows[0]])][0].item()
        plural = "s" if len(rows) > 1 else ""
        where = f"row{plural} {_listing(rows)} of the batch"
        idx = getattr(self.batches, "last_index", None)
        if isinstance(self.batches, _TensorBatches) and idx is not None and len(idx) == flat.shape[0]:
            where += f" (example{plural} {_listing([int(idx[r]) for r in rows])} of the dataset)"
        raise NonFiniteLossError(
            f"the data batch of step {self.step_count + 1} holds NaN or infinite values in {len(rows)} of its "
            f"{flat.shape[0]} examples: {where}; the first bad value is {first}. Clean the data (keep the "
            "examples where torch.isfinite(x).flatten(1).all(1)), or check how it was loaded and scaled")

    def _forward(self, x):
        """The loss on a batch; a failure caused by non-finite parameters or outputs is reported as such.

        Distributed, the ranks agree on their shards first, and the logged values of the output
        are the global batch's (averaged over the ranks)."""
        if self.sync is None:
            self._check_batch(x)
        else:
            self._agree_on_batch(x)
        try:
            with self._distributing():
                out = self.loss_fn(x, self.params)
            if self.sync is not None and out.world_size != self.sync.world_size:  # a loss that does not distribute
                if not out.player_values:
                    out.player_values = {k: p.loss.detach() for k, p in out.players.items() if p.loss is not None}
                reduce_output(out, self.sync)
            return out
        except ObjectiveError:  # already says what is wrong (data outside the decoder's support, ...)
            raise
        except (ValueError, RuntimeError) as err:
            bad = [n for n, p in self.loss_fn.named_parameters() if not torch.isfinite(p).all()]
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            if bad:
                raise NonFiniteLossError(
                    f"at step {self.step_count + 1} the parameters {', '.join(bad[:5])}"
                    f"{' ...' if len(bad) > 5 else ''} are no longer finite (a previous update diverged), so the "
                    f"forward pass failed ({type(err).__name__}: {first_line}). Lower the learning "
                    "rate, clip gradients (max_grad_norm=...), or check the data") from err
            if isinstance(err, ValueError) and "to satisfy the constraint" in first_line:
                raise NonFiniteLossError(
                    f"at step {self.step_count + 1} {_culprit(self.loss_fn, err)} returned a distribution with "
                    f"invalid parameters ({_distribution_argument(first_line)}), although every parameter is "
                    f"finite (the largest in size: {_largest_parameter(self.loss_fn)}): the training diverged or "
                    "the network overflowed. Lower the learning rate, clip gradients (max_grad_norm=...), or "
                    "check the data range") from err
            raise

    def critic_step(self) -> None:
        """One critic-only update on a fresh batch."""
        if self.critic_optimizer is None:
            return
        out = self._forward(self.next_batch())
        c = out.players["critic"]
        if c.loss is not None:
            self._apply(c.gradient_loss, self.critic_params, self.critic_optimizer, False, self.max_grad_norm)

    def step(self):
        """One training step; returns the step's :class:`~.compile.LossOutput`.

        Distributed, each rank's random stream is first seeded from (seed, step, rank)."""
        if self.sync is not None:
            torch.manual_seed(rank_seed(self.seed, self.step_count, self.sync.rank))
        for _ in range(self.n_critic - 1):
            self.critic_step()
        out = self._forward(self.next_batch())
        self._check(out)
        critic = out.players["critic"]
        has_critic = critic.loss is not None and self.critic_optimizer is not None and critic.loss.requires_grad
        # both players' gradients before either steps: where a critic shares layers with the model
        # (InfoGAN's Q on the discriminator's trunk) the critic's gradient runs through the model's graph
        model_grads = None
        if self.model_optimizer is not None and out.loss.requires_grad:
            model_grads = self._gradients(out.loss, self.model_params, has_critic)
        if has_critic:
            critic_grads = self._gradients(critic.gradient_loss, self.critic_params, False)
        if model_grads is not None:
            self._update(model_grads, self.model_params, self.model_optimizer, self.max_grad_norm)
        if has_critic:
            self._update(critic_grads, self.critic_params, self.critic_optimizer, self.max_grad_norm)
        if self.updater is not None and out.violations is not None:
            self.updater.step(out)
        self.step_count += 1
        return out

    # -- logs -----------------------------------------------------------------------------------
    def record(self, out) -> dict:
        """The log row of a step's :class:`.LossOutput`: losses, terms, constraints, violations,
        λ (floats; distributed, the global batch's values)."""
        values = out.player_values
        row = {"step": self.step_count, "loss": _scalar(values.get("model", out.loss)), "value": _scalar(out.value)}
        c = values.get("critic", out.players["critic"].loss)
        if c is not None:
            row["critic_loss"] = _scalar(c)
        row.update({t: _scalar(v) for t, v in out.terms.items()})
        for n, v in out.constraints.items():
            row[f"constraint {n}"] = _scalar(v)
        if out.violations is not None and len(out.constraints) == out.violations.numel():
            for n, v in zip(out.constraints, out.violations.tolist()):
                row[f"violation {n}"] = v
        if out.multipliers is not None:
            names = getattr(getattr(self.loss_fn, "lagrangian", None), "names", None) or []
            for i, v in enumerate(out.multipliers.tolist()):
                row[f"lambda {names[i] if i < len(names) else i}"] = v
        return row

    def _write(self, row: dict) -> None:
        if not self.is_writer:
            return
        if self.tensorboard is not None:
            self.tensorboard.write_row(row)
        if self.log_csv is None:
            return
        new = not os.path.exists(self.log_csv) or os.path.getsize(self.log_csv) == 0
        if self._csv_fields is None:
            self._csv_fields = list(row)
        with open(self.log_csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._csv_fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def _sync_log(self) -> None:
        """Make the CSV log agree with the trainer's step: keep the complete rows of steps up to
        :attr:`step_count` (once each: rows are keyed by step) and drop the rest: the rows a killed
        run wrote after its last checkpoint, which the resumed run writes again, and a line cut
        short by the kill. Called on :meth:`load` and before the first row is written (by rank 0
        alone under distributed training)."""
        self._log_synced = True
        self._csv_fields = None
        if self.log_csv is None or not self.is_writer or not os.path.exists(self.log_csv):
            return
        from lagrangian_family.files import atomic_write

        with open(self.log_csv, newline="") as f:
            text = f.read()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines = lines[:-1]  # a row cut short
        rows = list(csv.reader(lines))
        if not rows:
            if text:
                atomic_write(self.log_csv, b"")
            return
        header = rows[0]
        if "step" not in header:
            raise ObjectiveError(f"log_csv {self.log_csv} is not a training log", expected="a CSV file with a "
                                 "'step' column (written by Trainer)", given=f"columns {header[:6]}",
                                 fix="pass another log_csv path, or remove that file")
        col = header.index("step")
        kept, last = [header], -1
        for r in rows[1:]:
            try:
                step = int(r[col]) if len(r) == len(header) else None
            except ValueError:
                step = None
            if step is not None and last < step <= self.step_count:
                kept.append(r)
                last = step
        self._csv_fields = header
        if len(kept) == len(rows) and len(lines) == len(text.splitlines(keepends=True)):
            return

        def write(f):
            import io

            buf = io.StringIO(newline="")
            csv.writer(buf).writerows(kept)
            f.write(buf.getvalue().encode())

        atomic_write(self.log_csv, write)

    # -- the loop -------------------------------------------------------------------------------
    def train(self, steps: int) -> list[dict]:
        """Run ``steps`` steps; returns the logged rows (every ``log_every`` steps and the last).

        A NaN or infinite loss raises :class:`NonFiniteLossError` naming the term(s)."""
        from tqdm import tqdm

        if not self._log_synced:
            self._sync_log()
        history = []
        bar = tqdm(total=steps, disable=not self.progress or not self.is_writer, leave=False)
        tb = self.tensorboard
        try:
            for i in range(steps):
                out = self.step()
                if self.step_count % self.log_every == 0 or i == steps - 1:
                    row = self.record(out)
                    history.append(row)
                    self._write(row)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
                bar.update(1)
                if tb is not None and tb.images_due(self.step_count):
                    tb.write_images(self.step_count)
                every = self.checkpoint_every
                if self.checkpoint is not None and every and self.step_count % every == 0:
                    self.save(self.checkpoint)
                if self.callback is not None:
                    stop = bool(self.callback(self, out))
                    if self.sync is not None:
                        stop = self.sync.any(stop)
                    if stop:
                        break
            if tb is not None and steps > 0 and not tb.images_due(self.step_count):
                tb.write_images(self.step_count)
        finally:
            bar.close()
            if tb is not None:
                tb.close()
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
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict, *, source: str | os.PathLike | None = None) -> None:
        """Restore a :meth:`state_dict`: the run continues as the one that saved it.

        All or nothing: a state that does not fit this trainer (missing keys, a negative step,
        tensors of other shapes or dtypes, non-finite weights, a batch order that is not a
        permutation, other random states) raises :class:`CheckpointError` (naming ``source``, the
        file it came from) and leaves the trainer as it was."""
        where = f"checkpoint {source}" if source is not None else "the state"
        problem = _state_problem(self, state)
        if problem is not None:
            raise CheckpointError(f"{where} does not fit this trainer: {problem}", path=source,
                                  expected="a checkpoint of this trainer: the same objective, components, "
                                           "optimisers, updater and data", given=problem,
                                  fix="resume with the settings the checkpoint was written with, or start over "
                                      "without it")
        import copy

        backup = copy.deepcopy(self.state_dict())
        try:
            self._load_state(state)
        except Exception as err:  # noqa: BLE001 - whatever a bad state raises, the trainer is restored
            self._load_state(backup)
            raise CheckpointError(f"{where} does not fit this trainer: {type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else ''}", path=source,
                                  expected="a checkpoint of this trainer", given=type(err).__name__,
                                  fix="resume with the settings the checkpoint was written with") from err

    def _load_state(self, state: dict) -> None:
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
        if "seed" in state:  # checkpoints before distributed training have none
            self.seed = int(state["seed"])

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint (:mod:`.checkpoint`: versioned, checksummed, atomic).

        Distributed: call it on every rank; rank 0 writes and the others wait until the file
        is written (a failure to write stops every rank)."""
        from .checkpoint import save

        if self.sync is None:
            save(path, self.state_dict(), kind="trainer")
            return
        err = None
        if self.is_writer:
            try:
                save(path, self.state_dict(), kind="trainer")
            except Exception as e:  # noqa: BLE001 - every rank must hear of it
                err = e
        self.sync.check(err, f"writing the checkpoint {path}")

    def load(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save`; training then continues exactly.

        The file is verified (format, version, checksum) and must fit this trainer; any problem
        raises :class:`~.checkpoint.CheckpointError` naming the file, and the trainer is unchanged.
        The CSV log is cut back to the checkpoint's step (rows are keyed by step), and the
        TensorBoard events of later steps are hidden (a folder's writer: ``purge_step``).

        A checkpoint resumes on any number of ranks (the batch order is global). Distributed:
        call it on every rank; each reads the file (a shared file system), and the ranks agree
        that it loaded and that they read the same state."""
        from .checkpoint import checksum, load

        if self.sync is None:
            self.load_state_dict(load(path, kind="trainer"), source=path)
            self._sync_log()
            if self.tensorboard is not None:
                self.tensorboard.resume(self.step_count)
            return
        err = state = None
        try:
            state = load(path, kind="trainer")
            self.load_state_dict(state, source=path)
        except Exception as e:  # noqa: BLE001 - every rank must hear of it
            err = e
        self.sync.check(err, f"loading the checkpoint {path}")
        self.sync.same(checksum(state, "trainer"), f"checkpoint {path} (its content as each rank read it)")
        self._sync_log()
        if self.tensorboard is not None:
            self.tensorboard.resume(self.step_count)


# -- what a loadable state looks like -------------------------------------------------------------

def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _same_structure(template, value, where: str) -> str | None:
    """None when ``value`` has the layout of ``template`` (keys, lengths, tensor shapes and dtypes,
    kinds of plain values), else what differs first."""
    if isinstance(template, torch.Tensor):
        if not isinstance(value, torch.Tensor):
            return f"{where} is a {_describe(value)}, expected a {_describe(template)}"
        if value.shape != template.shape or value.dtype != template.dtype:
            return f"{where} is a {_describe(value)}, expected a {_describe(template)}"
        return None
    if isinstance(template, Mapping):
        if not isinstance(value, Mapping):
            return f"{where} is a {_describe(value)}, expected a dict"
        missing = [k for k in template if k not in value]
        extra = [k for k in value if k not in template]
        if missing or extra:
            parts = ([f"missing {_listing([repr(k) for k in missing], 4)}"] if missing else []) + \
                    ([f"unexpected {_listing([repr(k) for k in extra], 4)}"] if extra else [])
            return f"{where}: " + "; ".join(parts)
        for k in template:
            p = _same_structure(template[k], value[k], f"{where}[{k!r}]")
            if p is not None:
                return p
        return None
    if isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            n = len(value) if isinstance(value, (list, tuple)) else "-"
            return f"{where} is a {_describe(value)} of length {n}, expected length {len(template)}"
        for i, (t, v) in enumerate(zip(template, value)):
            p = _same_structure(t, v, f"{where}[{i}]")
            if p is not None:
                return p
        return None
    if template is None or value is None:
        return None  # optional values (a cached Gaussian draw, a closure)
    if isinstance(template, bool) or isinstance(value, bool):
        return None if isinstance(template, bool) == isinstance(value, bool) else \
            f"{where} is a {_describe(value)}, expected a {_describe(template)}"
    if isinstance(template, (int, float)):
        if not isinstance(value, (int, float)):
            return f"{where} is a {_describe(value)}, expected a number"
        return None
    if type(value) is not type(template):
        return f"{where} is a {_describe(value)}, expected a {_describe(template)}"
    return None


_KEYS = ("step", "loss_fn", "model_optimizer", "critic_optimizer", "updater", "batches", "rng")


def _optimizer_problem(name: str, optimizer, saved, params) -> str | None:
    if optimizer is None:
        return None
    if saved is None:
        return f"it has no {name} state, but this trainer has a {name}"
    if not isinstance(saved, Mapping) or not isinstance(saved.get("param_groups"), list) or \
            not isinstance(saved.get("state"), Mapping):
        return f"its {name} state is not an optimiser state_dict (keys 'state' and 'param_groups')"
    groups = optimizer.state_dict()["param_groups"]
    if len(saved["param_groups"]) != len(groups):
        return f"its {name} has {len(saved['param_groups'])} parameter groups, this one {len(groups)}"
    by_id = {}
    for g_saved, g_own, own_group in zip(saved["param_groups"], groups, optimizer.param_groups):
        ids = g_saved.get("params") if isinstance(g_saved, Mapping) else None
        if not isinstance(ids, list) or len(ids) != len(g_own["params"]):
            return f"its {name}'s parameter groups hold other numbers of parameters"
        by_id.update(zip(ids, own_group["params"]))
    for pid, st in saved["state"].items():
        if pid not in by_id:
            return f"its {name} has state for a parameter {pid!r} this optimiser does not have"
        if not isinstance(st, Mapping):
            return f"its {name}'s state of parameter {pid!r} is not a dict"
        p = by_id[pid]
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                if v.shape != p.shape:
                    return f"its {name}'s {k!r} of parameter {pid!r} has shape {tuple(v.shape)}, the parameter " \
                           f"{tuple(p.shape)}"
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    return f"its {name}'s {k!r} of parameter {pid!r} holds NaN or infinite values"
    return None


def _state_problem(trainer: Trainer, state) -> str | None:
    """What makes ``state`` unfit for ``trainer``, or None."""
    if not isinstance(state, Mapping):
        return f"the state is a {_describe(state)}, not a dict"
    missing = [k for k in _KEYS if k not in state]
    if missing:
        return f"it lacks {', '.join(missing)}"
    step = state["step"]
    if not _is_int(step) or step < 0:
        return f"its step is {step!r}, not a non-negative integer"
    if "seed" in state and (not _is_int(state["seed"]) or not -2**63 <= state["seed"] < 2**64):
        return f"its seed is {state['seed']!r}, not an integer"
    p = _same_structure(trainer.loss_fn.state_dict(), state["loss_fn"], "loss_fn")
    if p is not None:
        return p
    for k, v in state["loss_fn"].items():
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()) and \
                not bool(torch.isfinite(v).all()):
            return f"loss_fn[{k!r}] holds NaN or infinite values"
    for name, opt, params in (("model_optimizer", trainer.model_optimizer, trainer.model_params),
                              ("critic_optimizer", trainer.critic_optimizer, trainer.critic_params)):
        p = _optimizer_problem(name, opt, state[name], params)
        if p is not None:
            return p
    if trainer.updater is not None:
        if state["updater"] is None:
            return "it has no updater state, but this trainer has a dual updater"
        p = _same_structure(trainer.updater.state_dict(), state["updater"], "updater")
        if p is not None:
            return p
    p = _same_structure(trainer.batches.state_dict(), state["batches"], "batches")
    if p is not None:
        return p
    if isinstance(trainer.batches, _TensorBatches):
        b, n = state["batches"], trainer.batches.n
        if not _is_int(b["pos"]) or not 0 <= b["pos"] <= n or not _is_int(b["epoch"]) or b["epoch"] < 0:
            return f"its batch position {b['pos']!r} (epoch {b['epoch']!r}) is outside 0..{n}"
        if not torch.equal(torch.sort(b["perm"]).values, torch.arange(n, dtype=b["perm"].dtype)):
            return f"its batch order is not a permutation of the {n} examples"
    rng, template = state["rng"], _rng_state()
    if isinstance(rng, Mapping):
        template = {k: v for k, v in template.items() if k != "cuda"}
        rng = {k: v for k, v in rng.items() if k != "cuda"}
    p = _same_structure(template, rng, "rng")
    if p is not None:
        return p
    pos = rng["numpy"]["pos"]
    if not _is_int(pos) or not 0 <= pos <= 624 or rng["numpy"]["name"] != "MT19937":
        return "its numpy random state is not a Mersenne Twister state"
    return None
