"""The text syntax of objectives: a hand-written tokenizer and recursive-descent parser.

:func:`parse` turns text into an :class:`~lagrangian_family.symbolic.objective.Objective`.
It never evaluates the text (no ``eval``, no ``sympy.parse_expr``); coefficients are
built with sympy operations on numbers and :func:`~lagrangian_family.symbolic.objective.symbol` s.
``str()`` of every objective prints this syntax back, and ``parse(str(o)) == o``.

>>> o = parse("-E_{q(x,z)}[log p(x|z)] + beta * E_{q(x)}[KL(q(z|x) || p(z))]")
>>> str(o)
'-E_{q(x,z)}[log p(x|z)] + beta * E_{q(x)}[KL(q(z|x) || p(z))]'
>>> parse(str(o)) == o
True
>>> str(parse("E_{q(x,z)}[log q(z|x) - log p(x|z) - log p(z)]"))
'E_{q(x,z)}[log q(z|x)] - E_{q(x,z)}[log p(x|z)] - E_{q(x,z)}[log p(z)]'
>>> str(parse("beta * (E_{q(x,z)}[log q(z|x)] - E_{q(z)}[log p(z)])"))
'beta * E_{q(x,z)}[log q(z|x)] - beta * E_{q(z)}[log p(z)]'

Grammar (``||`` separates divergence arguments; ``^`` is a synonym of ``**``)::

    objective   := sum END
    sum         := product (('+' | '-') product)*
    product     := unary (('*' | '/') unary)*
    unary       := ('+' | '-') unary | power
    power       := primary (('**' | '^') unary)?
    primary     := NUMBER | NAME | '(' sum ')' | expectation | divergence | mutual_info
                 | 'log' log_operand | ('exp' | 'sqrt' | 'Abs' | 'sign') '(' sum ')'
    expectation := 'E_{' density '}' '[' sum ']' | 'E_q' args '[' sum ']' | 'E_p' args '[' sum ']'
    divergence  := KIND '(' density '||' density ')'
    mutual_info := ('I_q' | 'I_p') '(' VAR (';' | ',') VAR ')'
    log_operand := density | '(' density (('*' | '/') density)* ')' | '(' sum ')'
    density     := ('p' | 'q') '(' VAR (',' VAR)* ('|' VAR (',' VAR)*)? ')'

``KIND`` is ``KL``, ``JS``, ``MMD``, ``W`` or ``D_f``, or an alias ``D_KL``, ``D_JS``, ``D_MMD``,
``D_W`` (also written ``D_{KL}``...). ``VAR`` is ``x`` or ``z``. Inside an expectation the
``sum`` is a linear combination of ``log`` densities and conditional divergences; each one
becomes its own term under the same outer distribution. ``log(q(z|x) / p(z))`` is read as
``log q(z|x) - log p(z)``.

Coefficients are numbers (decimals and ``1e-3`` are exact rationals), parameter names (any
identifier that is not reserved: ``beta``, ``lambda``, ``lambda_1``...), the constants ``pi``
and ``E`` (Euler's number, as sympy prints it), arithmetic ``+ - * / ** ^`` and the functions
``sqrt``, ``exp``, ``log``, ``Abs`` and ``sign`` applied to coefficients (``sqrt(2) * KL(q(z) || p(z))``;
``str()`` writes ``sqrt(beta**2)`` as ``Abs(beta)``). Coefficients are kept in a canonical form
(:func:`~lagrangian_family.symbolic.objective.canonical`), and a coefficient that expanding would
write outside this syntax or make non-real is refused, so the printed text always reads back.
Resource limits (:mod:`~lagrangian_family.symbolic.limits`: the length of the text, the number of
parameters, the size of numbers, exponents and coefficients) are checked before sympy computes;
an input over one raises :class:`~lagrangian_family.errors.LimitError`. A
function or a power of a term is non-linear and rejected, as are products of terms, division
by a term, and constants added to an objective (they do not change the optimum). The only
constant objective accepted is ``0`` (what ``str()`` prints for the empty objective).

Reserved names: ``p q x z E pi log exp sqrt Abs sign I I_q I_p KL JS MMD W D_f D_KL D_JS D_MMD D_W``
and every name starting with ``E_``.

Every malformed input raises :class:`~lagrangian_family.errors.ObjectiveError` with a caret
under the offending position:

>>> parse("KL(q(z) || p(z)) + 3")
Traceback (most recent call last):
...
lagrangian_family.errors.ObjectiveError: a constant added to an objective
  KL(q(z) || p(z)) + 3
                     ^
expected: a linear combination of terms (constants do not change the optimum)
given: 3
fix: drop the constant
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from lagrangian_family.errors import ComputationError, LimitError, ObjectiveError, closest
from lagrangian_family.symbolic import limits as _limits
from lagrangian_family.symbolic.objective import Objective, symbol
from lagrangian_family.symbolic.terms import (
    DIVERGENCES,
    FAMILIES,
    VARIABLES,
    Density,
    Divergence,
    ExpectedLog,
    MutualInformation,
)

__all__ = ["parse", "tokenize", "Token", "DIVERGENCE_ALIASES", "RESERVED"]

#: Every spelling of a divergence family, mapped to its canonical name.
DIVERGENCE_ALIASES: dict[str, str] = {
    **{k: k for k in DIVERGENCES},
    "D_KL": "KL",
    "D_JS": "JS",
    "D_MMD": "MMD",
    "D_W": "W",
}
_FUNCTIONS = {"exp": sympy.exp, "sqrt": sympy.sqrt, "log": sympy.log, "Abs": sympy.Abs, "sign": sympy.sign}
_CONSTANTS = {"pi": sympy.pi, "E": sympy.E}
_MUTUAL_INFORMATIONS = ("I_q", "I_p")
#: The sympy types a coefficient may hold: what the printer writes and the parser reads.
_READABLE = (sympy.Add, sympy.Mul, sympy.Pow, sympy.Symbol, sympy.Rational, type(sympy.pi), type(sympy.E),
             sympy.exp, sympy.log, sympy.Abs, sympy.sign)
#: Names that are not parameters.
RESERVED: frozenset[str] = frozenset(
    set(FAMILIES) | set(VARIABLES) | set(DIVERGENCE_ALIASES) | set(_FUNCTIONS) | set(_CONSTANTS)
    | set(_MUTUAL_INFORMATIONS) | {"I"}
)


_WINDOW = 80  # the longest source line or 'given' an error message shows
_TWO_CHAR_OPS = ("||", "**")
_ONE_CHAR_OPS = "+-*/^()[]{}|,;"
_UNICODE_OPS = {"\u2016": "||", "\u2212": "-", "\u00b7": "*", "\u00d7": "*", "\u2225": "||"}


@dataclass(frozen=True)
class Token:
    """A token of the text syntax: ``kind`` is 'num', 'name', 'op' or 'end'."""

    kind: str
    text: str
    pos: int

    def describe(self) -> str:
        return "the end of the input" if self.kind == "end" else repr(self.text)


def _error(source: str, position: int, message: str, *, expected=None, given=None, fix=None,
           cls: type[ObjectiveError] = ObjectiveError, **extra) -> ObjectiveError:
    """An :class:`ObjectiveError` (or ``cls``, with ``extra`` arguments) whose caret points at
    ``position`` of ``source`` (its line)."""
    start = source.rfind("\n", 0, position) + 1
    end = source.find("\n", position)
    line = source[start:] if end < 0 else source[start:end]
    line = "".join(" " if not ch.isprintable() else ch for ch in line)
    column = position - start
    if len(line) > _WINDOW:  # show a window of a long line around the caret
        lo = max(0, column - _WINDOW // 2)
        hi = min(len(line), lo + _WINDOW)
        lo = max(0, hi - _WINDOW)
        line, column = ("..." if lo else "") + line[lo:hi] + ("..." if hi < len(line) else ""), column - lo + (
            3 if lo else 0)
    if given is not None and len(given) > _WINDOW:
        given = given[: _WINDOW - 3] + "..."
    return cls(message, expected=expected, given=given, fix=fix, position=column, source=line, **extra)


def _sstr(expr) -> str:
    """A short text of ``expr`` for messages (never a huge number)."""
    return _limits.describe(expr)


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _bare_message(err: ObjectiveError) -> str:
    """The first part of an error's message, without the caret and the expected/given/fix lines."""
    text = err.args[0] if err.args else str(err)
    tail = [f"{label}: {value}" for label, value in
            (("expected", err.expected), ("given", err.given), ("fix", err.fix)) if value is not None]
    suffix = "\n" + "\n".join(tail) if tail else ""
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)]
    if err.source is not None and err.position is not None:
        caret = f"\n  {err.source}\n  {' ' * err.position}^"
        if text.endswith(caret):
            text = text[: -len(caret)]
    return text


