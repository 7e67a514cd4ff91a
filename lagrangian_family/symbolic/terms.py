"""The terms an objective is made of: immutable, hashable values (like sympy's ``Basic``).

A term is one of

* :class:`ExpectedLog` ``E_{outer}[log density]``: an expectation of a log-density under
  a marginal or joint of one of the two sampling joints q(x,z) = q(x)q(z|x) and
  p(x,z) = p(z)p(x|z);
* :class:`Divergence` ``KL(q(z) || p(z))`` or ``E_{q(x)}[KL(q(z|x) || p(z))]``: a divergence
  between two distributions over the same variables, averaged over the conditioning
  variables when the arguments are conditionals;
* :class:`MutualInformation` ``I_q(x;z)`` or ``I_p(x;z)``.

Each term declares only local facts (its frame, its variables, whether it is opaque);
the algebra in :mod:`lagrangian_family.symbolic.normal_form` does the rest.

>>> q_zx = Density("q", ("z",), ("x",))
>>> str(Divergence("KL", q_zx, Density("p", ("z",)), outer=Density("q", ("x",))))
'E_{q(x)}[KL(q(z|x) || p(z))]'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lagrangian_family.errors import ObjectiveError

#: The variables of the family, in printing order: observed x, then latent z.
VARIABLES: tuple[str, ...] = ("x", "z")
#: The two model families: q(x,z) = q(x) q(z|x) (data, encoder), p(x,z) = p(z) p(x|z).
FAMILIES: tuple[str, ...] = ("q", "p")
#: Divergence families. KL is transparent (it expands into log-densities); the rest are opaque.
DIVERGENCES: tuple[str, ...] = ("KL", "JS", "MMD", "W", "D_f")
#: Families that do not depend on the order of their arguments.
SYMMETRIC_DIVERGENCES: frozenset[str] = frozenset({"JS", "MMD", "W"})

_LATEX_DIVERGENCE = {
    "KL": r"D_{\mathrm{KL}}",
    "JS": r"D_{\mathrm{JS}}",
    "MMD": r"D_{\mathrm{MMD}}",
    "W": r"D_{\mathrm{W}}",
    "D_f": r"D_{f}",
}


def _ordered(names) -> tuple[str, ...]:
    """Variables in printing order (x before z, unknown names after, alphabetically)."""
    rank = {v: i for i, v in enumerate(VARIABLES)}
    return tuple(sorted(set(names), key=lambda v: (rank.get(v, len(rank)), v)))


@dataclass(frozen=True)
class Density:
    """A density of one family: ``q(z|x)`` is ``Density("q", ("z",), ("x",))``.

    ``vars`` are the variables the density is over, ``given`` the conditioning ones.

    >>> str(Density("p", ("z", "x")))
    'p(x,z)'
    """

    family: str
    vars: tuple[str, ...]
    given: tuple[str, ...] = ()

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ObjectiveError(
                f"unknown distribution {self.family!r}",
                expected="one of the two model families, q (data and encoder) or p (prior and decoder)",
                given=repr(self.family),
                fix="write q(...) or p(...)",
            )
        object.__setattr__(self, "vars", _ordered(self.vars))
        object.__setattr__(self, "given", _ordered(self.given))
        for v in self.vars + self.given:
            if v not in VARIABLES:
                raise ObjectiveError(
                    f"unknown variable {v!r} in {self.family}(...)",
                    expected="variables " + " and ".join(VARIABLES),
                    given=repr(v),
                    fix="use x for the observed variable and z for the latent one",
                )
        if not self.vars:
            raise ObjectiveError(
                f"the density {self.family}(|{','.join(self.given)}) is over no variable",
                expected="at least one variable before '|'",
                given=f"{self.family}(|{','.join(self.given)})",
                fix="write for example q(z|x)",
            )
        if set(self.vars) & set(self.given):
            raise ObjectiveError(
                f"a variable is both the argument and the condition of {self._text()}",
                expected="disjoint variables on each side of '|'",
                given=self._text(),
                fix="write q(z|x) or q(x|z)",
            )

    def _text(self) -> str:
        inner = ",".join(self.vars)
        if self.given:
            inner += "|" + ",".join(self.given)
        return f"{self.family}({inner})"

    def __str__(self) -> str:
        return self._text()

    def latex(self) -> str:
        """The density in LaTeX (the same text: ``q(z|x)``)."""
        return self._text()

    @property
    def scope(self) -> frozenset[str]:
        """Every variable the density mentions (arguments and conditions)."""
        return frozenset(self.vars) | frozenset(self.given)

    @property
    def is_conditional(self) -> bool:
        """Whether the density has conditioning variables (``q(z|x)``, not ``q(z)``)."""
        return bool(self.given)

    @property
    def other(self) -> str:
        """The other family's name."""
        return "p" if self.family == "q" else "q"


