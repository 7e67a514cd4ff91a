"""Hypothesis strategies for the symbolic layer, shared by every test module.

Every strategy draws *valid* values only (the constructors never raise on them):

* :func:`densities` - the ten densities of the two families (marginals, joints, conditionals);
* :func:`expected_logs` - ``E_{outer}[log density]`` with ``outer`` binding the density;
* :func:`divergences` - every valid ``Divergence`` of every kind and arity, in both orders;
* :func:`mutual_informations` - ``I_q(x;z)`` and ``I_p(x;z)``;
* :func:`terms` - any of the above;
* :func:`coefficients` - small integers, rationals, the symbols beta/lambda/alpha and simple
  sums, products and powers of them (``exotic=True`` adds sqrt, exp, log, pi, E and 1/(beta+1));
* :func:`objectives` - linear combinations of 1 to 6 terms;
* :func:`objective_texts` - ``(text, objective)`` pairs where ``text`` spells the objective in
  one of the many accepted ways (aliases, argument orders, coefficients on either side,
  grouped brackets), for parser tests;
* :func:`adversarial_coefficient_texts` / :func:`adversarial_objective_texts` - coefficient
  texts an attacker or a careless user writes (huge and tiny numbers, decimals, nested exp,
  negative bases to irrational powers, powers of sums, Abs, sign, E, pi), and objectives with
  them; the fuzzing bench (``bench/fuzz_symbolic.py``) draws the same texts from a seeded
  ``random.Random`` through :func:`coefficient_text_from` and :func:`objective_text_from`.
  These texts may be refused (an :class:`ObjectiveError`), never crash.

The finite families (densities, terms) are enumerated once (:func:`all_densities`,
:func:`all_expected_logs`, :func:`all_divergences`), so tests may also iterate over them.

Example::

    from hypothesis import given
    from tests.strategies import objectives

    @given(objectives())
    def test_something(o): ...
"""

from __future__ import annotations

from functools import cache
from itertools import product

import sympy
from hypothesis import strategies as st

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.objective import Objective, _text_coefficient, symbol
from lagrangian_family.symbolic.terms import (
    DIVERGENCES,
    FAMILIES,
    SYMMETRIC_DIVERGENCES,
    Density,
    Divergence,
    ExpectedLog,
    MutualInformation,
    Term,
)

__all__ = [
    "SYMBOL_NAMES",
    "all_densities",
    "all_expected_logs",
    "all_divergences",
    "densities",
    "expected_logs",
    "divergences",
    "mutual_informations",
    "terms",
    "coefficients",
    "objectives",
    "objective_texts",
    "density_text",
    "term_text",
    "coefficient_text_from",
    "objective_text_from",
    "adversarial_coefficient_texts",
    "adversarial_objective_texts",
]

#: The parameter names coefficients are drawn over.
SYMBOL_NAMES: tuple[str, ...] = ("beta", "lambda", "alpha")

_SCOPES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("x",), ()),
    (("z",), ()),
    (("x", "z"), ()),
    (("x",), ("z",)),
    (("z",), ("x",)),
)


# -- enumerations ------------------------------------------------------------------------------

@cache
def all_densities() -> tuple[Density, ...]:
    """The ten densities: q and p over x, z, (x,z), x|z and z|x."""
    return tuple(Density(f, v, g) for f in FAMILIES for v, g in _SCOPES)


@cache
def _outers() -> tuple[Density, ...]:
    return tuple(d for d in all_densities() if not d.is_conditional)


@cache
def all_expected_logs() -> tuple[ExpectedLog, ...]:
    """Every valid ``E_{outer}[log density]`` (outer a marginal or joint binding the density)."""
    return tuple(ExpectedLog(o, d) for o in _outers() for d in all_densities() if d.scope <= set(o.vars))


@cache
def all_divergences() -> tuple[Divergence, ...]:
    """Every valid divergence (all kinds, arities and argument orders), normalised and deduplicated."""
    found: dict[Divergence, None] = {}
    for kind, left, right, outer in product(DIVERGENCES, all_densities(), all_densities(), (None,) + _outers()):
        try:
            found[Divergence(kind, left, right, outer)] = None
        except ObjectiveError:
            continue
    return tuple(found)


