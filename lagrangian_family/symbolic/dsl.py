"""A Python DSL for the terms of the family: the text syntax, written as Python expressions.

>>> from lagrangian_family.symbolic.dsl import E, KL, I_q, log, p, q, x, z
>>> from lagrangian_family.symbolic.objective import symbol
>>> beta = symbol("beta")
>>> elbo = -E[q(x, z)][log(p(x | z))] + beta * E[q(x)][KL(q(z | x), p(z))]
>>> print(elbo)
-E_{q(x,z)}[log p(x|z)] + beta * E_{q(x)}[KL(q(z|x) || p(z))]

The values are the same :class:`~lagrangian_family.symbolic.terms.Term` s and
:class:`~lagrangian_family.symbolic.objective.Objective` s that
:func:`~lagrangian_family.symbolic.parse.parse` builds:

>>> from lagrangian_family.symbolic.parse import parse
>>> elbo == parse("-E_{q(x,z)}[log p(x|z)] + beta * E_{q(x)}[KL(q(z|x) || p(z))]")
True
>>> (beta - 1) * I_q + beta * KL(q(z), p(z)) == parse("(beta - 1) * I_q(x;z) + beta * KL(q(z) || p(z))")
True

* ``x`` and ``z`` are the variables; ``z | x`` is a conditioning and ``q(z | x)``,
  ``q(x, z)``, ``p(z)`` are :class:`~lagrangian_family.symbolic.terms.Density` s.
* ``log(density)`` is a log-density: it supports ``+``, ``-`` and scalar ``*`` and ``/``, and
  is only valid inside an expectation.
* ``E[outer][body]`` (or ``E(outer, body)``) is the expectation of a linear combination of
  log-densities, or of a conditional divergence, under a marginal or joint ``outer``; it
  returns an :class:`~lagrangian_family.symbolic.objective.Objective`.
* ``KL``, ``JS``, ``MMD``, ``W``, ``D_f`` take two densities: ``KL(q(z), p(z))`` (Python has no
  ``||`` operator). Between marginals or joints they return a
  :class:`~lagrangian_family.symbolic.terms.Divergence` term. Between conditionals they
  return a pending value that must be averaged: ``E[q(x)][KL(q(z | x), p(z))]``.
* ``I_q`` and ``I_p`` are the mutual informations I_q(x;z) and I_p(x;z) (terms, not functions).

Misuse raises :class:`~lagrangian_family.errors.ObjectiveError`:

>>> KL(q(z | x), p(z)) + KL(q(z), p(z))
Traceback (most recent call last):
...
lagrangian_family.errors.ObjectiveError: the conditional divergence KL(q(z|x) || p(z)) is outside an expectation
expected: a conditional divergence averaged over its condition, inside E[...][...]
given: KL(q(z|x) || p(z)) + ...
fix: wrap it in an expectation: E[q(x)][KL(q(z|x) || p(z))]
"""

from __future__ import annotations

import numbers

import sympy

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.objective import Objective, _text_coefficient, as_coefficient, format_combination
from lagrangian_family.symbolic.terms import (
    DIVERGENCES,
    FAMILIES,
    VARIABLES,
    Density,
    Divergence,
    ExpectedLog,
    MutualInformation,
    Term,
)

__all__ = [
    "x",
    "z",
    "p",
    "q",
    "E",
    "log",
    "KL",
    "JS",
    "MMD",
    "W",
    "D_f",
    "I_q",
    "I_p",
    "Variable",
    "Conditioning",
    "Family",
    "Expectation",
    "Inner",
    "DivergenceFamily",
]


