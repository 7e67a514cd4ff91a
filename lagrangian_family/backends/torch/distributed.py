"""Distributed training on ``torch.distributed``: one process per device, launched by ``torchrun``.

The :class:`~.train.Trainer` trains on every rank of an initialised process group (it detects
one, or takes ``distributed=True``); a compiled objective computes on the ranks' shards of one
global batch (:meth:`.CompiledObjective.distribute`). What happens across ranks:

* **Data.** ``batch_size`` is the *global* batch. Every rank holds the same batch sampler (the
  same seed, broadcast from rank 0), so the global batch of step t is the same set of examples
  as in a single-process run; rank r takes the r-th contiguous shard of ``batch_size / world
  size`` examples. The sampler's state is global, so a checkpoint resumes on any number of ranks.
* **Parameters** (both players' and every buffer: λ, ε, a prior's tensors) are broadcast from
  rank 0 when the Trainer is built, as ``DistributedDataParallel`` does.
* **Gradients** are all-reduced explicitly, one collective per player and step: each player's
  gradient (from ``torch.autograd.grad`` of its own loss, see :class:`.Player`) is averaged over
  the ranks before clipping and its optimiser's step, so every rank takes the same step and the
  players' gradients never mix (layers a critic shares with the model are the critic player's,
  whose gradient then holds both players' gradients in them, :attr:`.Player.gradient_loss`).
  ``DistributedDataParallel`` is not used: its reducer runs in the hooks of the gradients'
  accumulation into ``.grad``, which ``torch.autograd.grad`` (each player's gradient from one
  forward pass) never runs, it expects one backward over all the parameters per forward, and
  its buffer broadcast would overwrite the multipliers, which are buffers, with rank 0's at every
  forward (the silent overwrite of issue 9).
* **The dual step** uses the constraint estimates averaged over the ranks (``out.violations``
  and ``out.constraints`` are all-reduced in the forward pass, with every other logged value:
  ``out.value``, ``out.terms``, ``out.heads``, ``out.player_values``), so every rank applies
  the same update to the same λ, the one a single process would apply to the global batch.
* **Random numbers.** Under the Trainer each rank's torch generator is seeded at every step
  from (seed, step, rank) (:func:`rank_seed`): the ranks draw independent noise, a resumed run
  draws what the uninterrupted one drew, and nothing depends on how a rank's generator was
  left. The draws differ from a single-process run's (as in any data-parallel run).
* **Checkpoints** are written by rank 0 (:mod:`.checkpoint`) while the others wait; every rank
  reads the file on resume and the ranks agree that it loaded. **Logs** (CSV, TensorBoard, the
  progress bar) are written by rank 0.
* **Errors** that one rank meets (a bad batch shard, a file that does not load) are agreed on
  before the next collective, so every rank raises (:class:`DistributedError` on the ranks
  that did not meet it) instead of waiting forever for the one that did.

Where a term is not a mean over the examples, the mean of the ranks' estimates is not the
global batch's estimate, and each such place is handled or stated:

* **MMD** (the V-statistic is a mean over *pairs*, and its O(1/n) bias depends on the batch
  size, so that an ε calibrated for one batch size would move with the number of ranks): the
  samples of both sides are all-gathered and the MMD is computed on the global batch on every
  rank. The value equals the single-process value on the same samples; the gradient flows into
  the rank's own samples, scaled by the world size so that the average over the ranks is the
  single-process gradient.
* **Score-function gradients** of non-reparameterised samples use a leave-one-out baseline
  from the rank's own shard: still unbiased, but not the single-process gradient. Values are
  unaffected.
* **Batch normalisation** in user components keeps per-rank statistics (as DDP without
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``).
* Everything else (log-likelihoods, closed-form and sampled KLs, the critics' losses and the
  adversarial estimates of JS, f-divergences, W and AVB's KL) is a mean over the examples:
  with equal shards, the mean over the ranks is the global batch's mean.

A script launched by ``torchrun --nproc_per_node 2 script.py`` calls :func:`init_from_env` and
builds the Trainer as in a single process (``examples/ddp_lagvae.py``). Outside ``torchrun``
:func:`init_from_env` returns None and nothing changes:

>>> init_from_env() is None
True
>>> rank_seed(0, 5, 1) == rank_seed(0, 5, 1) != rank_seed(0, 5, 0)
True
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence

import numpy as np
import torch

from lagrangian_family.errors import ObjectiveError

__all__ = ["RankSync", "DistributedError", "init_from_env", "rank_seed", "reduce_output"]


class DistributedError(ObjectiveError):
    """Another rank failed (its own error says why), or the ranks disagree (different models,
    seeds or batch shards), so this rank stops too rather than wait for it.

    >>> issubclass(DistributedError, ObjectiveError)
    True
    """


def _dist():
    import torch.distributed as dist

    return dist


def _initialised() -> bool:
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


class RankSync:
    """The ranks of an initialised ``torch.distributed`` process group and the few collectives the
    backend needs, each one call over flattened buffers.

    ``group``: the process group (default: the world). ``rank`` and ``world_size`` are this
    process's rank and the group's size; ``device`` is where the collectives' buffers live (the
    current CUDA device for NCCL, else the CPU). Every method is a collective: call it on every
    rank, in the same order.

    Raises :class:`~lagrangian_family.ObjectiveError` when no process group is initialised.
    """

    def __init__(self, group=None):
        if not _initialised():
            raise ObjectiveError("distributed training needs an initialised torch.distributed process group",
                                 expected="torch.distributed.is_initialized() on every rank",
                                 given="no process group", fix="launch with torchrun and call "
                                 "lagrangian_family.backends.torch.distributed.init_from_env() (or "
                                 "torch.distributed.init_process_group) first, or train with distributed=False")
        dist = _dist()
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.backend = str(dist.get_backend(group))
        if self.backend == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")

    def __deepcopy__(self, memo):  # a process group is not copied with the module that uses it
        return self

    def __repr__(self) -> str:
        return f"RankSync(rank={self.rank}, world_size={self.world_size}, backend={self.backend!r})"

    # -- reductions ---------------------------------------------------------------------------
    def _all_reduce_sum(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The sum over the ranks of each tensor (one collective per dtype)."""
        dist = _dist()
        out: list[torch.Tensor | None] = [None] * len(tensors)
        by_dtype: dict[torch.dtype, list[int]] = {}
        for i, t in enumerate(tensors):
            by_dtype.setdefault(t.dtype, []).append(i)
        for idx in by_dtype.values():
            flat = torch.cat([tensors[i].detach().reshape(-1).to(self.device) for i in idx])
            dist.all_reduce(flat, group=self.group)
            pos = 0
            for i in idx:
                t = tensors[i]
                out[i] = flat[pos:pos + t.numel()].reshape(t.shape).to(t.device)
                pos += t.numel()
        return out  # type: ignore[return-value]

    def mean(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The mean over the ranks of each tensor (detached; the same on every rank)."""
        return [t / self.world_size for t in self._all_reduce_sum(tensors)]

    def mean_gradients(self, grads: Sequence[torch.Tensor | None],
                       params: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """Each parameter's gradient averaged over the ranks; None where no rank had one (an
        unused parameter stays without a gradient, as in a single process)."""
        for g in grads:
            if g is not None and g.layout != torch.strided:
                raise ObjectiveError("distributed training with sparse gradients", expected="dense gradients",
                                     given=f"a {g.layout} gradient", fix="use dense embeddings (sparse=False)")
        vals = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
        used = torch.tensor([g is not None for g in grads], dtype=torch.float32)
        *sums, count = self._all_reduce_sum(vals + [used])
        return [None if count[i] == 0 else s / self.world_size for i, s in enumerate(sums)]

    def broadcast_(self, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
        """Overwrite the tensors in place with rank ``src``'s (one collective per dtype)."""
        dist = _dist()
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        with torch.no_grad():
            for group in by_dtype.values():
                flat = torch.cat([t.detach().reshape(-1).to(self.device) for t in group])
                dist.broadcast(flat, src=src, group=self.group)
                pos = 0
                for t in group:
                    t.copy_(flat[pos:pos + t.numel()].reshape(t.shape))
                    pos += t.numel()

    def broadcast_int(self, value: int, src: int = 0) -> int:
        """Rank ``src``'s integer (in absolute value below 2**63)."""
        t = torch.tensor([int(value)], dtype=torch.int64)
        self.broadcast_([t], src)
        return int(t[0])

    def gather_ints(self, values: Sequence[int]) -> torch.Tensor:
        """Every rank's integers: an int64 tensor ``(world_size, len(values))`` (row r: rank r's)."""
        dist = _dist()
        mine = torch.tensor([int(v) for v in values], dtype=torch.int64, device=self.device)
        rows = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(rows, mine, group=self.group)
        return torch.stack(rows).cpu()

    # -- samples ------------------------------------------------------------------------------
    def gather(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor concatenated over the ranks along its first dimension, in rank order (the
        order of the global batch's shards). This rank's part keeps its gradient; the others'
        are detached copies. Shards may differ in length; their other dimensions may not.

        A value computed on the gathered tensors has this rank's share of the gradient only;
        :meth:`scale_local_gradient` makes the *average* of the ranks' gradients the gradient of
        the value (what the Trainer's mean all-reduce computes)."""
        dist = _dist()
        if not tensors:
            return []
        widths = [int(torch.Size(t.shape[1:]).numel()) for t in tensors]
        sizes = self.gather_ints([t.shape[0] for t in tensors] + widths)
        k = len(tensors)
        lengths, all_widths = sizes[:, :k], sizes[:, k:]
        if not bool((all_widths == all_widths[0]).all()):
            raise DistributedError("the ranks gathered samples of different shapes",
                                   expected="the same components on every rank (samples of one shape)",
                                   given=f"widths {all_widths.tolist()} (rows: ranks)",
                                   fix="build the same encoder, decoder and prior on every rank")
        longest = lengths.max(0).values.tolist()
        dtype = tensors[0].dtype
        for t in tensors[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        parts = []
        for t, n, w in zip(tensors, longest, widths):
            rows = t.detach().reshape(t.shape[0], w).to(device=self.device, dtype=dtype)
            if rows.shape[0] < n:
                rows = torch.cat([rows, rows.new_zeros(n - rows.shape[0], w)])
            parts.append(rows.reshape(-1))
        buf = torch.cat(parts)
        bufs = [torch.empty_like(buf) for _ in range(self.world_size)]
        dist.all_gather(bufs, buf, group=self.group)
        out = []
        offset = 0
        for i, (t, n, w) in enumerate(zip(tensors, longest, widths)):
            pieces = []
            for r in range(self.world_size):
                if r == self.rank:
                    pieces.append(t)
                else:
                    m = int(lengths[r, i])
                    piece = bufs[r][offset:offset + m * w].reshape(m, *t.shape[1:])
                    pieces.append(piece.to(device=t.device, dtype=t.dtype))
            out.append(torch.cat(pieces))
            offset += n * w
        return out

    def scale_local_gradient(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` unchanged, its gradient multiplied by the world size: for a value computed on
        :meth:`gather`'s tensors, the mean of the ranks' gradients is then the value's gradient."""
        if self.world_size == 1 or not value.requires_grad:
            return value
        return value + (self.world_size - 1) * (value - value.detach())

    # -- agreement ----------------------------------------------------------------------------
    def failed_ranks(self, failed: bool) -> list[int]:
        """The ranks where ``failed`` is True (every rank gets the same list)."""
        flags = self.gather_ints([int(bool(failed))])
        return [r for r in range(self.world_size) if flags[r, 0]]

    def check(self, error: BaseException | None, what: str) -> None:
        """Agree on a failure: raise ``error`` on the rank that met it and a
        :class:`DistributedError` naming that rank on the others; return when no rank failed."""
        bad = self.failed_ranks(error is not None)
        if not bad:
            return
        if error is not None:
            raise error
        ranks = ", ".join(map(str, bad))
        raise DistributedError(f"{what} failed on rank {ranks}; this rank (rank {self.rank}) stops with it",
                               expected=f"{what} to succeed on every rank", given=f"a failure on rank {ranks}",
                               fix=f"read the error rank {bad[0]} printed")

    def same(self, signature: str, what: str) -> None:
        """Check that every rank has the same ``signature`` (a text describing ``what``)."""
        digest = int.from_bytes(hashlib.sha256(signature.encode()).digest()[:8], "little", signed=True)
        got = self.gather_ints([digest])[:, 0].tolist()
        odd = [r for r, d in enumerate(got) if d != got[0]]
        if odd:
            raise DistributedError(f"the ranks disagree on {what}",
                                   expected=f"the same {what} on every rank",
                                   given=f"rank {odd[0]}'s differs from rank 0's",
                                   fix=f"build the same {what} on every rank (the same code and arguments)")

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        return bool(self.failed_ranks(flag))

    def barrier(self) -> None:
        """Wait for every rank."""
        _dist().barrier(group=self.group)


def init_from_env(backend: str | None = None, *, timeout: float | None = None) -> RankSync | None:
    """Join the process group that ``torchrun`` describes in the environment, and return it.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (``env://``); ``backend``
    defaults to NCCL when CUDA is available (each rank then uses ``cuda:LOCAL_RANK``) and gloo
    otherwise; ``timeout`` (seconds) bounds how long a collective waits for a rank. A process
    group already initialised is used as it is. Returns None when the process was not launched
    by ``torchrun`` (no ``WORLD_SIZE`` and ``RANK``, no process group), so a script or command
    can call it unconditionally and train in one process.
    """
    env = os.environ
    if _initialised():
        return RankSync()
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    dist = _dist()
    if not dist.is_available():
        raise ObjectiveError("this torch build has no torch.distributed", expected="torch with distributed support",
                             given=f"torch {torch.__version__}", fix="install a torch build with distributed support")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(env.get("LOCAL_RANK", 0)))
    kwargs = {} if timeout is None else {"timeout": datetime.timedelta(seconds=float(timeout))}
    dist.init_process_group(backend, **kwargs)
    return RankSync()


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream at step ``step`` of a run seeded ``seed``: a
    63-bit integer mixed by numpy's ``SeedSequence``, so nearby triples give unrelated streams."""
    ss = np.random.SeedSequence([int(seed) % 2**64, int(step), int(rank)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def reduce_output(out, sync: RankSync | None):
    """Average the logged values of a :class:`.LossOutput` over the ranks, in place: ``value``,
    ``terms``, ``heads``, ``player_values``, and for a Lagrangian ``constraints``, ``violations``
    and ``primal`` (one collective). The differentiable fields (``loss``, the players' losses,
    ``primal_loss``, ``constraint_losses``) stay this rank's. Sets ``out.world_size``. Returns ``out``."""
    if sync is None:
        return out
    fields: list[tuple[str, object]] = [("value", None)]
    tensors = [out.value]
    for k, v in out.player_values.items():
        fields.append(("player_values", k))
        tensors.append(v)
    for k, v in out.terms.items():
        fields.append(("terms", k))
        tensors.append(v)
    for k, v in out.heads.items():
        fields.append(("heads", k))
        tensors.append(v)
    if out.violations is not None:
        fields.append(("violations", None))
        tensors.append(out.violations)
    reduced = sync.mean([t.detach() for t in tensors])
    for (field, key), v in zip(fields, reduced):
        if key is None:
            setattr(out, field, v)
        else:
            getattr(out, field)[key] = v
    if out.constraints:
        out.constraints = {n: out.heads[n] for n in out.constraints}
    if out.primal is not None and "primal" in out.heads:
        out.primal = out.heads["primal"]
    out.world_size = sync.world_size
    return out
