"""The Lagrangian version of every zoo model (issue 8, item 5), symbolically.

Expected constraints and weights are written out here from the paper (section 6, eq. 17 for
LagVAE; section 4 for InfoGAN) and ../shared/paper/dual_forms.md (ALICE, β-VAE, CycleGAN), not
read from the code; the bounds of each preference are eq. 13's, typed as the paper prints them.
"""

import pytest

import lagrangian_family as lf
from lagrangian_family.symbolic.constrained import PREFERENCES, lagrangian_form, parse_preference


def _set(texts):
    return {lf.parse(t) for t in texts}


def _weights(form):
    return {lf.parse(n): w for n, w in zip(form.names, form.reference_multipliers)}


# (model, params, {constraint text: the original model's multiplier})
EXPECTED = [
    ("lagvae", {}, {"KL(q(x,z) || p(x,z))": 1.0, "MMD(q(z) || p(z))": 100.0}),  # eq. 17; λ = (1, 100), section 6
    ("infogan", {}, {"E_{p(x)}[KL(p(z|x) || q(z|x))]": 1.0, "JS(q(x) || p(x))": 1.0}),  # section 4, λ = [λ_I, 1]
    ("infogan", {"lam": 3}, {"E_{p(x)}[KL(p(z|x) || q(z|x))]": 3.0, "JS(q(x) || p(x))": 1.0}),
    ("alice", {}, {"JS(q(x,z) || p(x,z))": 1.0, "E_{q(z)}[KL(q(x|z) || p(x|z))]": 1.0}),  # dual_forms.md: [1, λ_A]
    ("alice", {"lambda_A": 0.5}, {"JS(q(x,z) || p(x,z))": 1.0, "E_{q(z)}[KL(q(x|z) || p(x|z))]": 0.5}),
    ("vae", {}, {"KL(q(x,z) || p(x,z))": 1.0}),
    ("beta_vae", {}, {"KL(q(z) || p(z))": 4.0, "E_{q(z)}[KL(q(x|z) || p(x|z))]": 1.0}),
    ("ali", {}, {"JS(q(x,z) || p(x,z))": 1.0}),
    ("cyclegan", {}, {"JS(q(x) || p(x))": 1.0, "JS(q(z) || p(z))": 1.0, "E_{q(z)}[KL(q(x|z) || p(x|z))]": 10.0,
                      "E_{p(x)}[KL(p(z|x) || q(z|x))]": 10.0}),
]


@pytest.mark.parametrize("model, params, expected", EXPECTED, ids=[f"{m}-{p}" for m, p, _ in EXPECTED])
@pytest.mark.parametrize("preference", PREFERENCES)
def test_constraints_are_the_dual_forms_divergences(model, params, expected, preference):
    form = lagrangian_form(model, preference=preference, params=params)
    assert set(form.constraints) == {o for o in _set(expected)}
    assert len(form.constraints) == len(expected)
    assert _weights(form) == {lf.parse(t): w for t, w in expected.items()}
    assert form.names == tuple(str(d) for d in form.constraints)


# the bound Algorithm 1 uses for each preference (eq. 13, constants dropped), times the sign of α
BOUNDS = {
    "maximise-Iq": ("lower", "-E_{q(x,z)}[log p(x|z)]"),          # -I̲_q
    "minimise-Iq": ("upper", "E_{q(x)}[KL(q(z|x) || p(z))]"),      # Ī_q
    "maximise-Ip": ("lower", "-E_{p(x,z)}[log q(z|x)]"),          # -I̲_p
    "minimise-Ip": ("upper", "E_{p(z)}[KL(p(x|z) || q(x))]"),      # Ī_p
}


@pytest.mark.parametrize("preference", PREFERENCES)
@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_the_sign_of_the_primal_follows_the_preference(preference, alpha):
    form = lagrangian_form("alice", preference=preference, alpha=alpha)
    which, text = BOUNDS[preference]
    maximise = preference.startswith("maximise")
    assert form.bound == which
    assert float(form.alpha) == (-alpha if maximise else alpha)
    family = preference[-1]
    assert form.primal == lf.parse(f"{'-' if maximise else ''}{alpha} * I_{family}(x;z)")
    assert form.bound_objective == lf.parse(f"{alpha} * ({text})")
    # the bound is what Algorithm 1 puts in place of α·I: the same objective up to the bound's gap
    assert form.fixed([0.0] * len(form.names)) == form.bound_objective


