"""The ``lagfam`` command: classify objectives, list the zoo, regenerate Table 1, check Theorem 1,
sample a trained model.

::

    lagfam classify beta_vae --derivation
    lagfam classify "JS(q(x) || p(x)) - E_{p(x,z)}[log q(z|x)]" --latex
    lagfam zoo
    lagfam table
    lagfam closure
    lagfam closure "KL(q(x,z) || p(x,z)) + 2 * KL(q(z) || p(z))" --families infovae,infogan
    lagfam train vae --budget smoke --out runs/vae
    lagfam sample runs/vae -n 1000 --out samples.npy --grid samples.png

Bad input prints ``error: <message>`` on stderr and exits with status 2, as argparse does for
usage errors, never a traceback: any :class:`~lagrangian_family.errors.ObjectiveError` (a bad
objective or option, a :class:`~lagrangian_family.data.DataError`, a damaged checkpoint, a folder
in use), a :class:`~lagrangian_family.errors.NonFiniteLossError` (a run that diverged) and an
``OSError`` on a path (a disk full, a folder removed while a run writes). Ctrl-C prints
``interrupted`` and exits with 130. Anything else is a bug and keeps its traceback.

Other modules add subcommands with :func:`add_command`, either directly or from a plugin
module listed in :data:`PLUGIN_MODULES` (imported, if it exists, when the parser is built):
such a module calls ``add_command`` when imported or defines ``register_cli(add_command)``.
``configure`` and ``run`` may be ``"module:function"`` strings, imported only when needed,
so that heavy imports (torch) happen only when the subcommand runs:

>>> add_command("hello", "say hello", None, lambda args: print("hello") or 0, replace=True)
>>> main(["hello"])
hello
0
>>> _ = COMMANDS.pop("hello")
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from lagrangian_family.errors import NonFiniteLossError, ObjectiveError

# -- the subcommand registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure(parser)`` adds its arguments, ``run(args) -> int | None`` runs it.

    Either may be a callable or a ``"module:attribute"`` string resolved on use.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None] | str | None
    run: Callable[[argparse.Namespace], int | None] | str


#: The registered subcommands, in the order ``lagfam --help`` lists them.
COMMANDS: dict[str, Command] = {}

#: Modules that may add subcommands (``demo``, ``experiment``); skipped when absent.
PLUGIN_MODULES: list[str] = ["lagrangian_family.experiments", "lagrangian_family.demo"]


def add_command(name: str, help: str, configure, run, *, replace: bool = False) -> None:
    """Register the subcommand ``lagfam NAME`` (see :class:`Command`).

    A second registration of the same name is an error unless ``replace=True``.
    """
    if name in COMMANDS and not replace:
        raise ValueError(f"lagfam subcommand {name!r} is already registered")
    COMMANDS[name] = Command(name, help, configure, run)


def _resolve(target):
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


_LOADED: set[str] = set()


def _load_plugins() -> None:
    """Import each plugin module once (if it exists) and let it register its subcommands."""
    for module in PLUGIN_MODULES:
        if module in _LOADED:
            continue
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except (ModuleNotFoundError, ValueError):
            continue
        _LOADED.add(module)
        try:
            mod = importlib.import_module(module)
            register = getattr(mod, "register_cli", None)
            if callable(register):
                register(add_command)
        except Exception as e:  # a broken plugin must not break the core commands
            print(f"warning: lagfam could not load the commands of {module}: {type(e).__name__}: {e}",
                  file=sys.stderr)


# -- formatting helpers -----------------------------------------------------------------------------

#: The widest output ``--width`` may ask for.
MAX_WIDTH = 1000


def _width(args=None) -> int:
    w = getattr(args, "width", None)
    if w:
        if int(w) > MAX_WIDTH:
            raise ObjectiveError(f"--width {w} is too wide", expected=f"a width of at most {MAX_WIDTH} columns",
                                 given=str(w), fix="e.g. --width 100")
        return max(60, int(w))
    return min(max(shutil.get_terminal_size((100, 24)).columns, 80), 100)


def _wrap(text: str, width: int, indent: str = "", subsequent: str | None = None) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=indent,
                         subsequent_indent=indent if subsequent is None else subsequent,
                         break_on_hyphens=False, break_long_words=False) or [indent.rstrip()]


def _field(label: str, value: str, width: int, label_w: int = 15) -> list[str]:
    """``label  value`` with the value wrapped and aligned under itself."""
    pad = " " * label_w
    lines = []
    for i, para in enumerate(value.split("\n")):
        head = label.ljust(label_w) if i == 0 else pad
        wrapped = _wrap(para, width - label_w, "", "  ")
        lines.append((head + wrapped[0]).rstrip())
        lines += [(pad + w).rstrip() for w in wrapped[1:]]
    return lines


def _table(headers: list[str], rows: list[list[str]], widths: list[int], gap: str = "  ") -> list[str]:
    """A plain fixed-width table; cells wrap within their column."""
    out = [gap.join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
           gap.join("-" * w for w in widths)]
    for row in rows:
        blocks = [_wrap(c, w) if c else [""] for c, w in zip(row, widths)]
        for i in range(max(len(b) for b in blocks)):
            out.append(gap.join((b[i] if i < len(b) else "").ljust(w) for b, w in zip(blocks, widths)).rstrip())
    return out


def _sstr(x) -> str:
    import sympy

    return sympy.sstr(x)


def _short_citation(citation: str) -> str:
    """``Higgins et al. 2017`` from a full citation.

    >>> _short_citation("Zhao, Song & Ermon, InfoVAE: Information Maximizing Variational Autoencoders, 2017")
    'Zhao et al. 2017'
    >>> _short_citation("Barber & Agakov, The IM algorithm, NIPS 2003")
    'Barber & Agakov 2003'
    """
    parts = citation.split(", ")
    authors = parts[0]
    if "&" not in authors and "et al" not in authors and len(parts) > 1 and "&" in parts[1]:
        authors = f"{authors} et al."
    elif authors.count("&") == 0 and "et al" not in authors and len(parts) > 1 and _is_name(parts[1]):
        authors = f"{authors} et al."
    years = re.findall(r"\b(?:19|20)\d\d\b", citation)
    return f"{authors} {years[-1]}" if years else authors


def _is_name(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][\w\-]+", text))


#: The most decimal digits a --set number may have (in its integer part, or after its point):
#: beyond that, printing its multipliers would hit Python's limit on integer conversion.
MAX_VALUE_DIGITS = 1000

_NUMBER = re.compile(r"[+-]?(?:(?P<int>\d[\d_]*)(?:\.(?P<frac>[\d_]*))?|\.(?P<frac2>\d[\d_]*))"
                     r"(?:[eE](?P<exp>[+-]?\d+))?")
_FRACTION = re.compile(r"[+-]?\d+\s*/\s*[+-]?\d+")


def _value(text: str, name: str = "value"):
    """A --set value: an int, a fraction, a float, or (for options) the text itself.

    Numbers must be finite and of at most :data:`MAX_VALUE_DIGITS` digits either side of the point.

    >>> _value("4"), _value("1/2"), _value("0.25"), _value("kl")
    (4, 1/2, 1/4, 'kl')
    """
    number = _NUMBER.fullmatch(text)
    if number or _FRACTION.fullmatch(text) or text.lower().lstrip("+-") in ("inf", "infinity", "nan"):
        digits = 0
        if number:
            mantissa = len((number["int"] or "").lstrip("0").replace("_", ""))
            exp = int(number["exp"]) if number["exp"] and len(number["exp"]) < 12 else (10**12 if number["exp"] else 0)
            frac = len((number["frac"] or number["frac2"] or "").replace("_", ""))
            digits = max(mantissa + exp, frac - exp)
        else:
            digits = max(len(part.strip().lstrip("+-")) for part in text.split("/")) if "/" in text else 0
        if digits > MAX_VALUE_DIGITS:
            raise ObjectiveError(f"--set {name}={_short(text)} is too large a number",
                                 expected=f"a number of at most {MAX_VALUE_DIGITS} digits either side of the point",
                                 given=f"about {digits} digits", fix="use a smaller value, e.g. 1e300")
    for conv in (int, Fraction, float):
        try:
            v = conv(text)
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ObjectiveError(f"--set {name}={text} is not a finite number", expected="a finite number",
                                 given=text, fix="use a finite value, e.g. --set beta=4")
        if isinstance(v, Fraction):
            import sympy

            return sympy.Rational(v.numerator, v.denominator)
        return v
    if _FRACTION.fullmatch(text):
        raise ObjectiveError(f"--set {name}={text} divides by zero", expected="a fraction with a non-zero "
                             "denominator", given=text, fix="e.g. --set beta=1/2")
    return text


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _name_value_pairs(pairs, flag: str, example: str, what: str, parse) -> dict:
    """``{name: parse(name, value)}`` for ``NAME=VALUE`` arguments of ``flag`` (``"a --set"``); a typed
    error names the malformed one (``example``: what a good one looks like, ``what``: the NAME's kind)."""
    out = {}
    for pair in pairs or ():
        name, eq, value = pair.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ObjectiveError(f"{flag} needs NAME=VALUE", expected=example, given=repr(pair),
                                 fix=f"write {what}, '=', then its value")
        out[name.strip()] = parse(name.strip(), value)
    return out


def _bindings(pairs) -> dict:
    return _name_value_pairs(pairs, "a --set", "e.g. --set beta=4 or --set divergence=kl", "the parameter name",
                             lambda name, value: _value(value.strip(), name))


# -- classify ---------------------------------------------------------------------------------------

def _objective_of(text: str, bindings: dict):
    from lagrangian_family import zoo
    from lagrangian_family.symbolic.classify import as_objective

    name = text.strip()
    key = name.lower().replace("-", "_")
    if key in zoo.names():
        return zoo.get(key, **bindings), zoo.entry(key)
    obj = as_objective(text)
    if bindings:
        bad = [k for k, v in bindings.items() if isinstance(v, str)]
        if bad:
            raise ObjectiveError("options apply to zoo models only", expected="numeric values for a text objective",
                                 given=", ".join(f"{k}={bindings[k]}" for k in bad), fix="use numbers, e.g. beta=4")
        obj = obj.subs(bindings)
    return obj, None


def _mi_effect(name: str, alpha) -> str:
    from lagrangian_family.symbolic.dual import sign

    s = sign(alpha)
    if s == 0:
        return "no preference"
    if s == 1:
        return f"minimises {name}"
    if s == -1:
        return f"maximises {name}"
    if alpha.could_extract_minus_sign():
        return f"maximises {name} when {_sstr(-alpha)} > 0, minimises it when {_sstr(-alpha)} < 0"
    return f"minimises {name} when {_sstr(alpha)} > 0, maximises it when {_sstr(alpha)} < 0"


def classification_text(c, width: int = 100, entry=None) -> str:
    """The classification of ``lagfam classify`` as aligned plain text.

    >>> from lagrangian_family.symbolic.classify import classify
    >>> print(classification_text(classify("vae")))  # doctest: +ELLIPSIS
    objective      -E_{q(x,z)}[log p(x|z)] + E_{q(x)}[KL(q(z|x) || p(z))]
    computability  likelihood-based (T1)
    dual form      L ≡ KL(q(x,z) || p(x,z))
      alpha1       0        (no preference)
      alpha2       0        (no preference)
      multipliers  λ        divergence
                   1        KL(q(x,z) || p(x,z))
    ...
    """
    from lagrangian_family.symbolic.objective import _text_coefficient, format_combination

    out: list[str] = []
    if entry is not None:
        out += _wrap(f"{entry.name}: {entry.title} ({_short_citation(entry.citation)})", width)
    out += _field("objective", str(c.objective), width)
    rank = c.computability.rank
    out += _field("computability", f"{c.computability}" + (f" (T{rank})" if rank else ""), width)
    for r in c.reasons:
        out += _wrap(r, width, " " * 15 + "- ", " " * 17)
    d = c.dual
    if d is None:
        out += _field("dual form", f"none: {c.dual_reason}", width)
    else:
        out += _field("dual form", "L ≡ " + str(d.objective()), width)
        # the λ column fits the coefficients, but never more than a quarter of the line: a longer
        # coefficient (beta=1e999, a long symbolic multiplier) gets a line of its own
        natural = max([len(_sstr(x)) for x in (d.alpha1, d.alpha2, *d.lambdas)] + [6]) + 2
        lam_w = min(natural, max(8, (width - 15) // 4))
        for label, a, mi in (("alpha1", d.alpha1, "I_q"), ("alpha2", d.alpha2, "I_p")):
            out += _field("  " + label, f"{_sstr(a).ljust(lam_w)} ({_mi_effect(mi, a)})", width)
        if d.multipliers:
            out.append(("  multipliers".ljust(15) + "λ".ljust(lam_w) + " divergence").rstrip())
            body_w = max(20, width - 15 - lam_w - 1)
            for lam, div in d.multipliers:
                body = _wrap(str(div), body_w)
                lam_s = _sstr(lam)
                if len(lam_s) >= lam_w:  # the coefficient alone, wrapped, then the divergence under the column
                    out += _wrap(lam_s, max(20, width - 15), " " * 15, " " * 17)
                    body_lines = body
                else:
                    out.append((" " * 15 + lam_s.ljust(lam_w) + " " + body[0]).rstrip())
                    body_lines = body[1:]
                out += [" " * (16 + lam_w) + b for b in body_lines]
        else:
            out += _field("  multipliers", "none", width)
        conds = ", ".join(_sstr(x) for x in d.conditions) if d.conditions else "none (every λ ≥ 0 as it stands)"
        out += _field("conditions", conds, width)
        if d.enforces_consistency:
            cons = "enforced: the divergences with λ > 0 force p(x,z) = q(x,z)"
        else:
            cons = ("not enforced: no joint divergence, and no marginal with its matching conditional, "
                    "has λ > 0, so p(x,z) = q(x,z) is not forced")
        out += _field("consistency", cons, width)
        if d.dropped:
            const = format_combination([(k, v) for k, v in d.dropped.items()], str, _text_coefficient)
            out += _field("dropped", f"{const} (a constant: original = dual form + {const})", width)
        else:
            out += _field("dropped", "nothing (original = dual form exactly)", width)
    return "\n".join(out)


def derivation_text(derivation, width: int = 100) -> str:
    """The derivation's steps, each wrapped, with its rule on the following line."""
    try:
        from lagrangian_family.symbolic.derivation import grouped
    except ImportError:  # pragma: no cover - the derivation module is part of the package
        return str(derivation)
    out = []
    for i, s in enumerate(derivation.steps):
        body = s.text or grouped(s.objective)
        head = "L = " if i == 0 else f"  {s.relation} "
        out += _wrap(body, width, head, " " * 6)
        if i:
            note = s.rule + (f": {s.detail}" if s.detail else "")
            out += _wrap(f"({note})", width, " " * 6, " " * 7)
    return "\n".join(out)


def _configure_classify(p: argparse.ArgumentParser) -> None:
    p.add_argument("objective", metavar="NAME|EXPR", help="a zoo name (lagfam zoo) or an objective in the text syntax")
    p.add_argument("--derivation", action="store_true", help="also print the derivation steps")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    p.add_argument("--set", dest="bindings", action="append", metavar="NAME=VALUE", default=[],
                   help="bind a parameter (beta=4) or choose a zoo option (divergence=kl); repeatable")


def _run_classify(args) -> int:
    from lagrangian_family.symbolic.classify import classify

    obj, entry = _objective_of(args.objective, _bindings(args.bindings))
    c = classify(obj)
    width = _width(args)
    if args.latex:
        print(c.latex())
        if args.derivation:
            print()
            print(c.derivation.latex())
        return 0
    print(classification_text(c, width, entry))
    if args.derivation:
        print()
        print("derivation:")
        print(derivation_text(c.derivation, width))
    return 0


# -- zoo --------------------------------------------------------------------------------------------

def zoo_text(width: int = 100) -> str:
    """Every zoo model: name, title, class, α1, α2, citation, and its original objective below."""
    from lagrangian_family import zoo
    from lagrangian_family.symbolic.classify import classify

    rows = []
    objectives = []
    for name in zoo.names():
        e = zoo.entry(name)
        c = classify(name)
        a1 = _sstr(c.dual.alpha1) if c.dual is not None else "-"
        a2 = _sstr(c.dual.alpha2) if c.dual is not None else "-"
        rank = c.computability.rank
        rows.append([name, e.title, f"T{rank}" if rank else "-", a1, a2, _short_citation(e.citation)])
        objectives.append(str(c.objective))
    headers = ["name", "title", "class", "alpha1", "alpha2", "citation"]
    fixed = [max(len(r[0]) for r in rows), 0, 5, max(8, *(len(r[3]) for r in rows)),
             max(8, *(len(r[4]) for r in rows)), 0]
    rest = width - sum(fixed) - 2 * (len(headers) - 1)
    fixed[1] = max(14, rest * 11 // 20)
    fixed[5] = max(12, rest - fixed[1])
    out = _table(headers, [rows[0]], fixed)[:2]
    for row, obj in zip(rows, objectives):
        out += _table(headers, [row], fixed)[2:]
        out += _wrap("L = " + obj, width, "    ", "        ")
    out.append("")
    out += _wrap("class: T1 likelihood-based, T2 unary likelihood-free, T3 binary likelihood-free "
                 "(paper, Definition 2); alpha1, alpha2 multiply I_q, I_p in the dual form (lagfam classify NAME).",
                 width)
    return "\n".join(out)


def _run_zoo(args) -> int:
    print(zoo_text(_width(args)))
    return 0


# -- table ------------------------------------------------------------------------------------------

def _configure_table(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-members", type=int, default=3, help="most zoo members in a fill (default 3)")
    p.add_argument("--max-weight", type=int, default=3, help="largest integer weight in a fill (default 3)")


#: Bounds of ``lagfam table``'s search (it tries up to max_weight ** max_members weightings per group).
TABLE_LIMITS = {"--max-members": 5, "--max-weight": 10}


def _run_table(args) -> int:
    from lagrangian_family.table import render, table1

    for option, value in (("--max-members", args.max_members), ("--max-weight", args.max_weight)):
        high = TABLE_LIMITS[option]
        if not 1 <= value <= high:
            raise ObjectiveError(f"{option} {value} is out of range", expected=f"an integer from 1 to {high}",
                                 given=str(value), fix=f"e.g. {option} 3 (the default); larger searches take "
                                 "exponentially longer and the default already fills every cell that can be")

    print(render(table1(max_members=args.max_members, max_weight=args.max_weight), width=_width(args)))
    return 0


# -- closure ----------------------------------------------------------------------------------------

def _configure_closure(p: argparse.ArgumentParser) -> None:
    p.add_argument("objective", metavar="EXPR", nargs="?",
                   help="an objective (or zoo name) to write over model families")
    p.add_argument("--families", metavar="a,b,c",
                   help="comma-separated zoo names (default: Theorem 1's families of the objective's class)")


def _run_closure(args) -> int:
    from lagrangian_family.symbolic import closure

    width = _width(args)
    if args.objective is None:
        if args.families:
            raise ObjectiveError("--families needs an objective", expected="lagfam closure EXPR --families a,b",
                                 given=f"--families {args.families}", fix="give the objective before --families")
        for r in closure.theorem1():
            print("\n".join(_wrap(str(r), width, "", "    ")))
        return 0
    if args.families:
        families = [f.strip() for f in args.families.split(",") if f.strip()]
    else:
        from lagrangian_family.symbolic.classify import classify

        c = classify(args.objective)
        if c.computability.rank is None:
            raise ObjectiveError("the objective is in no computability class, so Theorem 1 names no families",
                                 expected="a computable objective, or --families a,b,c",
                                 given=str(c.objective), fix="pass --families explicitly")
        families = list(closure.THEOREM_FAMILIES[c.computability.rank])
    if not families:
        raise ObjectiveError("no families given", expected="--families a,b,c (zoo names)", given=repr(args.families),
                             fix="e.g. --families beta_vae,vmi")
    result = closure.coefficients(args.objective, families)
    print("\n".join(_wrap(f"families: {', '.join(families)}", width, "", "    ")))
    print("\n".join(_wrap(str(result), width, "", "    ")))
    return 0


# -- the parser and main ----------------------------------------------------------------------------

add_command("classify", "classify an objective: computability, dual form, derivation",
            _configure_classify, _run_classify)
add_command("zoo", "list the zoo of models", None, _run_zoo)
add_command("table", "regenerate the paper's Table 1 from the zoo and fill its empty cells",
            _configure_table, _run_table)
add_command("closure", "Theorem 1 by exact computation, or an objective over model families",
            _configure_closure, _run_closure)
add_command("train", "train a zoo model or a text objective into a run folder (model, log, grids, metrics, report)",
            "lagrangian_family.train_command:configure", "lagrangian_family.train_command:run")
add_command("results", "write DIR/README.md: a table of the lagfam train runs under DIR, from their metrics.json",
            "lagrangian_family.results:configure", "lagrangian_family.results:run")
add_command("sample", "write N samples of a trained model (a run folder) as an (N, d) .npy array in [0, 1]",
            "lagrangian_family.sample_command:configure", "lagrangian_family.sample_command:run")
add_command("score", "score samples (FILE.npy) with a digit classifier: classes covered, confidence, Fréchet distance",
            "lagrangian_family.evaluate.command:configure", "lagrangian_family.evaluate.command:run")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``lagfam`` with every registered subcommand."""
    _load_plugins()
    parser = argparse.ArgumentParser(
        prog="lagfam",
        description="The objectives of latent variable generative models as Lagrangians "
                    "(Zhao, Song & Ermon, The Information Autoencoding Family).",
        epilog='example: lagfam classify "-E_{q(x,z)}[log p(x|z)] + beta * E_{q(x)}[KL(q(z|x) || p(z))]"',
    )
    parser.add_argument("--width", type=int, default=None, help="output width in columns (default: terminal, 80-100)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        configure = _resolve(cmd.configure)
        if configure is not None:
            configure(p)
        p.set_defaults(_command=cmd)
    return parser


def report_errors(run: Callable[[], int | None]) -> int:
    """Run ``run()`` and return its exit status; typed errors print ``error: <message>`` and give 2,
    Ctrl-C prints ``interrupted`` and gives 130 (see the module docstring).

    >>> report_errors(lambda: 3)
    3
    """
    try:
        rc = run()
    except (ObjectiveError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover - `lagfam zoo | head`
        try:  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except OSError as e:
        where = f" {e.filename}" if e.filename is not None else ""
        other = f" -> {e.filename2}" if e.filename2 is not None else ""
        print(f"error: cannot use{where}{other}: {e.strerror or e}\n"
              "fix: check that the path exists, is writable and the disk has room", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if rc is None else int(rc)


def main(argv=None) -> int:
    """Run ``lagfam`` with ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (2) and --help (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return report_errors(lambda: _resolve(args._command.run)(args))


if __name__ == "__main__":
    raise SystemExit(main())