# -- term strategies ---------------------------------------------------------------------------

def densities(*, families=FAMILIES, conditional: bool | None = None) -> st.SearchStrategy[Density]:
    """Densities of the given families; ``conditional`` True/False keeps only (non-)conditionals."""
    pool = [d for d in all_densities() if d.family in families
            and (conditional is None or d.is_conditional == conditional)]
    return st.sampled_from(pool)


def expected_logs(*, frame: str | None = None) -> st.SearchStrategy[ExpectedLog]:
    """``E_{outer}[log density]`` terms, optionally under one frame ('q' or 'p')."""
    return st.sampled_from([t for t in all_expected_logs() if frame is None or t.frame == frame])


def divergences(*, kinds=DIVERGENCES, arity: str | None = None) -> st.SearchStrategy[Divergence]:
    """Valid divergences of the given kinds; ``arity`` is 'marginal', 'joint', 'conditional' or None."""
    pool = [d for d in all_divergences() if d.kind in kinds and (arity is None or d.arity == arity)]
    return st.sampled_from(pool)


def mutual_informations() -> st.SearchStrategy[MutualInformation]:
    """``I_q(x;z)`` and ``I_p(x;z)``."""
    return st.sampled_from([MutualInformation("q"), MutualInformation("p")])


def terms() -> st.SearchStrategy[Term]:
    """Any term: expected log-densities, divergences, mutual informations."""
    return st.one_of(expected_logs(), divergences(), mutual_informations())


# -- coefficients ------------------------------------------------------------------------------

def _exotic() -> tuple[sympy.Expr, ...]:
    beta = symbol("beta")
    return (sympy.sqrt(2), sympy.exp(beta), sympy.log(2), sympy.pi, sympy.E, 1 / (beta + 1), beta ** -2,
            sympy.sqrt(2) / 2, 2 ** sympy.Rational(1, 3), sympy.exp(-beta) * beta)


def coefficients(*, symbolic: bool = True, exotic: bool = False, allow_zero: bool = True
                 ) -> st.SearchStrategy[sympy.Expr]:
    """sympy coefficients: small ints, rationals, symbols and simple sums/products/powers of them."""
    leaves = [
        st.integers(-5, 5).map(sympy.Integer),
        st.fractions(min_value=-4, max_value=4, max_denominator=6).map(
            lambda f: sympy.Rational(f.numerator, f.denominator)),
    ]
    if symbolic:
        leaves.append(st.sampled_from(SYMBOL_NAMES).map(symbol))
    if exotic:
        leaves.append(st.sampled_from(_exotic()))
    base = st.one_of(*leaves)

    def combine(children):
        return st.one_of(
            st.tuples(children, children).map(lambda ab: ab[0] + ab[1]),
            st.tuples(children, children).map(lambda ab: ab[0] - ab[1]),
            st.tuples(children, children).map(lambda ab: ab[0] * ab[1]),
            st.tuples(children, st.integers(2, 3)).map(lambda ab: ab[0] ** ab[1]),
        )

    strategy = st.recursive(base, combine, max_leaves=3).map(sympy.expand)
    if not allow_zero:
        strategy = strategy.filter(lambda c: c != 0)
    return strategy


def objectives(*, min_terms: int = 1, max_terms: int = 6, terms_strategy=None, coefficient_strategy=None
               ) -> st.SearchStrategy[Objective]:
    """Objectives of ``min_terms`` to ``max_terms`` (term, coefficient) pairs.

    Repeated terms add up and zero coefficients vanish, so the result may have fewer terms
    (even none: the zero objective).
    """
    t = terms_strategy if terms_strategy is not None else terms()
    c = coefficient_strategy if coefficient_strategy is not None else coefficients()
    return st.lists(st.tuples(t, c), min_size=min_terms, max_size=max_terms).map(Objective)


