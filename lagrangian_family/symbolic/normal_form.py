"""The normal form: an objective's coordinates over the atom basis (DESIGN.md, "The algebra").

Every expectation is under one of the two sampling joints, the *frames* Q = q(x)q(z|x)
and P = p(z)p(x|z). Every log-density is a combination of six basis log-densities,
log q(x), log q(z|x), log q(z), log p(z), log p(x|z), log p(x), by the chain rule
(log q(x,z) = log q(x) + log q(z|x)) and Bayes' rule (log q(x|z) = log q(x) + log q(z|x)
- log q(z)). An *atom* is E_F[log b] for a frame F and a basis density b: twelve of them.
Two are constants that elementary equivalence may drop, E_Q[log q(x)] = -H_q(x) and
E_P[log p(z)] = -H_p(z); the other ten are the coordinates. KL divergences and mutual
informations expand into atoms; every other divergence is an opaque coordinate of its own.

Two objectives are elementary equivalent iff their coordinates are equal.

>>> from lagrangian_family.symbolic.parse import parse
>>> nf = normal_form(parse("E_{q(x)}[KL(q(z|x) || p(z))]"))
>>> {str(a): c for a, c in nf.atoms.items()}
{'E_{q(x,z)}[log q(z|x)]': 1, 'E_{q(z)}[log p(z)]': -1}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import sympy

from lagrangian_family.symbolic.limits import describe, guard
from lagrangian_family.symbolic.objective import Objective, as_expr
from lagrangian_family.symbolic.terms import (
    Density,
    Divergence,
    ExpectedLog,
    MutualInformation,
    Term,
)


def D(family: str, vars: str, given: str = "") -> Density:
    """Shorthand: ``D("q", "z", "x")`` is q(z|x); ``D("p", "xz")`` is p(x,z)."""
    return Density(family, tuple(vars), tuple(given))


#: The basis log-densities of each family, in coordinate order.
BASIS: dict[str, tuple[Density, ...]] = {
    "q": (D("q", "x"), D("q", "z", "x"), D("q", "z")),
    "p": (D("p", "z"), D("p", "x", "z"), D("p", "x")),
}


@dataclass(frozen=True, order=False)
class Atom:
    """E_F[log b]: the expectation under frame F ('q' or 'p') of a basis log-density b."""

    frame: str
    density: Density

    @property
    def term(self) -> ExpectedLog:
        """The atom as a term, under the smallest marginal that binds the density."""
        return ExpectedLog(Density(self.frame, tuple(self.density.scope)), self.density)

    @property
    def is_constant(self) -> bool:
        """E_Q[log q(x)] and E_P[log p(z)]: minus the entropies of the fixed marginals."""
        return self.density == BASIS[self.frame][0]

    def __str__(self) -> str:
        return str(self.term)

    def latex(self) -> str:
        return self.term.latex()


#: All twelve atoms; the first of each frame's group of six is not constant.
ATOMS: tuple[Atom, ...] = tuple(Atom(f, b) for f in ("q", "p") for b in BASIS["q"] + BASIS["p"])
#: The two constant atoms (minus the entropies H_q(x) and H_p(z)).
CONSTANT_ATOMS: tuple[Atom, ...] = tuple(a for a in ATOMS if a.is_constant)
#: The ten coordinates of the quotient space.
COORDINATES: tuple[Atom, ...] = tuple(a for a in ATOMS if not a.is_constant)


@cache
def expand_log(density: Density) -> tuple[tuple[Density, int], ...]:
    """log density as a combination of basis log-densities (chain rule, Bayes' rule).

    >>> [(str(b), c) for b, c in expand_log(D("q", "x", "z"))]
    [('q(x)', 1), ('q(z|x)', 1), ('q(z)', -1)]
    """
    basis = BASIS[density.family]
    if density in basis:
        return ((density, 1),)
    first_marginal, first_conditional, second_marginal = basis
    joint = Density(density.family, ("x", "z"))
    if density == joint:  # chain rule along the family's own factorisation
        return ((first_marginal, 1), (first_conditional, 1))
    # the only log-density left is the reverse conditional: Bayes' rule
    assert density.given == second_marginal.vars, density
    return ((first_marginal, 1), (first_conditional, 1), (second_marginal, -1))


def rewrite_rule(density: Density) -> str | None:
    """The name of the rule that expands ``density`` ('chain rule', 'Bayes rule'), None for a basis one."""
    if density in BASIS[density.family]:
        return None
    return "chain rule" if not density.given else "Bayes rule"


@cache
def expand_term(term: Term) -> tuple[tuple[tuple[str, Density], int], ...]:
    """A transparent term as expectations of log-densities: ((frame, density), coef) pairs.

    KL(a || b) averaged over the first argument's frame is E[log a - log b];
    I_q = E_Q[log q(z|x) - log q(z)], I_p = E_P[log p(x|z) - log p(x)].
    """
    if isinstance(term, ExpectedLog):
        return (((term.frame, term.density), 1),)
    if isinstance(term, MutualInformation):
        f = term.family
        if f == "q":
            return (((f, D("q", "z", "x")), 1), ((f, D("q", "z")), -1))
        return (((f, D("p", "x", "z")), 1), ((f, D("p", "x")), -1))
    if isinstance(term, Divergence) and term.kind == "KL":
        f = term.frame
        return (((f, term.left), 1), ((f, term.right), -1))
    raise TypeError(f"{term} is opaque")  # pragma: no cover - callers check .opaque


def term_atoms(term: Term) -> dict[Atom, int]:
    """A transparent term's coefficients over all twelve atoms (constants included)."""
    return _term_atoms(term)


@cache
def _term_atoms(term: Term) -> dict[Atom, int]:
    out: dict[Atom, int] = {}
    for (frame, density), c in expand_term(term):
        for b, k in expand_log(density):
            a = Atom(frame, b)
            out[a] = out.get(a, 0) + c * k
    return {a: c for a, c in out.items() if c != 0}


def is_zero(expr) -> bool:
    """Exact zero test for coefficients (fast path for numbers).

    An expanded polynomial is zero iff it is 0. Another expression is non-zero when its value at
    one of a few points is (to 30 digits, with the precision sympy tracks through cancellation);
    one that vanishes at every point is zero when a cheap rewriting (logs, powers, radicals,
    fractions) makes it 0, or else when ``sympy.simplify`` does; ``simplify`` is not run on
    expressions with ``Abs`` or ``sign`` (it may take minutes on those), which then count as
    non-zero. A failure of sympy raises :class:`~lagrangian_family.errors.ComputationError`
    naming the coefficient.

    >>> from lagrangian_family.symbolic.objective import symbol
    >>> beta = symbol("beta")
    >>> is_zero(sympy.sqrt(2) * sympy.sqrt(beta**2 + 1) - sympy.sqrt(2 * beta**2 + 2)), is_zero(sympy.exp(beta) - 1)
    (True, False)
    >>> is_zero(sympy.log(4 * beta**2) - 2 * sympy.log(2 * beta))  # not for beta < 0
    False
    >>> is_zero(sympy.sign(beta) + 1)  # zero for beta < 0 only
    False
    """
    expr = as_expr(expr)
    if expr == 0:
        return True
    if expr.is_Rational:
        return False
    return guard(lambda: describe(expr), "testing a coefficient for zero", lambda: _is_zero(expr))


#: The values given to the parameters (in name order, cyclically) when testing for zero numerically.
_POINTS = tuple(tuple(sympy.Rational(v) for v in row) for row in (
    ("37/100", "-13/10", "29/10", "-61/100", "173/10", "7/11"),
    ("-47/10", "23/100", "-3/7", "53/10", "11/13", "-97/10"),
    ("131/10", "-17/19", "5/3", "-71/100", "-29/7", "43/100"),
))


def _is_zero(expr) -> bool:
    e = sympy.expand(expr)
    if e == 0:
        return True
    if e.is_polynomial() and not e.is_number:  # expanded polynomials are canonical: non-zero means non-zero
        return False
    names = sorted(e.free_symbols, key=str)
    for row in _POINTS:
        if _nonzero_at(e, {s: row[i % len(row)] for i, s in enumerate(names)}):
            return False
    for rewrite in (lambda x: sympy.expand_log(x, force=True), sympy.powsimp, sympy.radsimp, sympy.cancel):
        if sympy.expand(rewrite(e)) == 0:
            return True
    if e.has(sympy.Abs, sympy.sign, sympy.Piecewise):
        return False
    return sympy.simplify(e) == 0


def _nonzero_at(e, point) -> bool:
    """True when ``e`` is provably non-zero at ``point``: a part of its value is a non-zero float
    with more than 20 significant bits (sympy's evalf tracks the precision lost to cancellation)."""
    try:
        value = e.evalf(30, subs=point)
        parts = value.as_real_imag()
    except (ValueError, TypeError, ArithmeticError, RecursionError, AttributeError):
        return False
    return any(isinstance(p, sympy.Float) and p._prec > 20 and p != 0 for p in parts)


@dataclass(frozen=True)
class NormalForm:
    """Coordinates of an objective: ten atoms, two constants, one per opaque divergence."""

    atoms: dict[Atom, sympy.Expr]
    constants: dict[Atom, sympy.Expr] = field(default_factory=dict)
    opaque: dict[Divergence, sympy.Expr] = field(default_factory=dict)

    def vector(self) -> list[sympy.Expr]:
        """The ten atom coordinates in :data:`COORDINATES` order."""
        return [self.atoms.get(a, sympy.Integer(0)) for a in COORDINATES]

    def __sub__(self, other: NormalForm) -> NormalForm:
        return NormalForm(
            _combine(self.atoms, other.atoms), _combine(self.constants, other.constants),
            _combine(self.opaque, other.opaque),
        )

    def is_zero(self) -> bool:
        """True iff every non-constant coordinate vanishes."""
        return all(is_zero(c) for c in list(self.atoms.values()) + list(self.opaque.values()))

    def objective(self, *, with_constants: bool = False) -> Objective:
        """The normal form written back as an objective over atoms and opaque divergences."""
        items = [(a.term, c) for a, c in self.atoms.items()]
        if with_constants:
            items += [(a.term, c) for a, c in self.constants.items()]
        items += list(self.opaque.items())
        return Objective(items)


def _combine(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) - v
    return {k: sympy.expand(v) for k, v in out.items() if not is_zero(v)}


def normal_form(objective) -> NormalForm:
    """The coordinates of an objective (a Term or an Objective).

    >>> from lagrangian_family.symbolic.parse import parse
    >>> normal_form(parse("KL(q(x,z) || p(x,z))")).constants
    {Atom(frame='q', density=Density(family='q', vars=('x',), given=()))...: 1}
    """
    from lagrangian_family.symbolic.classify import as_objective

    objective = as_objective(objective)
    atoms: dict[Atom, sympy.Expr] = {}
    consts: dict[Atom, sympy.Expr] = {}
    opaque: dict[Divergence, sympy.Expr] = {}
    for term, coef in objective.items():
        if term.opaque:
            opaque[term] = opaque.get(term, 0) + coef
            continue
        for atom, k in term_atoms(term).items():
            target = consts if atom.is_constant else atoms
            target[atom] = target.get(atom, 0) + k * coef
    clean = lambda d: {k: sympy.expand(v) for k, v in d.items() if not is_zero(v)}  # noqa: E731
    order = {a: i for i, a in enumerate(ATOMS)}
    atoms = dict(sorted(clean(atoms).items(), key=lambda kv: order[kv[0]]))
    consts = dict(sorted(clean(consts).items(), key=lambda kv: order[kv[0]]))
    return NormalForm(atoms, consts, clean(opaque))


def equivalent(a, b) -> bool:
    """Elementary equivalence (paper, Definition 1): equal up to chain rule, Bayes' rule and
    the constants E_{q(x)}[log q(x)] and E_{p(z)}[log p(z)].

    Accepts objectives, terms, zoo names or text.

    >>> equivalent("-E_{q(x,z)}[log p(x|z)] + E_{q(x)}[KL(q(z|x) || p(z))]", "KL(q(x,z) || p(x,z))")
    True
    """
    from lagrangian_family.symbolic.classify import as_objective

    return (normal_form(as_objective(a)) - normal_form(as_objective(b))).is_zero()
