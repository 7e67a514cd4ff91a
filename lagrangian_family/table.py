"""The paper's Table 1, regenerated from the zoo, with its empty cells filled.

Rows are the mutual information part of a model's dual form, read off its α1 and α2
(a symbolic α counts as non-zero); columns are the computability classes. Every
placement comes from :func:`lagrangian_family.classify` of a zoo name: nothing is typed in.

Each empty cell is then filled, when possible, by a positive combination of zoo members
with their default parameters bound, found by a general search (one member, then two, then
three, with small positive integer weights) and verified by classifying the combination.
When no combination exists the fill says why, with the algebra.

>>> from lagrangian_family.symbolic.classify import Computability
>>> t = table1()
>>> t.cells[("0", Computability.LIKELIHOOD_BASED)]
('vae', 'avb')
>>> t.where("infogan")
('α2·I_p', <Computability.UNARY_LIKELIHOOD_FREE: 'unary likelihood-free'>)
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache
from itertools import combinations, product
from math import gcd

import sympy

from lagrangian_family import zoo
from lagrangian_family.symbolic.classify import Classification, Computability, classify
from lagrangian_family.symbolic.dual import sign
from lagrangian_family.symbolic.normal_form import is_zero
from lagrangian_family.symbolic.objective import Objective, as_expr

#: The rows of Table 1: the mutual information part of the dual form.
ROW_ZERO = "0"
ROW_Q = "α1·I_q"
ROW_P = "α2·I_p"
ROW_BOTH = "α1·I_q + α2·I_p"
ROWS: tuple[str, ...] = (ROW_ZERO, ROW_Q, ROW_P, ROW_BOTH)
#: The columns of Table 1: the computability classes, easiest first.
COLUMNS: tuple[Computability, ...] = (
    Computability.LIKELIHOOD_BASED,
    Computability.UNARY_LIKELIHOOD_FREE,
    Computability.BINARY_LIKELIHOOD_FREE,
)
_PATTERN_ROW = {(False, False): ROW_ZERO, (True, False): ROW_Q, (False, True): ROW_P, (True, True): ROW_BOTH}
_ROW_PATTERN = {v: k for k, v in _PATTERN_ROW.items()}

Cell = tuple[str, Computability]


def mi_row(alpha1, alpha2) -> str:
    """The Table 1 row of a dual form's (α1, α2); a symbolic α counts as non-zero.

    >>> mi_row(sympy.Symbol("beta") - 1, 0)
    'α1·I_q'
    """
    return _PATTERN_ROW[(not is_zero(alpha1), not is_zero(alpha2))]


def short_class(c: Computability) -> str:
    """T1, T2, T3 (or '-' when not computable)."""
    return f"T{c.rank}" if c.rank else "-"


@dataclass(frozen=True)
class Fill:
    """What goes into an empty cell: a verified combination of zoo members, or why none exists.

    ``combination`` is readable text (``beta_vae(beta=4) + vmi``), ``objective`` the combined
    original objective and ``classification`` its classification (whose ``dual`` is the
    dual form); when nothing was found they are None and ``reason`` explains why.
    """

    cell: Cell
    combination: str | None = None
    objective: Objective | None = None
    classification: Classification | None = None
    reason: str | None = None

    @property
    def found(self) -> bool:
        return self.combination is not None

    @property
    def dual(self):
        """The dual form of the combination (None when nothing was found)."""
        return None if self.classification is None else self.classification.dual


@dataclass(frozen=True)
class Table1:
    """Table 1: ``cells`` maps (row, class) to zoo names, in zoo order; ``fills`` maps each
    empty cell to a :class:`Fill`; ``unplaced`` names the zoo models that fit no cell, and why."""

    cells: dict[Cell, tuple[str, ...]]
    fills: dict[Cell, Fill]
    unplaced: dict[str, str]
    searched: str = ""

    def where(self, name: str) -> Cell | None:
        """The (row, class) of a zoo model, or None when it fits no cell."""
        for cell, names in self.cells.items():
            if name in names:
                return cell
        return None

    def __str__(self) -> str:
        return render(self)


# -- members ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Member:
    name: str
    label: str  # name(param=default, ...)
    objective: Objective
    computability: Computability
    alpha: tuple[Fraction, Fraction] | None  # numeric α, None if unknown (no dual form)


def _fraction(x) -> Fraction | None:
    x = sympy.nsimplify(as_expr(x))
    if x.is_Rational:
        return Fraction(int(x.p), int(x.q))
    return None


def _number(v) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else str(v)


def _member(name: str) -> _Member:
    e = zoo.entry(name)
    obj = zoo.get(name, **e.parameters)
    label = name + ("(" + ", ".join(f"{k}={_number(v)}" for k, v in e.parameters.items()) + ")"
                    if e.parameters else "")
    c = classify(obj)
    alpha = None
    if c.dual is not None:
        a1, a2 = _fraction(c.dual.alpha1), _fraction(c.dual.alpha2)
        alpha = (a1, a2) if a1 is not None and a2 is not None else None
    return _Member(name, label, obj, c.computability, alpha)


def _weightings(k: int, max_weight: int) -> list[tuple[int, ...]]:
    """Positive integer weight tuples of length k, coprime (no scalar multiples), smallest sum first."""
    ws = [w for w in product(range(1, max_weight + 1), repeat=k) if _gcd(w) == 1]
    return sorted(ws, key=lambda w: (sum(w), w))


def _gcd(ws) -> int:
    g = 0
    for w in ws:
        g = gcd(g, w)
    return g


def _combination_text(members, weights) -> str:
    return " + ".join((f"{w}·" if w != 1 else "") + m.label for m, w in zip(members, weights))


def _matches(c: Classification, cell: Cell) -> bool:
    """The combination is exactly in ``cell``, with a dual form whose multipliers are all ≥ 0."""
    if c.dual is None or c.computability is not cell[1] or c.conditions:
        return False
    if any(sign(lam) == -1 for lam in c.dual.lambdas):
        return False
    return mi_row(c.dual.alpha1, c.dual.alpha2) == cell[0]


def _search(members: list[_Member], empty: list[Cell], max_members: int, max_weight: int) -> dict[Cell, Fill]:
    """Fill the empty cells by positive combinations of members (fewest members, smallest weights first).

    Two necessary conditions prune the candidates before the (exact) classification that decides:
    α is linear, so α(Σ w_i m_i) = Σ w_i α(m_i); and the class of a combination is at most the
    hardest class of its members (a combination can cancel terms, never create new ones).
    """
    found: dict[Cell, Fill] = {}
    todo = list(empty)
    for k in range(1, max_members + 1):
        if not todo:
            break
        for weights in _weightings(k, max_weight):
            if not todo:
                break
            for group in combinations(members, k):
                if not todo:
                    break
                hardest = max((m.computability.rank or 4) for m in group)
                alpha = None
                if all(m.alpha is not None for m in group):
                    alpha = (sum(w * m.alpha[0] for m, w in zip(group, weights)),
                             sum(w * m.alpha[1] for m, w in zip(group, weights)))
                targets = [cell for cell in todo if hardest >= cell[1].rank
                           and (alpha is None or _PATTERN_ROW[(alpha[0] != 0, alpha[1] != 0)] == cell[0])]
                if not targets:
                    continue
                obj = Objective([])
                for m, w in zip(group, weights):
                    obj = obj + m.objective * w
                c = classify(obj)
                for cell in targets:
                    if _matches(c, cell):
                        found[cell] = Fill(cell, _combination_text(group, weights), obj, c)
                        todo.remove(cell)
                        break
    return found


# -- why a cell stays empty -------------------------------------------------------------------

@cache
def _alpha_image(k: int) -> tuple[tuple[Fraction, Fraction], ...]:
    """A spanning set of the (α1, α2) of the KL Lagrangians in span(T1 ∪ ... ∪ Tk).

    A vector in both spans is Σ a_j·t_j = α1·I_q + α2·I_p + Σ λ_i·KL_i; the null space of
    [T-generators | -(I_q, I_p, KLs)] gives every such (a, α, λ), and α is unique.
    """
    from lagrangian_family.symbolic import dictionary as dic
    from lagrangian_family.symbolic.linalg import term_vector

    gens = (dic.T1, dic.T1 + dic.T2, dic.T1 + dic.T2 + dic.T3)[k - 1]
    lagrangian = (dic.I_Q, dic.I_P) + dic.kl_dictionary()
    cols = [list(term_vector(t)) for t in gens] + [[-x for x in term_vector(t)] for t in lagrangian]
    M = sympy.Matrix(cols).T
    out = []
    for n in M.nullspace():
        a1, a2 = n[len(gens)], n[len(gens) + 1]
        if a1 != 0 or a2 != 0:
            out.append((Fraction(int(a1.p), int(a1.q)), Fraction(int(a2.p), int(a2.q))))
    return tuple(out)


def _pattern_possible(k: int, row: str) -> bool:
    """Does some KL Lagrangian in span(T1..Tk) have the α pattern of ``row`` (λ signs aside)?"""
    image = sympy.Matrix([list(v) for v in _alpha_image(k)]) if _alpha_image(k) else sympy.zeros(0, 2)
    rank = image.rank() if image.rows else 0
    want = _ROW_PATTERN[row]
    if want == (False, False):
        return True
    if rank == 2:
        return True
    if rank == 0:
        return False
    a1, a2 = next((v for v in _alpha_image(k) if any(v)), (0, 0))
    return (a1 != 0, a2 != 0) == want


def _why_empty(cell: Cell, members: list[_Member], max_members: int, max_weight: int) -> str:
    row, cls = cell
    k = cls.rank
    classes = "T1" + "".join(f" ∪ T{i}" for i in range(2, k + 1))
    if not _pattern_possible(k, row):
        need = {ROW_Q: "α1 ≠ 0 with α2 = 0", ROW_P: "α2 ≠ 0 with α1 = 0", ROW_BOTH: "α1 ≠ 0 and α2 ≠ 0"}[row]
        return (f"impossible: the (α1, α2) of every KL Lagrangian in span({classes}) lie in the span of "
                f"{', '.join(f'({a}, {b})' for a, b in _alpha_image(k)) or 'nothing'}, so none has {need}; "
                "non-KL divergences are separate coordinates and do not change α")
    a1_needed, a2_needed = _ROW_PATTERN[row]
    easy = [m for m in members if m.computability.rank is not None and m.computability.rank <= k]
    hard = [m for m in members if m.computability.rank == k]
    missing = []
    if not hard:
        missing.append(f"no zoo member is {cls} (a positive combination is never harder than its hardest member)")
    upto = classes.replace(" ∪ ", "/")
    for needed, i, name in ((a1_needed, 0, "α1"), (a2_needed, 1, "α2")):
        if needed and not any(m.alpha is not None and m.alpha[i] != 0 for m in easy):
            missing.append(f"no zoo member of class {upto} has {name} ≠ 0, and α is linear, "
                           f"so every combination of them has {name} = 0")
        if needed or not hard or any(m.alpha is None or m.alpha[i] == 0 for m in hard):
            continue
        signs = {m.alpha[i] > 0 for m in easy if m.alpha is not None and m.alpha[i] != 0}
        if len(signs) == 1 and all(m.alpha is not None for m in easy):
            s = ">" if signs.pop() else "<"
            missing.append(f"every {cls} member has {name} {s} 0 and no member of class {upto} has the opposite "
                           f"sign, so with positive weights every combination that is {cls} has {name} {s} 0")
    head = (f"no combination of up to {max_members} zoo members with weights 1..{max_weight} lands here, "
            f"although the pattern is possible in principle (a KL Lagrangian in span({classes}) has it)")
    return head + (": " + "; ".join(missing) if missing else "")


# -- the table ----------------------------------------------------------------------------------

def table1(names=None, *, max_members: int = 3, max_weight: int = 3) -> Table1:
    """Table 1 from the zoo (or from ``names``, a subset of it), with its empty cells filled.

    >>> t = table1()
    >>> fill = t.fills[("α1·I_q + α2·I_p", Computability.LIKELIHOOD_BASED)]
    >>> fill.combination, fill.dual.alpha1, fill.dual.alpha2
    ('beta_vae(beta=4) + vmi', 3, -1)
    """
    key = tuple(zoo.names() if names is None else (zoo.entry(n).name for n in names))
    return _table1(key, max_members, max_weight)


@lru_cache(maxsize=16)
def _table1(names: tuple[str, ...], max_members: int, max_weight: int) -> Table1:
    cells: dict[Cell, list[str]] = {(r, c): [] for r in ROWS for c in COLUMNS}
    unplaced: dict[str, str] = {}
    for name in names:
        c = classify(name)
        if c.computability not in COLUMNS:
            unplaced[name] = f"{c.computability}: " + "; ".join(c.reasons)
        elif c.dual is None:
            unplaced[name] = f"no dual form: {c.dual_reason}"
        else:
            cells[(mi_row(c.dual.alpha1, c.dual.alpha2), c.computability)].append(name)
    empty = [cell for cell, ns in cells.items() if not ns]
    members = [_member(n) for n in names]
    fills = _search(members, empty, max_members, max_weight)
    for cell in empty:
        if cell not in fills:
            fills[cell] = Fill(cell, reason=_why_empty(cell, members, max_members, max_weight))
    searched = (f"fills: positive combinations of up to {min(max_members, len(names))} of {len(names)} zoo members "
                f"(default parameters), weights 1..{max_weight}, verified by classification")
    return Table1({k: tuple(v) for k, v in cells.items()}, {c: fills[c] for c in empty}, unplaced, searched)


# -- rendering ----------------------------------------------------------------------------------

def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=True) or [""]


def render(result: Table1, width: int = 96) -> str:
    """Table 1 as plain text: fixed-width columns, long cells wrapped, fills listed underneath.

    >>> print(render(table1()))  # doctest: +ELLIPSIS
    Table 1: ...
    ...| 0               | vae, avb ...
    ...
    """
    label_w = max(len(r) for r in ROWS)
    col_w = max(12, (width - label_w - 3 * len(COLUMNS) - 4) // len(COLUMNS))
    marks = {cell: f"[{i}]" for i, cell in enumerate(result.fills, 1)}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, [label_w] + [col_w] * len(COLUMNS))) + " |"

    rule = "+" + "+".join("-" * (w + 2) for w in [label_w] + [col_w] * len(COLUMNS)) + "+"
    heads = [["MI part"]] + [[short_class(c)] + _wrap(str(c), col_w) for c in COLUMNS]
    out = ["Table 1: the zoo by mutual information part (rows) and computability (columns)", rule]
    out += [line([h[i] if i < len(h) else "" for h in heads]) for i in range(max(len(h) for h in heads))]
    out.append(rule.replace("-", "="))
    for row in ROWS:
        blocks = [_wrap(row, label_w)]
        for col in COLUMNS:
            names = result.cells[(row, col)]
            if names:
                blocks.append(_wrap(", ".join(names), col_w))
            else:
                fill = result.fills[(row, col)]
                text = f"{marks[(row, col)]} " + (fill.combination if fill.found else "none exists")
                blocks.append(_wrap("(empty) " + text, col_w))
        height = max(len(b) for b in blocks)
        for i in range(height):
            out.append(line([b[i] if i < len(b) else "" for b in blocks]))
        out.append(rule)
    if result.fills:
        out.append("")
        out.append("Empty cells, filled by combinations of zoo members:")
        for cell, fill in result.fills.items():
            row, col = cell
            head = f"{marks[cell]} {short_class(col)} ({col}), {row}: "
            indent = " " * 4
            if fill.found:
                out += textwrap.wrap(head + fill.combination, width, subsequent_indent=indent)
                d = fill.dual
                out.append(f"{indent}alpha1 = {sympy.sstr(d.alpha1)}, alpha2 = {sympy.sstr(d.alpha2)}, "
                           f"{'enforces' if d.enforces_consistency else 'does not enforce'} consistency")
                out += textwrap.wrap("L ≡ " + str(d.objective()), width, initial_indent=indent,
                                     subsequent_indent=indent + "    ", break_on_hyphens=False)
            else:
                out += textwrap.wrap(head + "none exists: " + fill.reason, width, subsequent_indent=indent,
                                     break_on_hyphens=False)
    if result.unplaced:
        out.append("")
        out.append("Not in the table:")
        for name, why in result.unplaced.items():
            out += textwrap.wrap(f"{name}: {why}", width, initial_indent="  ", subsequent_indent="    ")
    if result.searched:
        out.append("")
        out += textwrap.wrap(result.searched, width)
    return "\n".join(out)
