"""An objective: an immutable linear combination of terms with sympy coefficients.

Objectives are losses (minimised). Coefficients are sympy expressions over real
symbols (``beta``, ``lambda``...), which stay symbolic until bound with :meth:`Objective.subs`.

>>> from lagrangian_family.symbolic.terms import Density, ExpectedLog, MutualInformation
>>> nll = -ExpectedLog(Density("q", ("x", "z")), Density("p", ("x",), ("z",)))
>>> str(nll + symbol("beta") * MutualInformation("q"))
'-E_{q(x,z)}[log p(x|z)] + beta * I_q(x;z)'
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from functools import cache

import sympy

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.terms import Term


@cache
def symbol(name: str) -> sympy.Symbol:
    """The toolkit's symbol for a parameter name (real-valued, shared everywhere).

    A name is what the text syntax reads as one: a letter or ``_``, then letters, digits or
    ``_`` (``beta``, ``lambda_1``); anything else raises :class:`ObjectiveError`.

    >>> symbol("beta") is symbol("beta")
    True
    """
    if not isinstance(name, str) or not _is_name(name):
        raise ObjectiveError("not a parameter name", expected="an identifier such as beta or lambda_1",
                             given=f"{type(name).__name__} {_short_repr(name)}",
                             fix="use letters, digits and '_', starting with a letter")
    return sympy.Symbol(name, real=True)


def _is_name(text: str) -> bool:
    return bool(text) and (text[0] == "_" or text[0].isalpha()) and all(c == "_" or c.isalnum() for c in text)


def _short_repr(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def as_expr(value, *, context: str = "a coefficient") -> sympy.Basic:
    """``value`` as a sympy object, never by reading text: a sympy object is kept, a number
    converted (``sympy.sympify(value, strict=True)``); a string or anything else raises
    :class:`ObjectiveError`. Every coefficient that may come from a user passes here, so no
    text reaches sympy's ``eval``-based parser.

    >>> as_expr(3), as_expr(0.5)
    (3, 0.500000000000000)
    >>> as_expr("__import__('os')")
    Traceback (most recent call last):
    ...
    lagrangian_family.errors.ObjectiveError: a coefficient given as text
    expected: a number or a sympy expression (text is never evaluated)
    given: str "__import__('os')"
    fix: pass a number (4.0), a Fraction or a sympy expression; write text objectives with lf.parse
    """
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, (str, bytes)):
        raise ObjectiveError(f"{context} given as text", expected="a number or a sympy expression (text is never "
                             "evaluated)", given=f"{type(value).__name__} {_short_repr(value)}",
                             fix="pass a number (4.0), a Fraction or a sympy expression; write text objectives "
                             "with lf.parse")
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        try:
            return sympy.sympify(value, strict=True)
        except (sympy.SympifyError, TypeError, ValueError) as e:
            raise ObjectiveError(f"{context} is not a usable number", expected="a finite real number",
                                 given=f"{type(value).__name__} {_short_repr(value)}", fix="pass a float") from e
    raise ObjectiveError(f"{context} is not a number", expected="a number or a sympy expression",
                         given=f"{type(value).__name__} {_short_repr(value)}",
                         fix="use an int, a float, a Fraction or a sympy expression")


def is_plain_polynomial(expr) -> bool:
    """True for a polynomial with rational coefficients (no function, every power an integer one):
    expanding gives its canonical form, and it is real for real parameters.

    >>> is_plain_polynomial(symbol("beta")**2 / 3), is_plain_polynomial(sympy.sqrt(symbol("beta")))
    (True, False)
    """
    return not expr.atoms(sympy.Function) and all(p.exp.is_Integer for p in expr.atoms(sympy.Pow))


def canonical(c: sympy.Expr) -> sympy.Expr:
    """The canonical form of a coefficient: expanded and, where it is not a polynomial, rebuilt
    node by node until rebuilding changes nothing. sympy evaluates a node when it is built, not
    when it is expanded around (``Abs(exp(beta)/beta)`` expands to ``exp(beta)*Abs(1/beta)``,
    which building again gives as ``exp(beta)/Abs(beta)``); reading the printed text builds every
    node, so only a coefficient that building leaves alone prints as text that reads back as itself.

    >>> beta = symbol("beta")
    >>> canonical(sympy.Abs(sympy.exp(beta) / beta))
    exp(beta)/Abs(beta)
    >>> canonical((beta + 1) ** 2)
    beta**2 + 2*beta + 1
    """
    e = sympy.expand(c)
    if not isinstance(e, sympy.Expr) or is_plain_polynomial(e):
        return e  # a polynomial with rational coefficients: expand gives its canonical form
    for _ in range(4):
        again = sympy.expand(_rebuild(e))
        if again == e:
            break
        e = again
    return e


def _rebuild(e):
    if e.is_Atom or not e.args:
        return e
    args = [_rebuild(a) for a in e.args]
    if e.is_Pow and args[0].is_Rational and args[0].p == 1 and args[0].q > 1 and not args[1].is_Rational:
        # (1/7)**E: a product turns it into 7**(-E) or not, depending on the order of its factors
        return sympy.Pow(sympy.Integer(args[0].q), -args[1])
    return e.func(*args)


def as_coefficient(value, *, context: str = "a coefficient") -> sympy.Expr:
    """A scalar as a sympy expression, or an :class:`ObjectiveError` for anything else."""
    if isinstance(value, (Term, Objective)):
        raise ObjectiveError(
            f"non-linear objective: {context} is itself a term",
            expected="a linear combination of terms with scalar coefficients",
            given=f"a product involving {value}",
            fix="multiply terms only by numbers or parameters, never by other terms",
        )
    if isinstance(value, bool):
        raise ObjectiveError(f"{context} is a boolean", expected="a number or a sympy expression",
                             given=repr(value), fix="use 0 or 1")
    if isinstance(value, sympy.Basic):
        expr = sympy.nsimplify(value, rational=True) if value.has(sympy.Float) else value
    elif isinstance(value, numbers.Number):
        expr = sympy.nsimplify(value, rational=True) if isinstance(value, float) else as_expr(value, context=context)
    else:
        as_expr(value, context=context)  # raises: text is never read, other types are not numbers
        raise AssertionError("unreachable")  # pragma: no cover
    if isinstance(expr, sympy.Expr) and expr.is_real is False:
        raise ObjectiveError(f"{context} is not real", expected="a real number or expression",
                             given=str(expr), fix="use real coefficients (objectives are real-valued losses)")
    if not isinstance(expr, sympy.Expr) or expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise ObjectiveError(f"{context} is not a finite scalar", expected="a finite number or expression",
                             given=str(expr), fix="check for a division by zero")
    return expr


class Objective:
    """A linear combination of :class:`~lagrangian_family.symbolic.terms.Term` s.

    Immutable and hashable; equality is structural (same terms, same coefficients),
    elementary equivalence is :func:`lagrangian_family.equivalent`.
    """

    __slots__ = ("_terms", "_hash")

    def __init__(self, terms: Mapping[Term, object] | Iterable[tuple[Term, object]] = ()):
        if not isinstance(terms, (Mapping, Iterable)) or isinstance(terms, (str, bytes)):
            raise ObjectiveError("an objective is built from terms", expected="a {term: coefficient} mapping "
                                 "or (term, coefficient) pairs", given=f"{type(terms).__name__} {terms!r}",
                                 fix="use lf.parse(text) or Objective({term: 1})")
        items = terms.items() if isinstance(terms, Mapping) else terms
        collected: dict[Term, sympy.Expr] = {}
        for term, coef in items:
            if not isinstance(term, Term):
                raise ObjectiveError("an objective holds terms only", expected="Term instances",
                                     given=f"{type(term).__name__} {term!r}",
                                     fix="build objectives with lf.parse or the DSL")
            c = as_coefficient(coef, context=f"the coefficient of {term}")
            collected[term] = collected.get(term, sympy.Integer(0)) + c
        canon = ((t, canonical(c)) for t, c in collected.items())
        self._terms = {t: c for t, c in canon if c != 0}
        self._hash = None

    # -- access ----------------------------------------------------------------
    @property
    def terms(self) -> dict[Term, sympy.Expr]:
        """A copy of the mapping from each term to its coefficient, in the order terms were written."""
        return dict(self._terms)

    def items(self):
        """The ``(term, coefficient)`` pairs, in the order terms were written.

        >>> from lagrangian_family import parse
        >>> [(str(t), c) for t, c in parse("2 * I_q(x;z) - I_p(x;z)").items()]
        [('I_q(x;z)', 2), ('I_p(x;z)', -1)]
        """
        return self._terms.items()

    def __iter__(self):
        return iter(self._terms)

    def __len__(self) -> int:
        return len(self._terms)

    def coefficient(self, term: Term) -> sympy.Expr:
        """The coefficient of ``term`` as written (0 when absent); no rewriting is applied.

        >>> from lagrangian_family import MutualInformation, parse
        >>> parse("beta * I_q(x;z)").coefficient(MutualInformation("q"))
        beta
        """
        return self._terms.get(term, sympy.Integer(0))

    @property
    def free_symbols(self) -> frozenset[sympy.Symbol]:
        """The parameters (sympy symbols) the coefficients depend on."""
        out: set = set()
        for c in self._terms.values():
            out |= c.free_symbols
        return frozenset(out)

    def subs(self, values: Mapping | None = None, **kwargs) -> Objective:
        """Bind parameters: ``obj.subs(beta=4)``."""
        mapping = {}
        free = self.free_symbols
        for k, v in {**(values or {}), **kwargs}.items():
            key = symbol(k) if isinstance(k, str) else k
            if key not in free:
                raise ObjectiveError(
                    f"the objective has no parameter {k!s}",
                    expected="one of " + (", ".join(sorted(map(str, free))) or "(no parameters)"),
                    given=str(k),
                    fix="bind only the parameters the objective has (str(objective) shows them)",
                )
            mapping[key] = as_coefficient(v, context=f"the value of {k}")
        return Objective({t: c.subs(mapping) for t, c in self._terms.items()})

    def as_objective(self) -> Objective:
        """The objective itself (as :meth:`Term.as_objective` gives a term's)."""
        return self

    # -- arithmetic ------------------------------------------------------------
    @staticmethod
    def _coerce(other) -> Objective:
        if isinstance(other, Objective):
            return other
        if isinstance(other, Term):
            return other.as_objective()
        if isinstance(other, (numbers.Number, sympy.Basic)) and not isinstance(other, bool):
            if as_coefficient(other) == 0:
                return Objective()
            raise ObjectiveError(
                "a constant added to an objective",
                expected="a linear combination of terms (constants do not change the optimum)",
                given=str(other),
                fix="drop the constant",
            )
        if hasattr(other, "as_objective"):  # DSL values that know how to become (or refuse to be) objectives
            return other.as_objective()
        raise ObjectiveError("cannot combine an objective with this value", expected="a term or an objective",
                             given=f"{type(other).__name__} {other!r}", fix="build terms with lf.parse or the DSL")

    def __add__(self, other) -> Objective:
        other = self._coerce(other)
        return Objective(list(self._terms.items()) + list(other._terms.items()))

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective({t: -c for t, c in self._terms.items()})

    def __sub__(self, other) -> Objective:
        return self + (-self._coerce(other))

    def __rsub__(self, other) -> Objective:
        return self._coerce(other) - self

    def __mul__(self, other) -> Objective:
        c = as_coefficient(other, context="a factor of an objective")
        return Objective({t: c * v for t, v in self._terms.items()})

    __rmul__ = __mul__

    def __truediv__(self, other) -> Objective:
        c = as_coefficient(other, context="a divisor of an objective")
        if c == 0:
            raise ObjectiveError("division of an objective by zero", expected="a non-zero divisor",
                                 given=str(other), fix="divide by a non-zero number")
        return self * (1 / c)

    # -- identity --------------------------------------------------------------
    def __eq__(self, other) -> bool:
        if isinstance(other, Term):
            other = other.as_objective()
        if not isinstance(other, Objective):
            return NotImplemented
        return self._terms == other._terms

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._terms.items()))
        return self._hash

    # -- printing --------------------------------------------------------------
    def __str__(self) -> str:
        return format_combination(self._terms.items(), str, _text_coefficient)

    def __repr__(self) -> str:
        return f"Objective({str(self)!r})"

    def latex(self) -> str:
        """LaTeX of the objective (coefficients by sympy, terms in the paper's notation)."""
        return format_combination(self._terms.items(), lambda t: t.latex(), _latex_coefficient)

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"