class Variable:
    """A variable of the family: ``x`` (observed) or ``z`` (latent).

    ``z | x`` is the conditioning used in ``q(z | x)``.

    >>> z | x
    z | x
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        if name not in VARIABLES:
            raise ObjectiveError(f"unknown variable {name!r}", expected="variables " + " and ".join(VARIABLES),
                                 given=repr(name), fix="use x for the observed variable and z for the latent one")
        self.name = name

    def __or__(self, other) -> Conditioning:
        return Conditioning((self.name,), _variable_names(other, "after '|'"))

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:
        return isinstance(other, Variable) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Variable", self.name))


class Conditioning:
    """``vars | given``, the argument of a conditional density such as ``q(z | x)``."""

    __slots__ = ("vars", "given")

    def __init__(self, vars: tuple[str, ...], given: tuple[str, ...]):
        self.vars = vars
        self.given = given

    def __repr__(self) -> str:
        return f"{','.join(self.vars)} | {','.join(self.given)}"


def _variable_names(value, context: str) -> tuple[str, ...]:
    if isinstance(value, Variable):
        return (value.name,)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, Variable) for v in value):
        return tuple(v.name for v in value)
    raise ObjectiveError(f"expected a variable {context}", expected="x or z (the DSL's variables)",
                         given=f"{type(value).__name__} {value!r}",
                         fix="import x and z from lagrangian_family.symbolic.dsl and write q(z | x)")


class Family:
    """One of the two model families; calling it builds a density.

    >>> q(z | x), p(x, z), p(z, x) == p(x, z)
    (Density(family='q', vars=('z',), given=('x',)), Density(family='p', vars=('x', 'z'), given=()), True)
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        if name not in FAMILIES:
            raise ObjectiveError(f"unknown distribution {name!r}",
                                 expected="one of the two model families, q (data and encoder) or p (prior and "
                                          "decoder)",
                                 given=repr(name), fix="use q or p")
        self.name = name

    def __call__(self, *args) -> Density:
        if not args:
            raise ObjectiveError(f"the density {self.name}() is over no variable",
                                 expected="at least one variable", given=f"{self.name}()",
                                 fix=f"write for example {self.name}(z | x)")
        names: list[str] = []
        given: tuple[str, ...] = ()
        for i, arg in enumerate(args):
            if isinstance(arg, Conditioning):
                if i != len(args) - 1:
                    raise ObjectiveError(f"'|' must come last in {self.name}(...)",
                                         expected="the conditioning variables after every other variable",
                                         given=", ".join(map(repr, args)), fix=f"write {self.name}(z | x)")
                names.extend(arg.vars)
                given = arg.given
            else:
                names.extend(_variable_names(arg, f"in {self.name}(...)"))
        for v in set(names):
            if names.count(v) > 1 or given.count(v) > 1:
                raise ObjectiveError(f"the variable {v} is repeated in {self.name}(...)",
                                     expected="each variable once", given=", ".join(map(repr, args)),
                                     fix="remove the repetition")
        return Density(self.name, tuple(names), given)

    def __repr__(self) -> str:
        return self.name


class _Pending:
    """A divergence between conditionals, waiting for the distribution that averages it."""

    __slots__ = ("kind", "left", "right")

    def __init__(self, kind: str, left: Density, right: Density):
        self.kind, self.left, self.right = kind, left, right

    def _key(self):
        return (self.kind, self.left, self.right)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Pending) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return f"{self.kind}({self.left} || {self.right})"

    def outer(self) -> Density:
        """The smallest distribution that averages this divergence (its first argument's family)."""
        return Density(self.left.family, self.left.given or self.right.given)


def _is_scalar(value) -> bool:
    return isinstance(value, (numbers.Number, sympy.Basic)) and not isinstance(value, bool)