# -- text spellings ----------------------------------------------------------------------------

_ALIASES = {"KL": ("KL", "D_KL", "D_{KL}"), "JS": ("JS", "D_JS"), "MMD": ("MMD", "D_MMD"), "W": ("W", "D_W"),
            "D_f": ("D_f", "D_{f}")}


@st.composite
def density_text(draw, density: Density) -> str:
    """One spelling of ``density``: variable order and spaces vary (``p(z, x)``, ``q(z | x)``)."""
    vars_ = list(density.vars)
    if len(vars_) > 1 and draw(st.booleans()):
        vars_.reverse()
    comma = draw(st.sampled_from([",", ", "]))
    inner = comma.join(vars_)
    if density.given:
        inner += draw(st.sampled_from(["|", " | "])) + ",".join(density.given)
    return f"{density.family}({inner})"


@st.composite
def term_text(draw, term: Term, coefficient_inside: str | None = None) -> str:
    """One spelling of ``term``; ``coefficient_inside`` (text) is put inside an expectation's brackets."""
    inside = "" if coefficient_inside is None else f"{coefficient_inside} * "
    if isinstance(term, MutualInformation):
        sep = draw(st.sampled_from([";", "; ", ","]))
        a, b = draw(st.sampled_from([("x", "z"), ("z", "x")]))
        return f"I_{term.family}({a}{sep}{b})"
    if isinstance(term, ExpectedLog):
        body = draw(st.sampled_from(["log {}", "log({})"])).format(draw(density_text(term.density)))
        return _expectation_text(draw, term.outer, inside + body)
    assert isinstance(term, Divergence)
    left, right = term.left, term.right
    if term.kind in SYMMETRIC_DIVERGENCES and draw(st.booleans()):
        left, right = right, left
    bars = draw(st.sampled_from(["||", " || ", " ||"]))
    text = f"{draw(st.sampled_from(_ALIASES[term.kind]))}({draw(density_text(left))}{bars}{draw(density_text(right))})"
    if term.outer is None:
        return text
    return _expectation_text(draw, term.outer, inside + text)


def _expectation_text(draw, outer: Density, body: str) -> str:
    if draw(st.booleans()):
        return f"E_{{{draw(density_text(outer))}}}[{body}]"
    return f"E_{draw(density_text(outer))}[{body}]"


@st.composite
def objective_texts(draw, *, max_terms: int = 5) -> tuple[str, Objective]:
    """``(text, objective)``: a random objective and one of its many spellings.

    Coefficients go before the term, after it (``KL(...) * beta``) or, for expectations,
    inside the brackets; neighbouring terms may be grouped under a common factor
    (``beta * (A - B)``).
    """
    pairs = draw(st.lists(st.tuples(terms(), coefficients(allow_zero=False)), min_size=1, max_size=max_terms))
    pieces: list[str] = []
    items: list[tuple[Term, sympy.Expr]] = []
    i = 0
    while i < len(pairs):
        term, coef = pairs[i]
        if i + 1 < len(pairs) and draw(st.integers(0, 4)) == 0:  # group two terms under a common factor
            other, _ = pairs[i + 1]
            sign = draw(st.sampled_from(["+", "-"]))
            a, b = draw(term_text(term)), draw(term_text(other))
            pieces.append(f"{_text_coefficient(coef)} * ({a} {sign} {b})")
            items += [(term, coef), (other, coef if sign == "+" else -coef)]
            i += 2
            continue
        style = draw(st.integers(0, 3))
        c = _text_coefficient(coef)
        if style == 0:
            pieces.append(f"{c} * {draw(term_text(term))}")
        elif style == 1:
            pieces.append(f"{draw(term_text(term))} * {c}")
        elif style == 2 and isinstance(term, (ExpectedLog, Divergence)) and getattr(term, "outer", None) is not None:
            pieces.append(draw(term_text(term, coefficient_inside=c)))
        else:
            pieces.append(f"({c})*{draw(term_text(term))}")
        items.append((term, coef))
        i += 1
    text = pieces[0]
    for piece in pieces[1:]:
        text += draw(st.sampled_from([" + ", "+"])) + piece
    return text, Objective(items)



