"""When is every multiplier non-negative? Conditions on real parameters, reduced.

A dual form holds as a Lagrangian (every λ_i ≥ 0) under the conditions λ_i ≥ 0 on the
parameters. :func:`reduce_nonnegative` decides them over the reals and says them in their
simplest form:

* a condition that always holds (``beta**2 >= 0``) is dropped;
* conditions on one parameter are solved and intersected: linear ones directly, rational
  functions from their exact real roots (sympy's root isolation, radicals where they exist):
  ``5*beta - 3 >= 0, beta >= 0`` is ``beta >= 3/5``, ``beta**2 - 1 >= 0`` is
  ``beta <= -1 | beta >= 1``;
* linear conditions on several parameters are decided exactly by Fourier-Motzkin
  elimination over the rationals: a contradiction is found, and a condition implied by the
  others is dropped (``alpha >= 1, lambda >= 0, alpha + lambda >= 0`` keeps the first two);
* what is not decided here (a non-linear condition on several parameters, a transcendental
  one: sympy's ``solve_univariate_inequality`` takes up to seconds on those) is kept as
  written, never guessed.

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

from lagrangian_family.symbolic.limits import describe, guard
from lagrangian_family.symbolic.objective import as_expr

__all__ = ["Reduced", "reduce_nonnegative", "sign"]


def sign(expr) -> int | None:
    """+1, 0, -1 when the sign of a coefficient is known, None when it depends on parameters.

    >>> from lagrangian_family.symbolic.objective import symbol
    >>> sign(3), sign(-symbol("beta")**2 - 1), sign(symbol("beta"))
    (1, -1, None)
    """
    e = as_expr(expr)
    return guard(lambda: describe(e), "deciding the sign of a coefficient", lambda: _sign(e))


#: Sums of more terms than this get no sign from sympy's assumptions (a query takes seconds on
#: a polynomial of hundreds of terms); their sign counts as unknown, a condition kept as written.
ASSUMPTION_TERMS = 30
#: Polynomials with a coefficient of more bits than this are not solved (root isolation over
#: 400-digit coefficients takes seconds); their condition is kept as written.
ROOT_BITS = 600


def _sign(e) -> int | None:
    e = sympy.expand(e)
    if e == 0:
        return 0
    if e.is_number:
        return 1 if e > 0 else -1
    if len(sympy.Add.make_args(e)) > ASSUMPTION_TERMS:
        return None
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


# -- one-parameter sets: unions of intervals ------------------------------------------------------
#
# sympy's Set classes simplify every union and intersection by comparing endpoints symbolically,
# which costs tens of milliseconds on algebraic endpoints; a condition set here is a sorted
# tuple of disjoint pieces (lo, hi, lo_closed, hi_closed), a point being lo == hi, both closed.

_REALS = ((-sympy.oo, sympy.oo, False, False),)


def _key(x) -> sympy.Float | float:
    """A sort key for an endpoint (exact endpoints compared to 30 digits)."""
    if x is sympy.oo:
        return float("inf")
    if x is -sympy.oo:
        return float("-inf")
    return x.evalf(30)


def _intersect(a: tuple, b: tuple) -> tuple:
    out = []
    for lo1, hi1, lc1, hc1 in a:
        for lo2, hi2, lc2, hc2 in b:
            k1, k2 = _key(lo1), _key(lo2)
            lo, lc = (lo1, lc1) if k1 > k2 else (lo2, lc2) if k2 > k1 else (lo1, lc1 and lc2)
            h1, h2 = _key(hi1), _key(hi2)
            hi, hc = (hi1, hc1) if h1 < h2 else (hi2, hc2) if h2 < h1 else (hi1, hc1 and hc2)
            kl, kh = _key(lo), _key(hi)
            if kl < kh or (kl == kh and lc and hc):
                out.append((lo, hi, lc, hc))
    return tuple(sorted(out, key=lambda p: _key(p[0])))


def _solve_univariate(e: sympy.Expr, s: sympy.Symbol) -> tuple | None:
    """{s real : e(s) ≥ 0} for a rational function of s, or None when it is not decided here (a
    transcendental condition: sympy's ``solve_univariate_inequality`` takes tenths of a second to
    seconds on those, so they are kept as written).

    The sign of num·den is that of its leading coefficient right of every real root and flips
    across a root of odd multiplicity; num/den ≥ 0 where it is positive and at the roots of num,
    never at those of den.
    """
    if not e.is_rational_function(s):
        return None
    num, den = sympy.cancel(sympy.together(e)).as_numer_denom()
    try:
        rn, rd = _real_roots(num, s), _real_roots(den, s)
    except (sympy.PolynomialError, NotImplementedError, ValueError, TypeError):
        return None
    if rn is None or rd is None:
        return None
    (lc_n, roots_n), (lc_d, roots_d) = rn, rd
    mult: dict = {}
    for r, m in roots_n + roots_d:
        mult[r] = mult.get(r, 0) + m
    edges = sorted(mult, key=_key)
    poles = {r for r, _ in roots_d}
    signs = [1 if (lc_n * lc_d) > 0 else -1]
    for r in reversed(edges):
        signs.append(signs[-1] * (-1) ** mult[r])
    signs.reverse()  # signs[i]: the sign left of edges[i]; signs[-1]: right of the last edge
    bounds = [-sympy.oo] + edges + [sympy.oo]
    pieces: list[tuple] = []
    for i, sg in enumerate(signs):
        lo, hi = bounds[i], bounds[i + 1]
        lo_closed, hi_closed = lo.is_finite and lo not in poles, hi.is_finite and hi not in poles
        if sg > 0:
            if pieces and pieces[-1][1] == lo and pieces[-1][3]:  # continues across an even root
                pieces[-1] = (pieces[-1][0], hi, pieces[-1][2], hi_closed)
            else:
                pieces.append((lo, hi, lo_closed, hi_closed))
        elif hi_closed:  # a root of num right of a negative piece: e = 0 there (a positive piece next
            pieces.append((hi, hi, True, True))  # starting at it is merged into this point)
    return tuple(pieces)


def _real_roots(expr: sympy.Expr, s: sympy.Symbol):
    """(leading coefficient, [(real root, multiplicity)]) of a polynomial with numeric coefficients:
    exact isolation over the rationals, closed forms up to degree 2 otherwise (None beyond)."""
    P = sympy.Poly(expr, s)
    lc = P.LC()
    if P.degree() <= 0:
        return lc, []
    if P.domain.is_ZZ or P.domain.is_QQ:
        if any(max(abs(int(c.p)).bit_length(), int(c.q).bit_length()) > ROOT_BITS for c in P.coeffs()):
            return None  # root isolation takes long on huge coefficients: the condition is kept as written
        found: dict = {}
        for r in P.real_roots():
            found[r] = found.get(r, 0) + 1
        return lc, list(found.items())
    if P.degree() > 2 or not all(c.is_real for c in P.all_coeffs()):
        return None
    return lc, [(r, m) for r, m in sympy.roots(P).items() if r.is_real]


def _set_relation(s: sympy.Symbol, pieces: tuple) -> sympy.Basic:
    """A union of intervals as a relation on s: ((3/5, oo, True, False),) is ``s >= 3/5``."""
    rels = []
    for lo, hi, lc, hc in pieces:
        if lo == hi:
            rels.append(sympy.Eq(s, lo))
            continue
        parts = []
        if lo.is_finite:
            parts.append((sympy.Ge if lc else sympy.Gt)(s, lo))
        if hi.is_finite:
            parts.append((sympy.Le if hc else sympy.Lt)(s, hi))
        rels.append(sympy.And(*parts) if parts else sympy.true)
    return sympy.Or(*rels) if rels else sympy.false


def _interval_bounds(s: sympy.Symbol, pieces: tuple) -> list[_Lin] | None:
    """The bounds of a convex set as linear constraints (None when it is not one interval)."""
    if len(pieces) != 1:
        return None
    (lo, hi, lc, hc), = pieces
    out = []
    if lo.is_finite:
        out.append(_Lin(((s, sympy.Integer(1)),), -lo, not lc))
    if hi.is_finite:
        out.append(_Lin(((s, sympy.Integer(-1)),), hi, not hc))
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
    exprs = tuple(as_expr(e) for e in exprs)
    return guard(lambda: ", ".join(f"{describe(e)} >= 0" for e in exprs), "reducing the conditions",
                 lambda: _reduce(tuple(sympy.expand(e) for e in exprs)))


@lru_cache(maxsize=4096)
def _reduce(exprs: tuple[sympy.Expr, ...]) -> Reduced:
    open_: list[int] = []
    for i, e in enumerate(exprs):
        s = sign(e)
        if s == -1:
            return Reduced((), (i,))
        if s is None and (len(sympy.Add.make_args(e)) > ASSUMPTION_TERMS or not e.is_nonnegative):
            open_.append(i)
    if not open_:
        return Reduced()
    return _reduce_open(exprs, open_)


def _reduce_open(exprs, open_: list[int]) -> Reduced:
    linear: dict[int, _Lin] = {}
    univariate: dict[int, tuple[sympy.Symbol, tuple]] = {}
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
        elif st == _REALS:
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
                by_symbol[s] = _intersect(by_symbol.get(s, _REALS), st)
        if any(not st for st in by_symbol.values()):
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
    sets: dict[sympy.Symbol, tuple] = {}
    for s, st in univariate.values():
        bounds = _interval_bounds(s, st)
        if bounds is None:
            sets[s] = _intersect(sets.get(s, _REALS), st)
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
                st = _intersect(st, ((v, sympy.oo, not c.strict, False),) if a > 0
                                else ((-sympy.oo, v, False, not c.strict),))
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
