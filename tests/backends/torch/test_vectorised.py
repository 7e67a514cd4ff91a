"""The vectorised trainer: M runs as one stacked model give the results of M separate runs.

The references are independent of the code under test: a :class:`Trainer` over each run alone
(the compiled Lagrangian of the symbolic layer, torch.distributions, the run's own optimiser and
updater), the same runs trained in other stacks, an uninterrupted run for checkpoints, and
``torch.nn.utils.clip_grad_norm_`` for per-run clipping.

Tolerances. A stack reproduces each run **bit for bit** where the computation is the same: on
CPU with one thread, the whole trajectory of a run trained in another stack or alone (every
batched kernel acts on each run's slice by itself, and the sizes below make every run's block of
every stacked tensor a multiple of 32 elements, so that no run's elements fall in a kernel's
scalar remainder loop; the tests run with one thread, see ``conftest.py``). Against the Trainer
the matrix products are batched instead of unbatched, and MKL may reduce them in another order
(for the weight gradients, and in the forward pass for layers with very few outputs, such as
this encoder's head of 2 x 2), which rounds differently (a relative 1e-7 per product, float32);
the first forward pass is compared at 2e-6 relative. Over training the gradients come from a
batched matrix product instead of an unbatched one, whose
reduction over the batch may round differently (a relative 1e-7 per product, float32); Adam then
normalises each gradient element, so a parameter whose gradient is near zero can move by a
different fraction of the learning rate. After 30 steps of these tiny networks the parameters
measured 6e-8 apart at most; the test allows 1e-5 (1 % of one Adam step of size 1e-3), far below
any difference a bug in the loss, the noise, the batches or the updates produces (a wrong sign,
batch or noise draw moves parameters by about one step, 1e-3, from the first step on).
"""

from __future__ import annotations

import pytest
import torch

from lagrangian_family import ObjectiveError
from lagrangian_family.backends.torch import (
    BernoulliMLPDecoder,
    DeterministicMLPEncoder,
    GaussianMLPEncoder,
    GradientAscent,
    Lagrangian,
    NonFiniteLossError,
    RMSPropAscent,
    StandardNormalPrior,
    Trainer,
    checkpoint,
    compile_objective,
)
from lagrangian_family.backends.torch.checkpoint import CheckpointError
from lagrangian_family.backends.torch.vectorised import VectorisedTrainer, stack_key
from lagrangian_family.experiments.datasets import StochasticBatches

# every run's block of every stacked tensor is a multiple of 32 elements (B*Z, B*H, B*X, (2B)^2): see the module
# docstring of the vectorised trainer for why that makes a run's stacked result bit-exact
X, Z, H, B = 32, 2, (16, 16), 16
DATA = torch.rand(64, X, generator=torch.Generator().manual_seed(7))
# (alpha1, learned multipliers?, seed, mmd weight): both signs of alpha, alpha = 0, fixed and learned lambda
SPECS = [(-1.0, True, 0, 100.0), (0.0, False, 1, 100.0), (2.0, True, 2, 100.0), (-2.0, False, 3, 10.0),
         (1.0, True, 4, 100.0)]


def fused_adam(params):
    return torch.optim.Adam(params, lr=1e-3, fused=True)


def build(alpha1, learn, seed, w=100.0):
    """One run as the experiments build it: seeded components, then its noise stream is the global
    generator's state after building."""
    torch.manual_seed(seed)
    enc, dec = GaussianMLPEncoder(X, Z, hidden=H), BernoulliMLPDecoder(Z, X, hidden=H)
    if learn:
        lag = Lagrangian.lagvae(alpha1, (9.0, 0.05), mmd_weight=w, init=1.0)
    else:
        lag = Lagrangian.lagvae(alpha1, (None, None), mmd_weight=w, init=(1.0, 0.3))
    loss_fn = lag.compile(encoder=enc, decoder=dec, prior=StandardNormalPrior(Z))
    updater = RMSPropAscent(lag, lr=1e-2, decay=0.9, eps=1e-10, lower=1e-3, upper=100.0) if learn else None
    noise = torch.Generator()
    noise.set_state(torch.get_rng_state())
    return loss_fn, lag, updater, noise


def batches(seed, data=DATA):
    return StochasticBatches(data, B, seed=seed + 1)


