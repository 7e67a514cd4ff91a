"""Lagrangian dual forms (paper, eq. 7): L ≡ α1·I_q + α2·I_p + Σ λ_i·D_i.

α1 and α2 are unique: I_q and I_p are independent of every KL divergence. The
multipliers are coordinates over a dictionary of ten KL divergences (per frame: the joint,
both marginals, both expected conditionals) plus the opaque divergences the objective
has. The KL part is not unique (chain rule: joint = marginal + expected conditional, two
ways), so the canonical representative is chosen by one rule, with no special case per
model, that depends only on the objective's coordinates (so binding a parameter before or
after classifying gives the same form wherever the form's conditions hold):

1. write each frame's part over its four marginal and conditional KLs; the representations
   form a line, and the candidates are its vertices (one multiplier zero each);
2. merge a chain-rule pair (a marginal and the matching conditional) into the joint KL only
   where its two multipliers are identically equal (β-VAE keeps [β, 1] on KL(q(z)‖p(z)) and
   E_q(z)[KL(q(x|z)‖p(x|z))] at β = 4 as at symbolic β; the VAE's [1, 1] is KL(q(x,z)‖p(x,z)));
3. keep the candidates whose conditions λ_i ≥ 0 can hold for some real parameters
   (:mod:`~lagrangian_family.symbolic.conditions`), then prefer fewest terms, then fewest
   joint KLs, then a fixed order of the vertices: the weight goes to the factorisation whose
   conditional is a model's own (q(z)·q(x|z) against p(z)·p(x|z) in the q-frame,
   p(x)·p(z|x) against q(x)·q(z|x) in the p-frame), and a marginal is kept before a
   conditional.

The form states its conditions, reduced (β ≥ 3/5, not two raw inequalities; none when they
always hold). When no candidate can have every λ ≥ 0 there is no dual form, and the reason
names the multiplier that would have to be negative.

>>> import lagrangian_family as lf
>>> print(lf.classify("vae").dual)
alpha1 = 0, alpha2 = 0
L ≡ KL(q(x,z) || p(x,z))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import product

import sympy

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic import dictionary as dic
from lagrangian_family.symbolic.conditions import Reduced, reduce_nonnegative, sign
from lagrangian_family.symbolic.limits import check_objective, guard
from lagrangian_family.symbolic.linalg import N, apply, atoms_vector, make_span, term_vector
from lagrangian_family.symbolic.normal_form import COORDINATES, NormalForm, is_zero, normal_form
from lagrangian_family.symbolic.objective import (
    Objective,
    as_coefficient,
    as_expr,
    format_combination,
    symbol,
    text_coefficient,
)
from lagrangian_family.symbolic.terms import Divergence, MutualInformation, Term

_SIDE_KINDS = ("z", "x|z", "x", "z|x")  # the four non-joint KLs of a frame
_PAIRS = (("z", "x|z"), ("x", "z|x"))  # chain-rule pairs: marginal + matching conditional = joint
#: Which KL each vertex of the line of representations zeroes, in order of preference: the
#: common weight goes to the pair whose conditional is a model's own (p(x|z) in the q-frame,
#: q(z|x) in the p-frame), and of the other pair the marginal is kept before the conditional.
_VERTEX_ORDER = {"q": ("z|x", "x", "z", "x|z"), "p": ("x|z", "z", "x", "z|x")}

__all__ = ["DualForm", "decompose", "dual_form", "enforces_consistency", "sign"]


def _reason(multipliers, reduced: Reduced, *, others: bool = True) -> str:
    """Why no representation has every λ ≥ 0, naming the multipliers of the canonical candidate
    that cannot all be non-negative (``others``: say that every other representation fails too)."""
    bad = [multipliers[i] for i in reduced.conflict]
    tail = (", and no other representation over the dictionary has every λ ≥ 0 either (the chain rule only "
            "moves weight between a joint KL, its marginal and its conditional)") if others else ""
    if len(bad) == 1:
        lam, d = bad[0]
        when = "" if as_expr(lam).is_number else " for every real value of the parameters"
        return (f"the multiplier of {d} would have to be {sympy.sstr(lam)} < 0{when}{tail}: the objective rewards "
                f"this divergence instead of constraining it, which no Lagrangian with λ ≥ 0 does; flip the sign of "
                f"the {d.kind} term to make it a constraint")
    names = ", ".join(f"{d} ({sympy.sstr(lam)})" for lam, d in bad)
    return (f"the multipliers of {names} are never all ≥ 0 for real parameters (one of them would have to be "
            f"negative){tail}; change the coefficients so that they can be")


@dataclass(frozen=True)
class DualForm:
    """α1·I_q + α2·I_p + Σ λ_i·D_i, with the conditions under which every λ_i ≥ 0.

    ``dropped`` gives the constant the derivation dropped: original = dual form +
    Σ c·H over ``{"H_q(x)": c, "H_p(z)": c}``.
    """

    alpha1: sympy.Expr
    alpha2: sympy.Expr
    multipliers: tuple[tuple[sympy.Expr, Divergence], ...]
    conditions: tuple = ()
    enforces_consistency: bool = False
    dropped: dict = field(default_factory=dict, compare=False)
    #: the objectives α1 and α2 multiply, I_q(x;z) and I_p(x;z) or their bounds (see :func:`decompose`)
    primal: tuple[Objective, Objective] = field(
        default=(MutualInformation("q").as_objective(), MutualInformation("p").as_objective()), compare=False)

    @property
    def divergences(self) -> tuple[Divergence, ...]:
        """The divergences D_i of the multipliers, in order."""
        return tuple(d for _, d in self.multipliers)

    @property
    def lambdas(self) -> tuple[sympy.Expr, ...]:
        """The multipliers λ_i, in the order of :attr:`divergences`."""
        return tuple(lam for lam, _ in self.multipliers)

    def objective(self) -> Objective:
        """The dual form as an objective (recomposition): equivalent to the original."""
        items = [(t, a * k) for a, prim in zip((self.alpha1, self.alpha2), self.primal) for t, k in prim.items()]
        return Objective(items + [(d, lam) for lam, d in self.multipliers])

    def preference(self) -> str:
        """What the primal does with mutual information, in words."""
        out = []
        for name, a in (("I_q", self.alpha1), ("I_p", self.alpha2)):
            s = sign(a)
            if s == 0:
                continue
            if s is None:
                out.append(f"minimises {name} when {sympy.sstr(a)} > 0, maximises it when {sympy.sstr(a)} < 0")
            else:
                out.append(f"{'minimises' if s > 0 else 'maximises'} {name}")
        return ", ".join(out) if out else "no mutual information preference"

    def __str__(self) -> str:
        lines = [f"alpha1 = {sympy.sstr(self.alpha1)}, alpha2 = {sympy.sstr(self.alpha2)}"]
        lines.append("L ≡ " + str(self.objective()))
        if self.conditions:
            lines.append("when " + ", ".join(sympy.sstr(c) for c in self.conditions))
        return "\n".join(lines)

    def latex(self) -> str:
        """The dual form in LaTeX, with its conditions."""
        body = self.objective().latex()
        cond = ""
        if self.conditions:
            cond = r" \quad (" + ", ".join(sympy.latex(c) for c in self.conditions) + ")"
        return rf"\mathcal{{L}} \equiv {body}{cond}"

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"

    @property
    def free_symbols(self) -> set:
        """The parameters the form depends on."""
        return set().union(*(as_expr(e).free_symbols for e in (self.alpha1, self.alpha2, *self.lambdas)))

    def subs(self, values: Mapping | None = None, **kwargs) -> DualForm:
        """The dual form with parameters bound, in canonical form.

        Multipliers that vanish are dropped and a chain-rule pair whose multipliers become
        equal merges into its joint KL (the rule of the module doc), so that
        ``classify(obj).dual.subs(beta=4) == classify(obj.subs(beta=4)).dual`` wherever the
        form's conditions hold. Values that break the conditions raise :class:`ObjectiveError`.

        >>> import lagrangian_family as lf
        >>> print(lf.classify("beta_vae").dual.subs(beta=1))
        alpha1 = 0, alpha2 = 0
        L ≡ KL(q(x,z) || p(x,z))
        """
        free = self.free_symbols
        mapping = {}
        for k, v in {**(values or {}), **kwargs}.items():
            key = symbol(k) if isinstance(k, str) else k
            if key not in free:
                raise ObjectiveError(f"the dual form has no parameter {k!s}",
                                     expected="one of " + (", ".join(sorted(map(str, free))) or "(no parameters)"),
                                     given=str(k),
                                     fix="bind only the parameters the dual form has (str(form) shows them)")
            mapping[key] = as_coefficient(v, context=f"the value of {k}")
        lams = [(sympy.expand(as_expr(lam).subs(mapping)), d) for lam, d in self.multipliers]
        reps: dict[str, dict] = {"q": {}, "p": {}}
        other = []
        for lam, d in lams:
            where = _KIND_OF.get(d)
            if where is None:
                other.append((lam, d))
            else:
                reps[where[0]][where[1]] = lam
        multipliers = _assemble({f: _merge(r) for f, r in reps.items()},
                                [(lam, d) for lam, d in other if not is_zero(lam)])
        reduced = reduce_nonnegative([lam for lam, _ in multipliers])
        if not reduced.satisfiable:
            bad = ", ".join(f"{multipliers[i][1]} has λ = {sympy.sstr(multipliers[i][0])}" for i in reduced.conflict)
            raise ObjectiveError(
                "these values break the conditions of the dual form",
                expected=", ".join(sympy.sstr(c) for c in self.conditions) or "values keeping every λ ≥ 0",
                given=", ".join(f"{k} = {sympy.sstr(v)}" for k, v in mapping.items()) + f" ({bad})",
                fix="classify the objective with these values bound (lf.classify(obj.subs(...))): it says whether "
                    "another representation is a Lagrangian there")
        dropped = {k: sympy.expand(as_expr(c).subs(mapping)) for k, c in self.dropped.items()}
        a1, a2 = (sympy.expand(as_expr(a).subs(mapping)) for a in (self.alpha1, self.alpha2))
        form = DualForm(a1, a2, tuple(multipliers), reduced.conditions, enforces_consistency(multipliers),
                        primal=self.primal)
        object.__setattr__(form, "dropped", {k: c for k, c in dropped.items() if not is_zero(c)})
        return form

    def table(self) -> str:
        """α1, α2, D, λ in the layout of ../shared/paper/dual_forms.md."""
        ds = ", ".join(str(d) for d in self.divergences)
        ls = ", ".join(sympy.sstr(x) for x in self.lambdas)
        return f"alpha1 = {sympy.sstr(self.alpha1)} | alpha2 = {sympy.sstr(self.alpha2)} | D = [{ds}] | λ = [{ls}]"


@cache
def _setup():
    iq, ip = term_vector(dic.I_Q), term_vector(dic.I_P)
    kls = dic.kl_dictionary()
    span = make_span([iq, ip] + [term_vector(k) for k in kls])
    functionals = []
    for target, others in ((iq, [ip]), (ip, [iq])):
        M = sympy.Matrix([list(o) for o in others] + [list(term_vector(k)) for k in kls]).T
        rows = M.T.nullspace()
        row = next(r for r in rows if (r.T * sympy.Matrix(target))[0] != 0)
        row = row / (row.T * sympy.Matrix(target))[0]
        functionals.append(tuple(row))
    sides = {}
    for frame in ("q", "p"):
        vecs = [term_vector(dic.kl(frame, k)) for k in _SIDE_KINDS]
        B = sympy.Matrix([list(v) for v in vecs]).T
        null = [tuple(n) for n in B.nullspace()]
        sp = make_span(vecs)
        sides[frame] = (sp, null)
    return span, tuple(functionals), sides


def _frame_candidates(frame: str, t: list[sympy.Expr]) -> list[tuple[tuple[int, int, int], dict]]:
    """The candidate multipliers of one frame's KLs for the residual t, each with its key
    (terms, joint KLs, vertex preference), best first (see the module doc)."""
    sp, null = _setup()[2][frame]
    if all(is_zero(c) for c in t):
        return [((0, 0, 0), {})]
    base = [sympy.Integer(0)] * len(_SIDE_KINDS)
    for i, c in zip(sp.basis, sp.coordinates(t)):
        base[i] = c
    (n,) = null  # one chain-rule relation among the four: z + x|z - x - z|x = 0
    found: dict[tuple, tuple[tuple[int, int, int], dict]] = {}
    for pref, kind in enumerate(_VERTEX_ORDER[frame]):
        i = _SIDE_KINDS.index(kind)
        vertex = [sympy.expand(b - (base[i] / n[i]) * nk) for b, nk in zip(base, n)]
        rep = _merge(dict(zip(_SIDE_KINDS, vertex)))
        key = (len(rep), int("joint" in rep), pref)
        ident = tuple(sorted(rep.items(), key=lambda kv: kv[0]))
        if ident not in found or key < found[ident][0]:
            found[ident] = (key, rep)
    return sorted(found.values(), key=lambda kr: kr[0])


def _merge(rep: dict[str, sympy.Expr]) -> dict[str, sympy.Expr]:
    """Drop zero multipliers and merge each chain-rule pair whose two multipliers are identically
    equal into the joint KL (marginal + matching conditional = joint)."""
    rep = {k: c for k, c in rep.items() if not is_zero(c)}
    joint = rep.pop("joint", sympy.Integer(0))
    for m, c in _PAIRS:
        if m in rep and c in rep and is_zero(rep[m] - rep[c]):
            joint += rep.pop(m)
            del rep[c]
    joint = sympy.expand(joint)
    return ({"joint": joint} if not is_zero(joint) else {}) | rep


_ORDER = ("joint",) + tuple(k for k in dic.KL_KINDS if k != "joint")
#: frame and kind of each dictionary KL
_KIND_OF = {dic.kl(f, k): (f, k) for f in ("q", "p") for k in dic.KL_KINDS}


def _assemble(reps: dict[str, dict], opaque) -> list[tuple[sympy.Expr, Divergence]]:
    out: list[tuple[sympy.Expr, Divergence]] = []
    for frame in ("q", "p"):
        out += [(reps[frame][k], dic.kl(frame, k)) for k in _ORDER if k in reps[frame]]
    return out + list(opaque)


def dual_form(nf: NormalForm) -> tuple[DualForm | None, str | None]:
    """The canonical dual form of a normal form, or (None, why)."""
    span, (phi1, phi2), _ = _setup()
    v = atoms_vector(nf.atoms)
    if not span.contains(v):
        outside = span.outside(v)
        part = format_combination([(a.term, c) for a, c in outside.items()], str, text_coefficient)
        return None, (
            f"the part {part} is outside the span of I_q, I_p and the ten KL divergences, so no α1, α2, λ "
            f"make it α1·I_q + α2·I_p + Σ λ_i·D_i; adding {str(-Objective([(a.term, c) for a, c in outside.items()]))}"
            " would bring it in"
        )
    alpha1, alpha2 = (apply([phi], v)[0] for phi in (phi1, phi2))
    t = [sympy.expand(x - alpha1 * a - alpha2 * b) for x, a, b in
         zip(v, term_vector(dic.I_Q), term_vector(dic.I_P))]
    opaque = [(c, d) for d, c in nf.opaque.items()]
    frames = {f: _frame_candidates(f, [c if COORDINATES[i].frame == f else sympy.Integer(0) for i, c in enumerate(t)])
              for f in ("q", "p")}
    combos = sorted(product(range(len(frames["q"])), range(len(frames["p"]))),
                    key=lambda ij: _combined_key(frames["q"][ij[0]][0], frames["p"][ij[1]][0]))
    alone: dict[tuple[str, int], bool] = {}  # a frame's candidate that can never be >= 0 on its own

    def possible(f: str, i: int) -> bool:
        if (f, i) not in alone:
            alone[f, i] = reduce_nonnegative(list(frames[f][i][1].values())).satisfiable
        return alone[f, i]

    failure = None
    for i, j in combos:
        if failure is not None and not (possible("q", i) and possible("p", j)):
            continue
        multipliers = _assemble({"q": frames["q"][i][1], "p": frames["p"][j][1]}, opaque)
        reduced = reduce_nonnegative([lam for lam, _ in multipliers])
        if reduced.satisfiable:
            return _form(nf, alpha1, alpha2, multipliers, reduced), None
        failure = failure or (multipliers, reduced)  # the canonical candidate: its reason is reported
    return None, _reason(*failure)


def _combined_key(kq: tuple[int, int, int], kp: tuple[int, int, int]) -> tuple[int, ...]:
    """Fewest terms, then fewest joint KLs over both frames, then each frame's vertex preference."""
    return (kq[0] + kp[0], kq[1] + kp[1], kq[2], kp[2])


