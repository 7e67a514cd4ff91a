"""Fuzz the symbolic layer: parse, print, parse again, classify; count what goes wrong (targets: 0).

    OMP_NUM_THREADS=1 python bench/fuzz_symbolic.py [--n 20000] [--seed 0] [--guard 10] [--slow 2]

Inputs (seeded, so a run is reproducible), in five groups:

* ``valid``: objectives of one to four terms whose coefficients are drawn by
  ``tests.strategies.objective_text_from`` (the grammar the hypothesis round-trip property
  draws from): huge and tiny numbers, decimals, nested ``exp``, negative bases to irrational
  powers, powers of sums, ``Abs``, ``sign``, ``E``, ``pi``;
* ``mutated``: those texts with characters deleted, duplicated, swapped or replaced by
  operators, brackets, digits and letters;
* ``garbage``: random sequences of the syntax's tokens and of arbitrary characters;
* ``huge``: inputs of 10,000 to 200,000 characters (many terms, many names, long numbers,
  deep brackets, long sums under a power);
* ``names``: objectives with 10 to 5,000 distinct parameter names.

Each input goes through ``parse``, ``str`` of the result, ``parse`` of that text (it must give
the same objective: the round trip), and ``classify`` with the text ``lagfam classify`` prints
(and the derivation with ``--derivation``). Each step is timed in CPU seconds
(``time.process_time``: other processes on the machine do not count) and the whole input runs
under a CPU-time guard (``setitimer(ITIMER_PROF)``, ``--guard`` seconds) that stops a hang.
Printed: the counts of accepted and refused inputs, of **untyped exceptions** (anything but an
``ObjectiveError``), of **inputs over ``--slow`` CPU-seconds** and of **round-trip failures**,
with examples of each, then the slowest inputs.

Measured (2026-12-06, ``--n 20000 --seed 0``, OMP_NUM_THREADS=1, on the shared 2-core machine
with a load average of 6 to 7 from other jobs, which inflates CPU seconds too): 320 CPU-seconds
in all; 8,419 inputs accepted, 11,581 refused (6,643 LimitError, 4,937 ObjectiveError, 1
ComputationError); **0 untyped exceptions, 0 round-trip failures, 1 input over 2 CPU-seconds**
(2.29 s, none stopped by the guard): ``((lambda + lambda + lambda_1 + 1)**15)**(beta) * ... +
E_{p(z)}[D_f(p(x|z) || q(x))] * (log(sign(eps)) - 0.5 * (eps + eps + alpha + 1)**15) + ...``,
two coefficients of 136 monomials each (parse 0.35, read back 0.63, classify 1.29 s), 1.25 s
when run alone. The next slowest took 1.49 and 1.32 s. Before the limits (issue 7): 22
crashes and 111 classify calls over 5 s in 23,216 inputs, 41 round-trip failures.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lagrangian_family.cli import classification_text, derivation_text  # noqa: E402
from lagrangian_family.errors import ObjectiveError  # noqa: E402
from lagrangian_family.symbolic.classify import classify  # noqa: E402
from lagrangian_family.symbolic.parse import parse  # noqa: E402
from tests.strategies import _term_texts, objective_text_from  # noqa: E402

_TOKENS = ("KL", "JS", "MMD", "W", "D_f", "D_{KL}", "E_", "E_{", "}", "[", "]", "(", ")", "q", "p", "x", "z", "|",
           "||", ",", ";", "log", "exp", "sqrt", "Abs", "sign", "I_q", "I_p", "+", "-", "*", "/", "**", "^", "beta",
           "1e999", "0", "1", "pi", "E", " ", "(x;z)", "q(z|x)", "p(x|z)", "q(x,z)", "\u2016", "\\", "é", "\x00")
_MUTATIONS = "()[]{}|,;+-*/^ .eE0123456789xzpqIEab_"


class _Timeout(BaseException):
    """Raised by the CPU-time guard (a BaseException, so that no ``except Exception`` swallows it)."""


def _on_alarm(signum, frame):
    raise _Timeout()


# -- inputs --------------------------------------------------------------------------------------------

def inputs(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (group, text) pairs: 60% valid, 20% mutated, 6% garbage, 4% huge, 10% many names."""
    rng = random.Random(seed)
    choose = rng.randrange
    out: list[tuple[str, str]] = []
    counts = {"valid": int(n * 0.60), "mutated": int(n * 0.20), "garbage": int(n * 0.06), "huge": int(n * 0.04)}
    counts["names"] = n - sum(counts.values())
    for _ in range(counts["valid"]):
        out.append(("valid", objective_text_from(choose, max_terms=4, depth=rng.choice((1, 2, 3, 4)))))
    for _ in range(counts["mutated"]):
        text = list(objective_text_from(choose, max_terms=3, depth=rng.choice((1, 2, 3))))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(text))
            op = rng.randrange(4)
            if op == 0:
                del text[i]
            elif op == 1:
                text.insert(i, text[i])
            elif op == 2 and i + 1 < len(text):
                text[i], text[i + 1] = text[i + 1], text[i]
            else:
                text[i] = rng.choice(_MUTATIONS)
        out.append(("mutated", "".join(text)))
    for _ in range(counts["garbage"]):
        if rng.random() < 0.7:
            out.append(("garbage", "".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, 40)))))
        else:
            out.append(("garbage", "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randint(1, 80)))))
    terms = _term_texts()
    for k in range(counts["huge"]):
        size = rng.choice((10_000, 50_000, 100_000, 200_000))
        kind = k % 7
        if kind == 0:  # many terms, many names
            parts, total = [], 0
            while total < size:
                parts.append(f"b{rng.randrange(10**6)} * {rng.choice(terms)}")
                total += len(parts[-1]) + 3
            text = " + ".join(parts)
        elif kind == 1:  # the same term again and again
            text = " + ".join([rng.choice(terms)] * (size // 20))
        elif kind == 2:  # a long number
            text = "9" * size + " * KL(q(z) || p(z))"
        elif kind == 3:  # deep brackets
            d = size // 2
            text = "(" * d + "KL(q(z) || p(z))" + ")" * d
        elif kind == 4:  # a long sum of names under a power
            text = "(" + " + ".join(f"n{i}" for i in range(size // 8)) + ")**32 * KL(q(z) || p(z))"
        elif kind == 5:  # a long product
            text = "*".join(["(beta + 1)"] * (size // 11)) + " * KL(q(z) || p(z))"
        else:  # a long coefficient of ones
            text = "(" + "+".join(["1"] * (size // 2)) + ") * I_q(x;z)"
        out.append(("huge", text))
    for _ in range(counts["names"]):
        m = rng.choice((10, 30, 50, 51, 100, 1000, 5000))
        parts = [f"{rng.choice(('a', 'w', 'lambda_', 'c'))}{i} * {rng.choice(terms)}" for i in range(m)]
        out.append(("names", " + ".join(parts)))
    rng.shuffle(out)
    return out


# -- one input -------------------------------------------------------------------------------------------

def run_one(text: str, *, derivation: bool) -> dict:
    """Parse, print, parse again and classify ``text``; the outcome and the CPU seconds of each step."""
    r: dict = {"times": {}}

    def step(name, fn):
        t = time.process_time()
        try:
            return fn()
        finally:
            r["times"][name] = time.process_time() - t

    try:
        obj = step("parse", lambda: parse(text))
        printed = step("str", lambda: str(obj))
        try:
            again = step("reparse", lambda: parse(printed))
            if again != obj:
                r["roundtrip"] = f"parse(str(t)) != t: {printed[:200]!r} read back as {str(again)[:200]!r}"
        except ObjectiveError as e:
            r["roundtrip"] = f"parse(str(t)) raised: {printed[:200]!r}: {str(e).splitlines()[0][:150]}"

        def classified():
            c = classify(obj)
            out = classification_text(c)
            if derivation:
                out += derivation_text(c.derivation)
            return out

        step("classify", classified)
        r["outcome"] = "accepted"
    except ObjectiveError as e:
        r["outcome"] = "refused"
        r["error"] = type(e).__name__
    except _Timeout:
        raise
    except BaseException as e:  # noqa: BLE001 - counting untyped exceptions is the point
        if isinstance(e, KeyboardInterrupt):
            raise
        r["outcome"] = "untyped"
        r["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        r["where"] = traceback.format_exc().strip().splitlines()[-3][:200]
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="how many inputs (default 20000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guard", type=float, default=10.0, help="CPU seconds before an input is stopped")
    ap.add_argument("--slow", type=float, default=2.0, help="CPU seconds over which an input counts as slow")
    ap.add_argument("--derivation", action="store_true", help="also build and print the derivation")
    ap.add_argument("--examples", type=int, default=5, help="examples printed per kind of failure")
    args = ap.parse_args(argv)

    cases = inputs(args.n, args.seed)
    signal.signal(signal.SIGPROF, _on_alarm)
    outcomes: Counter = Counter()
    by_group: dict[str, Counter] = {}
    errors: Counter = Counter()
    untyped, slow, roundtrip, timeouts = [], [], [], []
    totals: list[tuple[float, str]] = []
    start = time.process_time()
    for k, (group, text) in enumerate(cases):
        t0 = time.process_time()
        signal.setitimer(signal.ITIMER_PROF, args.guard)
        try:
            r = run_one(text, derivation=args.derivation)
        except _Timeout:
            r = {"outcome": "timeout", "times": {}}
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        total = time.process_time() - t0
        outcomes[r["outcome"]] += 1
        by_group.setdefault(group, Counter())[r["outcome"]] += 1
        if "error" in r and r["outcome"] == "refused":
            errors[r["error"]] += 1
        if r["outcome"] == "untyped":
            untyped.append((group, text, r["error"], r.get("where", "")))
        if r["outcome"] == "timeout":
            timeouts.append((group, text))
        if total > args.slow:
            slow.append((total, group, text, r["times"]))
        if "roundtrip" in r:
            roundtrip.append((group, text, r["roundtrip"]))
        totals.append((total, text))
        if (k + 1) % 1000 == 0:
            print(f"  {k + 1} inputs, {time.process_time() - start:.0f} CPU-s, untyped {len(untyped)}, "
                  f"slow {len(slow)}, round trip {len(roundtrip)}", file=sys.stderr, flush=True)

    def show(text: str, width: int = 160) -> str:
        return repr(text) if len(text) <= width else repr(text[:width]) + f"... ({len(text)} characters)"

    print(f"inputs: {len(cases)} (seed {args.seed}); CPU time {time.process_time() - start:.1f} s")
    for group, c in sorted(by_group.items()):
        print(f"  {group:8s} {sum(c.values()):6d}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"accepted {outcomes['accepted']}, refused {outcomes['refused']} ("
          + ", ".join(f"{k} {v}" for k, v in errors.most_common()) + ")")
    print(f"untyped exceptions: {len(untyped)}")
    for group, text, err, where in untyped[:args.examples]:
        print(f"  [{group}] {show(text, 400)}\n      {err}\n      at {where}")
    print(f"inputs over {args.slow} CPU-seconds: {len(slow)} (stopped by the {args.guard} s guard: {len(timeouts)})")
    for total, group, text, times in sorted(slow, reverse=True)[:args.examples]:
        steps = ", ".join(f"{k} {v:.2f}" for k, v in times.items())
        print(f"  {total:.2f} s [{group}] {show(text, 400)} ({steps})")
    print(f"round-trip failures: {len(roundtrip)}")
    for group, text, why in roundtrip[:args.examples]:
        print(f"  [{group}] {show(text, 400)}\n      {why}")
    totals.sort(reverse=True)
    print("slowest inputs: " + "; ".join(f"{t:.2f} s {show(x, 60)}" for t, x in totals[:3]))
    return 1 if untyped or slow or roundtrip else 0


if __name__ == "__main__":
    raise SystemExit(main())