def stack(indices, steps, **kw):
    runs = [build(*SPECS[i][:3], SPECS[i][3]) for i in indices]
    vt = VectorisedTrainer([r[0] for r in runs], kw.pop("data", None) or [batches(SPECS[i][2]) for i in indices],
                           updaters=[r[2] for r in runs], noise=[r[3] for r in runs], batch_size=B,
                           model_optimizer=fused_adam, progress=False, **kw)
    histories = vt.train(steps) if steps else None
    vt.unstack()
    return vt, runs, histories


def same_rows(a: list[dict], b: list[dict]) -> bool:
    """Log rows equal value for value (NaN equal to NaN: the violations of runs without a bound)."""
    def same(u, v):
        return u == v or (isinstance(u, float) and isinstance(v, float) and u != u and v != v)

    return len(a) == len(b) and all(r.keys() == q.keys() and all(same(r[k], q[k]) for k in r) for r, q in zip(a, b))


def params(loss_fn):
    return [p.detach().clone() for p in list(loss_fn.encoder.parameters()) + list(loss_fn.decoder.parameters())]


# -- the same results as separate runs ------------------------------------------------------------------------

def test_first_step_equals_the_compiled_lagrangian():
    """Same parameters, batch and noise: every output of the first step agrees with the run's compiled
    Lagrangian to the rounding of one forward pass (the stacked and the single layers may use different
    matrix-product kernels for matrices this small; at the experiments' sizes they agree bit for bit)."""
    vt, _, _ = stack(range(len(SPECS)), 0)
    out = vt.step()
    for m, (a, learn, seed, w) in enumerate(SPECS):
        loss_fn, lag, updater, _ = build(a, learn, seed, w)
        ref = loss_fn(batches(seed).next())  # the global generator is the run's noise stream here

        def close(a, b):
            torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-7, equal_nan=True)

        close(out.loss[m].detach(), ref.loss.detach())
        close(out.value[m], ref.value)
        for text, v in ref.terms.items():
            close(out.terms[text][m], v)
        close(out.constraints[m], torch.stack(list(ref.constraints.values())))
        close(out.violations[m], ref.violations)
        assert set(out.terms) >= set(ref.terms)


def test_each_run_matches_its_own_trainer():
    steps = 30
    vt, runs, histories = stack(range(len(SPECS)), steps, log_every=10)
    assert vt.failures == {}
    for m, (a, learn, seed, w) in enumerate(SPECS):
        loss_fn, lag, updater, _ = build(a, learn, seed, w)
        trainer = Trainer(loss_fn, batches(seed), batch_size=B, updater=updater, model_optimizer=fused_adam,
                          log_every=10, progress=False, seed=seed)
        ref_history = trainer.train(steps)
        for p, q in zip(params(runs[m][0]), params(loss_fn)):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
        torch.testing.assert_close(runs[m][1].multipliers, lag.multipliers, rtol=1e-5, atol=0)
        assert [sorted(r) for r in histories[m]] == [sorted(r) for r in ref_history]  # same log columns
        assert [r["step"] for r in histories[m]] == [r["step"] for r in ref_history] == [10, 20, 30]
        for r, s in zip(histories[m], ref_history):
            for k, v in s.items():
                assert r[k] == pytest.approx(v, rel=1e-4, abs=1e-5, nan_ok=True), k
        if not learn:  # fixed multipliers stay where they were put
            assert runs[m][1].multipliers.tolist() == pytest.approx([1.0, 0.3])


def test_a_run_does_not_depend_on_its_stack():
    steps = 25
    _, full, full_h = stack(range(len(SPECS)), steps)
    _, part, part_h = stack([3, 0], steps)
    for i, j in ((3, 0), (0, 1)):
        for p, q in zip(params(full[i][0]), params(part[j][0])):
            assert torch.equal(p, q)
        assert torch.equal(full[i][1].multipliers, part[j][1].multipliers)
        assert same_rows(full_h[i], part_h[j])
    _, alone, alone_h = stack([2], steps)
    assert all(torch.equal(p, q) for p, q in zip(params(full[2][0]), params(alone[0][0])))
    assert same_rows(full_h[2], alone_h[0])


# -- the NaN guard --------------------------------------------------------------------------------------------

class PoisonedAt:
    """The run's batches, with NaN pixels from the ``k``-th batch on."""

    def __init__(self, seed, k):
        self.inner, self.k, self.n = batches(seed), k, 0

    def next(self):
        x = self.inner.next()
        self.n += 1
        if self.n >= self.k:
            x[0, 0] = float("nan")
        return x

    def __iter__(self):
        while True:
            yield self.next()

    def state_dict(self):
        return {"inner": self.inner.state_dict(), "n": self.n}

    def load_state_dict(self, state):
        self.inner.load_state_dict(state["inner"])
        self.n = state["n"]


