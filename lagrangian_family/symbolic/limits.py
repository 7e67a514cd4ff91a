"""Resource limits of the symbolic layer, and the typed errors of the symbolic computations.

Text objectives come from users, so :func:`~lagrangian_family.symbolic.parse.parse` and
:func:`~lagrangian_family.classify` refuse what would make sympy work for long: every limit is
checked *before* sympy does the expensive step (expanding ``(beta+gamma+delta+eps+1)**32``,
evaluating ``exp(-1e1000)``, adding 5,000 parameter names), and a refused input raises
:class:`LimitError`, which names the limit, its value, what was given and how to raise it.

=========================  =======  ==============================================================
limit                      default  what it bounds
=========================  =======  ==============================================================
``text``                   10000    characters of an objective's text (and of ``str()`` of the
                                    objective parsed from it, so that the printed form reads back)
``parameters``             50       distinct parameter names in one objective
``depth``                  64       nesting of brackets and signs in the text
``digits``                 1000     decimal digits of a number: a literal (``1e-300`` has 301), a
                                    numerator or denominator computed from literals
``magnitude``              1000     numbers computed from exponentials and powers (``exp(900)``,
                                    ``pi**200``) lie between 10**-1000 and 10**1000; so do the
                                    numbers that expanding pulls out of ``b**(c*beta + d)`` and
                                    ``exp(c*beta + d)`` (``b**c``, ``exp(d)``...)
``exponent``               100      a numeric exponent of a parameter expression (``beta**100``),
                                    and the numeric factors of a symbolic exponent
                                    (``beta**(100*gamma)``), in absolute value
``root``                   1000     the denominator of a rational exponent (``2**(1/1000)``)
``radicand``               100      digits of a number under a root (``(10**99)**(1/7)``: sympy
                                    factors it when it multiplies radicals)
``expression_size``        1500     nodes of one coefficient's expression tree
``expression_depth``       24       nesting of one coefficient's expression tree
``expanded_terms``         200      monomials a coefficient has once expanded, counted before
                                    expanding (``(a+b+c+d+1)**32`` would have 58,905)
=========================  =======  ==============================================================

The limits live in one place, :data:`LIMITS`; :func:`set_limits` changes them (it returns the
previous ones) and :func:`limits` changes them for a ``with`` block:

>>> from lagrangian_family.symbolic.parse import parse
>>> with limits(parameters=2):
...     parse("a * KL(q(z) || p(z)) + b * I_q(x;z) + c * I_p(x;z)")
Traceback (most recent call last):
...
lagrangian_family.errors.LimitError: too many parameters: 3 distinct names, more than the limit parameters = 2
  a * KL(q(z) || p(z)) + b * I_q(x;z) + c * I_p(x;z)
                                        ^
expected: at most 2 distinct parameter names
given: a, b, c
fix: use fewer parameters, or raise the limit: lagrangian_family.symbolic.limits.set_limits(parameters=...)

Every other failure of sympy or mpmath inside parsing, classification, decomposition and the
reduction of conditions is a :class:`ComputationError` naming the coefficient or the term it
was computing; neither error ever escapes as a raw sympy, mpmath or Python exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sympy

from lagrangian_family.errors import ComputationError, LimitError

__all__ = ["LIMITS", "Limits", "set_limits", "limits", "current", "check_objective", "guard", "refusal",
           "describe", "literal_digits", "expanded_terms", "is_plain_polynomial", "CoefficientChecker"]


@dataclass(frozen=True)
class Limits:
    """The resource limits of parsing and classification (see the module documentation)."""

    text: int = 10_000
    parameters: int = 50
    depth: int = 64
    digits: int = 1000
    magnitude: int = 1000
    exponent: int = 100
    root: int = 1000
    radicand: int = 100
    expression_size: int = 1500
    expression_depth: int = 24
    expanded_terms: int = 200

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                from lagrangian_family.errors import ObjectiveError

                raise ObjectiveError(f"the limit {f.name} must be a positive integer",
                                     expected="an int of at least 1", given=repr(value),
                                     fix=f"set_limits({f.name}={getattr(Limits, f.name)})")


#: The limits in force (change them with :func:`set_limits` or :func:`limits`).
LIMITS = Limits()


def current() -> Limits:
    """The limits in force."""
    return LIMITS


def set_limits(new: Limits | None = None, **changes) -> Limits:
    """Replace the limits in force (by a :class:`Limits`, or change some fields); returns the previous ones.

    >>> old = set_limits(parameters=10)
    >>> current().parameters, old.parameters
    (10, 50)
    >>> _ = set_limits(old)
    """
    global LIMITS
    from lagrangian_family.errors import ObjectiveError

    names = {f.name for f in dataclasses.fields(Limits)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ObjectiveError(f"unknown limit {unknown[0]!r}", expected="one of " + ", ".join(sorted(names)),
                             given=", ".join(unknown), fix="use the names in lagrangian_family.symbolic.limits")
    if new is not None and not isinstance(new, Limits):
        raise ObjectiveError("set_limits takes a Limits or keyword changes", expected="Limits(...) or name=value",
                             given=f"{type(new).__name__} {new!r}", fix="call set_limits(parameters=100)")
    old = LIMITS
    LIMITS = dataclasses.replace(new if new is not None else old, **changes)
    _clear_caches()
    return old


@contextlib.contextmanager
def limits(**changes) -> Iterator[Limits]:
    """Change some limits inside a ``with`` block (the previous ones come back after it)."""
    old = set_limits(**changes)
    try:
        yield LIMITS
    finally:
        set_limits(old)


def _clear_caches() -> None:
    """Results cached under other limits may not hold under the new ones."""
    from lagrangian_family.symbolic import classify

    classify._classify.cache_clear()


def refusal(limit: str, what: str, given: str, expected: str, fix: str, **where) -> LimitError:
    """The :class:`LimitError` for ``limit``: ``what`` exceeds it (``where``: ``source``, ``position``)."""
    value = getattr(LIMITS, limit)
    return LimitError(f"{what}, more than the limit {limit} = {value}", limit=limit, value=value,
                      expected=expected, given=given,
                      fix=f"{fix}, or raise the limit: lagrangian_family.symbolic.limits.set_limits({limit}=...)",
                      **where)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def describe(expr) -> str:
    """A short text of a coefficient for messages (never fails, never prints a huge number; of a
    long sum, the first terms)."""
    try:
        if any(_digits_over(r, 60) for r in expr.atoms(sympy.Rational)):
            return "a coefficient with numbers of more than 60 digits"
        if isinstance(expr, sympy.Add) and len(expr.args) > 6:
            return _short(sympy.sstr(sympy.Add(*expr.args[:6], evaluate=False)) + " + ...")
        return _short(sympy.sstr(expr))
    except Exception:  # noqa: BLE001 - a description must not fail
        return f"a {type(expr).__name__} coefficient"


def _digits_over(r: sympy.Rational, digits: int) -> bool:
    bound = _pow10(digits)
    return abs(int(r.p)) >= bound or int(r.q) >= bound


_POW10: dict[int, int] = {}


def _pow10(n: int) -> int:
    if n not in _POW10:
        _POW10[n] = 10 ** n
    return _POW10[n]


def literal_digits(text: str) -> int:
    """An upper bound of the decimal digits of the numerator and denominator of a number literal
    (``'1e-300'``: 301), computed from the text without building the number."""
    mantissa, _, exponent = text.lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    significant = (whole + frac).lstrip("0") or "0"
    if exponent:
        if len(exponent.lstrip("+-")) > 9:
            return 10 ** 9
        e = int(exponent)
    else:
        e = 0
    shift = e - len(frac)  # value = significant * 10**shift
    return len(significant) + shift if shift >= 0 else max(len(significant), -shift + 1)


_LN10 = math.log(10)


class CoefficientChecker:
    """Checks coefficients against :data:`LIMITS` (sizes, digits, magnitudes) and for real values.

    One checker remembers the sub-expressions it has passed, so that a parser checking every
    intermediate result walks each node once. :meth:`check` raises :class:`LimitError` or
    :class:`~lagrangian_family.errors.ObjectiveError` (a coefficient that is not real).
    """

    def __init__(self):
        self.limits = LIMITS
        self._seen: dict = {}  # node -> (size, depth) once checked

    def fail(self, limit: str | None, what: str, *, expected: str, given: str, fix: str) -> Exception:
        """The error for a refused coefficient (a :class:`LimitError` when ``limit`` is named)."""
        if limit is None:  # a coefficient that is not real: bad input, no limit
            from lagrangian_family.errors import ObjectiveError

            return ObjectiveError(what, expected=expected, given=given, fix=fix)
        return refusal(limit, what, given, expected, fix)

    # -- one node at a time, children first ----------------------------------------------------
    def check(self, expr) -> sympy.Expr:
        """``expr`` after checking every node of it (children first); raises on the first refused one."""
        if not isinstance(expr, sympy.Basic):
            return expr
        stack = [(expr, False)]
        while stack:
            node, ready = stack.pop()
            if node in self._seen:
                continue
            if not ready:
                stack.append((node, True))
                stack.extend((a, False) for a in node.args if a not in self._seen)
                continue
            size = 1 + sum(self._seen[a][0] for a in node.args)
            depth = 1 + max((self._seen[a][1] for a in node.args), default=0)
            self._node(node, size, depth)
            if isinstance(node, (sympy.Add, sympy.Mul)):
                plain = all(self._seen[a][2] for a in node.args)
            elif isinstance(node, sympy.Pow):
                plain = node.exp.is_Integer and self._seen[node.base][2]
            else:
                plain = isinstance(node, (sympy.Symbol, sympy.Rational, sympy.NumberSymbol))
            self._seen[node] = (size, depth, plain)
        return expr

    def is_plain(self, expr) -> bool:
        """True when ``expr`` (checked already) is built of parameters, rationals, ``pi`` and ``E``
        by sums, products and integer powers: real for real parameters, nothing to ask sympy."""
        return bool(self._seen.get(expr, (0, 0, False))[2])

    def _node(self, node, size: int, depth: int) -> None:
        lim = self.limits
        if size > lim.expression_size:
            raise self.fail("expression_size", f"a coefficient of {size} nodes",
                            expected=f"coefficients of at most {lim.expression_size} nodes",
                            given=describe(node), fix="simplify the coefficient")
        if depth > lim.expression_depth:
            raise self.fail("expression_depth", f"a coefficient nested {depth} deep",
                            expected=f"coefficients nested at most {lim.expression_depth} deep",
                            given=describe(node), fix="simplify the coefficient")
        if isinstance(node, sympy.Rational):
            if _digits_over(node, lim.digits):
                raise self.fail("digits", "a number of too many digits",
                                expected=f"numerators and denominators of at most {lim.digits} digits",
                                given="a number of more digits", fix="use smaller numbers")
            return
        if isinstance(node, sympy.Pow):
            self._power(node)
        elif isinstance(node, sympy.exp):
            self._exp(node)

    def _power(self, node: sympy.Pow) -> None:
        base, exponent = node.args
        lim = self.limits
        if exponent.is_Rational and exponent.q > lim.root:
            degree = f"{exponent.q}" if exponent.q < 10**9 else "over 10**9"
            raise self.fail("root", f"a root of degree {degree}",
                            expected=f"rational exponents of denominator at most {lim.root}",
                            given=describe(node), fix="round the exponent")
        if (base.is_Rational and exponent.is_Rational and not exponent.is_Integer
                and _digits_over(base, lim.radicand)):
            raise self.fail("radicand", "a root of a number of too many digits",
                            expected=f"numbers of at most {lim.radicand} digits under a root",
                            given=describe(node), fix="use a smaller number under the root")
        if base.is_number:
            if not exponent.is_Integer and self._negative(base):
                raise self.fail(None, "a negative number to a non-integer power is not a real number",
                                expected="a real coefficient (a positive base, or an integer exponent)",
                                given=describe(node), fix="check the signs of fractional and symbolic powers")
            if exponent.is_number:
                self._log_magnitude(lambda: exponent * sympy.log(abs(base)), node)
            else:
                for c in self._factors(exponent):
                    self._log_magnitude(lambda c=c: c * sympy.log(abs(base)), node)
            return
        factors = [exponent] if exponent.is_number else self._factors(exponent)
        if exponent.is_number and not exponent.is_Rational or any(abs(c) > lim.exponent for c in factors):
            raise self.fail("exponent", "an exponent too large",
                            expected=f"exponents (and their numeric factors) of at most {lim.exponent} in absolute "
                                     "value",
                            given=describe(node), fix="use a smaller exponent")

    def _exp(self, node) -> None:
        (arg,) = node.args
        if arg.is_number:
            self._log_magnitude(lambda: arg, node)
        else:
            for c in self._factors(arg):
                self._log_magnitude(lambda c=c: c, node)

    @staticmethod
    def _factors(exponent) -> list:
        """The numeric constant and coefficients of a symbolic exponent (what expanding pulls out:
        ``b**(c + k*beta)`` is ``b**c * (b**k)**beta``)."""
        out = []
        for term in sympy.Add.make_args(exponent):
            c, _ = term.as_coeff_Mul()
            if term.is_number:
                out.append(term)
            elif c != 1:
                out.append(c)
        return out

    @staticmethod
    def _negative(number) -> bool:
        try:
            if number.is_extended_negative is not None:
                return bool(number.is_extended_negative)
            return bool(sympy.re(sympy.N(number, 15)) < 0)
        except (TypeError, ValueError, ArithmeticError):
            return False

    def _log_magnitude(self, log_value: Callable[[], sympy.Expr], node) -> None:
        """Refuse ``node`` when |log(node)| (natural log, numeric) exceeds ``magnitude`` decades."""
        lim = self.limits
        bound = lim.magnitude * _LN10
        try:
            v = sympy.re(sympy.N(log_value(), 15))
            ok = v.is_number and abs(float(v)) <= bound
        except (OverflowError, ValueError, TypeError, ZeroDivisionError, ArithmeticError):
            ok = False
        if not ok:
            raise self.fail("magnitude", "a number too large or too small",
                            expected=f"numbers between 10**-{lim.magnitude} and 10**{lim.magnitude}",
                            given=describe(node), fix="use smaller exponents")

    # -- whole coefficients --------------------------------------------------------------------
    def real(self, expr) -> None:
        """Refuse a numeric ``expr`` that is not real (``(-1/2)**pi``: sympy's principal branch)."""
        if not isinstance(expr, sympy.Expr) or not expr.is_number or expr.is_extended_real:
            return
        try:
            im = sympy.im(sympy.N(expr, 15))
            real = im == 0 or (im.is_number and abs(float(im)) == 0.0)
        except (OverflowError, ValueError, TypeError, ArithmeticError):
            real = False
        if not real:
            raise self.fail(None, "a coefficient is not a real number", expected="a real coefficient",
                            given=describe(expr), fix="check the signs under sqrt, log and fractional powers")

    def expansion(self, expr) -> None:
        """Refuse ``expr`` when expanding it would give more than ``expanded_terms`` monomials."""
        lim = self.limits
        n = expanded_terms(expr, lim.expanded_terms)
        if n > lim.expanded_terms:
            raise self.fail("expanded_terms", f"a coefficient that expands into more than {lim.expanded_terms} terms",
                            expected=f"coefficients of at most {lim.expanded_terms} terms once expanded",
                            given=describe(expr), fix="use smaller powers of sums")


def expanded_terms(expr, cap: int) -> int:
    """An upper bound of the monomials that ``sympy.expand(expr)`` produces, counted without
    expanding (stops counting beyond ``cap``). Sums add, products multiply, a sum of m terms to
    an integer power n has at most C(n+m-1, m-1) (a rational power, those of its integer part);
    a function or a symbolic power counts one but its arguments are expanded too, so the counts
    of its distinct arguments that are not atoms are added.

    >>> from lagrangian_family.symbolic.objective import symbol
    >>> a, b = symbol("alpha"), symbol("beta")
    >>> expanded_terms((a + b + 1) ** 2, 10**6), len(sympy.expand((a + b + 1) ** 2).args)
    (6, 6)
    """
    memo: dict = {}
    kept: dict = {}  # the arguments of functions and symbolic powers, each counted once

    def count(e) -> int:
        if e in memo:
            return memo[e]
        if e.is_Atom:
            n = 1
        elif e.is_Add:
            n = min(sum(count(a) for a in e.args), cap + 1)
        elif e.is_Mul:
            n = 1
            for a in e.args:
                n = min(n * count(a), cap + 1)
        elif e.is_Pow and e.exp.is_Rational:  # (a+b)**(7/3) expands as (a+b)**2 * (a+b)**(1/3)
            m = count(e.base)
            k = abs(int(e.exp.p)) // int(e.exp.q)
            n = 1 if m == 1 else (cap + 1 if k > 4 * cap else min(math.comb(k + m - 1, m - 1), cap + 1))
        else:  # a function or a symbolic power: one monomial, its arguments expanded on their own
            for a in e.args:
                if not a.is_Atom:  # an atom expands to itself: nothing to count (exp(2) adds no term)
                    kept.setdefault(a, None)
            n = 1
        memo[e] = n
        return n

    total = count(sympy.sympify(expr))
    done: set = set()
    while total <= cap:
        todo = [a for a in kept if a not in done]
        if not todo:
            break
        for a in todo:
            done.add(a)
            total += count(a)
    return min(total, cap + 1)


def is_plain_polynomial(expr) -> bool:
    """True for a polynomial with rational coefficients (see
    :func:`lagrangian_family.symbolic.objective.is_plain_polynomial`)."""
    from lagrangian_family.symbolic.objective import is_plain_polynomial as plain

    return plain(expr)


def guard(subject: str | Callable[[], str], stage: str, fn: Callable[[], object]):
    """``fn()``, with every failure of sympy, mpmath or Python arithmetic raised as a
    :class:`ComputationError` naming ``subject`` (a coefficient or a term; a function giving its
    text is called only on a failure) and ``stage``.

    Errors of the toolkit (:class:`~lagrangian_family.errors.ObjectiveError`) pass unchanged.
    """
    from lagrangian_family.errors import ObjectiveError

    try:
        return fn()
    except ObjectiveError:
        raise
    except Exception as e:  # sympy and mpmath raise many types; none may escape
        text = subject() if callable(subject) else subject
        if isinstance(e, (RecursionError, MemoryError, OverflowError)):
            raise ComputationError(f"{stage}: {_short(text)} is too large to compute", subject=text, stage=stage,
                                   expected="moderate coefficients", given=f"{type(e).__name__}: {_short(str(e))}",
                                   fix="simplify the coefficient") from e
        raise ComputationError(f"{stage}: cannot compute with {_short(text)}", subject=text, stage=stage,
                               expected="coefficients sympy can decide (real, finite, not too large)",
                               given=f"{type(e).__name__}: {_short(str(e))}",
                               fix="simplify the coefficient or bind its parameters to numbers") from e


def check_objective(objective) -> None:
    """Refuse an objective (built with the Python API, not parsed) over the limits: too many
    parameters, a coefficient too large, deep or not real. Parsed objectives pass already."""
    from lagrangian_family.errors import ObjectiveError

    lim = LIMITS
    names = sorted(str(s) for s in objective.free_symbols)
    if len(names) > lim.parameters:
        raise refusal("parameters", f"too many parameters: {len(names)} distinct names",
                      ", ".join(names[:5]) + ("..." if len(names) > 5 else ""),
                      f"at most {lim.parameters} distinct parameter names", "use fewer parameters")
    checker = CoefficientChecker()
    for term, coef in objective.items():
        try:
            checker.check(coef)
            checker.real(coef)
        except ObjectiveError as e:
            e.args = (f"{e.args[0]}\nin the coefficient of {term}",) + e.args[1:]
            raise
