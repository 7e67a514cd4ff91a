"""The estimator registry: how each term of a computable objective is estimated.

Like ``torch.distributions.kl.register_kl`` and cvxpy's ``CANON_METHODS``, lowering is a
table keyed on the term's type (and, for divergences, its kind: KL, JS, MMD, W, D_f).
Each key holds named factories in order of preference; a factory takes the term and the
:class:`Context` and returns an :class:`Estimator`, or raises :class:`Reject` to let the
next one try (``accepts`` in cvxpy's reductions). The first that accepts wins, unless the
user names one (``estimators={"JS": "gan-saturating"}``) or passes an instance.

>>> from lagrangian_family.symbolic.terms import Divergence
>>> names = [name for name, _ in candidates(Divergence, "JS")]
>>> names[:2]
['gan', 'gan-saturating']

Register a new estimator for a term type with the decorator; ``default=True`` puts it
first (see :func:`register_estimator`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.terms import Divergence, Term

from .samples import Components, Samples


@dataclass
class Estimate:
    """What an estimator returns for one call.

    ``value``: the term's estimate (a scalar, up to the constants the algebra dropped);
    ``surrogate``: a scalar whose gradient is the model player's gradient when it differs from
    the value's (non-saturating GAN losses, score-function terms), else None;
    ``critic_loss``: the loss of the estimator's own critic (minimised by the critic player),
    or None for estimators without one.
    """

    value: torch.Tensor
    surrogate: torch.Tensor | None = None
    critic_loss: torch.Tensor | None = None


class Estimator(nn.Module):
    """Estimates one term from the shared :class:`~.samples.Samples` of a call.

    Subclasses set ``requires`` (the sample keys they read, see :data:`.samples.ORDER`)
    and implement ``forward(samples) -> Estimate``. An estimator that owns a critic network
    keeps it as a submodule; its parameters form the critic player's group.
    """

    requires: tuple[str, ...] = ()
    #: the registry choice this estimator was built from (``"name"`` or ``"name:key=value,..."``),
    #: set by :func:`build`; None when the user passed an instance or a factory (a model file
    #: records it, so that loading rebuilds the same estimator)
    choice: str | None = None
    #: the ranks of distributed training (a :class:`~.distributed.RankSync`), set by
    #: :meth:`.CompiledObjective.distribute` while the batch is sharded over them, else None; an
    #: estimator whose value is not a mean over the examples (MMD) uses it to compute on the
    #: global batch
    sync = None

    def __init__(self, term: Term):
        super().__init__()
        self.term = term

    def forward(self, s: Samples) -> Estimate:  # pragma: no cover - abstract
        """The term's :class:`Estimate` on the shared samples ``s`` of one call.

        Reads only the sample keys in ``requires``; the value is a mean over the batch, and the
        surrogate and critic loss are set where they differ from the value or exist.
        """
        raise NotImplementedError

    def extra_repr(self) -> str:
        return str(self.term)

    def describe(self) -> str:
        """How the term is estimated, in one line (``print(loss_fn)`` shows it for every term):
        the registered name (from :attr:`choice`), then what :meth:`extra_repr` says besides the term.

        >>> from lagrangian_family.symbolic.terms import Density, Divergence
        >>> class Mine(Estimator):
        ...     def extra_repr(self):
        ...         return f"{self.term}, by hand"
        >>> Mine(Divergence("MMD", Density("q", ("z",)), Density("p", ("z",)))).describe()
        'Mine: by hand'
        """
        head, text = str(self.term), self.extra_repr()
        if text.startswith(head):
            text = text[len(head):].lstrip(", ")
        if isinstance(getattr(self, "critic", None), nn.Module):
            text = "sampled, with a trained critic" + (f", {text}" if text else "")
        name = (self.choice or "").partition(":")[0] or type(self).__name__
        return f"{name}: {text}" if text else name


class Reject(Exception):
    """Raised by a factory that cannot estimate a term with these components; the message says why."""

    def __init__(self, message: str, fix: str | None = None, *, applicable: bool = True):
        super().__init__(message)
        self.fix = fix
        #: False when the estimator does not apply to this kind of term at all (its reason is
        #: then shown only if no applicable estimator gave one)
        self.applicable = applicable


@dataclass
class Context:
    """What a factory may use to build an estimator.

    ``components``: the probed :class:`~.samples.Components`; ``critic``: the user's network
    for this term, if any (input ``(n, d)``, the flattened samples, x before z for joints;
    output ``(n,)`` or ``(n, 1)``); ``options``: keyword options of the chosen estimator (from
    ``"name:key=value"`` in ``estimators=``); ``settings``: compile-wide settings.
    """

    components: Components
    critic: nn.Module | None = None
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


Factory = Callable[[Term, Context], Estimator]

_REGISTRY: dict[tuple[type, str | None], list[tuple[str, Factory]]] = {}


def register_estimator(term_type: type, kind: str | None = None, *, name: str | None = None,
                       default: bool = False):
    """Decorator: register a factory ``(term, context) -> Estimator`` for a term type.

    ``kind`` narrows a :class:`~lagrangian_family.symbolic.terms.Divergence` key to one family
    ("KL", "JS", "MMD", "W", "D_f"). ``name`` is how users pick it in ``estimators=``
    (default: the function's name). ``default=True`` tries it before the built-in ones.
    A factory raises :class:`Reject` when it cannot handle the term with these components.

    >>> from lagrangian_family.symbolic.terms import Divergence
    >>> @register_estimator(Divergence, "MMD", name="my-mmd")
    ... def my_mmd(term, ctx):
    ...     raise Reject("only a doctest")
    >>> "my-mmd" in dict(candidates(Divergence, "MMD"))
    True
    >>> unregister_estimator(Divergence, "MMD", "my-mmd")
    """

    def deco(factory: Factory) -> Factory:
        key = (term_type, kind)
        entries = _REGISTRY.setdefault(key, [])
        label = name or factory.__name__
        entries[:] = [(n, f) for n, f in entries if n != label]
        if default:
            entries.insert(0, (label, factory))
        else:
            entries.append((label, factory))
        return factory

    return deco


def unregister_estimator(term_type: type, kind: str | None, name: str) -> None:
    """Remove a registered factory (for tests and experiments)."""
    entries = _REGISTRY.get((term_type, kind), [])
    entries[:] = [(n, f) for n, f in entries if n != name]


def term_kind(term: Term) -> str | None:
    return term.kind if isinstance(term, Divergence) else None


def candidates(term_type: type, kind: str | None = None) -> list[tuple[str, Factory]]:
    """The registered (name, factory) pairs for a term type and kind, most preferred first.

    Factories registered for the kind come before those for the type as a whole, and a
    type's entries before its base classes'.
    """
    out: list[tuple[str, Factory]] = []
    for cls in term_type.__mro__:
        if kind is not None:
            out += _REGISTRY.get((cls, kind), [])
        out += _REGISTRY.get((cls, None), [])
    seen: set[str] = set()
    unique = []
    for n, f in out:
        if n not in seen:
            seen.add(n)
            unique.append((n, f))
    return unique


def parse_choice(choice: str) -> tuple[str, dict[str, Any]]:
    """``"mmd:kernel=imq,biased=false"`` -> ("mmd", {"kernel": "imq", "biased": False})."""
    name, _, rest = choice.partition(":")
    opts: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in part:
            opts.setdefault("f", part)  # "fgan:pearson" names the f
            continue
        k, v = (s.strip() for s in part.split("=", 1))
        low = v.lower()
        if low in ("true", "false"):
            opts[k] = low == "true"
        else:
            try:
                opts[k] = int(v)
            except ValueError:
                try:
                    opts[k] = float(v)
                except ValueError:
                    opts[k] = v
    return name.strip(), opts


def build(term: Term, ctx: Context, choice=None) -> Estimator:
    """The estimator for ``term``: the user's choice (an Estimator, a factory, a name or
    ``"name:options"``), else the first registered factory that accepts.

    Raises :class:`ObjectiveError` naming the term and every reason for rejection, or when
    ``choice`` is none of the accepted kinds.
    """
    if isinstance(choice, Estimator):
        return choice
    if choice is not None and not isinstance(choice, str) and callable(choice):
        return choice(term, ctx)
    entries = candidates(type(term), term_kind(term))
    if choice is not None and not isinstance(choice, str):
        text = repr(choice)
        raise ObjectiveError(
            f"bad estimator choice for {term}",
            expected="a registered name ('name' or 'name:option=value,...'), a factory "
            "(term, context) -> Estimator, or an Estimator instance",
            given=f"{type(choice).__name__} {text if len(text) <= 40 else text[:37] + '...'}",
            fix="pick one of " + ", ".join(repr(n) for n, _ in entries) if entries
            else "register an estimator with register_estimator",
        )
    if isinstance(choice, str):
        name, opts = parse_choice(choice)
        table = dict(entries)
        if name not in table:
            raise ObjectiveError(
                f"unknown estimator {name!r} for {term}",
                expected="one of " + ", ".join(repr(n) for n, _ in entries),
                given=repr(choice),
                fix="pick a registered name, or register one with register_estimator",
            )
        entries = [(name, table[name])]
        ctx = Context(ctx.components, ctx.critic, {**ctx.options, **opts}, ctx.settings)
    rejections: list[tuple[str, Reject]] = []
    for name, factory in entries:
        try:
            est = factory(term, ctx)
        except Reject as r:
            rejections.append((name, r))
        else:
            if isinstance(est, Estimator) and est.choice is None:
                opts = ",".join(f"{k}={v}" for k, v in ctx.options.items())
                est.choice = f"{name}:{opts}" if opts else name
            return est
    shown = [(n, r) for n, r in rejections if r.applicable] or rejections
    grouped: dict[str, list[str]] = {}
    for n, r in shown:
        grouped.setdefault(str(r), []).append(n)
    reasons = [f"{', '.join(ns)}: {msg}" for msg, ns in grouped.items()]
    fixes = [r.fix for _, r in shown if r.fix]
    if not entries:
        reasons.append(f"no estimator is registered for {type(term).__name__} terms")
    raise ObjectiveError(
        f"cannot estimate {term} with these components",
        expected="an estimator that accepts the term",
        given="; ".join(reasons),
        fix=fixes[0] if fixes else "rewrite the term, change the component, or register an estimator",
    )