def _relocate(err: ObjectiveError, source: str, position: int) -> ObjectiveError:
    """The same error, pointing at ``position`` of ``source`` (errors from term constructors)."""
    if err.source is not None:
        return err
    return _error(source, position, _bare_message(err), expected=err.expected, given=err.given, fix=err.fix)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an 'end' token.

    >>> [t.text for t in tokenize("2*beta * KL(q(z) || p(z))")]
    ['2', '*', 'beta', '*', 'KL', '(', 'q', '(', 'z', ')', '||', 'p', '(', 'z', ')', ')', '']
    """
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if text.startswith(_TWO_CHAR_OPS, i):
            tokens.append(Token("op", text[i:i + 2], i))
            i += 2
            continue
        if ch in _ONE_CHAR_OPS:
            tokens.append(Token("op", ch, i))
            i += 1
            continue
        if ch in _UNICODE_OPS:
            tokens.append(Token("op", _UNICODE_OPS[ch], i))
            i += 1
            continue
        if ch in "0123456789" or (ch == "." and i + 1 < n and text[i + 1] in "0123456789"):
            j = i
            while j < n and text[j] in "0123456789":
                j += 1
            if j < n and text[j] == ".":
                j += 1
                while j < n and text[j] in "0123456789":
                    j += 1
            if j < n and text[j] in "eE":
                k = j + 1
                if k < n and text[k] in "+-":
                    k += 1
                if k < n and text[k] in "0123456789":
                    while k < n and text[k] in "0123456789":
                        k += 1
                    j = k
            tokens.append(Token("num", text[i:j], i))
            i = j
            continue
        if ch == "_" or ch.isalpha():
            j = i + 1
            while j < n and (text[j] == "_" or text[j].isalnum()):
                j += 1
            tokens.append(Token("name", text[i:j], i))
            i = j
            continue
        if ch == "\\":
            raise _error(text, i, "LaTeX is not part of the text syntax",
                         expected="the text syntax, e.g. E_{q(x,z)}[log p(x|z)] or KL(q(z) || p(z))",
                         given=repr(text[i:i + 12]), fix="write E_{...}[...] instead of \\mathbb{E}_{...}[...]")
        raise _error(text, i, f"unexpected character {ch!r}",
                     expected="densities p(...) and q(...), E_{...}[...], KL(... || ...), I_q(x;z), numbers, "
                              "names and + - * / ** ( )",
                     given=repr(ch), fix="remove the character")
    tokens.append(Token("end", "", n))
    return _merge_subscripts(tokens)


def _merge_subscripts(tokens: list[Token]) -> list[Token]:
    """``D_{KL}`` and ``I_{q}`` as the single names ``D_KL`` and ``I_q``."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if (t.kind == "name" and t.text in ("D_", "I_") and i + 3 < len(tokens)
                and [(u.kind, u.text) for u in (tokens[i + 1], tokens[i + 3])] == [("op", "{"), ("op", "}")]
                and tokens[i + 2].kind == "name"):
            out.append(Token("name", t.text + tokens[i + 2].text, t.pos))
            i += 4
            continue
        out.append(t)
        i += 1
    return out