def test_a_diverging_run_is_frozen_and_reported_and_the_others_go_on():
    data = [batches(SPECS[i][2]) for i in range(3)]
    data[1] = PoisonedAt(SPECS[1][2], 6)
    vt, runs, histories = stack(range(3), 12, data=data, log_every=1)
    assert sorted(vt.failures) == [1] and vt.active.tolist() == [True, False, True]
    message = str(vt.failures[1])
    assert message.startswith("the loss became nan at step 6: non-finite ")
    assert "KL(q(x,z) || p(x,z)) = nan" in message and "max_grad_norm" in message
    # the same run alone in the Trainer fails at the same step (torch.distributions rejects the NaN first),
    # and the frozen run kept the parameters it had then
    loss_fn, lag, updater, _ = build(*SPECS[1][:3], SPECS[1][3])
    trainer = Trainer(loss_fn, PoisonedAt(SPECS[1][2], 6), batch_size=B, updater=updater,
                      model_optimizer=fused_adam, progress=False, seed=1)
    trainer.train(5)
    before = params(loss_fn)
    with pytest.raises((NonFiniteLossError, ValueError)):
        trainer.train(1)
    for p, q in zip(params(runs[1][0]), before):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
    assert [r["step"] for r in histories[1]] == [1, 2, 3, 4, 5]
    # the other runs are exactly what they are without the poisoned run
    _, alone, alone_h = stack([0, 2], 12, log_every=1)
    for i, j in ((0, 0), (2, 1)):
        assert all(torch.equal(p, q) for p, q in zip(params(runs[i][0]), params(alone[j][0])))
        assert torch.equal(runs[i][1].multipliers, alone[j][1].multipliers)
        assert same_rows(histories[i], alone_h[j])


def test_training_stops_when_every_run_is_frozen():
    vt, _, histories = stack([0], 10, data=[PoisonedAt(0, 1)])
    assert vt.step_count == 1 and list(vt.failures) == [0] and histories == [[]]


# -- checkpoints -----------------------------------------------------------------------------------------------

def test_resume_is_bit_exact(tmp_path):
    """Interrupt after 7 steps, resume from the checkpoint in freshly built runs, compare with 15
    uninterrupted steps: parameters, multipliers, updater state, the frozen run and the logs."""
    idx = [0, 1, 2]

    def data():
        d = [batches(SPECS[i][2]) for i in idx]
        d[2] = PoisonedAt(SPECS[2][2], 10)  # frozen after the checkpoint: its state must resume too
        d[1] = DATA  # a plain tensor: the Trainer's shuffling, checkpointed
        return d

    whole, whole_runs, whole_h = stack(idx, 15, data=data(), log_every=2)
    ckpt = tmp_path / "stack.pt"
    first, _, first_h = stack(idx, 7, data=data(), log_every=2, checkpoint=ckpt)
    second, second_runs, _ = stack(idx, 0, data=data(), log_every=2)
    second.load(ckpt)
    assert second.step_count == 7
    second_h = second.train(8)
    second.unstack()
    assert sorted(second.failures) == sorted(whole.failures) == [2]
    assert str(second.failures[2]) == str(whole.failures[2])
    for (a, la, ua, _), (b, lb, ub, _) in zip(whole_runs, second_runs):
        assert all(torch.equal(p, q) for p, q in zip(params(a), params(b)))
        assert torch.equal(la.multipliers, lb.multipliers)
        if ua is not None:
            for k, v in ua.state_dict().items():
                w = ub.state_dict()[k]
                assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w
    for m in range(len(idx)):
        assert same_rows(first_h[m][:3] + second_h[m], whole_h[m])  # rows at 2, 4, 6, then 8 ... 14, 15
        assert same_rows([r for r in whole_h[m] if r["step"] > 7], second_h[m])


