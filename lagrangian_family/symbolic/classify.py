"""Computability classes (paper, Definition 2) as rank tests, and the classification result.

An objective is in class T_k iff its atom part lies in span(T_1 ∪ ... ∪ T_k) and its
opaque divergences have an arity that T_k allows (marginals for T2, joints for T3).
A non-KL divergence between conditionals is in no class.

>>> import lagrangian_family as lf
>>> lf.classify("JS(q(x) || p(x)) - E_{p(x,z)}[log q(z|x)]").computability
<Computability.UNARY_LIKELIHOOD_FREE: 'unary likelihood-free'>
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from functools import cache, cached_property, lru_cache

import sympy

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic import dictionary as dic
from lagrangian_family.symbolic.limits import check_objective, guard
from lagrangian_family.symbolic.linalg import Span, atoms_vector, make_span, term_vector
from lagrangian_family.symbolic.normal_form import COORDINATES, NormalForm, is_zero, normal_form
from lagrangian_family.symbolic.objective import Objective, as_expr, format_combination, text_coefficient
from lagrangian_family.symbolic.terms import Divergence, ExpectedLog, Term


class Computability(Enum):
    """The paper's computability classes (Definition 2), easiest first."""

    #: T1: the span of the eight likelihood terms (VAE, β-VAE, VMI)
    LIKELIHOOD_BASED = "likelihood-based"
    #: T2: T1 plus whole divergences between marginals (InfoVAE, InfoGAN)
    UNARY_LIKELIHOOD_FREE = "unary likelihood-free"
    #: T3: T2 plus divergences between the joints (ALI, BiGAN, ALICE)
    BINARY_LIKELIHOOD_FREE = "binary likelihood-free"
    #: in no class (a non-KL divergence between conditionals, an atom outside every span)
    NOT_COMPUTABLE = "not computable"

    @property
    def rank(self) -> int | None:
        """1, 2, 3 for T1, T2, T3; None when not computable."""
        return {"likelihood-based": 1, "unary likelihood-free": 2, "binary likelihood-free": 3}.get(self.value)

    def __str__(self) -> str:
        return self.value


_CLASSES = (Computability.LIKELIHOOD_BASED, Computability.UNARY_LIKELIHOOD_FREE,
            Computability.BINARY_LIKELIHOOD_FREE)
_OPAQUE_CLASS = {"marginal": 2, "joint": 3}


@cache
def class_span(k: int) -> Span:
    """span(T_1 ∪ ... ∪ T_k) over the ten coordinates."""
    terms = (dic.T1, dic.T1 + dic.T2, dic.T1 + dic.T2 + dic.T3)[k - 1]
    return make_span([term_vector(t) for t in terms])


@cache
def _computable_generators() -> tuple[tuple[Term, ...], tuple[tuple[sympy.Rational, ...], ...]]:
    """A basis of span(T1 ∪ T2 ∪ T3) (the whole space): five likelihood atoms and five KLs,
    with the inverse that writes any vector over it uniquely."""
    t1_atoms = [a for a in COORDINATES if class_span(1).contains(list(_unit(a)))]
    kls = [*dic.T2, dic.T3[1]]
    gens: list[Term] = [a.term for a in t1_atoms] + kls
    M = sympy.Matrix([list(term_vector(g)) for g in gens]).T
    inv = M.inv()
    return tuple(gens), tuple(tuple(inv.row(i)) for i in range(M.rows))


def _unit(atom):
    return tuple(1 if a == atom else 0 for a in COORDINATES)


def as_objective(obj) -> Objective:
    """An Objective from an Objective, a Term, a zoo name or a text objective."""
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, Term):
        return obj.as_objective()
    if isinstance(obj, str):
        from lagrangian_family import zoo
        from lagrangian_family.symbolic.parse import parse

        name = obj.strip()
        if zoo.normalise(name) in zoo.names():
            return zoo.get(name)
        if re.fullmatch(r"[A-Za-z][\w\-]*", name) and name not in ("I_q", "I_p"):
            zoo.entry(name)  # not a zoo name: raises, naming the closest ones
        return parse(obj)
    raise ObjectiveError(
        "cannot read an objective from this value",
        expected="a zoo name, a text objective, a Term or an Objective",
        given=f"{type(obj).__name__} {obj!r}",
        fix="pass e.g. 'beta_vae' or '-E_{q(x,z)}[log p(x|z)] + E_{q(x)}[KL(q(z|x) || p(z))]'",
    )