# -- values built while parsing ----------------------------------------------------------------

_SCALAR, _OBJECTIVE, _INNER = "scalar", "objective", "inner"


@dataclass(frozen=True)
class _Pending:
    """A divergence inside an expectation, waiting for the outer distribution."""

    kind: str
    left: Density
    right: Density

    def __str__(self) -> str:
        return f"{self.kind}({self.left} || {self.right})"


@dataclass
class _Value:
    """A parsed sub-expression.

    ``kind`` is 'scalar' (``value`` a sympy expression), 'objective' (a list of (term, coef))
    or 'inner' (a list of (log density or pending divergence, coef, position): the inside of
    an expectation).
    """

    kind: str
    value: object
    pos: int

    def scaled(self, factor: sympy.Expr) -> _Value:
        if self.kind == _SCALAR:
            return _Value(_SCALAR, self.value * factor, self.pos)
        if self.kind == _OBJECTIVE:
            return _Value(_OBJECTIVE, [(t, c * factor) for t, c in self.value], self.pos)
        return _Value(_INNER, [(t, c * factor, p) for t, c, p in self.value], self.pos)

    def describe(self) -> str:
        if self.kind == _SCALAR:
            return _sstr(self.value)
        if self.kind == _OBJECTIVE:
            return str(Objective(self.value)) if self.value else "an objective"
        return " + ".join(f"log {t}" if isinstance(t, Density) else str(t) for t, _, _ in self.value) or "0"