class Inner:
    """The inside of an expectation: a linear combination of log-densities and conditional
    divergences. Only valid inside ``E[...][...]``.

    >>> inner = log(q(z | x)) - 2 * log(p(z))
    >>> inner
    Inner(log q(z|x) - 2 * log p(z))
    >>> E[q(x, z)][inner] == E[q(x, z)][log(q(z | x))] - 2 * E[q(z)][log(p(z))]
    False
    >>> E[q(x, z)][inner] == E[q(x, z)][log(q(z | x))] - 2 * E[q(x, z)][log(p(z))]
    True
    """

    __slots__ = ("items",)

    def __init__(self, items):
        collected: dict = {}
        for item, coef in items:
            collected[item] = collected.get(item, sympy.Integer(0)) + coef
        self.items: tuple = tuple((k, sympy.expand(c)) for k, c in collected.items())

    # -- printing ------------------------------------------------------------------------------
    def _text(self) -> str:
        show = lambda t: f"log {t}" if isinstance(t, Density) else str(t)  # noqa: E731
        return format_combination(self.items, show, _text_coefficient)

    def __str__(self) -> str:
        return self._text()

    def __repr__(self) -> str:
        return f"Inner({self._text()})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Inner) and dict(other.items) == dict(self.items)

    def __hash__(self) -> int:
        return hash(frozenset(self.items))

    # -- errors --------------------------------------------------------------------------------
    def _outside(self, given: str) -> ObjectiveError:
        for item, _ in self.items:
            if isinstance(item, _Pending):
                return ObjectiveError(
                    f"the conditional divergence {item} is outside an expectation",
                    expected="a conditional divergence averaged over its condition, inside E[...][...]",
                    given=given, fix=f"wrap it in an expectation: E[{item.outer()}][{item}]")
        first = self.items[0][0] if self.items else None
        example = f"E[{Density('q', tuple(first.scope))}][log({first})]" if first is not None else "E[q(x, z)][...]"
        return ObjectiveError(
            "a log-density outside an expectation",
            expected="log-densities only inside E[...][...]", given=given,
            fix=f"wrap it in an expectation, e.g. {example}")

    def as_objective(self):
        """Raises: an inner combination is a term only once averaged, inside ``E[...][...]``."""
        raise self._outside(self._text())

    # -- arithmetic ----------------------------------------------------------------------------
    def _coerce(self, other, op: str) -> Inner:
        if isinstance(other, Inner):
            return other
        if isinstance(other, (Term, Objective)):
            raise self._outside(f"{self._text()} {op} ...")
        if isinstance(other, Density):
            raise ObjectiveError(f"a density {other} in a sum of log-densities", expected="log(density)",
                                 given=str(other), fix=f"write log({other})")
        if _is_scalar(other):
            c = as_coefficient(other)
            if c == 0:
                return Inner(())
            raise ObjectiveError("a constant added inside an expectation",
                                 expected="a linear combination of log-densities (constants do not change the "
                                          "optimum)",
                                 given=sympy.sstr(c), fix="drop the constant")
        raise ObjectiveError("cannot combine a log-density with this value",
                             expected="log-densities, conditional divergences and scalar factors",
                             given=f"{type(other).__name__} {other!r}", fix="use log(density) and KL(a, b)")

    def __add__(self, other) -> Inner:
        return Inner(self.items + self._coerce(other, "+").items)

    def __radd__(self, other) -> Inner:
        return Inner(self._coerce(other, "+").items + self.items)

    def __neg__(self) -> Inner:
        return Inner((t, -c) for t, c in self.items)

    def __pos__(self) -> Inner:
        return self

    def __sub__(self, other) -> Inner:
        return self + (-self._coerce(other, "-"))

    def __rsub__(self, other) -> Inner:
        return self._coerce(other, "-") + (-self)

    def _factor(self, other, what: str) -> sympy.Expr:
        if isinstance(other, (Inner, Term, Objective, Density)):
            raise ObjectiveError(f"non-linear objective: {what} of a log-density by a term",
                                 expected="a linear combination of terms with scalar coefficients",
                                 given=f"({self._text()}) and {other}",
                                 fix="multiply log-densities only by numbers or parameters")
        return as_coefficient(other, context="a factor of a log-density")

    def __mul__(self, other) -> Inner:
        c = self._factor(other, "a product")
        return Inner((t, c * k) for t, k in self.items)

    __rmul__ = __mul__

    def __truediv__(self, other) -> Inner:
        c = self._factor(other, "a division")
        if c == 0:
            raise ObjectiveError("division by zero", expected="a non-zero divisor", given=str(other),
                                 fix="divide by a non-zero number")
        return self * (1 / c)

    def __rtruediv__(self, other):
        raise ObjectiveError("non-linear objective: a division by a log-density",
                             expected="a linear combination of terms with scalar coefficients",
                             given=f"{other} / ({self._text()})", fix="divide only by numbers or parameters")

    def __pow__(self, other):
        raise ObjectiveError("non-linear objective: a power of a log-density",
                             expected="a linear combination of terms with scalar coefficients",
                             given=f"({self._text()}) ** {other}", fix="use log-densities linearly")

    __rpow__ = __pow__


