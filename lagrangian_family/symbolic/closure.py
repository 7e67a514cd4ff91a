"""The closure theorem (paper, Theorem 1) as exact subspace computations.

A *KL Lagrangian* is α1·I_q + α2·I_p + Σ λ_k·KL_k over the ten dictionary KLs with free
real α, λ: a subspace K of the ten-dimensional normal-form space. Theorem 1 says:

1. K ∩ span(T1)           = span(β-VAE, VMI)
2. K ∩ span(T1 ∪ T2)      = span(InfoVAE, InfoGAN)
3. K ∩ span(T1 ∪ T2 ∪ T3) = span(ALICE, InfoVAE, InfoGAN)

where a family's span is the span of its members over all parameter values, and each
family's divergence slot (InfoVAE's D(q(z)||p(z)), InfoGAN's and ALICE's JS) ranges over KL
in both directions. Each statement is checked as: every family member lies in both K and
the class, and dim span(families) = dim(K ∩ class) = dim K + dim class − dim(K + class).

>>> [r.holds for r in theorem1()]
[True, True, True]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic import dictionary as dic
from lagrangian_family.symbolic.linalg import atoms_vector, term_vector
from lagrangian_family.symbolic.normal_form import is_zero, normal_form
from lagrangian_family.symbolic.objective import Objective, as_expr, format_combination, text_coefficient
from lagrangian_family.symbolic.terms import Divergence

#: Theorem 1's families for each class.
THEOREM_FAMILIES = {1: ("beta_vae", "vmi"), 2: ("infovae", "infogan"), 3: ("alice", "infovae", "infogan")}
_CLASS_NAMES = {1: "likelihood-based", 2: "unary likelihood-free", 3: "binary likelihood-free"}


@dataclass(frozen=True)
class Family:
    """A model family as an affine-linear function of its parameters: v(θ) = v0 + Σ θ_j·v_j."""

    name: str
    objective: Objective
    parameters: tuple[sympy.Symbol, ...]
    generators: tuple[Objective, ...]  # the constant part, then one per parameter

    def __str__(self) -> str:
        return self.name


def _rank(vectors) -> int:
    vs = [list(v) for v in vectors if any(v)]
    return sympy.Matrix(vs).rank() if vs else 0


def family(name: str, *, with_original: bool = False) -> list[Family]:
    """The zoo family ``name`` with its divergence slot over KL in both directions
    (and, with ``with_original``, with its own non-KL slot too).

    A family whose objective has no non-KL divergence is returned as it is.
    """
    from lagrangian_family import zoo

    obj = zoo.get(name)
    slots = [t for t in obj if isinstance(t, Divergence) and t.opaque]
    variants = [(name, obj)]
    if slots:
        variants = []
        for direction in ("q||p", "p||q"):
            items = []
            for t, c in obj.items():
                if t in slots:
                    left, right = (t.left, t.right) if t.left.family == "q" else (t.right, t.left)
                    if direction == "p||q":
                        left, right = right, left
                    t = Divergence("KL", left, right)
                items.append((t, c))
            variants.append((f"{name}[KL({direction})]", Objective(items)))
        if with_original:
            variants.insert(0, (name, obj))
    out = []
    for label, o in variants:
        params = tuple(sorted(o.free_symbols, key=str))
        gens = [o.subs({p: 0 for p in params})]
        for p in params:
            items = []
            for t, c in o.items():
                poly = sympy.Poly(c, *params) if params else None
                if poly is not None and poly.total_degree() > 1:
                    raise ObjectiveError(f"{name} is not linear in its parameters", expected="affine coefficients",
                                         given=str(o), fix="closure needs families affine in their parameters")
                items.append((t, sympy.diff(c, p)))
            gens.append(Objective(items))
        out.append(Family(label, o, params, tuple(gens)))
    return out


def _vec(obj: Objective, opaque: tuple[Divergence, ...] = ()) -> list:
    """Coordinates of an objective: the ten atoms, then the given opaque divergences."""
    nf = normal_form(obj)
    return atoms_vector(nf.atoms) + [nf.opaque.get(d, sympy.Integer(0)) for d in opaque]


@dataclass(frozen=True)
class ClosureResult:
    """One statement of Theorem 1, with the dimensions that prove it."""

    k: int
    families: tuple[str, ...]
    dim_lagrangians: int
    dim_class: int
    dim_intersection: int
    dim_families: int
    members_inside: bool

    @property
    def holds(self) -> bool:
        return self.members_inside and self.dim_families == self.dim_intersection

    def __str__(self) -> str:
        fams = ", ".join(self.families)
        mark = "holds" if self.holds else "FAILS"
        return (f"T{self.k} ({_CLASS_NAMES[self.k]}): KL Lagrangians ∩ class has dimension {self.dim_intersection} "
                f"(= {self.dim_lagrangians} + {self.dim_class} - dim of the sum); span({fams}) has dimension "
                f"{self.dim_families}, every member is a {_CLASS_NAMES[self.k]} KL Lagrangian: {mark}")


@cache
def theorem1() -> tuple[ClosureResult, ...]:
    """Check the three statements of Theorem 1 by exact rank computations."""
    from lagrangian_family.symbolic.classify import class_span

    K = [term_vector(dic.I_Q), term_vector(dic.I_P)] + [term_vector(k) for k in dic.kl_dictionary()]
    dK = _rank(K)
    results = []
    for k, names in THEOREM_FAMILIES.items():
        S = [span_g for span_g in class_span(k).generators]
        dS = _rank(S)
        d_inter = dK + dS - _rank(K + S)
        fam_vecs = [_vec(g) for n in names for f in family(n) for g in f.generators]
        inside = all(_rank(K + [v]) == dK and class_span(k).contains(v) for v in fam_vecs)
        results.append(ClosureResult(k, names, dK, dS, d_inter, _rank(fam_vecs), inside))
    return tuple(results)


@dataclass(frozen=True)
class FamilyCoefficients:
    """An objective written as a combination of family members (up to elementary equivalence)."""

    objective: Objective
    terms: tuple[tuple[str, sympy.Expr, dict], ...]  # (family, weight w, parameter values) per family
    directions: tuple[tuple[str, Objective, sympy.Expr], ...]  # generator coefficients, always available

    def __str__(self) -> str:
        parts = []
        for name, w, params in self.terms:
            ps = ", ".join(f"{k} = {sympy.sstr(v)}" for k, v in params.items())
            parts.append((name + (f"({ps})" if ps else ""), w))
        weighted = {name for name, _, _ in self.terms}
        parts += [(f"[{g}]", c) for name, g, c in self.directions if name not in weighted]
        return "L ≡ " + format_combination(parts, str, text_coefficient)


def coefficients(objective, families) -> FamilyCoefficients:
    """Coefficients of an objective over model families (zoo names), up to equivalence.

    Writes L ≡ Σ_f w_f · family_f(θ_f) by solving the linear system in (w_f, w_f·θ_f).
    Raises :class:`ObjectiveError` when the families cannot express the objective.

    >>> print(coefficients("-E_{q(x,z)}[log p(x|z)] + 3 * E_{q(x)}[KL(q(z|x) || p(z))]", ["beta_vae", "vmi"]))
    L ≡ beta_vae(beta = 3)
    """
    from lagrangian_family.symbolic.classify import as_objective

    obj = as_objective(objective)
    if isinstance(families, str) or not families:
        raise ObjectiveError("closure coefficients need a list of families", expected="a non-empty list of "
                             "zoo names, e.g. ['beta_vae', 'vmi']", given=repr(families),
                             fix="pass families=['infovae', 'infogan'] (lagfam closure lists Theorem 1's)")
    fams = [f for name in families for f in family(name, with_original=True)]
    gens = [g for f in fams for g in f.generators]
    opaque = tuple(dict.fromkeys(d for o in [obj, *gens] for d in normal_form(o).opaque))
    cols = [_vec(g, opaque) for g in gens]
    target = sympy.Matrix(_vec(obj, opaque))
    unknowns = sympy.symbols(f"u0:{len(cols)}")
    A = sympy.Matrix(cols).T
    sol = sympy.linsolve((A, target), *unknowns)
    solved = list(sol)[0] if sol else None
    if solved is not None:
        free = set().union(*[as_expr(v).free_symbols for v in solved]) & set(unknowns)
        solved = [sympy.expand(as_expr(v).subs({u: 0 for u in free})) for v in solved]
        if any(not is_zero(r) for r in (A * sympy.Matrix(solved) - target)):
            solved = None
    if solved is None:
        raise ObjectiveError(
            "the families cannot express this objective",
            expected="an objective in the span of " + ", ".join(f.name for f in fams),
            given=str(obj),
            fix="add a family (lagfam closure lists Theorem 1's) or check the objective's class",
        )
    values = solved
    terms, directions = [], []
    idx = 0
    for f in fams:
        n = len(f.generators)
        vals = values[idx: idx + n]
        idx += n
        for g, v in zip(f.generators, vals):
            if not is_zero(v):
                directions.append((f.name, g, v))
        w = vals[0]
        if all(is_zero(v) for v in vals) or is_zero(w):
            continue  # a pure parameter direction (w = 0) is listed in ``directions`` only
        params = {str(p): sympy.simplify(u / w) for p, u in zip(f.parameters, vals[1:])}
        terms.append((f.name, w, params))
    return FamilyCoefficients(obj, tuple(terms), tuple(directions))
