"""Distributed training on 2 CPU processes (gloo): λ the same on every rank at every step and
equal to a single process's over the same global batches, the parameters equal across ranks,
checkpoints that resume across numbers of ranks, the MMD on the global batch, and errors that
every rank hears of.

One spawn of 2 processes runs every 2-rank scenario (``ddp_helpers.rank_main``); the tests read
what each rank saved. The single-process references run here, in the test's process.
"""

from __future__ import annotations

import csv

import pytest
import torch

from lagrangian_family.backends.torch import Trainer

from .ddp_helpers import (
    BATCH,
    SEED,
    STEPS,
    data,
    deterministic_problem,
    lambdas_callback,
    rank_main,
    state,
    torchrun,
)
from .helpers import paper_mmd

dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # the single process: 200 steps with a checkpoint at 100
        loss_fn, up = deterministic_problem(init_seed=10)
        lams: list = []
        tr = Trainer(loss_fn, data(), batch_size=BATCH, updater=up, seed=SEED, progress=False,
                     callback=lambdas_callback(lams))
        tr.train(STEPS // 2)
        tr.save(out / "single_100.pt")
        tr.train(STEPS // 2)
        single = {"lambdas": torch.stack(lams), "final": state(loss_fn)}

        for attempt in range(2):
            folder = out / f"spawn{attempt}"
            folder.mkdir()
            try:
                mp.spawn(rank_main, args=(2, str(folder / "rendezvous"), str(folder), str(out / "single_100.pt")),
                         nprocs=2, join=True)
                break
            except mp.ProcessExitedException as e:
                # Known and not ours to fix here (as in test_train_command's torchrun test): now and
                # then a gloo rank of this torch build aborts in C++ ("terminate called without an
                # active exception", SIGABRT) although it left the process group; a second spawn in a
                # fresh folder tells that apart from a real failure, which fails both times.
                if attempt or e.signal_name != "SIGABRT":
                    raise
        ranks = [torch.load(folder / f"rank{r}.pt") for r in (0, 1)]

        # the two ranks' checkpoint at step 100, continued in one process
        loss_fn, up = deterministic_problem(init_seed=77)
        tr = Trainer(loss_fn, data(), batch_size=BATCH, updater=up, seed=1, progress=False)
        tr.load(folder / "two_ranks_100.pt")
        tr.train(STEPS // 2)
        from_two = state(loss_fn)
    finally:
        torch.set_num_threads(n)
    return {"out": folder, "single": single, "ranks": ranks, "from_two": from_two}


def _max_diff(a: dict, b: dict) -> float:
    """The largest absolute difference between two state dicts (asserting the same keys)."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def test_the_trainer_found_the_process_group(run):
    assert [r["distributed_mode"] for r in run["ranks"]] == [(True, 2), (True, 2)]


def test_lambda_is_identical_across_ranks_at_every_step(run):
    r0, r1 = (r["det_lambdas"] for r in run["ranks"])
    assert r0.shape == (STEPS, 2)
    assert torch.equal(r0, r1)
    assert not torch.equal(r0[-1], torch.ones(2))  # the dual steps moved λ


def test_lambda_matches_the_single_process_over_the_same_global_batches(run):
    two = run["ranks"][0]["det_lambdas"]
    one = run["single"]["lambdas"]
    assert float((two - one).abs().max()) < 1e-5
    assert float((one[-1] - one[0]).abs().max()) > 0.1  # λ travelled far enough for that to mean something


def test_parameters_are_identical_across_ranks(run):
    r0, r1 = (r["det_final"] for r in run["ranks"])
    assert _max_diff(r0, r1) == 0.0
    s0, s1 = (r["sto_full"] for r in run["ranks"])  # a stochastic problem with a critic
    assert _max_diff(s0, s1) == 0.0
    assert any("critic" in k for k in s0)


def test_two_ranks_end_where_one_process_ends(run):
    assert _max_diff(run["ranks"][0]["det_final"], run["single"]["final"]) < 1e-5


def test_a_two_rank_checkpoint_resumes_on_one_process(run):
    assert _max_diff(run["from_two"], run["ranks"][0]["det_final"]) < 1e-5


def test_a_one_process_checkpoint_resumes_on_two_ranks(run):
    for r in run["ranks"]:
        assert _max_diff(r["det_from_single"], run["single"]["final"]) < 1e-5


def test_a_two_rank_checkpoint_resumes_on_two_ranks_bit_for_bit(run):
    # random components, a critic, the authors' updater: the same noise after the resume
    for r in run["ranks"]:
        assert _max_diff(r["sto_resumed"], r["sto_full"]) == 0.0


def test_the_mmd_is_the_global_batch_s(run):
    m = [r["mmd"] for r in run["ranks"]]
    theta = torch.tensor([[1.0, 0.3], [-0.4, 0.8]], requires_grad=True)
    u = torch.cat([m[0]["u"], m[1]["u"]])
    v = torch.cat([m[0]["v"], m[1]["v"]])
    value = paper_mmd(torch.tanh(u @ theta), v)  # the authors' formula on the global batch
    (grad,) = torch.autograd.grad(value, theta)
    for r in m:
        assert torch.allclose(r["value"], value.detach(), atol=1e-6)
        assert torch.allclose(r["mean_grad"], grad, atol=1e-6)
    # each rank's own gradient is its share only (times the world size): neither is the whole
    assert not torch.allclose(m[0]["grad"], grad, atol=1e-4)


def test_cooper_steps_the_multipliers_on_the_global_batch(run):
    r0, r1 = run["ranks"]
    assert torch.equal(r0["cooper_lambda_distributed"], r1["cooper_lambda_distributed"])
    # the primal does not move (lr 0), so three dual steps by SGD are 1 + 3 · 0.05 · (D - ε) of the
    # global batch (the two shards together), clipped at 0
    expected = (1.0 + 3 * 0.05 * r0["cooper_global_violations"]).clamp_min(0.0)
    assert torch.allclose(r0["cooper_lambda_distributed"], expected, atol=1e-5)
    # each rank on its own shard: the multipliers drift apart (issue 9)
    assert not torch.allclose(r0["cooper_lambda_local"], r1["cooper_lambda_local"], atol=1e-4)


def test_only_rank_0_writes_logs(run):
    out = run["out"]
    assert (out / "log_rank0.csv").exists() and not (out / "log_rank1.csv").exists()
    assert (out / "tb_rank0").is_dir() and not (out / "tb_rank1").exists()
    with open(out / "log_rank0.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(50, STEPS + 1, 50))
    # the row of step 200 logs the λ of its forward pass: every rank's after step 199's dual update
    lam = run["ranks"][0]["det_lambdas"][-2]
    assert float(rows[-1]["lambda KL(q(x,z) || p(x,z))"]) == pytest.approx(float(lam[0]), abs=1e-6)


def test_errors_stop_every_rank(run):
    r0, r1 = run["ranks"]
    assert r1["nan_shard"].startswith("NonFiniteLossError: the data batch of step 1")
    assert r0["nan_shard"].startswith("DistributedError: rank 1's shard of the batch of step 1 is bad")
    for r in (r0, r1):
        assert r["seeds"].startswith("DistributedError: the ranks were given different seeds")
        assert r["odd_batch"].startswith("ObjectiveError: the global batch of 15 examples does not split into 2")
        assert r["local_violations"].startswith(f"ObjectiveError: the violations are rank {r is r1:d}'s own")
    assert r1["missing_checkpoint"].startswith("CheckpointError")
    assert r0["missing_checkpoint"].startswith("DistributedError: loading the checkpoint")


def test_the_torchrun_example_and_its_resume_in_one_process(tmp_path, capsys):
    """``examples/ddp_lagvae.py`` under ``torchrun --nproc_per_node 2`` (the env:// launch), then the
    same command in one process resumes from the 2 ranks' checkpoint."""
    import importlib.util
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "ddp_lagvae.py"

    def args_of(folder):
        return ["--steps", "20", "--ref-steps", "10", "--batch-size", "50", "--out", str(folder)]

    run, folder = torchrun([str(example)], args_of, lambda attempt: tmp_path / f"run{attempt}")
    args = args_of(folder)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert "2 rank(s); epsilon = [" in run.stdout
    lam = [ln.split("lambda = ")[1] for ln in lines if ln.startswith("rank ")]
    assert len(lam) == 2 and lam[0] == lam[1]
    with open(folder / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [20]

    spec = importlib.util.spec_from_file_location("example_ddp_lagvae", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args[1] = "30"
    module.main(args)  # no torchrun: one process, from the checkpoint of step 20
    assert "1 rank(s)" in capsys.readouterr().out
    with open(folder / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [20, 30]


# -- in one process: the switches and their errors ----------------------------------------------

def test_distributed_training_needs_a_process_group():
    import lagrangian_family as lf
    from lagrangian_family.backends.torch import RankSync

    loss_fn, _ = deterministic_problem()
    with pytest.raises(lf.ObjectiveError, match="needs an initialised torch.distributed process group") as e:
        Trainer(loss_fn, data(), batch_size=BATCH, distributed=True, progress=False)
    assert "torchrun" in e.value.fix
    with pytest.raises(lf.ObjectiveError, match="process group"):
        loss_fn.distribute()
    with pytest.raises(lf.ObjectiveError, match="process group"):
        RankSync()
    with pytest.raises(lf.ObjectiveError, match="a bad distributed argument"):
        Trainer(loss_fn, data(), batch_size=BATCH, distributed="yes", progress=False)
    with pytest.raises(lf.ObjectiveError, match="distribute\\(\\) takes True, False or a RankSync"):
        loss_fn.distribute("yes")
    # without a process group the default is one process, and the output says so
    tr = Trainer(loss_fn, data(), batch_size=BATCH, progress=False)
    assert tr.sync is None and tr.is_writer
    out = loss_fn(data()[:4])
    assert out.world_size == 1 and set(out.player_values) == {"model"}
    assert float(out.player_values["model"]) == pytest.approx(float(out.loss.detach()))


def test_an_updater_takes_the_output_in_one_process():
    loss_fn, up = deterministic_problem()
    out = loss_fn(data()[:8])
    lam = loss_fn.lagrangian.multipliers.clone()
    assert up.step(out)
    # projected gradient ascent, by hand: λ + lr (D - ε), clipped at 0
    assert torch.allclose(loss_fn.lagrangian.multipliers, (lam + 0.05 * out.violations).clamp_min(0.0))


def test_rank_seeds_differ_by_rank_and_step():
    from lagrangian_family.backends.torch.distributed import rank_seed

    seeds = {rank_seed(s, t, r) for s in (0, 1) for t in range(50) for r in range(4)}
    assert len(seeds) == 2 * 50 * 4 and all(0 <= v < 2**63 for v in seeds)