def log(value):
    """``log(density)``, a log-density for use inside ``E[...][...]``; ``log(number)`` is sympy's log.

    >>> log(p(x | z))
    Inner(log p(x|z))
    >>> log(2)
    log(2)
    >>> log(KL(q(z), p(z)))
    Traceback (most recent call last):
    ...
    lagrangian_family.errors.ObjectiveError: non-linear objective: log of a term
    expected: a linear combination of terms with scalar coefficients
    given: log(KL(q(z) || p(z)))
    fix: apply log only to coefficients; terms enter linearly
    """
    if isinstance(value, Density):
        return Inner(((value, sympy.Integer(1)),))
    if isinstance(value, (Term, Objective, Inner)):
        raise ObjectiveError("non-linear objective: log of a term",
                             expected="a linear combination of terms with scalar coefficients",
                             given=f"log({value})", fix="apply log only to coefficients; terms enter linearly")
    if _is_scalar(value):
        c = as_coefficient(value, context="the argument of log")
        result = sympy.log(c)
        return as_coefficient(result, context=f"log({c})")
    raise ObjectiveError("log of something that is neither a density nor a number",
                         expected="log(q(z | x)) or log of a coefficient", given=f"{type(value).__name__} {value!r}",
                         fix="build densities with p(...) and q(...)")


class _Under:
    """``E[outer]``, waiting for its body."""

    __slots__ = ("outer",)

    def __init__(self, outer: Density):
        self.outer = outer

    def __getitem__(self, body) -> Objective:
        return _expectation(self.outer, body)

    __call__ = __getitem__

    def __repr__(self) -> str:
        return f"E[{self.outer}]"


def _expectation(outer, body) -> Objective:
    if isinstance(outer, (Variable, Conditioning)):
        raise ObjectiveError("an expectation over a variable", expected="a distribution, e.g. E[q(x, z)][...]",
                             given=f"E[{outer!r}]", fix="write the distribution: E[q(x, z)][...]")
    if not isinstance(outer, Density):
        raise ObjectiveError("an expectation needs the distribution it averages under",
                             expected="a marginal or joint density, e.g. E[q(x, z)][...]",
                             given=f"{type(outer).__name__} {outer!r}", fix="write E[q(x, z)][log(p(x | z))]")
    if outer.is_conditional:
        raise ObjectiveError(f"the expectation over {outer} is under a conditional distribution",
                             expected="an expectation under a marginal or joint: q(x), q(z), q(x,z), p(x), p(z), "
                                      "p(x,z)",
                             given=str(outer), fix="take the expectation under the joint, e.g. E[q(x, z)][...]")
    if isinstance(body, Divergence) and body.outer is None:
        return Divergence(body.kind, body.left, body.right, outer).as_objective()  # raises: binds nothing
    if isinstance(body, (Term, Objective)):
        raise ObjectiveError(f"a term inside the expectation E[{outer}]",
                             expected="log-densities or one conditional divergence inside E[...][...]",
                             given=str(body), fix="write the term outside the expectation")
    if isinstance(body, Density):
        raise ObjectiveError(f"a density inside the expectation E[{outer}]",
                             expected="log-densities or a conditional divergence", given=str(body),
                             fix=f"write E[{outer}][log({body})]")
    if _is_scalar(body):
        raise ObjectiveError(f"the expectation of a constant, E[{outer}][{body}]",
                             expected="log-densities or a conditional divergence inside the expectation",
                             given=str(body), fix="drop the constant (it does not change the optimum)")
    if not isinstance(body, Inner):
        raise ObjectiveError(f"cannot take the expectation of this value under {outer}",
                             expected="log-densities or a conditional divergence",
                             given=f"{type(body).__name__} {body!r}", fix="write E[q(x, z)][log(p(x | z))]")
    pairs = []
    for item, coef in body.items:
        if isinstance(item, Density):
            pairs.append((ExpectedLog(outer, item), coef))
        else:
            pairs.append((Divergence(item.kind, item.left, item.right, outer), coef))
    return Objective(pairs)