def _form(nf: NormalForm, alpha1, alpha2, multipliers, reduced: Reduced) -> DualForm:
    form = DualForm(sympy.expand(alpha1), sympy.expand(alpha2), tuple(multipliers), reduced.conditions,
                    enforces_consistency(multipliers))
    diff = normal_form(Objective(list(nf.objective(with_constants=True).items()))) - normal_form(form.objective())
    dropped = {("H_q(x)" if a.frame == "q" else "H_p(z)"): sympy.expand(-c) for a, c in diff.constants.items()}
    object.__setattr__(form, "dropped", dropped)
    return form


def enforces_consistency(multipliers) -> bool:
    """Do the divergences with λ > 0 (λ of unknown sign counted as positive, under the stated
    conditions) force p(x,z) = q(x,z)? Yes iff they include a joint divergence, or a marginal
    and the matching conditional of the same factorisation (z with x|z, or x with z|x)."""
    active = [d for lam, d in multipliers if sign(lam) != 0]
    if any(d.arity == "joint" for d in active):
        return True
    marginals = {d.vars for d in active if d.arity == "marginal"}
    # a conditional counts only between two conditionals of the same condition, e.g. q(x|z) vs p(x|z)
    conditionals = {d.outer.vars for d in active
                    if d.arity == "conditional" and d.left.given == d.right.given == d.outer.vars}
    return any(m in conditionals for m in marginals)