@pytest.mark.parametrize("model", [n for n in lf.zoo.names() if n != "vmi"])
def test_every_zoo_model_but_vmi_has_a_lagrangian_version_equivalent_to_it_at_fixed_multipliers(model):
    """The original objective ≡ α1·I_q + α2·I_p + Σ λ_i D_i with the form's constraints and
    weights (the algebra's normal form decides ≡; the original's α come from the dual form)."""
    for preference in PREFERENCES:
        form = lagrangian_form(model, preference=preference)
        assert form.constraints and all(w >= 0 for w in form.reference_multipliers)
    if model == "lagvae":  # already a Lagrangian: the reference problem is LagVAE with α1 = 0
        assert lf.equivalent(form.reference_objective(), lf.zoo.get("lagvae", alpha=0, lam1=1, lam2=100))
        return
    original = form.objective
    d = lf.classify(original).dual
    mi = lf.parse(f"({d.alpha1}) * I_q(x;z) + ({d.alpha2}) * I_p(x;z)") if (d.alpha1 or d.alpha2) else lf.Objective()
    assert lf.equivalent(original, mi + form.reference_objective())


def test_vmi_is_refused_because_it_enforces_no_consistency():
    with pytest.raises(lf.ObjectiveError, match="do not enforce consistency") as err:
        lagrangian_form("vmi", preference="maximise-Ip")
    assert "footnote 2" in str(err.value) and "fix:" in str(err.value)


@pytest.mark.parametrize("text, match", [
    ("E_{q(x)}[KL(q(z|x) || p(z))] - JS(q(x) || p(x))", "no dual form"),   # rewards a divergence
    ("-I_q(x;z)", "no divergence to constrain"),
    ("beta * KL(q(z) || p(z)) + E_{q(z)}[KL(q(x|z) || p(x|z))]", "unbound parameters"),
])
def test_objectives_without_a_lagrangian_version_are_typed_errors(text, match):
    with pytest.raises(lf.ObjectiveError, match=match):
        lagrangian_form(text, preference="maximise-Iq")


def test_parameters_that_break_the_dual_form_are_refused():
    with pytest.raises(lf.ObjectiveError, match="no dual form"):
        lagrangian_form("beta_vae", preference="minimise-Iq", params={"beta": -1})
    with pytest.raises(lf.ObjectiveError, match="no parameter"):
        lagrangian_form("beta_vae", preference="minimise-Iq", params={"gamma": 1})
    form = lagrangian_form("beta_vae", preference="minimise-Iq", params={"beta": 1})  # merges into the VAE's joint KL
    assert form.constraints == (lf.parse("KL(q(x,z) || p(x,z))"),)


@pytest.mark.parametrize("bad", ["maximise-Iz", "maximise", "", "maximise I_z", None, 3, "minimise-Iq-extra"])
def test_bad_preferences_are_typed_errors(bad):
    with pytest.raises(lf.ObjectiveError, match="unknown information preference") as err:
        lagrangian_form("alice", preference=bad)
    assert "maximise-Iq" in str(err.value)


def test_preferences_are_read_in_either_spelling_and_case():
    assert parse_preference("Maximize-IQ") == ("q", -1)
    assert parse_preference("minimise_Ip") == ("p", 1)
    assert lagrangian_form("ali", preference="MINIMIZE-Ip").preference == "minimise-Ip"


@pytest.mark.parametrize("alpha", [0, -1.0, float("inf")])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(lf.ObjectiveError):
        lagrangian_form("alice", preference="maximise-Iq", alpha=alpha)


def test_multipliers_of_a_text_objective_that_already_is_a_lagrangian():
    text = "alpha1 * E_{q(x)}[KL(q(z|x) || p(z))] + lambda_1 * KL(q(x,z) || p(x,z)) + lambda_2 * JS(q(x) || p(x))"
    form = lagrangian_form(text, preference="maximise-Iq", multipliers=["lambda_1", "lambda_2"],
                           params={"lambda_1": 2, "lambda_2": 5})
    assert form.constraints == (lf.parse("KL(q(x,z) || p(x,z))"), lf.parse("JS(q(x) || p(x))"))
    assert form.reference_multipliers == (2.0, 5.0)
    with pytest.raises(lf.ObjectiveError, match="no value for the multiplier"):
        lagrangian_form(text, preference="maximise-Iq", multipliers=["lambda_1", "lambda_2"])
    with pytest.raises(lf.ObjectiveError, match="no such multiplier"):
        lagrangian_form(text, preference="maximise-Iq", multipliers=["lambda_3"])
    with pytest.raises(lf.ObjectiveError, match="list of parameter names"):
        lagrangian_form(text, preference="maximise-Iq", multipliers="lambda_1")


def test_the_form_prints_what_it_does():
    text = str(lagrangian_form("infogan", preference="maximise-Ip"))
    assert "maximise I_p(x;z) through its lower bound" in text and "JS(q(x) || p(x)) <= eps_2" in text


def test_vmi_with_consistency_not_required():
    form = lagrangian_form("vmi", preference="maximise-Ip", require_consistency=False)
    assert form.constraints == (lf.parse("E_{p(x)}[KL(p(z|x) || q(z|x))]"),) and form.reference_multipliers == (1.0,)