def t1_expansion(term: Term) -> Objective | None:
    """The term over Definition 2's likelihood terms (constants dropped), or None if it is
    not likelihood-based on its own.

    >>> from lagrangian_family.symbolic.parse import parse
    >>> [t] = parse("E_{q(x,z)}[log p(x,z)]")
    >>> str(t1_expansion(t))
    'E_{q(z)}[log p(z)] + E_{q(x,z)}[log p(x|z)]'
    """
    if term.opaque:
        return None
    v = list(term_vector(term))
    if not class_span(1).contains(v):
        return None
    return Objective([(a.term, c) for a, c in zip(COORDINATES, v) if c != 0])


def fold_kl_pairs(obj: Objective) -> Objective:
    """c·E_q[log q(z|x)] - c·E_q[log p(z)] as c·E_{q(x)}[KL(q(z|x) || p(z))]: the same value,
    with a closed form for the backends. Expectations under q(x,z) or its marginals count alike.

    >>> from lagrangian_family.symbolic.parse import parse
    >>> str(fold_kl_pairs(parse("E_{q(x,z)}[log q(z|x) - log p(x|z) - log p(z)]")))
    'E_{q(x)}[KL(q(z|x) || p(z))] - E_{q(x,z)}[log p(x|z)]'
    """
    kl_enc = dic.kl_encoder()
    q_zx, p_z = kl_enc.left, kl_enc.right

    def pick(density):
        return [t for t in obj if isinstance(t, ExpectedLog) and t.frame == "q" and t.density == density]

    qs, ps = pick(q_zx), pick(p_z)
    if not qs or not ps:
        return obj
    a = sum((obj.coefficient(t) for t in qs), sympy.Integer(0))
    b = sum((obj.coefficient(t) for t in ps), sympy.Integer(0))
    if is_zero(a) or not is_zero(a + b):
        return obj
    drop = set(qs) | set(ps)
    return Objective([(kl_enc, a)] + [(t, c) for t, c in obj.items() if t not in drop])


@dataclass(frozen=True)
class Classification:
    """What an objective is: its computability, its dual form and why.

    ``reasons`` explains why the objective is not in an easier class (or in no class);
    ``dual`` is a :class:`~lagrangian_family.symbolic.dual.DualForm`, or None with
    ``dual_reason`` saying why; ``computable_form`` is an equivalent objective each of
    whose terms is estimable on its own (what the torch backend lowers).
    """

    objective: Objective
    normal: NormalForm
    computability: Computability
    reasons: tuple[str, ...] = ()
    dual: object | None = None
    dual_reason: str | None = None
    computable_form: Objective | None = field(default=None, compare=False)

    @property
    def conditions(self) -> tuple:
        """The dual form's conditions on the parameters (``beta >= 0``); empty without a dual form."""
        return () if self.dual is None else self.dual.conditions

    @cached_property
    def derivation(self):
        """The derivation of the dual form (or of the normal form) as named steps."""
        from lagrangian_family.symbolic.derivation import derive

        return derive(self)

    def summary(self) -> str:
        """The classification as text: objective, computability and why, dual form (``str(c)``)."""
        lines = [f"objective:      {self.objective}", f"computability:  {self.computability}"]
        lines += [f"  why: {r}" for r in self.reasons]
        if self.dual is not None:
            lines.append("dual form:")
            lines += ["  " + ln for ln in str(self.dual).splitlines()]
        else:
            lines.append(f"dual form:      none: {self.dual_reason}")
        return "\n".join(lines)

    __str__ = summary

    def latex(self) -> str:
        """The objective, its computability and its dual form as a LaTeX ``aligned`` block."""
        out = [rf"\text{{objective: }} & {self.objective.latex()} \\",
               rf"\text{{computability: }} & \text{{{self.computability}}} \\"]
        if self.dual is not None:
            out.append(rf"\text{{dual form: }} & {self.dual.latex()}")
        return "\\begin{aligned}" + "\n".join(out) + "\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"


def _computability(obj: Objective, nf: NormalForm) -> tuple[Computability, tuple[str, ...]]:
    v = atoms_vector(nf.atoms)
    reasons: list[str] = []
    conditional = [d for d in nf.opaque if d.arity == "conditional"]
    if conditional:
        names = ", ".join(str(d) for d in conditional)
        reasons.append(
            f"{names} is a {conditional[0].kind} divergence between conditionals: no class has such terms "
            "(only KL expands over conditionals); write it as a KL, or compare the joints instead, "
            f"e.g. {conditional[0].kind}({conditional[0].left.family}(x,z) || {conditional[0].right.family}(x,z))"
        )
        return Computability.NOT_COMPUTABLE, tuple(reasons)
    need = max([_OPAQUE_CLASS[d.arity] for d in nf.opaque] + [1])
    for k in range(1, 4):
        cls = _CLASSES[k - 1]
        if k < need:
            worst = [str(d) for d in nf.opaque if _OPAQUE_CLASS[d.arity] > k]
            kind = "unary" if need == 2 else "binary"
            what = (f"{worst[0]} is a {kind} likelihood-free term" if len(worst) == 1
                    else f"{', '.join(worst)} are {kind} likelihood-free terms")
            reasons.append(f"not {cls}: {what}")
            continue
        span = class_span(k)
        if span.contains(v):
            return cls, tuple(reasons)
        outside = span.outside(v)
        part = format_combination([(a.term, c) for a, c in outside.items()], str, text_coefficient)
        hint = _solve_hint(list(outside.values()))
        reasons.append(f"not {cls}: the part {part} is outside span(T1{'∪T2' if k > 1 else ''}"
                       f"{'∪T3' if k > 2 else ''}){hint}")
    raise AssertionError("T1 ∪ T2 ∪ T3 spans every coordinate")  # pragma: no cover


