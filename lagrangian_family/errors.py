"""The error types of the toolkit.

Every malformed input raises :class:`ObjectiveError` (or one of its subclasses: :class:`LimitError`
for an input over a resource limit, :class:`ComputationError` for a coefficient sympy cannot
compute with). Its message says what was expected, what was given and how to fix it, in that
order, so that a user never has to read a traceback from inside the library.
"""

from __future__ import annotations


class ObjectiveError(ValueError):
    """Bad input to the toolkit: a malformed objective, an unknown name, a bad option.

    >>> import lagrangian_family as lf
    >>> try:
    ...     lf.parse("KL(q(z) || p(x))")
    ... except lf.ObjectiveError as e:
    ...     print(type(e).__name__)
    ObjectiveError
    """

    def __init__(self, message: str, *, expected: str | None = None, given: str | None = None,
                 fix: str | None = None, position: int | None = None, source: str | None = None):
        self.expected = expected
        self.given = given
        self.fix = fix
        self.position = position
        self.source = source
        parts = [message]
        if source is not None and position is not None:
            parts.append(f"  {source}\n  {' ' * position}^")
        if expected is not None:
            parts.append(f"expected: {expected}")
        if given is not None:
            parts.append(f"given: {given}")
        if fix is not None:
            parts.append(f"fix: {fix}")
        super().__init__("\n".join(parts))


class LimitError(ObjectiveError):
    """An input over a resource limit of the symbolic layer
    (:mod:`lagrangian_family.symbolic.limits`): ``limit`` names it, ``value`` is its value.

    >>> issubclass(LimitError, ObjectiveError)
    True
    """

    def __init__(self, message: str, *, limit: str, value: int, **kwargs):
        self.limit = limit
        self.value = value
        super().__init__(message, **kwargs)


class ComputationError(ObjectiveError):
    """sympy or mpmath failed on a coefficient (a comparison it cannot decide, a number Python
    cannot convert...): ``subject`` names the coefficient or the term, ``stage`` what was being
    computed.

    >>> issubclass(ComputationError, ObjectiveError)
    True
    """

    def __init__(self, message: str, *, subject: str | None = None, stage: str | None = None, **kwargs):
        self.subject = subject
        self.stage = stage
        super().__init__(message, **kwargs)


def closest(name: str, candidates, n: int = 3) -> list[str]:
    """The candidates closest to a misspelt ``name`` (for "did you mean" hints)."""
    import difflib

    cands = list(candidates)
    found = difflib.get_close_matches(name, cands, n=n, cutoff=0.5)
    if not found:
        low = name.lower().replace("-", "_")
        found = [c for c in cands if low in c or c in low][:n]
    return found


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or an infinity: in a batch of data, in a term of the loss, or in the
    parameters after an update diverged. The message names the examples, the term(s) or the
    parameters, and the fix.

    Defined here (no torch) so that the command line can report it; the torch backend raises it
    (``lagrangian_family.backends.torch.NonFiniteLossError`` is this class).

    >>> issubclass(NonFiniteLossError, FloatingPointError)
    True
    """