class Term:
    """Base of every term: immutable, hashable, printable in the text syntax and LaTeX.

    Terms support ``+``, ``-`` and scalar ``*``, which build an
    :class:`~lagrangian_family.symbolic.objective.Objective`.
    """

    #: opaque terms are single coordinates of the normal form (no expansion into log-densities)
    opaque: ClassVar[bool] = False

    def latex(self) -> str:  # pragma: no cover - every subclass overrides
        """The term in LaTeX (Jupyter shows it through ``_repr_latex_``).

        >>> MutualInformation("q").latex()
        'I_{q}(x;z)'
        """
        raise NotImplementedError

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"

    def as_objective(self):
        """The term as an :class:`~lagrangian_family.Objective` of coefficient 1.

        >>> str(MutualInformation("p").as_objective() * 2)
        '2 * I_p(x;z)'
        """
        from lagrangian_family.symbolic.objective import Objective

        return Objective({self: 1})

    # arithmetic is delegated to Objective
    def __add__(self, other):
        return self.as_objective() + other

    def __radd__(self, other):
        return other + self.as_objective()

    def __sub__(self, other):
        return self.as_objective() - other

    def __rsub__(self, other):
        return (-self.as_objective()) + other

    def __neg__(self):
        return -self.as_objective()

    def __mul__(self, other):
        return self.as_objective() * other

    def __rmul__(self, other):
        return self.as_objective() * other

    def __truediv__(self, other):
        return self.as_objective() / other


def _check_outer(outer: Density, what: str, needs: frozenset[str]) -> None:
    if outer.is_conditional:
        raise ObjectiveError(
            f"the expectation over {outer} in {what} is under a conditional distribution",
            expected="an expectation under a marginal or joint: q(x), q(z), q(x,z), p(x), p(z), p(x,z)",
            given=str(outer),
            fix="take the expectation under the joint, e.g. E_{q(x,z)}[...] instead of E_{q(z|x)}[...]",
        )
    unbound = needs - frozenset(outer.vars)
    if unbound:
        names = ", ".join(_ordered(unbound))
        raise ObjectiveError(
            f"the expectation over {outer} does not bind {names} in {what}",
            expected=f"an expectation over every variable the inside mentions ({', '.join(_ordered(needs))})",
            given=f"E_{{{outer}}}[...]",
            fix=f"take the expectation under {Density(outer.family, tuple(needs | frozenset(outer.vars)))}",
        )


@dataclass(frozen=True)
class ExpectedLog(Term):
    """``E_{outer}[log density]``, e.g. ``E_{q(x,z)}[log p(x|z)]``.

    >>> str(ExpectedLog(Density("q", ("x", "z")), Density("p", ("x",), ("z",))))
    'E_{q(x,z)}[log p(x|z)]'
    """

    outer: Density
    density: Density

    def __post_init__(self):
        _check_outer(self.outer, f"log {self.density}", self.density.scope)

    @property
    def frame(self) -> str:
        """The sampling joint the expectation is under: 'q' or 'p'."""
        return self.outer.family

    def __str__(self) -> str:
        return f"E_{{{self.outer}}}[log {self.density}]"

    def latex(self) -> str:
        return rf"\mathbb{{E}}_{{{self.outer.latex()}}}[\log {self.density.latex()}]"