def _solve_hint(exprs) -> str:
    symbols = set().union(*[as_expr(e).free_symbols for e in exprs])
    if not symbols:
        return ""
    exprs = [as_expr(e) for e in exprs]
    if len(symbols) > 3 or not all(_small_polynomial(e, symbols) for e in exprs):
        return ""  # sympy.solve may take long beyond small low-degree polynomials; the hint is optional
    try:
        sol = sympy.solve(exprs, list(symbols), dict=True)
    except Exception:  # noqa: BLE001 - sympy gives up in many ways; the hint is optional
        return ""
    if not sol:
        return ""
    return "; it would be in the class when " + " or ".join(
        ", ".join(f"{k} = {v}" for k, v in s.items()) for s in sol)


def _small_polynomial(e, symbols) -> bool:
    """A polynomial of degree at most 2 with rational coefficients of at most 30 digits."""
    if not e.is_polynomial(*symbols):
        return False
    P = sympy.Poly(e, *symbols)
    return (P.total_degree() <= 2 and (P.domain.is_ZZ or P.domain.is_QQ)
            and all(abs(c.p) < 10**30 and c.q < 10**30 for c in P.coeffs()))


def computable_form(obj: Objective, nf: NormalForm, cls: Computability) -> Objective | None:
    """An equivalent objective whose terms are each estimable on their own.

    Terms that are likelihood-based on their own, and divergences between marginals or
    joints, are kept as written; the rest is rewritten uniquely over five likelihood
    atoms and five KL divergences (T2's four, and KL(p(x,z) || q(x,z)) from T3).
    """
    if cls is Computability.NOT_COMPUTABLE:
        return None
    kept: list[tuple[Term, sympy.Expr]] = []
    residual = [sympy.Integer(0)] * len(COORDINATES)
    for term, c in obj.items():
        if term.opaque or (isinstance(term, Divergence) and term.arity != "conditional"
                           and not class_span(1).contains(list(term_vector(term)))):
            kept.append((term, c))
            continue
        v = term_vector(term)
        if class_span(1).contains(list(v)):
            kept.append((term, c))
            continue
        for i, k in enumerate(v):
            if k:
                residual[i] += k * c
    gens, inv = _computable_generators()
    from lagrangian_family.symbolic.linalg import apply

    coords = apply(inv, residual)
    rewritten = [(g, c) for g, c in zip(gens, coords) if not is_zero(c)]
    return fold_kl_pairs(Objective(kept + rewritten))


def classify(obj) -> Classification:
    """Classify an objective: a zoo name, a text objective, a Term or an Objective.

    >>> import lagrangian_family as lf
    >>> c = lf.classify("beta_vae")
    >>> str(c.computability), c.dual.alpha1, c.dual.alpha2
    ('likelihood-based', beta - 1, 0)
    >>> [(lam, str(d)) for lam, d in c.dual.multipliers]
    [(beta, 'KL(q(z) || p(z))'), (1, 'E_{q(z)}[KL(q(x|z) || p(x|z))]')]
    """

    objective = as_objective(obj)
    return _classify(objective)


@lru_cache(maxsize=512)
def _classify(objective: Objective) -> Classification:
    from lagrangian_family.symbolic.dual import dual_form

    check_objective(objective)  # the limits (a parsed objective is within them already)

    subject = lambda: _short(str(objective))  # noqa: E731 - printed only for an error
    nf = guard(subject, "computing the normal form", lambda: normal_form(objective))
    cls, reasons = guard(subject, "deciding the computability class", lambda: _computability(objective, nf))
    dual, why = guard(subject, "deriving the dual form", lambda: dual_form(nf))
    computable = guard(subject, "rewriting into computable terms", lambda: computable_form(objective, nf, cls))
    return Classification(objective, nf, cls, reasons, dual, why, computable)


def _short(text: str, width: int = 200) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
