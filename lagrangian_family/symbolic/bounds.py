"""Bounds on mutual information (paper, eq. 13), used by Algorithm 1 and LagVAE.

I_q(x;z) = E_{q(x)}[KL(q(z|x) || p(z))] - KL(q(z) || p(z))       (upper bound, gap KL(q(z)||p(z)))
         = E_{q(x,z)}[log p(x|z)] + H_q(x) + E_{q(z)}[KL(q(x|z) || p(x|z))]   (lower bound, gap the KL)

and the same for I_p with the roles of x and z, p and q swapped. Each bound is returned as
an objective with its constant (H_q(x) or H_p(z)) dropped; :data:`BOUND_CONSTANTS` names it.

>>> lower, upper = mi_bounds("q")
>>> str(upper), str(lower)
('E_{q(x)}[KL(q(z|x) || p(z))]', 'E_{q(x,z)}[log p(x|z)]')
"""

from __future__ import annotations

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic import dictionary as dic
from lagrangian_family.symbolic.normal_form import D
from lagrangian_family.symbolic.objective import Objective, as_coefficient
from lagrangian_family.symbolic.terms import ExpectedLog, MutualInformation

#: The constant each lower bound drops: I̲_q = E_q[log p(x|z)] + H_q(x), I̲_p = E_p[log q(z|x)] + H_p(z).
BOUND_CONSTANTS = {"q": "H_q(x)", "p": "H_p(z)"}


def mi_bounds(family: str) -> tuple[Objective, Objective]:
    """(lower, upper) bounds of I_family(x;z) as objectives, constants dropped."""
    if family == "q":
        return (ExpectedLog(D("q", "xz"), D("p", "x", "z")).as_objective(), dic.kl_encoder().as_objective())
    if family == "p":
        return (ExpectedLog(D("p", "xz"), D("q", "z", "x")).as_objective(),
                dic.kl_decoder_marginal().as_objective())
    raise ObjectiveError("unknown mutual information", expected="'q' or 'p'", given=repr(family),
                         fix="use mi_bounds('q') for I_q(x;z) or mi_bounds('p') for I_p(x;z)")


def bound(family: str, which: str) -> Objective:
    """The ``which`` ('upper' or 'lower') bound of I_family(x;z), constant dropped."""
    if which not in ("upper", "lower"):
        raise ObjectiveError("unknown bound", expected="'upper' or 'lower'", given=repr(which),
                             fix="pass 'upper' (eq. 13's KL bound) or 'lower' (the reconstruction bound)")
    return mi_bounds(family)[which == "upper"]


def algorithm1_bound(family: str, alpha) -> Objective:
    """The bound Algorithm 1 minimises in place of I: the upper one when α ≥ 0, the lower when α < 0.

    α must have a known sign (a number, or a symbol whose sign sympy knows).
    """

    a = as_coefficient(alpha, context="alpha")
    if a.is_nonnegative:
        return mi_bounds(family)[1]
    if a.is_negative:
        return mi_bounds(family)[0]
    raise ObjectiveError(
        f"the sign of alpha for I_{family} is unknown ({a})",
        expected="a number or an expression of known sign: Algorithm 1 picks the upper bound for alpha >= 0 "
        "and the lower bound for alpha < 0",
        given=str(a), fix="bind the parameter first, e.g. objective.subs(alpha=-1)")


def replace_mi(objective, *, q: str | None = None, p: str | None = None) -> Objective:
    """Replace I_q(x;z) / I_p(x;z) terms by their 'upper' or 'lower' bound.

    >>> from lagrangian_family.symbolic.parse import parse
    >>> str(replace_mi(parse("2 * I_q(x;z) + KL(q(z) || p(z))"), q="upper"))
    '2 * E_{q(x)}[KL(q(z|x) || p(z))] + KL(q(z) || p(z))'
    """
    from lagrangian_family.symbolic.classify import as_objective

    choice = {"q": q, "p": p}
    items = []
    for term, c in as_objective(objective).items():
        if isinstance(term, MutualInformation) and choice[term.family] is not None:
            items += [(t, c * k) for t, k in bound(term.family, choice[term.family]).items()]
        else:
            items.append((term, c))
    return Objective(items)
