"""Property tests: the canonical dual form does not depend on when parameters are bound.

For random objectives with parameters, classifying and then binding numbers gives the same dual
form as binding and then classifying, wherever the form's conditions hold; the form scales with
the objective; and the reduced conditions hold at a point exactly when every multiplier is
non-negative there (checked by evaluating the multipliers themselves, not the reduction).
"""

from fractions import Fraction

import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lagrangian_family as lf
from lagrangian_family.symbolic import dictionary as dic
from lagrangian_family.symbolic.conditions import reduce_nonnegative
from tests.strategies import SYMBOL_NAMES, coefficients, divergences, objectives

SETTINGS = settings(max_examples=150, deadline=None)

#: terms whose span holds I_q, I_p and the ten KLs, so that most objectives have a dual form:
#: the dictionary, the mutual informations, the VAE's KL and likelihood terms, opaque divergences
_IN_SPAN = (
    list(dic.kl_dictionary()) + [dic.I_Q, dic.I_P, dic.kl_encoder()]
    + [next(iter(lf.parse(t))) for t in ("E_{q(x,z)}[log p(x|z)]", "E_{p(x,z)}[log q(z|x)]")]
)
_TERMS = st.one_of(st.sampled_from(_IN_SPAN), divergences(kinds=("JS", "MMD"), arity="marginal"),
                   divergences(kinds=("JS",), arity="joint"))
_NUMBERS = st.fractions(min_value=-4, max_value=4, max_denominator=4).map(
    lambda f: sympy.Rational(f.numerator, f.denominator))


def _param_objectives():
    return objectives(max_terms=5, terms_strategy=_TERMS, coefficient_strategy=coefficients()).filter(
        lambda o: bool(o.free_symbols))


def _values():
    return st.fixed_dictionaries({name: _NUMBERS for name in SYMBOL_NAMES})


def _bind(obj, values):
    return obj.subs({k: v for k, v in values.items() if lf.symbol(k) in obj.free_symbols})


@SETTINGS
@given(_param_objectives(), _values())
def test_classify_then_bind_is_bind_then_classify(obj, values):
    symbolic = lf.classify(obj).dual
    bound = lf.classify(_bind(obj, values)).dual
    if symbolic is None:
        reason = lf.classify(obj).dual_reason
        # no λ ≥ 0 for any real parameters: none at these numbers either
        if "outside the span" not in reason:
            assert bound is None
        return
    sub = {lf.symbol(k): v for k, v in values.items()}
    holds = all(sympy.expand(lam.subs(sub)) >= 0 for lam in symbolic.lambdas)
    mine = {k: v for k, v in values.items() if lf.symbol(k) in symbolic.free_symbols}
    if not holds:
        with pytest.raises(lf.ObjectiveError, match="break the conditions"):
            symbolic.subs(mine)
        return
    assert bound is not None
    later = symbolic.subs(mine)
    assert (later.alpha1, later.alpha2) == (bound.alpha1, bound.alpha2)
    assert later.multipliers == bound.multipliers
    assert later.conditions == bound.conditions == ()
    assert later.enforces_consistency == bound.enforces_consistency


@SETTINGS
@given(_param_objectives(), st.sampled_from([sympy.Rational(1, 3), 2, 7]))
def test_the_dual_form_scales_with_the_objective(obj, c):
    a, b = lf.classify(obj).dual, lf.classify(obj * c).dual
    assert (a is None) == (b is None)
    if a is not None:
        assert [(sympy.expand(c * lam), d) for lam, d in a.multipliers] == list(b.multipliers)
        assert set(a.conditions) == set(b.conditions)


_SYMS = [lf.symbol(n) for n in SYMBOL_NAMES]


@SETTINGS
@given(st.lists(coefficients(), min_size=1, max_size=4),
       st.lists(st.tuples(*[_NUMBERS] * len(_SYMS)), min_size=5, max_size=5))
def test_reduced_conditions_hold_exactly_where_every_multiplier_is_non_negative(exprs, points):
    red = reduce_nonnegative(exprs)
    for point in points:
        sub = dict(zip(_SYMS, point))
        values = [sympy.expand(sympy.sympify(e).subs(sub)) for e in exprs]
        assume(all(v.is_finite for v in values))
        every = all(v >= 0 for v in values)
        if not red.satisfiable:
            assert not every
            assert not all(values[i] >= 0 for i in red.conflict)  # the named ones conflict on their own
        else:
            assert every == all(bool(c.subs(sub)) for c in red.conditions)


def test_reduction_of_known_cases():
    b, a = lf.symbol("beta"), lf.symbol("alpha")
    # written by hand: {5β − 3 ≥ 0, β ≥ 0} = {β ≥ 3/5}; {β ≥ 0, −β − 3 ≥ 0} = ∅
    assert reduce_nonnegative([5 * b - 3, b]).conditions == (sympy.Ge(b, Fraction(3, 5)),)
    assert reduce_nonnegative([b, -b - 3]).conflict == (0, 1)
    assert reduce_nonnegative([b, 7, -b - 3]).conflict == (0, 2)
    assert reduce_nonnegative([b ** 2, 2]).conditions == ()
    assert reduce_nonnegative([a - b, b, a]).conditions == (sympy.Ge(b, 0), sympy.Ge(a, b))