def text_coefficient(c: sympy.Expr) -> str:
    """A coefficient in the text syntax, parenthesised where a product would misread it."""
    c = as_expr(c)
    text = sympy.sstr(c)
    if isinstance(c, (sympy.Add,)) or (isinstance(c, sympy.Rational) and not c.is_Integer):
        return f"({text})"
    return text


_text_coefficient = text_coefficient  # the name the parser and DSL tests use


def _latex_coefficient(c: sympy.Expr) -> str:
    text = sympy.latex(c)
    if isinstance(c, sympy.Add):
        return rf"\left({text}\right)"
    return text


def _is_negative_leading(c: sympy.Expr) -> bool:
    if c.is_number:
        if c.is_extended_negative is not None:
            return bool(c.is_extended_negative)
        value = sympy.re(sympy.N(c, 30))  # sympy cannot decide the sign exactly: its value does
        return bool(value < 0) if value.is_comparable else c.could_extract_minus_sign()
    if isinstance(c, sympy.Mul):
        return c.could_extract_minus_sign()
    return False


def format_combination(items, show_term, show_coef, times: str | None = None) -> str:
    """``a * t1 - b * t2 + t3``: the shared printer of linear combinations (text and LaTeX)."""
    latex = show_coef is _latex_coefficient
    times = times if times is not None else (r" \, " if latex else " * ")
    out = []
    for i, (term, c) in enumerate(items):
        c = as_expr(c)
        neg = _is_negative_leading(c)
        mag = -c if neg else c
        body = show_term(term)
        piece = body if mag == 1 else f"{show_coef(mag)}{times}{body}"
        if i == 0:
            out.append(("-" if neg else "") + piece)
        else:
            out.append((" - " if neg else " + ") + piece)
    return "".join(out) if out else "0"