def _names_of(vars_) -> str:
    return ",".join(vars_)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.inside: Density | None = None  # set while parsing the body of an expectation
        self.limits = _limits.current()
        self.checker = _limits.CoefficientChecker()
        self.count_parameters()

    def count_parameters(self) -> None:
        """Refuse more distinct parameter names than the limit, before sympy sees any of them."""
        seen: dict[str, Token] = {}
        for k, t in enumerate(self.tokens):
            nxt = self.tokens[min(k + 1, len(self.tokens) - 1)]
            called = nxt.kind == "op" and nxt.text == "("
            if (t.kind == "name" and t.text not in RESERVED and not t.text.startswith(("E_", "D_", "I_"))
                    and t.text not in seen and not called):
                seen[t.text] = t
                if len(seen) > self.limits.parameters:
                    names = list(seen)
                    given = ", ".join(names[:5]) + (f"... ({len(names)} or more)" if len(names) > 5 else "")
                    raise self.limit_error(t.pos, "parameters",
                                           f"too many parameters: {len(seen)} distinct names",
                                           expected=f"at most {self.limits.parameters} distinct parameter names",
                                           given=given, fix="use fewer parameters")

    # -- token helpers -----------------------------------------------------------------------
    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.peek()
        if tok.kind != "end":
            self.i += 1
        return tok

    def at(self, text: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == "op" and tok.text == text

    def at_name(self, names=None, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == "name" and (names is None or tok.text in names)

    def error(self, position: int, message: str, **kw) -> ObjectiveError:
        return _error(self.text, position, message, **kw)

    def limit_error(self, position: int, limit: str, what: str, **kw) -> LimitError:
        """A :class:`LimitError` for ``limit`` with a caret at ``position``."""
        err = _limits.refusal(limit, what, **kw)
        return _error(self.text, position, _bare_message(err), expected=err.expected, given=err.given, fix=err.fix,
                      cls=LimitError, limit=err.limit, value=err.value)

    def located(self, err: ObjectiveError, position: int) -> ObjectiveError:
        """``err`` (a limit or computation error of a coefficient) with a caret at ``position``."""
        extra = ({"limit": err.limit, "value": err.value} if isinstance(err, LimitError)
                 else {"subject": err.subject, "stage": err.stage} if isinstance(err, ComputationError) else {})
        return _error(self.text, position, _bare_message(err), expected=err.expected, given=err.given, fix=err.fix,
                      cls=type(err), **extra)

    def expect(self, text: str, context: str, fix: str | None = None) -> Token:
        tok = self.peek()
        if tok.kind == "op" and tok.text == text:
            return self.advance()
        closing = {")": "(", "]": "[", "}": "{"}
        message = f"syntax error: expected {text!r} {context}"
        if text in closing and tok.kind == "end":
            message = f"unbalanced {closing[text]!r}: expected {text!r} {context}"
        raise self.error(tok.pos, message, expected=repr(text), given=tok.describe(), fix=fix)

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > self.limits.depth:
            raise self.limit_error(pos, "depth", "the objective nests too deeply",
                                   expected=f"at most {self.limits.depth} nested parentheses or signs",
                                   given=f"more than {self.limits.depth}", fix="simplify the expression")

    # -- grammar -----------------------------------------------------------------------------
    def parse(self) -> Objective:
        if self.peek().kind == "end":
            raise self.error(0, "empty objective", expected="an objective, e.g. KL(q(x,z) || p(x,z))",
                             given="an empty string", fix="write the objective to analyse")
        value = self.sum()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == "op" and tok.text in ")]}":
                opening = {")": "(", "]": "[", "}": "{"}[tok.text]
                raise self.error(tok.pos, f"unbalanced {tok.text!r}",
                                 expected=f"a {tok.text!r} only to close a {opening!r}", given=tok.describe(),
                                 fix=f"remove the {tok.text!r} or add the matching {opening!r}")
            raise self.error(tok.pos, f"unexpected {tok.describe()} after a complete expression",
                             expected="an operator (+ - * /) or the end of the objective", given=tok.describe(),
                             fix="write an explicit '*' for products, or remove the trailing text")
        if value.kind == _SCALAR:
            if value.value == 0:
                return Objective()
            raise self.error(value.pos, "the objective is a constant",
                             expected="a linear combination of terms (constants do not change the optimum)",
                             given=_sstr(value.value), fix="write terms such as KL(q(x,z) || p(x,z))")
        if value.kind == _INNER:  # pragma: no cover - logs are rejected outside expectations
            raise self.error(value.pos, "log-densities outside an expectation",
                             expected="E_{...}[...] around log-densities", given=value.describe(),
                             fix="wrap the log-densities in an expectation")
        return self.objective(value)

    def objective(self, value: _Value) -> Objective:
        """The objective of the parsed terms: coefficients expanded (refused first when that would
        give too many terms), checked again once expanded, and the printed form within the limits."""
        for _, coef in value.value:
            try:
                self.checker.expansion(coef)
            except ObjectiveError as e:
                raise self.located(e, value.pos) from e
        try:
            obj = _limits.guard("the coefficients", "expanding the coefficients", lambda: Objective(value.value))
        except ObjectiveError as e:
            raise _relocate(e, self.text, value.pos) from e
        for _, coef in obj.items():
            try:
                self.checker.check(coef)
            except ObjectiveError as e:
                raise self.located(e, value.pos) from e
            self.readable(coef, value.pos)
        try:
            printed = len(_limits.guard("the objective", "printing the objective", lambda: str(obj)))
        except ObjectiveError as e:
            raise self.located(e, value.pos) from e
        if printed > self.limits.text:
            raise self.limit_error(value.pos, "text", f"the objective prints as {printed} characters",
                                   expected=f"objectives of at most {self.limits.text} characters once expanded "
                                            "(str() of the objective must read back)",
                                   given=f"{printed} characters", fix="use smaller powers of sums")
        return obj

    def sum(self) -> _Value:
        tok = self.peek()
        self.enter(tok.pos)
        value = self.product()
        while self.at("+") or self.at("-"):
            op = self.advance()
            right = self.product()
            value = self.add(value, right if op.text == "+" else right.scaled(sympy.Integer(-1)), op)
        self.depth -= 1
        return value

    def product(self) -> _Value:
        value = self.unary()
        while self.at("*") or self.at("/"):
            op = self.advance()
            right = self.unary()
            value = self.multiply(value, right, op) if op.text == "*" else self.divide(value, right, op)
        return value

    def unary(self) -> _Value:
        if self.at("-") or self.at("+"):
            op = self.advance()
            self.enter(op.pos)
            value = self.unary()
            self.depth -= 1
            value = value if op.text == "+" else value.scaled(sympy.Integer(-1))
            return _Value(value.kind, value.value, op.pos)
        return self.power()

    def power(self) -> _Value:
        base = self.primary()
        if self.at("**") or self.at("^"):
            op = self.advance()
            self.enter(op.pos)
            exponent = self.unary()
            self.depth -= 1
            return self.raise_power(base, exponent, op)
        return base

    def primary(self) -> _Value:
        tok = self.peek()
        if tok.kind == "num":
            self.advance()
            return _Value(_SCALAR, self.number(tok), tok.pos)
        if tok.kind == "name":
            return self.name()
        if self.at("("):
            self.advance()
            value = self.sum()
            self.expect(")", "to close the '(' opened", fix="balance the parentheses")
            return _Value(value.kind, value.value, tok.pos)
        if tok.kind == "end":
            raise self.error(tok.pos, "unexpected end of the input",
                             expected="a term, a number or a parameter name", given=tok.describe(),
                             fix="complete the expression")
        if tok.text == "[":
            raise self.error(tok.pos, "a '[' outside an expectation",
                             expected="'[' only after E_{...}", given=tok.describe(),
                             fix="use parentheses for grouping, E_{q(x,z)}[...] for expectations")
        raise self.error(tok.pos, f"syntax error: unexpected {tok.describe()}",
                         expected="a term, a number or a parameter name", given=tok.describe(),
                         fix="check the operators and brackets around this position")

    # -- leaves ------------------------------------------------------------------------------
    def number(self, tok: Token) -> sympy.Expr:
        text = tok.text
        digits = self.limits.digits
        if _limits.literal_digits(text) > digits:
            raise self.limit_error(tok.pos, "digits", f"the number {_short(text)} is too large (too many digits)",
                                   expected=f"numbers of at most {digits} digits (numerator and denominator), "
                                            f"e.g. 1e{digits - 1} or 1e-{digits - 1}",
                                   given=_short(text, _WINDOW), fix="use a smaller number")
        try:
            value = sympy.Rational(text)
        except (ValueError, TypeError, ArithmeticError, sympy.SympifyError) as e:
            raise self.error(tok.pos, f"cannot read the number {_short(text)}",
                             expected="a number such as 2, 0.5 or 1e-3", given=text,
                             fix="write a shorter number", cls=ComputationError, subject=text,
                             stage="reading a number") from e
        return self.check_scalar(value, tok.pos, f"the number {_short(text)}")

    def name(self) -> _Value:
        tok = self.peek()
        name = tok.text
        nxt = self.peek(1)
        if name == "E_" or (name.startswith("E_") and len(name) > 2):
            return self.expectation()
        if name == "E" and self.at("[", 1):
            raise self.error(tok.pos, "an expectation without its distribution",
                             expected="E_{dist}[...], e.g. E_{q(x,z)}[log p(x|z)]", given="E[...]",
                             fix="write the distribution as a subscript: E_{q(x,z)}[...]")
        if name in DIVERGENCE_ALIASES:
            return self.divergence()
        if name in _MUTUAL_INFORMATIONS or (name == "I" and self.at("(", 1)):
            return self.mutual_information()
        if name == "log":
            return self.log()
        if name in _FUNCTIONS:
            return self.function()
        if name in _CONSTANTS:
            self.advance()
            return _Value(_SCALAR, _CONSTANTS[name], tok.pos)
        if name in FAMILIES:
            what = f"{name}(...)"
            if nxt.kind == "op" and nxt.text == "(":
                what = str(self.density("here"))  # reports unknown or repeated variables first
            raise self.error(tok.pos, f"a density {what} on its own is not a term",
                             expected="log-densities inside an expectation, or divergences between densities",
                             given=what, fix=f"write E_{{...}}[log {what}] or KL(q(...) || p(...))")
        if name in VARIABLES:
            raise self.error(tok.pos, f"{name} is a variable, not a coefficient",
                             expected="a number or a parameter name (beta, lambda...)", given=name,
                             fix=f"use {name} only inside densities such as q(z|x)")
        if name == "I":
            raise self.error(tok.pos, "I is the mutual information and needs its family",
                             expected="I_q(x;z) or I_p(x;z)", given=name, fix="write I_q(x;z) or I_p(x;z)")
        if nxt.kind == "op" and nxt.text == "(":
            raise self.unknown_call(tok)
        self.advance()
        return _Value(_SCALAR, symbol(name), tok.pos)

    def unknown_call(self, tok: Token) -> ObjectiveError:
        name = tok.text
        if name.startswith("I_"):
            return self.error(tok.pos, f"unknown mutual information {name!r}", expected="I_q(x;z) or I_p(x;z)",
                              given=repr(name), fix="write I_q(x;z) (under q(x,z)) or I_p(x;z) (under p(x,z))")
        depth, has_bars, only_vars = 0, False, True
        for t in self.tokens[self.i + 1:]:
            if t.kind == "op" and t.text == "(":
                depth += 1
                continue
            if t.kind == "op" and t.text == ")":
                depth -= 1
                if depth == 0:
                    break
                continue
            if t.kind == "end":
                break
            if t.kind == "op" and t.text == "||" and depth == 1:
                has_bars = True
            if not ((t.kind == "name" and len(t.text) == 1) or (t.kind == "op" and t.text in ",|;")):
                only_vars = False
        if has_bars:
            hint = closest(name, DIVERGENCE_ALIASES)
            return self.error(tok.pos, f"unknown divergence {name!r}",
                              expected="one of " + ", ".join(DIVERGENCES) + " (or D_KL, D_JS, D_MMD, D_W)",
                              given=repr(name),
                              fix=f"did you mean {' or '.join(hint)}?" if hint else "write KL, JS, MMD, W or D_f")
        if only_vars:
            hint = closest(name, list(FAMILIES) + list(_MUTUAL_INFORMATIONS))
            return self.error(tok.pos, f"unknown distribution {name!r}",
                              expected="one of the two model families, q (data and encoder) or p "
                                       "(prior and decoder)",
                              given=repr(name),
                              fix=f"did you mean {' or '.join(hint)}?" if hint else "write q(...) or p(...)")
        candidates = list(_FUNCTIONS) + list(DIVERGENCE_ALIASES) + list(_MUTUAL_INFORMATIONS)
        hint = closest(name, candidates)
        return self.error(tok.pos, f"unknown function {name!r}",
                          expected="sqrt, exp or log of a coefficient, a divergence KL(a || b), "
                                   "or a density p(...), q(...)",
                          given=repr(name),
                          fix=(f"did you mean {' or '.join(hint)}? " if hint else "")
                          + "for a product write an explicit '*'")

    def variables(self, context: str) -> tuple[tuple[str, ...], list[Token]]:
        names, toks = [], []
        while True:
            tok = self.peek()
            if tok.kind != "name":
                raise self.error(tok.pos, f"syntax error: expected a variable {context}",
                                 expected="x or z", given=tok.describe(), fix="write for example q(z|x)")
            if tok.text not in VARIABLES:
                raise self.error(tok.pos, f"unknown variable {tok.text!r} {context}",
                                 expected="variables " + " and ".join(VARIABLES), given=repr(tok.text),
                                 fix="use x for the observed variable and z for the latent one")
            if tok.text in names:
                raise self.error(tok.pos, f"the variable {tok.text} is repeated {context}",
                                 expected="each variable once", given=tok.text, fix="remove the repetition")
            names.append(tok.text)
            toks.append(self.advance())
            if not self.at(","):
                return tuple(names), toks
            self.advance()

    def density_args(self, family: str, start: int) -> Density:
        """``(vars | given)`` after a family name; ``start`` is where the density began."""
        self.expect("(", f"after the distribution {family}", fix=f"write {family}(z|x), {family}(x) or {family}(x,z)")
        vars_, _ = self.variables(f"in {family}(...)")
        given: tuple[str, ...] = ()
        if self.at("|"):
            self.advance()
            given, gtoks = self.variables(f"after '|' in {family}(...)")
            for g, t in zip(given, gtoks):
                if g in vars_:
                    raise self.error(t.pos, f"a variable is both the argument and the condition of "
                                            f"{family}({_names_of(vars_)}|{_names_of(given)})",
                                     expected="disjoint variables on each side of '|'", given=g,
                                     fix=f"write {family}(z|x) or {family}(x|z)")
        if self.at("||"):
            raise self.error(self.peek().pos, f"syntax error: expected ')' to close {family}(...)",
                             expected="')'", given="'||'", fix=f"close the density first: KL({family}(z) || ...)")
        self.expect(")", f"to close {family}(...)", fix=f"write {family}(z|x), {family}(x) or {family}(x,z)")
        try:
            return Density(family, vars_, given)
        except ObjectiveError as e:  # pragma: no cover - the checks above catch everything first
            raise _relocate(e, self.text, start) from e

    def density(self, context: str) -> Density:
        tok = self.peek()
        if tok.kind != "name":
            raise self.error(tok.pos, f"syntax error: expected a density {context}",
                             expected="a density such as q(z|x), p(x|z), q(x) or p(x,z)", given=tok.describe(),
                             fix="write p(...) or q(...)")
        if tok.text not in FAMILIES:
            hint = closest(tok.text, FAMILIES)
            raise self.error(tok.pos, f"unknown distribution {tok.text!r} {context}",
                             expected="one of the two model families, q (data and encoder) or p (prior and decoder)",
                             given=repr(tok.text),
                             fix=f"did you mean {' or '.join(hint)}?" if hint else "write q(...) or p(...)")
        self.advance()
        return self.density_args(tok.text, tok.pos)

    # -- compound terms ----------------------------------------------------------------------
    def expectation(self) -> _Value:
        tok = self.advance()
        if self.inside is not None:
            raise self.error(tok.pos, "an expectation inside an expectation",
                             expected="log-densities or one conditional divergence inside E_{...}[...]",
                             given="a nested E_", fix="write the inner expectation as a separate term")
        if tok.text == "E_":
            self.expect("{", "after E_", fix="write E_{q(x,z)}[...]")
            outer_pos = self.peek().pos
            outer = self.density("as the distribution of the expectation")
            self.expect("}", "after the distribution of the expectation", fix="write E_{q(x,z)}[...]")
        else:
            family = tok.text[2:]
            if family not in FAMILIES:
                hint = closest(family, FAMILIES)
                raise self.error(tok.pos + 2, f"unknown distribution {family!r} in the expectation {tok.text}",
                                 expected="E_{q(...)}[...] or E_{p(...)}[...]", given=repr(family),
                                 fix=f"did you mean E_{hint[0]}?" if hint else "write E_{q(x,z)}[...]")
            outer_pos = tok.pos + 2
            outer = self.density_args(family, outer_pos)
        if outer.is_conditional:
            raise self.error(outer_pos, f"the expectation over {outer} is under a conditional distribution",
                             expected="an expectation under a marginal or joint: q(x), q(z), q(x,z), p(x), p(z), "
                                      "p(x,z)",
                             given=str(outer),
                             fix="take the expectation under the joint, e.g. E_{q(x,z)}[...] instead of "
                                 "E_{q(z|x)}[...]")
        self.expect("[", f"after E_{{{outer}}}", fix=f"write E_{{{outer}}}[log ...]")
        self.inside = outer
        body = self.sum()
        self.expect("]", f"to close E_{{{outer}}}[...]", fix="balance the brackets")
        self.inside = None
        if body.kind == _SCALAR:
            raise self.error(body.pos, f"the expectation of a constant, E_{{{outer}}}[{body.describe()}]",
                             expected="log-densities or a conditional divergence inside the expectation",
                             given=body.describe(), fix="drop the constant (it does not change the optimum)")
        pairs = []
        for item, coef, pos in body.value:
            try:
                if isinstance(item, Density):
                    term = ExpectedLog(outer, item)
                else:
                    term = Divergence(item.kind, item.left, item.right, outer)
            except ObjectiveError as e:
                raise _relocate(e, self.text, pos) from e
            pairs.append((term, coef))
        return _Value(_OBJECTIVE, pairs, tok.pos)

    def divergence(self) -> _Value:
        tok = self.advance()
        kind = DIVERGENCE_ALIASES[tok.text]
        example = f"{tok.text}(q(z) || p(z))"
        self.expect("(", f"after {tok.text}", fix=f"write {example}")
        left = self.density(f"as the first argument of {tok.text}")
        if not self.at("||"):
            t = self.peek()
            raise self.error(t.pos, f"syntax error: expected '||' between the arguments of {tok.text}",
                             expected="'||'", given=t.describe(), fix=f"write {example}")
        self.advance()
        right = self.density(f"as the second argument of {tok.text}")
        self.expect(")", f"to close {tok.text}(...)", fix=f"write {example}")
        if self.inside is not None:
            return _Value(_INNER, [(_Pending(kind, left, right), sympy.Integer(1), tok.pos)], tok.pos)
        try:
            term = Divergence(kind, left, right)
        except ObjectiveError as e:
            raise _relocate(e, self.text, tok.pos) from e
        return _Value(_OBJECTIVE, [(term, sympy.Integer(1))], tok.pos)

    def mutual_information(self) -> _Value:
        tok = self.advance()
        if tok.text == "I":
            raise self.error(tok.pos, "I is the mutual information and needs its family",
                             expected="I_q(x;z) or I_p(x;z)", given="I(...)", fix="write I_q(x;z) or I_p(x;z)")
        family = tok.text[2:]
        if self.inside is not None:
            raise self.error(tok.pos, f"the mutual information {tok.text}(x;z) inside an expectation",
                             expected="log-densities or one conditional divergence inside E_{...}[...]",
                             given=tok.text, fix=f"write {tok.text}(x;z) as a separate term")
        self.expect("(", f"after {tok.text}", fix=f"write {tok.text}(x;z)")
        first = self.peek()
        a, _ = self._one_variable(tok.text)
        if not (self.at(";") or self.at(",")):
            t = self.peek()
            raise self.error(t.pos, f"syntax error: expected ';' in {tok.text}(x;z)", expected="';'",
                             given=t.describe(), fix=f"write {tok.text}(x;z)")
        self.advance()
        b, _ = self._one_variable(tok.text)
        self.expect(")", f"to close {tok.text}(...)", fix=f"write {tok.text}(x;z)")
        try:
            term = MutualInformation(family, (a, b))
        except ObjectiveError as e:
            raise _relocate(e, self.text, first.pos) from e
        return _Value(_OBJECTIVE, [(term, sympy.Integer(1))], tok.pos)

    def _one_variable(self, context: str) -> tuple[str, Token]:
        tok = self.peek()
        if tok.kind != "name" or tok.text not in VARIABLES:
            raise self.error(tok.pos, f"expected a variable in {context}(x;z)", expected="x or z",
                             given=tok.describe(), fix=f"write {context}(x;z)")
        return self.advance().text, tok

    def log(self) -> _Value:
        tok = self.advance()
        if self.at("(") and self.at_name(FAMILIES, 1) and self.at("(", 2):
            self.advance()
            start = self.peek().pos
            items = [(self.density("after log"), sympy.Integer(1), start)]
            while self.at("*") or self.at("/"):
                op = self.advance()
                start = self.peek().pos
                d = self.density(f"after {op.text!r} inside log(...)")
                items.append((d, sympy.Integer(1 if op.text == "*" else -1), start))
            self.expect(")", "to close log(...)", fix="write log(q(z|x)) or log q(z|x) - log p(z)")
            return self.log_of(items, tok)
        if self.at("("):
            start = self.advance()
            value = self.sum()
            self.expect(")", "to close log(...)", fix="balance the parentheses")
            return self.apply_function("log", _Value(value.kind, value.value, start.pos), tok)
        if self.peek().kind == "name":
            start = self.peek().pos
            d = self.density("after log")
            return self.log_of([(d, sympy.Integer(1), start)], tok)
        t = self.peek()
        raise self.error(t.pos, "syntax error: expected a density after log", expected="log p(x|z), log q(z|x)...",
                         given=t.describe(), fix="write E_{q(x,z)}[log p(x|z)]")

    def log_of(self, items, tok: Token) -> _Value:
        if self.inside is None:
            d = items[0][0]
            text = self.text[tok.pos:self.tokens[self.i - 1].pos + 1]
            q_outer = Density("q", tuple(d.scope))
            p_outer = Density("p", tuple(d.scope))
            raise self.error(tok.pos, f"{text} is outside an expectation",
                             expected="log-densities only inside E_{...}[...]", given=text,
                             fix=f"write E_{{{q_outer}}}[{text}] or E_{{{p_outer}}}[{text}]")
        return _Value(_INNER, list(items), tok.pos)

    def function(self) -> _Value:
        tok = self.advance()
        self.expect("(", f"after {tok.text}", fix=f"write {tok.text}(...) around a coefficient")
        start = self.tokens[self.i - 1]
        value = self.sum()
        self.expect(")", f"to close {tok.text}(...)", fix="balance the parentheses")
        return self.apply_function(tok.text, _Value(value.kind, value.value, start.pos), tok)

    # -- arithmetic --------------------------------------------------------------------------
    def check_scalar(self, expr, pos: int, what: str) -> sympy.Expr:
        if not isinstance(expr, sympy.Expr) or expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise self.error(pos, f"{what} is not a finite number", expected="a finite coefficient",
                             given=_sstr(expr), fix="check for a division by zero or a log of zero")
        try:
            self.checker.check(expr)
        except ObjectiveError as e:
            raise self.located(e, pos) from e
        # a sum or product of checked parts is real when they are (asking sympy costs seconds on long
        # sums); the whole coefficient is asked once more when the objective is built (readable)
        if (not self.checker.is_plain(expr) and not isinstance(expr, (sympy.Add, sympy.Mul))
                and (expr.has(sympy.I) or expr.is_extended_real is False)):
            raise self.error(pos, f"{what} is not a real number", expected="a real coefficient",
                             given=_sstr(expr), fix="check the signs under sqrt, log and fractional powers")
        try:
            self.checker.real(expr)
        except ObjectiveError as e:
            raise self.located(e, pos) from e
        return expr

    def scalar_op(self, fn, pos: int, what: str) -> sympy.Expr:
        try:
            expr = fn()
        except ObjectiveError:  # pragma: no cover - no toolkit code runs in fn
            raise
        except (RecursionError, MemoryError, OverflowError) as e:
            raise self.error(pos, f"{what} is too large to compute", expected="a moderate coefficient",
                             given=type(e).__name__, fix="simplify the coefficient",
                             cls=ComputationError, subject=what, stage="parsing") from e
        except Exception as e:  # sympy raises many types; none may escape the parser
            raise self.error(pos, f"cannot compute {what}", expected="a finite real coefficient",
                             given=f"{type(e).__name__}: {_short(str(e), _WINDOW)}", fix="simplify the coefficient",
                             cls=ComputationError, subject=what, stage="parsing") from e
        return self.check_scalar(expr, pos, what)

    def readable(self, coef, pos: int) -> None:
        """Refuse a coefficient that expanding made non-real or wrote with functions the syntax lacks
        (``Abs(exp(-sqrt(alpha)))`` becomes ``exp(-cos(atan2(0, alpha)/2)*sqrt(Abs(alpha)))``): what
        parse accepts, ``str()`` prints in the syntax, and the printed text reads back."""
        foreign = sorted({type(n).__name__ for n in sympy.preorder_traversal(coef)
                          if not isinstance(n, _READABLE)})
        if foreign:
            raise self.error(pos, f"the coefficient {_sstr(coef)} is not in the text syntax once expanded",
                             expected="numbers, parameters, pi, E, + - * / **, exp, log, sqrt, Abs and sign",
                             given=", ".join(foreign), fix="simplify the coefficient")
        if not _limits.is_plain_polynomial(coef) and (coef.has(sympy.I) or coef.is_extended_real is False):
            raise self.error(pos, f"the coefficient {_sstr(coef)} is not a real number once expanded",
                             expected="a real coefficient", given=_sstr(coef),
                             fix="check the signs under sqrt, log and fractional powers")

    def nonlinear(self, pos: int, message: str, given: str, fix: str) -> ObjectiveError:
        return self.error(pos, f"non-linear objective: {message}",
                          expected="a linear combination of terms with scalar coefficients", given=given, fix=fix)

    def add(self, a: _Value, b: _Value, op: Token) -> _Value:
        if a.kind == _SCALAR and b.kind == _SCALAR:
            return _Value(_SCALAR, self.scalar_op(lambda: a.value + b.value, op.pos, "the sum"), a.pos)
        if a.kind == b.kind:
            return _Value(a.kind, a.value + b.value, a.pos)
        if a.kind == _SCALAR or b.kind == _SCALAR:
            const, other = (a, b) if a.kind == _SCALAR else (b, a)
            if const.value == 0:
                return _Value(other.kind, other.value, a.pos)
            shown = _sstr(abs(const.value)) if const.value.is_number else _sstr(const.value)
            where = "inside an expectation" if other.kind == _INNER else "to an objective"
            raise self.error(const.pos, f"a constant added {where}",
                             expected="a linear combination of terms (constants do not change the optimum)",
                             given=shown, fix="drop the constant")
        raise self.error(op.pos, "log-densities outside an expectation",  # pragma: no cover - unreachable
                         expected="E_{...}[...] around log-densities", given=b.describe(),
                         fix="wrap the log-densities in an expectation")

    def multiply(self, a: _Value, b: _Value, op: Token) -> _Value:
        if a.kind == _SCALAR and b.kind == _SCALAR:
            return _Value(_SCALAR, self.scalar_op(lambda: a.value * b.value, op.pos, "the product"), a.pos)
        if a.kind == _SCALAR:
            return self.checked(_Value(b.kind, b.scaled(a.value).value, a.pos), op.pos)
        if b.kind == _SCALAR:
            return self.checked(a.scaled(b.value), op.pos)
        raise self.nonlinear(op.pos, "a product of two terms", f"({a.describe()}) * ({b.describe()})",
                             "multiply terms only by numbers or parameters, never by other terms")

    def divide(self, a: _Value, b: _Value, op: Token) -> _Value:
        if b.kind != _SCALAR:
            raise self.nonlinear(op.pos, "a division by a term", f"... / ({b.describe()})",
                                 "divide only by numbers or parameters")
        if b.value == 0:
            raise self.error(b.pos, "a division by zero", expected="a non-zero divisor", given="0",
                             fix="divide by a non-zero number")
        inverse = self.scalar_op(lambda: 1 / b.value, b.pos, "the divisor")
        if a.kind == _SCALAR:
            return _Value(_SCALAR, self.scalar_op(lambda: a.value * inverse, op.pos, "the quotient"), a.pos)
        return self.checked(a.scaled(inverse), op.pos)

    def checked(self, value: _Value, pos: int) -> _Value:
        """``value``, after checking the size of its coefficients."""
        for entry in value.value:
            try:
                self.checker.check(entry[1])
            except ObjectiveError as e:
                raise self.located(e, pos) from e
        return value

    def raise_power(self, base: _Value, exponent: _Value, op: Token) -> _Value:
        if base.kind != _SCALAR or exponent.kind != _SCALAR:
            raise self.nonlinear(op.pos, "a power involving a term",
                                 f"({base.describe()}) ** ({exponent.describe()})",
                                 "use powers only between numbers and parameters, e.g. beta**2 * KL(...)")
        b, e = base.value, exponent.value
        if b not in (sympy.Integer(0), sympy.Integer(1), sympy.Integer(-1)):
            # refuse before sympy computes the power: its magnitude, its exponent, its expansion
            unevaluated = sympy.Pow(b, e, evaluate=False)
            try:
                self.checker.check(unevaluated)
                self.checker.expansion(unevaluated)
            except ObjectiveError as err:
                raise self.located(err, op.pos) from err
        return _Value(_SCALAR, self.scalar_op(lambda: sympy.Pow(b, e), op.pos, "the power"), base.pos)

    def apply_function(self, name: str, arg: _Value, tok: Token) -> _Value:
        if arg.kind != _SCALAR:
            raise self.nonlinear(tok.pos, f"{name} of a term", f"{name}({arg.describe()})",
                                 f"apply {name} only to coefficients; terms enter linearly")
        if name == "exp":  # refuse exp(1e300) before sympy evaluates it
            try:
                self.checker.check(sympy.exp(arg.value, evaluate=False))
            except ObjectiveError as err:
                raise self.located(err, tok.pos) from err
        return _Value(_SCALAR, self.scalar_op(lambda: _FUNCTIONS[name](arg.value), tok.pos, f"{name}(...)"), tok.pos)


def parse(text: str) -> Objective:
    """The :class:`~lagrangian_family.symbolic.objective.Objective` written in ``text``.

    See the module documentation for the syntax. Raises
    :class:`~lagrangian_family.errors.ObjectiveError` on every malformed input.

    >>> str(parse("(beta - 1) * I_q(x;z) + beta * KL(q(z) || p(z))"))
    '(beta - 1) * I_q(x;z) + beta * KL(q(z) || p(z))'
    >>> parse("JS(p(x) || q(x))") == parse("JS(q(x) || p(x))")
    True
    >>> str(parse("E_q(x)[2 * KL(q(z|x) || p(z))] / 4"))
    '(1/2) * E_{q(x)}[KL(q(z|x) || p(z))]'
    >>> str(parse("E_{q(x,z)}[log(q(z|x) / p(z))]"))
    'E_{q(x,z)}[log q(z|x)] - E_{q(x,z)}[log p(z)]'
    >>> parse("E_{q(x)}[log p(x|z)]")
    Traceback (most recent call last):
    ...
    lagrangian_family.errors.ObjectiveError: the expectation over q(x) does not bind z in log p(x|z)
      E_{q(x)}[log p(x|z)]
                   ^
    expected: an expectation over every variable the inside mentions (x, z)
    given: E_{q(x)}[...]
    fix: take the expectation under q(x,z)
    """
    if not isinstance(text, str):
        raise ObjectiveError("parse takes a string", expected="the text of an objective",
                             given=f"{type(text).__name__} {_short(repr(text), _WINDOW)}",
                             fix="pass a string such as 'KL(q(x,z) || p(x,z))'")
    limit = _limits.current().text
    if len(text) > limit:
        raise _error(text, limit, f"the objective is {len(text)} characters long", cls=LimitError,
                     limit="text", value=limit,
                     expected=f"at most {limit} characters (the limit text = {limit})", given=f"{len(text)} characters",
                     fix="shorten the objective, or raise the limit: "
                         "lagrangian_family.symbolic.limits.set_limits(text=...)")
    return _Parser(text).parse()
