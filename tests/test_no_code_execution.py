"""No text given as a value is ever evaluated: payloads through every public entry point.

Each payload, if evaluated as Python, would create a marker file. Besides, sympy's string
evaluator (``sympy.parsing.sympy_parser.eval_expr``, the only way sympy turns text into code)
is watched for the whole module: a call on a payload's text is recorded, whatever catches the
exception. (sympy's own ``nsimplify`` evaluates text it writes itself from a float's digits;
only the payloads' texts are flagged.)
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import sympy
import sympy.parsing.sympy_parser as sympy_parser

import lagrangian_family as lf
from lagrangian_family.backends.exact import DiscreteModel, bind_coefficients, evaluate
from lagrangian_family.cli import main
from lagrangian_family.symbolic import bounds, conditions, dual, normal_form
from lagrangian_family.symbolic.objective import Objective, as_coefficient, as_expr, text_coefficient

EVALUATED: list[str] = []


@pytest.fixture(autouse=True)
def trap(monkeypatch):
    EVALUATED.clear()

    real = sympy_parser.eval_expr

    def eval_expr(code, *args, **kwargs):
        if "pwned" in str(code):
            EVALUATED.append(str(code))
            raise AssertionError(f"sympy evaluated a payload: {code}")
        return real(code, *args, **kwargs)

    monkeypatch.setattr(sympy_parser, "eval_expr", eval_expr)
    yield
    assert not EVALUATED, f"text reached sympy's evaluator: {EVALUATED}"


CODE = [
    "__import__('pathlib').Path({marker!r}).touch()",
    "exec(\"open({marker!r}, 'w').close()\")",
    "(lambda: __import__('pathlib').Path({marker!r}).touch())()",
]
#: even a harmless number given as text is refused: text is never sympified
PAYLOADS = [*CODE, "2"]


@pytest.fixture
def model():
    return DiscreteModel.random(3, 2, rng=0)


BETA_VAE = lf.zoo.get("beta_vae")
KL_Z = next(iter(lf.parse("KL(q(z) || p(z))")))

SYMBOLIC = {
    "exact.bind_coefficients": lambda t, m: bind_coefficients(BETA_VAE, {"beta": t}),
    "exact.evaluate": lambda t, m: evaluate(BETA_VAE, m, values={"beta": t}),
    "bounds.algorithm1_bound": lambda t, m: bounds.algorithm1_bound("q", t),
    "normal_form.is_zero": lambda t, m: normal_form.is_zero(t),
    "dual.sign": lambda t, m: dual.sign(t),
    "conditions.reduce_nonnegative": lambda t, m: conditions.reduce_nonnegative([t]),
    "DualForm.subs": lambda t, m: lf.classify("beta_vae").dual.subs(beta=t),
    "as_expr": lambda t, m: as_expr(t),
    "as_coefficient": lambda t, m: as_coefficient(t),
    "text_coefficient": lambda t, m: text_coefficient(t),
    "Objective.subs(keyword)": lambda t, m: BETA_VAE.subs(beta=t),
    "Objective.subs(mapping)": lambda t, m: BETA_VAE.subs({"beta": t}),
    "zoo.get": lambda t, m: lf.zoo.get("beta_vae", beta=t),
    "Objective(...)": lambda t, m: Objective({KL_Z: t}),
    "text * term": lambda t, m: t * lf.Objective({KL_Z: 1}),
    "symbol": lambda t, m: lf.symbol(t),
}


def _refused(call, marker):
    with pytest.raises(lf.ObjectiveError):
        call()
    assert not marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("entry", sorted(SYMBOLIC))
def test_symbolic_entry_points_refuse_text_values(entry, payload, tmp_path, model):
    marker = tmp_path / "pwned"
    text = payload.format(marker=str(marker))
    if entry == "symbol" and text.isidentifier():
        pytest.skip("an identifier is a valid parameter name")
    _refused(lambda: SYMBOLIC[entry](text, model), marker)


TEXT_ENTRIES = {
    "parse": lf.parse,
    "classify": lf.classify,
    "equivalent": lambda t: lf.equivalent(t, "vae"),
    "decompose": lambda t: lf.decompose("vae", [t]),
}


@pytest.mark.parametrize("payload", CODE)
@pytest.mark.parametrize("entry", sorted(TEXT_ENTRIES))
def test_text_objectives_are_parsed_never_evaluated(entry, payload, tmp_path):
    marker = tmp_path / "pwned"
    text = payload.format(marker=str(marker))
    _refused(lambda: TEXT_ENTRIES[entry](text), marker)
    _refused(lambda: TEXT_ENTRIES[entry](f"{text} * KL(q(z) || p(z))"), marker)


def test_numbers_still_accepted(model):
    beta_vae = lf.zoo.get("beta_vae")
    for v in (4, 4.0, Fraction(4), sympy.Integer(4)):
        assert beta_vae.subs(beta=v) == lf.zoo.get("beta_vae", beta=4)
        assert [c for _, c in bind_coefficients(beta_vae, {"beta": v})] == [-1.0, 4.0]
    assert normal_form.is_zero(0) and not normal_form.is_zero(Fraction(1, 3))
    assert bounds.algorithm1_bound("q", -1) == lf.mi_bounds("q")[0]


@pytest.mark.parametrize("payload", CODE)
@pytest.mark.parametrize("objective", ["beta_vae", "-E_{q(x,z)}[log p(x|z)] + beta * E_{q(x)}[KL(q(z|x) || p(z))]"])
def test_cli_set_refuses_code(objective, payload, tmp_path, capsys):
    marker = tmp_path / "pwned"
    rc = main(["classify", objective, "--set", "beta=" + payload.format(marker=str(marker))])
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err and "text" in err
    assert not marker.exists()


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_parts():
    from lagrangian_family.backends.torch import BernoulliMLPDecoder, GaussianMLPEncoder, StandardNormalPrior

    return GaussianMLPEncoder(4, 2, hidden=(8,)), BernoulliMLPDecoder(2, 4, hidden=(8,)), StandardNormalPrior(2)


def _torch_entries():
    from lagrangian_family.backends.torch import Lagrangian, compile_objective

    def compiled(parts, **kw):
        enc, dec, prior = parts
        return compile_objective("beta_vae", encoder=enc, decoder=dec, prior=prior, **kw)

    x = torch.bernoulli(torch.full((5, 4), 0.5))
    return {
        "loss_fn(x, beta=...)": lambda t, parts: compiled(parts)(x, beta=t),
        "loss_fn(x, {...})": lambda t, parts: compiled(parts)(x, {"beta": t}),
        "compile_objective(params=...)": lambda t, parts: compiled(parts, params={"beta": t}),
        "Lagrangian.fixed": lambda t, parts: Lagrangian.lagvae(-1.0, (90.0, 0.1)).fixed([t, 1.0]),
        "Lagrangian.lagvae(alpha1=...)": lambda t, parts: Lagrangian.lagvae(t, (90.0, 0.1)),
    }


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("entry", sorted(_torch_entries()))
def test_torch_entry_points_refuse_text_values(entry, payload, tmp_path, torch_parts):
    marker = tmp_path / "pwned"
    text = payload.format(marker=str(marker))
    if entry.startswith("Lagrangian.lagvae") and text.isidentifier():
        pytest.skip("a str alpha1 names a parameter")
    _refused(lambda: _torch_entries()[entry](text, torch_parts), marker)