# -- adversarial coefficients (shared with bench/fuzz_symbolic.py) ----------------------------

_NUMBERS = ("0", "1", "2", "3", "7", "10", "0.5", "0.25", "1.5", "1e-3", "1e-300", "1e300", "1e308", "1e-308",
            "1e399", "1e-399", "1e999", "1e1000", "1e-1000", "2.5e-7", "123456789", "9" * 60, "9" * 1000,
            "1" + "0" * 999, "0.000001", "3.14159", ".5", "1e+2", "00012")
_NAMES = SYMBOL_NAMES + ("gamma", "delta", "eps", "lambda_1", "beta_2", "_w")
_FUNCTION_NAMES = ("exp", "log", "sqrt", "Abs", "sign")


def coefficient_text_from(choose, depth: int = 3) -> str:
    """A coefficient text drawn by ``choose(n)`` (an int in ``range(n)``), up to ``depth`` levels.

    Leaves are numbers from tiny to huge (``1e-1000``, 400-digit integers), parameter names,
    ``pi`` and ``E``; nodes are ``+ - * /``, powers (small, negative, rational, symbolic and huge
    exponents), ``exp``, ``log``, ``sqrt``, ``Abs``, ``sign`` and signs.
    """
    kind = choose(10) if depth > 0 else choose(3)
    if kind == 0:
        return _NUMBERS[choose(len(_NUMBERS))]
    if kind == 1:
        return _NAMES[choose(len(_NAMES))]
    if kind == 2:
        return ("pi", "E", "-1", "1/7", "2/3")[choose(5)]
    sub = lambda: coefficient_text_from(choose, depth - 1)  # noqa: E731
    if kind in (3, 4):
        return f"({sub()} {'+-*/'[choose(4)]} {sub()})"
    if kind == 5:
        exponents = ("2", "3", "-1", "-2", "1/2", "1/3", "-1/2", "32", "100", "101", "1000", "pi", "E", "beta",
                     "gamma", "(1e-3/7)", "1e300", "0.5")
        e = exponents[choose(len(exponents))] if choose(2) else f"({sub()})"
        return f"({sub()})**{e}"
    if kind in (6, 7):
        return f"{_FUNCTION_NAMES[choose(len(_FUNCTION_NAMES))]}({sub()})"
    if kind == 8:
        return f"-{sub()}"
    return f"({' + '.join(_NAMES[choose(len(_NAMES))] for _ in range(2 + choose(4)))} + 1)**{(2, 5, 15, 32)[choose(4)]}"


def objective_text_from(choose, *, max_terms: int = 4, depth: int = 3) -> str:
    """An objective text of 1 to ``max_terms`` terms, each with a coefficient from
    :func:`coefficient_text_from` (drawn by ``choose``)."""
    pool = _term_texts()
    pieces = []
    for _ in range(1 + choose(max_terms)):
        term = pool[choose(len(pool))]
        coef = coefficient_text_from(choose, depth)
        pieces.append(f"{coef} * {term}" if choose(2) else f"{term} * ({coef})")
    return " + ".join(pieces)


@cache
def _term_texts() -> tuple[str, ...]:
    return tuple(str(t) for t in all_expected_logs() + all_divergences()) + ("I_q(x;z)", "I_p(x;z)")


@st.composite
def adversarial_coefficient_texts(draw, depth: int = 3) -> str:
    """:func:`coefficient_text_from` driven by hypothesis (so that failures shrink)."""
    return coefficient_text_from(lambda n: draw(st.integers(0, n - 1)), depth)


@st.composite
def adversarial_objective_texts(draw, max_terms: int = 3, depth: int = 3) -> str:
    """:func:`objective_text_from` driven by hypothesis."""
    return objective_text_from(lambda n: draw(st.integers(0, n - 1)), max_terms=max_terms, depth=depth)
