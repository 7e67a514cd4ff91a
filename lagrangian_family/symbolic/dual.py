"""Lagrangian dual forms (paper, eq. 7): L ≡ α1·I_q + α2·I_p + Σ λ_i·D_i.

α1 and α2 are unique: I_q and I_p are independent of every KL divergence. The
multipliers are coordinates over a dictionary of ten KL divergences (per frame: the joint,
both marginals, both expected conditionals) plus the opaque divergences the objective
has. The KL part is not unique (chain rule: joint = marginal + expected conditional, two
ways), so the canonical representative is chosen by one rule, with no special case per
model:

1. write the frame's part over the four marginal and conditional KLs; the representations
   form a line, and the candidates are its vertices (one multiplier zero each);
2. prefer no provably negative multiplier, then fewest terms, then fewest multipliers of
   unknown sign;
3. merge a chain-rule pair (marginal and the matching conditional) into the joint: the
   whole weight when equal, the smaller one when their order is known.

Where a multiplier's sign depends on parameters the form states the condition (β ≥ 0).

>>> import lagrangian_family as lf
>>> print(lf.classify("vae").dual)
alpha1 = 0, alpha2 = 0
L ≡ KL(q(x,z) || p(x,z))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import sympy

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic import dictionary as dic
from lagrangian_family.symbolic.linalg import N, apply, atoms_vector, make_span, term_vector
from lagrangian_family.symbolic.normal_form import COORDINATES, NormalForm, is_zero, normal_form
from lagrangian_family.symbolic.objective import Objective, as_expr, format_combination, text_coefficient
from lagrangian_family.symbolic.terms import Divergence, MutualInformation, Term

_SIDE_KINDS = ("x", "z", "x|z", "z|x")  # the four non-joint KLs of a frame
_PAIRS = (("z", "x|z"), ("x", "z|x"))  # chain-rule pairs: marginal + matching conditional = joint


def sign(expr) -> int | None:
    """+1, 0, -1 when the sign of a coefficient is known, None when it depends on parameters."""
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


def condition(lam) -> sympy.Basic | None:
    """The condition λ ≥ 0 when it depends on parameters; None when it always holds (β**2)."""
    if sign(lam) is not None or as_expr(lam).is_nonnegative:
        return None
    c = sympy.Ge(lam, 0)
    return None if c is sympy.true else c


def _conditions(multipliers) -> tuple:
    return tuple(dict.fromkeys(c for lam, _ in multipliers if (c := condition(lam)) is not None))


def _negative_reason(lam, d) -> str:
    return (f"the multiplier of {d} is {sympy.sstr(lam)} < 0, and no representation has every λ ≥ 0: "
            "the objective rewards this divergence instead of constraining it, which no Lagrangian with "
            f"λ ≥ 0 does; flip the sign of the {d.kind} term to make it a constraint")


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
    #: what α1 and α2 multiply: I_q(x;z) and I_p(x;z), or their bounds (see :func:`decompose`)
    primal: tuple[Objective, Objective] = field(
        default=(MutualInformation("q").as_objective(), MutualInformation("p").as_objective()), compare=False)

    @property
    def divergences(self) -> tuple[Divergence, ...]:
        return tuple(d for _, d in self.multipliers)

    @property
    def lambdas(self) -> tuple[sympy.Expr, ...]:
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
        body = self.objective().latex()
        cond = ""
        if self.conditions:
            cond = r" \quad (" + ", ".join(sympy.latex(c) for c in self.conditions) + ")"
        return rf"\mathcal{{L}} \equiv {body}{cond}"

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"

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


def _side_representation(frame: str, t: list[sympy.Expr]):
    """The canonical multipliers of one frame's KLs for the residual t (see the module doc)."""
    sp, null = _setup()[2][frame]
    if all(c == 0 for c in t):
        return {}
    base = [sympy.Integer(0)] * len(_SIDE_KINDS)
    for i, c in zip(sp.basis, sp.coordinates(t)):
        base[i] = c
    (n,) = null  # one chain-rule relation among the four
    candidates = [base] + [
        [sympy.expand(b - (base[i] / n[i]) * nk) for b, nk in zip(base, n)] for i in range(len(n)) if n[i] != 0
    ]
    best, best_key = None, None
    for idx, cand in enumerate(candidates):
        rep = _merge(frame, dict(zip(_SIDE_KINDS, cand)))
        signs = [sign(c) for c in rep.values()]
        key = (sum(s == -1 for s in signs), len(rep), sum(s is None for s in signs), idx)
        if best_key is None or key < best_key:
            best, best_key = rep, key
    return best


def _merge(frame: str, rep: dict[str, sympy.Expr]) -> dict[str, sympy.Expr]:
    """Move the common weight of each chain-rule pair into the joint KL (when their order is known)."""
    rep = {k: c for k, c in rep.items() if not is_zero(c)}
    joint = sympy.Integer(0)
    for m, c in _PAIRS:
        if m not in rep or c not in rep:
            continue
        a, b = rep[m], rep[c]
        d = sign(a - b)
        if d is None:
            continue
        w = b if d >= 0 else a
        if sign(w) == -1:
            continue
        joint += w
        rep[m], rep[c] = sympy.expand(a - w), sympy.expand(b - w)
    out = {"joint": sympy.expand(joint)} if not is_zero(joint) else {}
    out.update({k: v for k, v in rep.items() if not is_zero(v)})
    return out


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
    multipliers: list[tuple[sympy.Expr, Divergence]] = []
    for frame in ("q", "p"):
        side = [c if COORDINATES[i].frame == frame else sympy.Integer(0) for i, c in enumerate(t)]
        rep = _side_representation(frame, side)
        order = ("joint",) + tuple(k for k in dic.KL_KINDS if k != "joint")
        multipliers += [(rep[k], dic.kl(frame, k)) for k in order if k in rep]
    multipliers += [(c, d) for d, c in nf.opaque.items()]
    negative = [(lam, d) for lam, d in multipliers if sign(lam) == -1]
    if negative:
        return None, _negative_reason(*negative[0])
    conditions = _conditions(multipliers)
    form = DualForm(sympy.expand(alpha1), sympy.expand(alpha2), tuple(multipliers), conditions,
                    enforces_consistency(multipliers))
    diff = normal_form(Objective(list(nf.objective(with_constants=True).items()))) - normal_form(form.objective())
    dropped = {("H_q(x)" if a.frame == "q" else "H_p(z)"): sympy.expand(-c) for a, c in diff.constants.items()}
    object.__setattr__(form, "dropped", dropped)
    return form, None


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
    if A.rank() < A.cols:
        dep = A.nullspace()[0]
        involved = [n for n, c in zip(names, dep) if c != 0]
        raise ObjectiveError(
            "the divergences are linearly dependent, so their multipliers are not unique",
            expected="independent divergences (no chain-rule triple such as a joint, its marginal and conditional)",
            given=", ".join(involved), fix="drop one of them",
        )
    b = sympy.Matrix(column(obj))
    left = (A.T * A).inv() * A.T
    x = [sympy.expand(e) for e in left * b]
    resid = [sympy.expand(e) for e in (b - A * sympy.Matrix(x))]
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
    negative = [(lam, d) for lam, d in multipliers if sign(lam) == -1]
    if negative:
        raise ObjectiveError("a negative multiplier", expected="λ ≥ 0 for every divergence",
                             given=_negative_reason(*negative[0]), fix="flip the sign of that term")
    conditions = _conditions(multipliers)
    return DualForm(x[0], x[1], multipliers, conditions, enforces_consistency(multipliers),
                    primal=(primal[0][1], primal[1][1]))