@dataclass(frozen=True)
class Divergence(Term):
    """A divergence ``kind(left || right)``, averaged over ``outer`` for conditionals.

    ``kind`` is one of :data:`DIVERGENCES`. Symmetric kinds (JS, MMD, W) are stored
    with the argument of the outer distribution's family (q when there is no outer
    distribution) first, so ``JS(p(x) || q(x)) == JS(q(x) || p(x))``.

    >>> str(Divergence("JS", Density("p", ("x",)), Density("q", ("x",))))
    'JS(q(x) || p(x))'
    """

    kind: str
    left: Density
    right: Density
    outer: Density | None = None

    def __post_init__(self):
        if self.kind not in DIVERGENCES:
            raise ObjectiveError(
                f"unknown divergence {self.kind!r}",
                expected="one of " + ", ".join(DIVERGENCES),
                given=repr(self.kind),
                fix="write KL, JS, MMD, W or D_f",
            )
        if self.left.vars != self.right.vars:
            raise ObjectiveError(
                f"{self.kind}({self.left} || {self.right}) compares distributions over different variables",
                expected="two distributions over the same variables, e.g. KL(q(z|x) || p(z))",
                given=f"{self.left} over {','.join(self.left.vars)}, {self.right} over {','.join(self.right.vars)}",
                fix="compare q(z) with p(z), q(x) with p(x), q(x,z) with p(x,z), or conditionals of the same variable",
            )
        if self.left == self.right:
            raise ObjectiveError(
                f"{self.kind}({self.left} || {self.right}) compares a distribution with itself",
                expected="two different distributions",
                given=f"{self.kind}({self.left} || {self.right})",
                fix="compare a q-distribution with a p-distribution, e.g. KL(q(z) || p(z))",
            )
        if self.kind != "KL" and self.left.family == self.right.family:
            raise ObjectiveError(
                f"{self.kind}({self.left} || {self.right}) compares two distributions of the same family",
                expected="a divergence between a q-distribution and a p-distribution",
                given=f"{self.kind}({self.left} || {self.right})",
                fix=f"write {self.kind}(q(...) || p(...))",
            )
        conditional = self.left.is_conditional or self.right.is_conditional
        text = f"{self.kind}({self.left} || {self.right})"
        if conditional and self.outer is None:
            raise ObjectiveError(
                f"the conditional divergence {text} is outside an expectation",
                expected="a conditional divergence averaged over its condition",
                given=text,
                fix=f"write E_{{{Density(self.left.family, self.left.given or self.right.given)}}}[{text}]",
            )
        if not conditional and self.outer is not None:
            raise ObjectiveError(
                f"the expectation over {self.outer} binds nothing in {text}",
                expected="an expectation only around a divergence between conditionals",
                given=f"E_{{{self.outer}}}[{text}]",
                fix=f"write {text} without the expectation",
            )
        if self.outer is not None:
            _check_outer(self.outer, text, frozenset(self.left.given) | frozenset(self.right.given))
            if set(self.outer.vars) & set(self.left.vars):
                raise ObjectiveError(
                    f"the expectation over {self.outer} also averages the divergence's own variables in {text}",
                    expected="an expectation over the conditioning variables only",
                    given=f"E_{{{self.outer}}}[{text}]",
                    fix=f"write E_{{{Density(self.left.family, self.left.given or self.right.given)}}}[{text}]",
                )
            symmetric = self.kind in SYMMETRIC_DIVERGENCES
            if symmetric and self.right.family == self.outer.family and self.left.family != self.outer.family:
                left, right = self.right, self.left
                object.__setattr__(self, "left", left)
                object.__setattr__(self, "right", right)
            if self.left.family != self.outer.family:
                raise ObjectiveError(
                    f"mixed frames in E_{{{self.outer}}}[{text}]: the outer distribution is a "
                    f"{self.outer.family}-distribution but the divergence averages over {self.left.family}",
                    expected=f"the outer distribution from the first argument's family ({self.left.family})",
                    given=f"E_{{{self.outer}}}[{text}]",
                    fix=f"write E_{{{Density(self.left.family, self.outer.vars)}}}[{text}]",
                )
        elif self.kind in SYMMETRIC_DIVERGENCES and self.left.family == "p" and self.right.family == "q":
            left, right = self.right, self.left
            object.__setattr__(self, "left", left)
            object.__setattr__(self, "right", right)

    @property
    def opaque(self) -> bool:  # type: ignore[override]
        """Whether the divergence is one coordinate of the normal form (every family but KL)."""
        return self.kind != "KL"

    @property
    def frame(self) -> str:
        """The family the divergence averages under (its first argument's)."""
        return self.left.family

    @property
    def vars(self) -> tuple[str, ...]:
        """The variables the divergence compares distributions over (its arguments')."""
        return self.left.vars

    @property
    def arity(self) -> str:
        """'joint', 'marginal' or 'conditional'."""
        if self.outer is not None:
            return "conditional"
        return "joint" if len(self.left.vars) > 1 else "marginal"

    def reversed(self) -> Divergence:
        """The same divergence with its arguments swapped (and the outer frame following)."""
        outer = None if self.outer is None else Density(self.right.family, self.outer.vars)
        return Divergence(self.kind, self.right, self.left, outer)

    def __str__(self) -> str:
        inner = f"{self.kind}({self.left} || {self.right})"
        return inner if self.outer is None else f"E_{{{self.outer}}}[{inner}]"

    def latex(self) -> str:
        inner = rf"{_LATEX_DIVERGENCE[self.kind]}({self.left.latex()} \,\|\, {self.right.latex()})"
        return inner if self.outer is None else rf"\mathbb{{E}}_{{{self.outer.latex()}}}[{inner}]"


@dataclass(frozen=True)
class MutualInformation(Term):
    """``I_q(x;z)`` (under q(x,z)) or ``I_p(x;z)`` (under p(x,z)).

    >>> str(MutualInformation("p"))
    'I_p(x;z)'
    """

    family: str
    vars: tuple[str, ...] = field(default=("x", "z"))

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ObjectiveError(
                f"unknown mutual information I_{self.family}",
                expected="I_q(x;z) or I_p(x;z)",
                given=f"I_{self.family}",
                fix="write I_q(x;z) or I_p(x;z)",
            )
        vs = _ordered(self.vars)
        if vs != ("x", "z"):
            raise ObjectiveError(
                f"mutual information between {', '.join(self.vars)}",
                expected="the mutual information between x and z",
                given=f"I_{self.family}({';'.join(self.vars)})",
                fix=f"write I_{self.family}(x;z)",
            )
        object.__setattr__(self, "vars", vs)

    @property
    def frame(self) -> str:
        """The sampling joint the mutual information is under: ``'q'`` or ``'p'``."""
        return self.family

    def __str__(self) -> str:
        return f"I_{self.family}(x;z)"

    def latex(self) -> str:
        return rf"I_{{{self.family}}}(x;z)"
