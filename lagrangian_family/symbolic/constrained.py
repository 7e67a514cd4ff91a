"""The Lagrangian version of any member of the family (paper, sections 5 and 6; issue 8, item 5).

An objective with a dual form ``α1·I_q + α2·I_p + Σ λ_i·D_i`` fixes its multipliers λ in
advance. Its Lagrangian version keeps the divergences and learns the multipliers instead:

    min  α·I_f(x;z)   subject to   D_i <= ε_i   (each D_i of the dual form, λ_i >= 0 learned),

where the primal is the information preference chosen by the user, one of
:data:`PREFERENCES` (``maximise-Iq`` is ``α = -alpha`` on I_q, ``minimise-Ip`` is ``α = +alpha``
on I_p, and so on), and Algorithm 1 replaces the mutual information by its computable bound of
eq. 13: the upper bound Ī when α > 0 (minimising), the lower bound I̲ when α < 0 (maximising).
The original model's own α1, α2 are dropped: the preference replaces them. The original model's
multipliers, with its parameters bound, are kept as the weights of the reference problem of
section 6 (eq. 19: ``min Σ λ_i D_i``, no information term), whose measured divergences plus a
slack give ε.

An objective that already is a Lagrangian names its multipliers (the zoo's ``lagvae``, whose
``lambda_1``, ``lambda_2`` are learned): its constraints are read off as ``D_i = ∂L/∂λ_i`` (paper,
eq. 17: ``KL(q(x,z) || p(x,z))`` and ``MMD(q(z) || p(z))``), and its primal is replaced by the
preference.

Refused with :class:`~lagrangian_family.errors.ObjectiveError`, each saying why: an objective with
no dual form (it rewards a divergence, or lies outside the span of I_q, I_p and the divergences),
one whose dual form has no divergence, one whose divergences do not enforce consistency (VMI:
paper, footnote 2; its only constraint would tie the encoder to the decoder's posterior, which
leaves p(x, z) free, so the information could be moved at no cost to consistency), one with
parameters left unbound (the constraints and their reference weights depend on them), a
constraint that is not computable, and an unknown preference.

This module is torch-free; ``lagrangian_family.backends.torch.lagrangian_of`` builds the trainable
:class:`~lagrangian_family.backends.torch.Lagrangian` from it.

>>> form = lagrangian_form("alice", preference="minimise-Iq")
>>> [str(d) for d in form.constraints]
['E_{q(z)}[KL(q(x|z) || p(x|z))]', 'JS(q(x,z) || p(x,z))']
>>> str(form.primal), form.bound, str(form.bound_objective)
('I_q(x;z)', 'upper', 'E_{q(x)}[KL(q(z|x) || p(z))]')
>>> form.reference_multipliers
(1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy

from lagrangian_family.errors import ObjectiveError, closest
from lagrangian_family.symbolic.bounds import algorithm1_bound
from lagrangian_family.symbolic.objective import Objective, as_coefficient, symbol
from lagrangian_family.symbolic.terms import MutualInformation

__all__ = ["PREFERENCES", "LagrangianForm", "lagrangian_form", "parse_preference"]

#: The information preferences: which mutual information the primal moves, and which way.
PREFERENCES = ("maximise-Iq", "minimise-Iq", "maximise-Ip", "minimise-Ip")

_DIRECTIONS = {"maximise": -1, "maximize": -1, "max": -1, "minimise": 1, "minimize": 1, "min": 1}


def parse_preference(preference) -> tuple[str, int]:
    """(family, sign) of a preference: ``'maximise-Iq'`` -> ``('q', -1)`` (α < 0 maximises).

    Case and the US spelling are accepted (``'Maximize-IQ'``); anything else is an
    :class:`ObjectiveError` naming the four preferences.

    >>> parse_preference("minimise-Ip")
    ('p', 1)
    """
    if isinstance(preference, str):
        text = preference.strip().replace("_", "-").replace(" ", "-")
        head, _, tail = text.partition("-")
        sign = _DIRECTIONS.get(head.lower())
        fam = {"iq": "q", "ip": "p", "i-q": "q", "i-p": "p"}.get(tail.lower())
        if sign is not None and fam is not None:
            return fam, sign
    near = closest(str(preference), PREFERENCES) if isinstance(preference, str) else []
    raise ObjectiveError(
        "unknown information preference",
        expected="one of " + ", ".join(PREFERENCES),
        given=f"{type(preference).__name__} {preference!r}",
        fix=("did you mean " + " or ".join(repr(n) for n in near) + "?") if near
        else "pass preference='maximise-Iq' (maximise I_q(x;z) under the constraints)")


@dataclass(frozen=True)
class LagrangianForm:
    """The Lagrangian version of an objective: ``min α·I_family`` s.t. ``D_i <= ε_i``.

    ``objective``: the original objective with its parameters bound; ``dual``: its dual form (or,
    for an objective that already is a Lagrangian, the dual form of its reference problem);
    ``preference`` (normalised, one of :data:`PREFERENCES`), ``family`` ('q' or 'p') and ``alpha``
    (signed: > 0 minimises, < 0 maximises); ``bound``: 'upper' or 'lower', the bound of eq. 13 that
    Algorithm 1 puts in place of the mutual information; ``constraints``: the divergences D_i (as
    objectives) and ``names`` their texts; ``reference_multipliers``: the original model's λ_i,
    the weights of the reference problem (eq. 19); ``source``: 'dual form' or 'multipliers'.
    """

    objective: Objective
    dual: object
    preference: str
    family: str
    alpha: sympy.Expr
    bound: str
    constraints: tuple[Objective, ...]
    names: tuple[str, ...]
    reference_multipliers: tuple[float, ...]
    source: str = "dual form"

    @property
    def primal(self) -> Objective:
        """``α·I_family(x;z)``: the information preference (the torch Lagrangian bounds it)."""
        return Objective([(MutualInformation(self.family), self.alpha)])

    @property
    def bound_objective(self) -> Objective:
        """``α·Ī`` or ``α·I̲`` (constant dropped): what Algorithm 1 minimises in place of the primal."""
        b = algorithm1_bound(self.family, self.alpha)
        return Objective([(t, self.alpha * k) for t, k in b.items()])

    def reference_objective(self, multipliers: Sequence[float] | None = None) -> Objective:
        """``Σ λ_i D_i`` with the original model's multipliers (or ``multipliers``): the reference
        problem of section 6, eq. 19, trained to measure ε̂."""
        lam = self.reference_multipliers if multipliers is None else tuple(multipliers)
        if len(lam) != len(self.constraints):
            raise ObjectiveError("wrong number of multipliers", expected=f"{len(self.constraints)} values",
                                 given=str(list(lam)), fix="one multiplier per constraint")
        items = []
        for d, lv, name in zip(self.constraints, lam, self.names):
            c = as_coefficient(lv, context=f"the multiplier of {name}")
            items += [(t, c * k) for t, k in d.items()]
        return Objective(items)

    def fixed(self, multipliers: Sequence[float] | None = None) -> Objective:
        """The objective the model minimises at fixed multipliers: the bound of the primal plus
        ``Σ λ_i D_i`` (the ε terms are constants and dropped)."""
        return self.bound_objective + self.reference_objective(multipliers)

    def __str__(self) -> str:
        sign = "maximise" if self.alpha < 0 else "minimise"
        rows = [f"{self.preference}: {sign} I_{self.family}(x;z) through its {self.bound} bound "
                f"{self.bound_objective}",
                "subject to:"]
        rows += [f"  {n} <= eps_{i + 1}   (original lambda = {lv:g})"
                 for i, (n, lv) in enumerate(zip(self.names, self.reference_multipliers))]
        return "\n".join(rows)


def _values(objective, params: Mapping | None):
    """(objective unbound, zoo entry or None, {symbol: value}): the zoo's defaults for a zoo
    name, then ``params`` (aliases such as ``lam`` resolved), for the symbols the objective has."""
    from lagrangian_family import zoo
    from lagrangian_family.symbolic.classify import as_objective

    entry = None
    if isinstance(objective, str) and zoo.normalise(objective) in zoo.names():
        entry = zoo.entry(objective)
    obj = as_objective(objective)
    if params is not None and not isinstance(params, Mapping):
        raise ObjectiveError("params is not a mapping", expected="a dict {parameter name: value}",
                             given=type(params).__name__, fix="pass params={'lambda_A': 1.0}")
    free = obj.free_symbols
    values: dict = {}
    if entry is not None:
        values.update({symbol(k): as_coefficient(v) for k, v in entry.parameters.items() if symbol(k) in free})
    aliases = entry.aliases if entry is not None else {}
    for k, v in (params or {}).items():
        name = k.name if isinstance(k, sympy.Symbol) else aliases.get(str(k), str(k))
        sym = symbol(name)
        if sym not in free:
            raise ObjectiveError(f"the objective has no parameter {k!s}",
                                 expected="one of " + (", ".join(sorted(map(str, free))) or "(no parameters)"),
                                 given=str(k), fix="bind only the parameters the objective has")
        values[sym] = as_coefficient(v, context=f"the value of {k}")
    return obj, entry, values


def _unbound(obj: Objective, what: str) -> None:
    if obj.free_symbols:
        names = ", ".join(sorted(map(str, obj.free_symbols)))
        raise ObjectiveError(f"{what} has unbound parameters ({names})",
                             expected="numbers for every parameter: the constraints and their reference weights "
                                      "depend on them",
                             given=str(obj), fix="pass params={" + ", ".join(f"{n!r}: 1.0" for n in
                                                                              sorted(map(str, obj.free_symbols))) + "}")


def _from_multipliers(obj: Objective, syms: Sequence[sympy.Symbol]) -> list[Objective]:
    """The constraints D_i = ∂obj/∂λ_i of an objective linear in the multipliers ``syms``."""
    missing = [s for s in syms if s not in obj.free_symbols]
    if missing:
        raise ObjectiveError("the objective has no such multiplier",
                             expected="multipliers among " + (", ".join(sorted(map(str, obj.free_symbols)))
                                                              or "(no parameters)"),
                             given=", ".join(map(str, missing)), fix="name the symbols that multiply the constraints")
    cons = []
    for s in syms:
        d = Objective([(t, sympy.diff(c, s)) for t, c in obj.items()])
        if any(s2 in d.free_symbols for s2 in syms) or len(d) == 0:
            raise ObjectiveError(f"the objective is not linear in {s}, or {s} multiplies nothing",
                                 expected="an objective of the form primal + sum_i lambda_i * D_i",
                                 given=str(obj), fix="check the multiplier names")
        cons.append(d)
    return cons


def lagrangian_form(objective, *, preference: str, alpha=1.0, params: Mapping | None = None,
                    multipliers: Sequence[str] | None = None, require_consistency: bool = True) -> LagrangianForm:
    """The Lagrangian version of ``objective`` (a zoo name, a text objective or an
    :class:`~lagrangian_family.Objective`) with the information ``preference``.

    ``alpha`` (> 0) is the weight of the primal; its sign comes from the preference (paper,
    section 7.1: only the sign matters). ``params`` binds the objective's parameters (a zoo model
    takes its original defaults for the others; aliases such as ``lam`` work). ``multipliers``
    names the symbols of an objective that already is a Lagrangian (the zoo's ``lagvae`` names
    ``lambda_1``, ``lambda_2`` itself): its constraints are ``∂L/∂λ_i`` and the reference weights
    the multipliers' values (the paper's 1 and 100 for LagVAE). ``require_consistency=False``
    accepts constraints that do not force p(x,z) = q(x,z) (VMI's; or a set chosen by hand, such as
    InfoGAN's ``JS(q(x) || p(x))`` alone, where the dual form's other divergence cannot be
    estimated): the problem is then a constrained one, but not a generative model of the joint.

    >>> form = lagrangian_form("infogan", preference="maximise-Ip")
    >>> [str(d) for d in form.constraints], float(form.alpha), form.bound
    (['E_{p(x)}[KL(p(z|x) || q(z|x))]', 'JS(q(x) || p(x))'], -1.0, 'lower')
    >>> [str(d) for d in lagrangian_form("lagvae", preference="maximise-Iq").constraints]
    ['KL(q(x,z) || p(x,z))', 'MMD(q(z) || p(z))']
    """
    from lagrangian_family.symbolic.classify import Computability, classify

    family, sign = parse_preference(preference)
    pref = f"{'maximise' if sign < 0 else 'minimise'}-I{family}"
    a = as_coefficient(alpha, context="alpha")
    if not a.is_number or not a.is_positive:
        raise ObjectiveError("alpha is the weight of the primal, its sign comes from the preference",
                             expected="a positive number (the paper: only the sign matters)",
                             given=str(a), fix=f"pass alpha=1.0 with preference={pref!r}")
    raw, entry, values = _values(objective, params)
    obj = raw.subs(values) if values else raw
    if multipliers is None and entry is not None and entry.multipliers:
        multipliers = entry.multipliers
    if multipliers is not None:
        if isinstance(multipliers, str) or not isinstance(multipliers, Sequence) or not multipliers:
            raise ObjectiveError("multipliers names the symbols of the constraints",
                                 expected="a non-empty list of parameter names such as ['lambda_1', 'lambda_2']",
                                 given=repr(multipliers), fix="pass multipliers=['lambda_1', 'lambda_2']")
        syms = [symbol(m) if isinstance(m, str) else m for m in multipliers]
        cons = _from_multipliers(raw.subs({s: v for s, v in values.items() if s not in syms}), syms)
        ref_lams = []
        for s in syms:
            if s not in values:
                raise ObjectiveError(f"no value for the multiplier {s}",
                                     expected="a reference weight for every multiplier (the reference problem, "
                                              "eq. 19)", given=f"{s} unbound", fix=f"pass params={{{s.name!r}: 1.0}}")
            ref_lams.append(values[s])
        for d in cons:
            _unbound(d, f"the constraint {d}")
        reference = Objective([(t, lv * k) for d, lv in zip(cons, ref_lams) for t, k in d.items()])
        c = classify(reference)
        if c.dual is None:
            raise ObjectiveError("the constraints have no dual form", expected="divergences with λ >= 0",
                                 given=f"{reference}: {c.dual_reason}", fix="check the multiplier names")
        dual, source = c.dual, "multipliers"
        names = [str(d) for d in cons]
    else:
        _unbound(obj, f"the objective {obj}")
        c = classify(obj)
        if c.dual is None:
            raise ObjectiveError(f"{obj} has no Lagrangian version: it has no dual form",
                                 expected="an objective with a dual form α1·I_q + α2·I_p + Σ λ_i·D_i, λ_i >= 0",
                                 given=c.dual_reason or "no dual form",
                                 fix="lf.classify(objective) explains why; constrain divergences, never reward them")
        dual, source = c.dual, "dual form"
        if not dual.multipliers:
            raise ObjectiveError(f"{obj} has no divergence to constrain",
                                 expected="a dual form with at least one divergence D_i",
                                 given=str(dual), fix="add a consistency divergence such as KL(q(x,z) || p(x,z))")
        cons = [d.as_objective() for d in dual.divergences]
        ref_lams = list(dual.lambdas)
        names = [str(d) for d in dual.divergences]
    enforces = dual.enforces_consistency
    if require_consistency and not enforces:
        raise ObjectiveError(
            f"{obj} has no Lagrangian version: its divergences do not enforce consistency",
            expected="divergences that force p(x,z) = q(x,z): a joint divergence, or a marginal and the matching "
                     "conditional",
            given=f"only {', '.join(names)} (the paper, footnote 2: such a model is not a generative model of the "
                  "data, and its constraints would leave p(x,z) free while the information moves)",
            fix="add a consistency divergence, e.g. + JS(q(x) || p(x)) (which makes VMI InfoGAN), or pass "
                "require_consistency=False")
    for name, d in zip(names, cons):
        cd = classify(d)
        if cd.computability is Computability.NOT_COMPUTABLE:
            raise ObjectiveError(f"the constraint {name} is not computable",
                                 expected="constraints in a computability class",
                                 given="; ".join(cd.reasons) or name, fix="rewrite the objective's divergences")
    return LagrangianForm(obj, dual, pref, family, sign * a, "upper" if sign > 0 else "lower", tuple(cons),
                          tuple(names), tuple(float(v) for v in ref_lams), source)