def test_checkpoint_errors_leave_the_stack_unchanged(tmp_path):
    vt, _, _ = stack([0, 1], 2)
    path = tmp_path / "stack.pt"
    vt.save(path)
    other, _, _ = stack([0], 3)
    before = other.state_dict()

    def unchanged():
        after = other.state_dict()
        assert after["step"] == before["step"] == 3
        assert all(torch.equal(a, b) for a, b in zip(after["model"].values(), before["model"].values()))

    with pytest.raises(CheckpointError, match="holds another number of runs") as err:
        other.load(path)
    assert err.value.path == path
    unchanged()
    wide, _, _ = stack([0, 1], 0)
    wide.save(tmp_path / "fresh.pt")
    state = checkpoint.load(tmp_path / "fresh.pt", kind="vectorised")
    state["model"] = {k: v[:, :1] for k, v in state["model"].items()}  # other shapes: refused, nothing changed
    keep = wide.state_dict()
    with pytest.raises(CheckpointError, match="does not fit this stack"):
        wide.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(wide.state_dict()["model"].values(), keep["model"].values()))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        other.load(bad)
    trainer_ckpt = tmp_path / "trainer.pt"
    checkpoint.save(trainer_ckpt, {"step": 3}, kind="trainer")
    with pytest.raises(CheckpointError, match="is a 'trainer' checkpoint"):
        other.load(trainer_ckpt)
    unchanged()


# -- per-run clipping ---------------------------------------------------------------------------------------------

def test_gradient_clipping_is_per_run():
    vt, _, _ = stack([0, 1, 2], 0, max_grad_norm=0.5)
    g = torch.Generator().manual_seed(3)
    grads = [torch.randn(3, *p.shape[1:], generator=g) * s for p, s in zip(vt.stacked_params, (1, 0.01, 3, 5) * 3)]
    grads[0][1] *= 1e-4  # run 1's total norm is below the bound: left alone
    expected = []
    for m in range(3):
        own = [gr[m].clone() for gr in grads]
        ps = [torch.nn.Parameter(torch.zeros_like(o)) for o in own]
        for p, o in zip(ps, own):
            p.grad = o
        torch.nn.utils.clip_grad_norm_(ps, 0.5)
        expected.append([p.grad for p in ps])
    vt._clip(grads)
    for m in range(3):
        for gr, e in zip(grads, expected[m]):
            torch.testing.assert_close(gr[m], e, rtol=1e-6, atol=1e-9)


# -- what cannot be stacked ---------------------------------------------------------------------------------------

def test_incompatible_runs_are_refused_with_a_clear_error():
    a = build(-1.0, True, 0)
    torch.manual_seed(0)
    wide = Lagrangian.lagvae(-1.0, (9.0, 0.05)).compile(encoder=GaussianMLPEncoder(X, Z, hidden=(32,)),
                                                         decoder=BernoulliMLPDecoder(Z, X, hidden=(32,)),
                                                         prior=StandardNormalPrior(Z))
    with pytest.raises(ObjectiveError, match="differ in architecture") as err:
        VectorisedTrainer([a[0], wide], [DATA, DATA], progress=False)
    assert "expected:" in str(err.value) and "fix:" in str(err.value)
    assert stack_key(a[0]) != stack_key(wide)
    plain = compile_objective("vae", encoder=GaussianMLPEncoder(X, Z, hidden=H),
                              decoder=BernoulliMLPDecoder(Z, X, hidden=H), prior=StandardNormalPrior(Z))
    with pytest.raises(ObjectiveError, match="not a compiled Lagrangian"):
        VectorisedTrainer([plain], [DATA], progress=False)
    b = build(1.0, True, 1)
    other_updater = GradientAscent(b[1], lr=0.1)
    with pytest.raises(ObjectiveError, match="different dual updaters"):
        VectorisedTrainer([a[0], b[0]], [DATA, DATA], updaters=[a[2], other_updater], progress=False)
    with pytest.raises(ObjectiveError, match="one entry per run"):
        VectorisedTrainer([a[0], b[0]], DATA, progress=False)
    with pytest.raises(ObjectiveError, match="2 entries for 1 runs"):
        VectorisedTrainer([a[0]], [DATA, DATA], progress=False)
    with pytest.raises(ObjectiveError, match="batch has shape"):
        VectorisedTrainer([a[0], b[0]], [DATA, DATA[:, :5]], progress=False).step()


def test_the_encoder_must_be_gaussian():
    torch.manual_seed(0)
    lag = Lagrangian(None, [("MMD(q(z) || p(z))", 0.1)])
    loss_fn = lag.compile(encoder=DeterministicMLPEncoder(X, Z, hidden=H), decoder=BernoulliMLPDecoder(Z, X, hidden=H),
                          prior=StandardNormalPrior(Z))
    with pytest.raises(ObjectiveError, match="the encoder is a DeterministicMLPEncoder") as err:
        VectorisedTrainer([loss_fn], [DATA], progress=False)
    assert "Trainer" in str(err.value)
