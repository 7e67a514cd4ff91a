"""When is every multiplier non-negative? Conditions on real parameters, reduced.

A dual form holds as a Lagrangian (every λ_i ≥ 0) under the conditions λ_i ≥ 0 on the
parameters. :func:`reduce_nonnegative` decides them over the reals and says them in their
simplest form:

* a condition that always holds (``beta**2 >= 0``) is dropped;
* conditions on one parameter are solved (sympy's ``solve_univariate_inequality``, with a
  fast exact path for linear ones) and intersected: ``5*beta - 3 >= 0, beta >= 0`` is
  ``beta >= 3/5``;
* linear conditions on several parameters are decided exactly by Fourier-Motzkin
  elimination over the rationals: a contradiction is found, and a condition implied by the
  others is dropped (``alpha >= 1, lambda >= 0, alpha + lambda >= 0`` keeps the first two);
* whatever sympy cannot decide (a non-linear condition on several parameters, a
  transcendental one) is kept as written, never guessed.

When the conditions can never hold together, the result names a smallest set of them that
conflicts (``conflict``): for every real value one of those multipliers is negative.

>>> import sympy
>>> from lagrangian_family.symbolic.objective import symbol
>>> beta = symbol("beta")
>>> reduce_nonnegative([5 * beta - 3, beta, beta**2]).conditions
(beta >= 3/5,)
>>> reduce_nonnegative([beta, -beta - 3]).conflict
(0, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy

from lagrangian_family.symbolic.objective import as_expr

__all__ = ["Reduced", "reduce_nonnegative", "sign"]


def sign(expr) -> int | None:
    """+1, 0, -1 when the sign of a coefficient is known, None when it depends on parameters.

    >>> from lagrangian_family.symbolic.objective import symbol
    >>> sign(3), sign(-symbol("beta")**2 - 1), sign(symbol("beta"))
    (1, -1, None)
    """
    e = sympy.expand(as_expr(expr))
    if e == 0:
        return 0
    if e.is_number:
        return 1 if e > 0 else -1
    if e.is_positive:
        return 1
    if e.is_negative:
        return -1
    return None


@dataclass(frozen=True)
class Reduced:
    """The reduced conditions under which every expression is ≥ 0.

    ``conditions`` are sympy relations that must all hold (empty: always); ``conflict`` is
    empty when they can hold, else the indices of a smallest set of expressions that are
    never all ≥ 0 (over real parameters).
    """

    conditions: tuple[sympy.Basic, ...] = ()
    conflict: tuple[int, ...] = ()

    @property
    def satisfiable(self) -> bool:
        return not self.conflict


# -- linear constraints: Σ a_s·s + b ≥ 0 (or > 0), exact ---------------------------------------

@dataclass(frozen=True)
class _Lin:
    coeffs: tuple[tuple[sympy.Symbol, sympy.Expr], ...]  # sorted by symbol name, non-zero
    const: sympy.Expr
    strict: bool = False

    @property
    def symbols(self) -> tuple[sympy.Symbol, ...]:
        return tuple(s for s, _ in self.coeffs)

    def coefficient(self, s) -> sympy.Expr:
        return dict(self.coeffs).get(s, sympy.Integer(0))


def _linear(e: sympy.Expr) -> _Lin | None:
    """e as Σ a_s·s + b with numeric a_s, b, or None when it is not linear in its symbols."""
    coeffs: dict[sympy.Symbol, sympy.Expr] = {}
    const = sympy.Integer(0)
    free = e.free_symbols
    for term in sympy.Add.make_args(e):
        c, rest = term.as_independent(*free, as_Add=False)
        if rest == 1:
            const += c
        elif isinstance(rest, sympy.Symbol):
            coeffs[rest] = coeffs.get(rest, sympy.Integer(0)) + c
        else:
            return None
    items = tuple(sorted(((s, c) for s, c in coeffs.items() if c != 0), key=lambda sc: sc[0].name))
    return _Lin(items, const) if items else None


def _combine(lo: _Lin, up: _Lin, s) -> _Lin:
    """Eliminate s from a lower bound (coefficient > 0) and an upper bound (coefficient < 0)."""
    a, b = lo.coefficient(s), -up.coefficient(s)
    coeffs: dict = {}
    for t, c in lo.coeffs:
        coeffs[t] = coeffs.get(t, 0) + b * c
    for t, c in up.coeffs:
        coeffs[t] = coeffs.get(t, 0) + a * c
    items = tuple(sorted(((t, sympy.expand(c)) for t, c in coeffs.items() if t != s and sympy.expand(c) != 0),
                         key=lambda tc: tc[0].name))
    return _Lin(items, sympy.expand(b * lo.const + a * up.const), lo.strict or up.strict)


def _feasible(system: list[_Lin]) -> bool:
    """Fourier-Motzkin: is there a real point satisfying every constraint?"""
    rows = list(system)
    while True:
        for r in rows:
            if not r.coeffs and (r.const < 0 or (r.strict and r.const == 0)):
                return False
        rows = [r for r in rows if r.coeffs]
        if not rows:
            return True
        s = rows[0].coeffs[0][0]
        pos = [r for r in rows if r.coefficient(s) > 0]
        neg = [r for r in rows if r.coefficient(s) < 0]
        rest = [r for r in rows if r.coefficient(s) == 0]
        rows = rest + [_combine(p, n, s) for p in pos for n in neg]


def _negation(c: _Lin) -> _Lin:
    """not (e ≥ 0) is -e > 0 (and not (e > 0) is -e ≥ 0)."""
    return _Lin(tuple((s, -a) for s, a in c.coeffs), -c.const, not c.strict)


def _relation(c: _Lin) -> sympy.Basic:
    """A linear constraint printed simply: ``beta >= 3/5``, ``beta <= 1``, ``alpha + lambda >= 1``,
    ``alpha >= beta`` (positive terms on the left, the rest on the right)."""
    lead = abs(c.coeffs[0][1])
    if len(c.coeffs) == 1:
        (s, a), = c.coeffs
        v = -c.const / a
        if a > 0:
            return (sympy.Gt if c.strict else sympy.Ge)(s, v)
        return (sympy.Lt if c.strict else sympy.Le)(s, v)
    positive = sympy.Add(*[(a / lead) * s for s, a in c.coeffs if a > 0])
    negative = sympy.Add(*[(-a / lead) * s for s, a in c.coeffs if a < 0])
    const = c.const / lead
    if positive == 0:  # -alpha - lambda + 1 >= 0 reads alpha + lambda <= 1
        return (sympy.Lt if c.strict else sympy.Le)(negative, const)
    return (sympy.Gt if c.strict else sympy.Ge)(positive, negative - const)


# -- univariate non-linear constraints: sympy's solver -------------------------------------------

def _solve_univariate(e: sympy.Expr, s: sympy.Symbol) -> sympy.Set | None:
    """{s real : e(s) ≥ 0}, or None when it cannot be decided."""
    poly = _polynomial_set(e, s)
    if poly is not None:
        return poly
    try:
        out = sympy.solve_univariate_inequality(sympy.Ge(e, 0), s, relational=False, domain=sympy.S.Reals)
    except (NotImplementedError, ValueError, TypeError, AttributeError, RecursionError):
        return None
    return out if isinstance(out, sympy.Set) else None


def _polynomial_set(e: sympy.Expr, s: sympy.Symbol) -> sympy.Set | None:
    """{s : P(s) ≥ 0} for a polynomial with rational coefficients, from its exact real roots: the
    sign is that of the leading coefficient right of the largest root and flips across a root of
    odd multiplicity."""
    if not e.is_polynomial(s):
        return None
    P = sympy.Poly(e, s)
    if not (P.domain.is_ZZ or P.domain.is_QQ):
        return None
    roots: list[list] = []  # [root, multiplicity], ascending
    for r in P.real_roots():
        if roots and roots[-1][0] == r:
            roots[-1][1] += 1
        else:
            roots.append([r, 1])
    if not roots:
        return sympy.S.Reals if P.LC() > 0 else sympy.S.EmptySet
    # the sign on each open piece, right to left
    signs = [1 if P.LC() > 0 else -1]
    for _, m in reversed(roots):
        signs.append(signs[-1] * (-1) ** m)
    signs.reverse()  # signs[i] is the sign left of roots[i]; signs[-1] right of the last root
    edges = [-sympy.oo] + [r for r, _ in roots] + [sympy.oo]
    pieces: list[sympy.Set] = []
    for i, sg in enumerate(signs):
        if sg > 0:
            pieces.append(sympy.Interval(edges[i], edges[i + 1]))
    pieces += [sympy.FiniteSet(r) for r, _ in roots]  # the roots: P = 0
    return sympy.Union(*pieces)


def _set_relation(s: sympy.Symbol, st: sympy.Set) -> sympy.Basic:
    """A subset of the reals as a relation on s: Interval(3/5, oo) is ``s >= 3/5``."""
    if isinstance(st, sympy.Interval):
        parts = []
        if st.start.is_finite:
            parts.append((sympy.Gt if st.left_open else sympy.Ge)(s, st.start))
        if st.end.is_finite:
            parts.append((sympy.Lt if st.right_open else sympy.Le)(s, st.end))
        if st.start == st.end:
            return sympy.Eq(s, st.start)
        return sympy.And(*parts) if parts else sympy.true
    if isinstance(st, sympy.FiniteSet):
        return sympy.Or(*[sympy.Eq(s, v) for v in st.args])
    if isinstance(st, sympy.Union):
        return sympy.Or(*[_set_relation(s, a) for a in st.args])
    return st.as_relational(s)


def _interval_bounds(s: sympy.Symbol, st: sympy.Set) -> list[_Lin] | None:
    """The bounds of a convex set as linear constraints (None when it is not an interval)."""
    if not isinstance(st, sympy.Interval):
        return None
    out = []
    if st.start.is_finite:
        out.append(_Lin(((s, sympy.Integer(1)),), -st.start, bool(st.left_open)))
    if st.end.is_finite:
        out.append(_Lin(((s, sympy.Integer(-1)),), st.end, bool(st.right_open)))
    return out


# -- the reduction --------------------------------------------------------------------------------

def reduce_nonnegative(exprs) -> Reduced:
    """The simplest conditions on real parameters under which every expression is ≥ 0.

    >>> from lagrangian_family.symbolic.objective import symbol
    >>> a, l = symbol("alpha"), symbol("lambda")
    >>> reduce_nonnegative([1 - a, a + l - 1]).conditions
    (alpha <= 1, alpha + lambda >= 1)
    >>> reduce_nonnegative([a - 1, l, a + l]).conditions
    (alpha >= 1, lambda >= 0)
    """
    return _reduce(tuple(sympy.expand(as_expr(e)) for e in exprs))


@lru_cache(maxsize=4096)
def _reduce(exprs: tuple[sympy.Expr, ...]) -> Reduced:
    open_: list[int] = []
    for i, e in enumerate(exprs):
        s = sign(e)
        if s == -1:
            return Reduced((), (i,))
        if s is None and not e.is_nonnegative:
            open_.append(i)
    if not open_:
        return Reduced()
    return _reduce_open(exprs, open_)


def _reduce_open(exprs, open_: list[int]) -> Reduced:
    linear: dict[int, _Lin] = {}
    univariate: dict[int, tuple[sympy.Symbol, sympy.Set]] = {}
    raw: list[int] = []
    for i in open_:
        e = exprs[i]
        lin = _linear(e)
        if lin is not None:
            linear[i] = lin
            continue
        free = e.free_symbols
        st = _solve_univariate(e, next(iter(free))) if len(free) == 1 else None
        if st is None:
            raw.append(i)
        elif st == sympy.S.Reals:
            continue
        else:
            univariate[i] = (next(iter(free)), st)

    def constraints(idx) -> list[_Lin] | None:
        """The linear constraints of a set of conditions (None when one is not convex)."""
        out: list[_Lin] = []
        for i in idx:
            if i in linear:
                out.append(linear[i])
            elif i in univariate:
                b = _interval_bounds(*univariate[i])
                if b is None:
                    return None
                out += b
        return out

    def infeasible(idx) -> bool:
        by_symbol: dict = {}
        for i in idx:
            if i in univariate:
                s, st = univariate[i]
                by_symbol[s] = by_symbol.get(s, sympy.S.Reals).intersect(st)
        if any(st is sympy.S.EmptySet for st in by_symbol.values()):
            return True
        cons = constraints(idx)
        if cons is None:  # a non-convex set: use the convex conditions only (sound, maybe incomplete)
            cons = constraints([i for i in idx if i not in univariate or _interval_bounds(*univariate[i]) is not None])
        return not _feasible(cons)

    decided = list(linear) + list(univariate)
    if infeasible(decided):
        core = list(decided)  # deletion filter: a smallest conflicting set
        for i in list(core):
            trial = [j for j in core if j != i]
            if infeasible(trial):
                core = trial
        return Reduced((), tuple(sorted(core)))
    return Reduced(_simplest(linear, univariate, [exprs[i] for i in raw]), ())


def _simplest(linear: dict[int, _Lin], univariate: dict, raw: list[sympy.Expr]) -> tuple[sympy.Basic, ...]:
    # every linear constraint and every interval bound, irredundant: drop one implied by the rest
    cons: list[_Lin] = list(dict.fromkeys(linear.values()))
    sets: dict[sympy.Symbol, sympy.Set] = {}
    for s, st in univariate.values():
        bounds = _interval_bounds(s, st)
        if bounds is None:
            sets[s] = sets.get(s, sympy.S.Reals).intersect(st)
        else:
            cons += bounds
    cons = list(dict.fromkeys(cons))
    order = sorted(range(len(cons)), key=lambda k: -len(cons[k].coeffs))  # try the widest first
    keep = set(range(len(cons)))
    for k in order:
        others = [cons[j] for j in keep if j != k]
        if not _feasible(others + [_negation(cons[k])]):
            keep.discard(k)
    kept = [cons[k] for k in sorted(keep)]
    out: list[sympy.Basic] = []
    # one-parameter bounds (at most one lower and one upper per parameter once irredundant)
    single: dict[sympy.Symbol, list[_Lin]] = {}
    for c in kept:
        if len(c.coeffs) == 1:
            single.setdefault(c.coeffs[0][0], []).append(c)
    for s in sorted(set(single) | set(sets), key=lambda s: s.name):
        bounds = single.get(s, [])
        if s in sets:  # with a non-convex set of the same parameter: intersect as sets
            st = sets[s]
            for c in bounds:
                (_, a), = c.coeffs
                v = -c.const / a
                st = st.intersect(sympy.Interval(v, sympy.oo, c.strict, True) if a > 0
                                  else sympy.Interval(-sympy.oo, v, True, c.strict))
            rel = _set_relation(s, st)
            out += list(rel.args) if isinstance(rel, sympy.And) else [rel]
        elif (len(bounds) == 2 and not any(c.strict for c in bounds)
              and -bounds[0].const / bounds[0].coeffs[0][1] == -bounds[1].const / bounds[1].coeffs[0][1]):
            out.append(sympy.Eq(s, -bounds[0].const / bounds[0].coeffs[0][1]))
        else:
            out += sorted((_relation(c) for c in bounds), key=lambda r: not isinstance(r, (sympy.Ge, sympy.Gt)))
    out += [_relation(c) for c in kept if len(c.coeffs) > 1]
    out += [sympy.Ge(e.as_content_primitive()[1], 0) for e in raw]  # a positive factor dropped
    return tuple(dict.fromkeys(r for r in out if r is not sympy.true))