def decompose(objective, divergences, *, bounds: dict[str, str] | None = None) -> DualForm:
    """Coefficients of an objective over a given list of divergences.

    Solves L ≡ α1·P_q + α2·P_p + Σ λ_i·D_i for the user's D_i, where P_q is I_q(x;z) or,
    with ``bounds={"q": "upper"}``, its upper (or lower) bound of eq. 13. Raises
    :class:`ObjectiveError` when the list cannot express the objective (naming the part
    left over) or is linearly dependent (the λ would not be unique).

    >>> import lagrangian_family as lf
    >>> form = decompose("lagvae", ["KL(q(x,z) || p(x,z))", "MMD(q(z) || p(z))"], bounds={"q": "upper"})
    >>> form.alpha1, form.lambdas
    (alpha1, (lambda_1, lambda_2))
    """
    from lagrangian_family.symbolic.bounds import bound
    from lagrangian_family.symbolic.classify import as_objective

    obj = as_objective(objective)
    check_objective(obj)
    if divergences is None or isinstance(divergences, (str, Term)) or not hasattr(divergences, "__iter__"):
        raise ObjectiveError("decompose takes a list of divergences", expected="a list such as "
                             "['KL(q(x,z) || p(x,z))', 'MMD(q(z) || p(z))']", given=repr(divergences),
                             fix="wrap a single divergence in a list")
    divs: list[Divergence] = []
    for d in divergences:
        dd = as_objective(d) if isinstance(d, str) else d
        if isinstance(dd, Objective):
            if len(dd) != 1 or not isinstance(next(iter(dd)), Divergence) or dd.coefficient(next(iter(dd))) != 1:
                raise ObjectiveError("a decomposition takes divergences", expected="a single divergence term",
                                     given=str(dd), fix="pass e.g. 'KL(q(x,z) || p(x,z))'")
            dd = next(iter(dd))
        if not isinstance(dd, Divergence):
            raise ObjectiveError("a decomposition takes divergences", expected="a divergence term",
                                 given=repr(dd), fix="pass e.g. 'MMD(q(z) || p(z))'")
        divs.append(dd)
    if bounds is not None and (not isinstance(bounds, dict) or set(bounds) - {"q", "p"}):
        raise ObjectiveError("bounds says which mutual information to replace by which bound",
                             expected="a dict with keys 'q' and/or 'p' and values 'upper' or 'lower'",
                             given=repr(bounds), fix="pass bounds={'q': 'upper'}")
    bounds = dict(bounds or {})
    primal: list[tuple[str, Term | Objective]] = []
    for fam in ("q", "p"):
        choice = bounds.get(fam)
        primal.append((fam, MutualInformation(fam).as_objective() if choice is None else bound(fam, choice)))
    opaque_keys = list(dict.fromkeys([d for d in divs if d.opaque] + list(normal_form(obj).opaque)))

    def column(o) -> list[sympy.Expr]:
        nf = normal_form(o)
        return atoms_vector(nf.atoms) + [nf.opaque.get(k, sympy.Integer(0)) for k in opaque_keys]

    cols = [column(p) for _, p in primal] + [column(d) for d in divs]
    names = [f"I_{f}" if bounds.get(f) is None else f"the {bounds[f]} bound of I_{f}" for f, _ in primal]
    names += [str(d) for d in divs]
    A = sympy.Matrix(cols).T
    subject = lambda: str(obj)  # noqa: E731 - printed only for an error
    if guard(subject, "decomposing the objective", lambda: A.rank()) < A.cols:
        dep = guard(subject, "decomposing the objective", lambda: A.nullspace()[0])
        involved = [n for n, c in zip(names, dep) if c != 0]
        raise ObjectiveError(
            "the divergences are linearly dependent, so their multipliers are not unique",
            expected="independent divergences (no chain-rule triple such as a joint, its marginal and conditional)",
            given=", ".join(involved), fix="drop one of them",
        )
    b = sympy.Matrix(column(obj))

    def solve():
        left = (A.T * A).inv() * A.T
        x = [sympy.expand(e) for e in left * b]
        return x, [sympy.expand(e) for e in (b - A * sympy.Matrix(x))]

    x, resid = guard(subject, "decomposing the objective", solve)
    if any(not is_zero(r) for r in resid):
        atoms = [(COORDINATES[i].term, r) for i, r in enumerate(resid[:N]) if not is_zero(r)]
        atoms += [(k, r) for k, r in zip(opaque_keys, resid[N:]) if not is_zero(r)]
        raise ObjectiveError(
            "the objective cannot be written over these divergences",
            expected=f"a combination of {', '.join(names)}",
            given=f"{obj}, which leaves {format_combination(atoms, str, text_coefficient)} over",
            fix="add the divergences that account for the part left over (lf.classify shows the canonical ones)",
        )
    multipliers = tuple((lam, d) for lam, d in zip(x[2:], divs))
    reduced = reduce_nonnegative([lam for lam, _ in multipliers])
    if not reduced.satisfiable:
        raise ObjectiveError("a negative multiplier", expected="λ ≥ 0 for every divergence",
                             given=_reason(multipliers, reduced, others=False),
                             fix="flip the sign of that term, or change the coefficients so that every λ can be ≥ 0")
    return DualForm(x[0], x[1], multipliers, reduced.conditions, enforces_consistency(multipliers),
                    primal=(primal[0][1], primal[1][1]))
