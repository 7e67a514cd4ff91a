"""The README's training-loop examples run as written (each block marked
``<!-- README example: NAME -->``), and end in the state they describe."""

import math
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def examples() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"<!-- README example: ([^>]+?) -->\s*```python\n(.*?)```", text, flags=re.S)
    return {name: code for name, code in found}


def run(name: str) -> dict:
    code = examples()[name]
    namespace: dict = {"__name__": f"readme_{name.replace(' ', '_')}"}
    exec(compile(code, f"README.md ({name})", "exec"), namespace)  # noqa: S102 - the README's own code
    return namespace


def test_the_readme_has_the_three_training_examples():
    assert set(examples()) >= {"own loop", "Trainer", "cooper"}


def test_own_loop(capsys):
    ns = run("own loop")
    loss_fn, out = ns["loss_fn"], ns["out"]
    assert loss_fn.critic_parameters() and math.isfinite(float(out.value))
    assert "JS estimate" in capsys.readouterr().out
    # the loop's players stayed apart: the model's loss has no gradient in the critic
    grads = torch.autograd.grad(out.players["model"].loss, loss_fn.critic_parameters(), allow_unused=True,
                                retain_graph=True)
    assert all(g is None or not g.abs().max() > 0 for g in grads)


def test_trainer(capsys):
    ns = run("Trainer")
    lag, history = ns["lag"], ns["history"]
    assert ns["trainer"].step_count == 50
    assert not torch.equal(lag.multipliers, torch.ones(2))  # the dual step moved λ
    assert history[-1]["step"] == 50 and "lambda MMD(q(z) || p(z))" in history[-1]
    assert "tensor(" in capsys.readouterr().out


def test_cooper(capsys):
    ns = run("cooper")
    lag, problem, out = ns["lag"], ns["problem"], ns["out"]
    assert torch.equal(lag.multipliers, problem.multiplier.weight.detach())
    assert bool(((lag.multipliers >= 0.001) & (lag.multipliers <= 100.0)).all())
    assert not torch.equal(lag.multipliers, torch.ones(2))
    assert all(math.isfinite(float(v)) for v in out.constraints.values())
    assert "KL(q(x,z) || p(x,z))" in capsys.readouterr().out
