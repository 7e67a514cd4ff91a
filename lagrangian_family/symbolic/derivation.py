"""Derivations: how an objective becomes its normal form, its computable form and its dual form,
as named rewrite steps (expand KL, chain rule, Bayes rule, drop a constant entropy, regroup),
in the style of the paper's section 4.

>>> import lagrangian_family as lf
>>> print(lf.classify("vae").derivation)  # doctest: +NORMALIZE_WHITESPACE
L  = -E_{q(x,z)}[log p(x|z)] + E_{q(x)}[KL(q(z|x) || p(z))]
   = E_{q(x,z)}[-log p(x|z) + log q(z|x) - log p(z)]                        (expand KL: ...)
...
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from lagrangian_family.symbolic.normal_form import expand_log, expand_term, rewrite_rule
from lagrangian_family.symbolic.objective import Objective, _latex_coefficient, format_combination, text_coefficient
from lagrangian_family.symbolic.terms import Density, Divergence, ExpectedLog, MutualInformation, Term


@dataclass(frozen=True)
class Step:
    """One line of a derivation: ``relation`` ('=' or '≡') the previous line, by ``rule``."""

    rule: str
    relation: str
    objective: Objective
    detail: str = ""
    text: str | None = None  # an expanded display of the objective, when more telling than str()
    latex_text: str | None = None


@dataclass(frozen=True)
class Derivation:
    """A chain of :class:`Step` s from the objective to its dual form."""

    steps: tuple[Step, ...]

    def __iter__(self):
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def rules(self) -> tuple[str, ...]:
        """The name of the rule each step applies, in order."""
        return tuple(s.rule for s in self.steps)

    def __str__(self) -> str:
        lines = []
        bodies = [s.text or grouped(s.objective) for s in self.steps]
        width = min(max(len(b) for b in bodies), 90)
        for i, (s, body) in enumerate(zip(self.steps, bodies)):
            head = "L " if i == 0 else "  "
            rel = "=" if i == 0 else s.relation
            note = "" if i == 0 else f"({s.rule}{': ' + s.detail if s.detail else ''})"
            lines.append(f"{head}{rel} {body.ljust(width)}  {note}".rstrip())
        return "\n".join(lines)

    def latex(self) -> str:
        """The derivation as a LaTeX ``aligned`` block, one step a row with its rule."""
        rows = []
        for i, s in enumerate(self.steps):
            body = s.latex_text or grouped(s.objective, latex=True)
            lhs = r"\mathcal{L} &" if i == 0 else "&"
            rel = "=" if i == 0 else (r"\equiv" if s.relation == "≡" else "=")
            note = "" if i == 0 else rf" && \text{{({s.rule})}}"
            rows.append(f"{lhs}{rel} {body}{note}")
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"


def _joint(family: str) -> Density:
    return Density(family, ("x", "z"))


def _log_items(items) -> tuple[list, list]:
    """Split objective items into ExpectedLog groups by frame and the other terms."""
    groups: dict[str, list] = {}
    rest = []
    for t, c in items:
        if isinstance(t, ExpectedLog):
            groups.setdefault(t.frame, []).append((t.density, c))
        else:
            rest.append((t, c))
    return groups, rest


def grouped(obj: Objective, *, latex: bool = False) -> str:
    """The objective with expectations of log-densities gathered under their frame's joint:
    ``E_{q(x,z)}[log q(z|x) - log p(z)] + JS(q(x) || p(x))`` (still parseable)."""
    groups, rest = _log_items(obj.items())
    pieces = []
    for frame, dens in groups.items():
        if len(dens) == 1:
            d, c = dens[0]
            pieces.append((ExpectedLog(Density(frame, tuple(d.scope)), d), c))
            continue
        inner = format_combination(
            dens, (lambda d: rf"\log {d.latex()}") if latex else (lambda d: f"log {d}"),
            _latex_coefficient if latex else _short_coef, times=r" \, " if latex else "*")
        pieces.append((_Bracket(_joint(frame), inner, latex), sympy.Integer(1)))
    pieces += rest
    if latex:
        return format_combination(pieces, lambda t: t.latex(), _latex_coefficient)
    return format_combination(pieces, str, _text_coef)


_short_coef = _text_coef = text_coefficient


class _Bracket:
    """A display-only E_{frame}[...] around an already formatted body."""

    def __init__(self, outer: Density, body: str, latex: bool):
        self.outer, self.body, self._latex = outer, body, latex

    def __str__(self) -> str:
        return f"E_{{{self.outer}}}[{self.body}]"

    def latex(self) -> str:
        return rf"\mathbb{{E}}_{{{self.outer.latex()}}}\left[{self.body}\right]"


def _expand_terms(obj: Objective) -> tuple[Objective, list[str]]:
    items, notes = [], []
    for t, c in obj.items():
        if isinstance(t, ExpectedLog):
            items.append((ExpectedLog(_joint(t.frame), t.density), c))
        elif t.opaque:
            items.append((t, c))
        else:
            pairs = expand_term(t)
            items += [(ExpectedLog(_joint(f), d), c * k) for (f, d), k in pairs]
            notes.append(_expansion_note(t))
    return Objective(items), list(dict.fromkeys(notes))


def _expansion_note(t: Term) -> str:
    if isinstance(t, MutualInformation):
        return "I_q = E_q[log q(z|x) - log q(z)]" if t.family == "q" else "I_p = E_p[log p(x|z) - log p(x)]"
    assert isinstance(t, Divergence)
    return f"KL({t.left} || {t.right}) = E_{t.frame}[log {t.left} - log {t.right}]"


def _rewrite(obj: Objective, rule: str) -> tuple[Objective, list[str]]:
    items, notes = [], []
    for t, c in obj.items():
        if isinstance(t, ExpectedLog) and rewrite_rule(t.density) == rule:
            parts = expand_log(t.density)
            items += [(ExpectedLog(t.outer, b), c * k) for b, k in parts]
            notes.append(f"log {t.density} = " + format_combination(parts, lambda d: f"log {d}", _short_coef, "*"))
        else:
            items.append((t, c))
    return Objective(items), list(dict.fromkeys(notes))


def _term_expansion_text(term: Term, latex: bool) -> str:
    """A dual-form term written as one expectation of log-densities (no basis rewriting)."""
    if term.opaque:
        return term.latex() if latex else str(term)
    pairs = expand_term(term)
    frame = pairs[0][0][0]
    dens = [(d, k) for (_, d), k in pairs]
    scope = frozenset().union(*[d.scope for d, _ in dens])
    outer = Density(frame, tuple(scope))
    if latex:
        body = format_combination(dens, lambda d: rf"\log {d.latex()}", _latex_coefficient, r" \, ")
        return rf"\mathbb{{E}}_{{{outer.latex()}}}\left[{body}\right]"
    return f"E_{{{outer}}}[" + format_combination(dens, lambda d: f"log {d}", _short_coef, "*") + "]"


def _minimal_outers(obj: Objective) -> Objective:
    """Each expectation of a log-density under the smallest marginal that binds it."""
    return Objective([
        (ExpectedLog(Density(t.frame, tuple(t.density.scope)), t.density) if isinstance(t, ExpectedLog) else t, c)
        for t, c in obj.items()
    ])


def derive(classification) -> Derivation:
    """The derivation of a :class:`~lagrangian_family.symbolic.classify.Classification`."""
    obj = classification.objective
    steps = [Step("objective", "=", obj)]
    current, notes = _expand_terms(obj)
    if notes:
        steps.append(Step("expand KL" if all("KL" in n for n in notes) else "expand KL and mutual information",
                          "=", current, "; ".join(notes)))
    for rule in ("chain rule", "Bayes rule"):
        nxt, notes = _rewrite(current, rule)
        if notes:
            steps.append(Step(rule, "=", nxt, "; ".join(notes)))
            current = nxt
    normal = classification.normal
    if normal.constants:
        names = []
        for a in normal.constants:
            names.append("E_{q(x)}[log q(x)] = -H_q(x)" if a.frame == "q" else "E_{p(z)}[log p(z)] = -H_p(z)")
        steps.append(Step("drop a constant entropy", "≡", normal.objective(), "; ".join(names)))
    elif _minimal_outers(current) != normal.objective():
        steps.append(Step("collect terms", "=", normal.objective()))
    cf = classification.computable_form
    if cf is not None and cf != obj and cf != normal.objective():
        steps.append(Step("computable terms", "≡", cf, f"{classification.computability}"))
    dual = classification.dual
    if dual is not None:
        items = [(t, c) for t, c in dual.objective().items()]
        text = format_combination(items, lambda t: _term_expansion_text(t, False), _text_coef)
        latex = format_combination(items, lambda t: _term_expansion_text(t, True), _latex_coefficient)
        steps.append(Step("regroup", "≡", dual.objective(), "add and subtract log-densities", text, latex))
        steps.append(Step("dual form", "=", dual.objective(),
                          f"alpha1 = {sympy.sstr(dual.alpha1)}, alpha2 = {sympy.sstr(dual.alpha2)}"))
    return Derivation(tuple(steps))