class Expectation:
    """``E``: ``E[outer][body]`` or ``E(outer, body)``.

    >>> E[q(x, z)][log(p(x | z)) - log(p(z))]
    Objective('E_{q(x,z)}[log p(x|z)] - E_{q(x,z)}[log p(z)]')
    >>> E(q(x), 2 * KL(q(z | x), p(z)))
    Objective('2 * E_{q(x)}[KL(q(z|x) || p(z))]')
    """

    __slots__ = ()

    def __getitem__(self, outer) -> _Under:
        if not isinstance(outer, Density):
            _expectation(outer, None)  # raises the right error
        return _Under(outer)

    def __call__(self, outer, body) -> Objective:
        return _expectation(outer, body)

    def __repr__(self) -> str:
        return "E"


class DivergenceFamily:
    """A divergence family: ``KL(left, right)``.

    >>> print(KL(q(z), p(z)))
    KL(q(z) || p(z))
    >>> JS(p(x), q(x)) == JS(q(x), p(x))
    True
    >>> KL(q(z | x), p(z))
    Inner(KL(q(z|x) || p(z)))
    """

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        if kind not in DIVERGENCES:
            raise ObjectiveError(f"unknown divergence {kind!r}", expected="one of " + ", ".join(DIVERGENCES),
                                 given=repr(kind), fix="write KL, JS, MMD, W or D_f")
        self.kind = kind

    def __call__(self, left, right):
        for arg, which in ((left, "first"), (right, "second")):
            if not isinstance(arg, Density):
                raise ObjectiveError(f"the {which} argument of {self.kind} is not a density",
                                     expected=f"two densities, e.g. {self.kind}(q(z), p(z))",
                                     given=f"{type(arg).__name__} {arg!r}", fix="build densities with p(...), q(...)")
        if not (left.is_conditional or right.is_conditional):
            return Divergence(self.kind, left, right)
        pending = _Pending(self.kind, left, right)
        # check everything but the outer distribution now, under the smallest valid one
        Divergence(self.kind, left, right, pending.outer())
        return Inner(((pending, sympy.Integer(1)),))

    def __repr__(self) -> str:
        return self.kind


#: The observed variable x.
x = Variable("x")
#: The latent variable z.
z = Variable("z")
#: The generative family p(x,z) = p(z) p(x|z): ``p(z)``, ``p(x | z)``, ``p(x, z)``.
p = Family("p")
#: The inference family q(x,z) = q(x) q(z|x): ``q(x)``, ``q(z | x)``, ``q(x, z)``.
q = Family("q")
#: The expectation: ``E[q(x, z)][log(p(x | z))]``.
E = Expectation()
#: The Kullback-Leibler divergence: ``KL(q(z), p(z))``.
KL = DivergenceFamily("KL")
#: The Jensen-Shannon divergence, a GAN term with its weight as coefficient: ``JS(q(x), p(x))``.
JS = DivergenceFamily("JS")
#: The maximum mean discrepancy: ``MMD(q(z), p(z))``.
MMD = DivergenceFamily("MMD")
#: The Wasserstein distance: ``W(q(x), p(x))``.
W = DivergenceFamily("W")
#: A general f-divergence: ``D_f(q(x), p(x))``.
D_f = DivergenceFamily("D_f")
#: The mutual information I_q(x;z) under q(x,z).
I_q = MutualInformation("q")
#: The mutual information I_p(x;z) under p(x,z).
I_p = MutualInformation("p")
