"""Exact values of objectives and terms on a :class:`~.tables.DiscreteModel`.

Every term is computed from the tables in closed form (vectorised numpy, natural logs):

* ``ExpectedLog(outer, density)``: sum over the outer marginal or joint of outer * log density,
  with 0 log 0 = 0 (cells of zero outer weight contribute nothing) and -inf where the outer
  weight is positive and the density zero;
* ``MutualInformation``: I_q(x;z) under q(x,z), I_p(x;z) under p(x,z);
* ``Divergence``: KL, JS, MMD, W and D_f between joints or marginals, and between
  conditionals averaged over the outer distribution of the conditioning variable,
  E_{outer(c)}[D(left(.|c) || right(.|c))]. The conventions of each family (log base, kernel,
  ground metric, f) are those of :mod:`.divergences`: natural logs, JS in [0, log 2], squared
  MMD with a Gaussian kernel on evenly spaced positions in [0, 1] (product kernel on joints),
  W with |dx| + |dz| on joints, D_f with f(t) = t log t unless ``f=`` says otherwise.
  KL is +inf on a support mismatch. A conditional whose condition has probability zero
  (q(x|z) where q(z) = 0) has no mass: KL and D_f against it follow the same +inf rule, while
  JS, MMD and W against it are undefined and raise :class:`ObjectiveError`.

Coefficients are sympy expressions: their symbols are bound once per call from ``values``
(by name or by symbol) and the terms are then combined as floats. A term whose bound
coefficient is zero is skipped (so 0 * inf = 0).

>>> from lagrangian_family.symbolic.terms import Density, Divergence
>>> from lagrangian_family.backends.exact.tables import DiscreteModel
>>> m = DiscreteModel.random(3, 3, rng=0)
>>> kl = Divergence("KL", Density("q", ("z",)), Density("p", ("z",)))
>>> evaluate(kl, m) >= 0
True
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from lagrangian_family.backends.exact import divergences as dv
from lagrangian_family.backends.exact.tables import DiscreteModel
from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.objective import Objective, as_coefficient, as_expr
from lagrangian_family.symbolic.terms import Density, Divergence, ExpectedLog, MutualInformation, Term


def density_grid(model: DiscreteModel, density: Density) -> np.ndarray:
    """The table of a density on the (x, z) grid, with size-1 axes for absent variables.

    Axis 0 is x and axis 1 is z: q(x) has shape (nx, 1), p(z) (1, nz), q(z|x), p(x|z) and
    the joints (nx, nz), the value at [x, z] being the density there.

    >>> m = DiscreteModel.random(3, 2, rng=0)
    >>> density_grid(m, Density("p", ("x",), ("z",))).shape
    (3, 2)
    """
    key = (density.family, density.vars, density.given)
    tables = {
        ("q", ("x",), ()): lambda: model.q_x[:, None],
        ("q", ("z",), ()): lambda: model.q_z[None, :],
        ("q", ("x", "z"), ()): lambda: model.q_xz,
        ("q", ("z",), ("x",)): lambda: model.q_z_given_x,
        ("q", ("x",), ("z",)): lambda: model.q_x_given_z.T,
        ("p", ("x",), ()): lambda: model.p_x[:, None],
        ("p", ("z",), ()): lambda: model.p_z[None, :],
        ("p", ("x", "z"), ()): lambda: model.p_xz,
        ("p", ("x",), ("z",)): lambda: model.p_x_given_z.T,
        ("p", ("z",), ("x",)): lambda: model.p_z_given_x,
    }
    if key not in tables:  # pragma: no cover - terms.py admits only these ten densities of x and z
        raise ObjectiveError(f"the exact backend has no table for {density}", expected="a density of x and z",
                             given=str(density), fix="use densities of x and z only")
    return tables[key]()


def _expected_log(model: DiscreteModel, term: ExpectedLog) -> float:
    w = density_grid(model, term.outer)
    d = density_grid(model, term.density)
    w, d = np.broadcast_arrays(w, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = np.where(w > 0, w * np.log(np.where(w > 0, d, 1.0)), 0.0)
    return float(cells.sum())


def _rows(model: DiscreteModel, term: Divergence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights (r,), left rows (r, n), right rows (r, n)) of a divergence."""
    left = density_grid(model, term.left)
    right = density_grid(model, term.right)
    vars_ = term.left.vars
    if term.outer is None:
        shape = (model.nx if "x" in vars_ else 1, model.nz if "z" in vars_ else 1)
        a = np.broadcast_to(left, shape).reshape(1, -1)
        b = np.broadcast_to(right, shape).reshape(1, -1)
        return np.ones(1), a, b
    w = density_grid(model, term.outer)
    full = model.shape
    a = np.broadcast_to(left, full)
    b = np.broadcast_to(right, full)
    if term.outer.vars == ("x",):  # rows indexed by x, values of z
        return w[:, 0], a, b
    return w[0, :], a.T, b.T  # rows indexed by z, values of x


def _divergence(model: DiscreteModel, term: Divergence, geometry: dv.Geometry, f) -> float:
    w, a, b = _rows(model, term)
    live = w > 0
    w, a, b = w[live], a[live], b[live]
    if term.kind in ("JS", "MMD", "W"):
        empty = np.abs(b.sum(axis=1) - 1.0) > 1e-9
        if np.any(empty):
            cond = term.right.given[0]
            raise ObjectiveError(
                f"{term} needs {term.right} where its condition {cond} has probability zero",
                expected=f"{Density(term.right.family, (cond,))} > 0 wherever {term.outer} > 0",
                given=f"a {cond} with {term.outer} > 0 and {Density(term.right.family, (cond,))} = 0",
                fix="use strictly positive tables (e.g. DiscreteModel.random) or a KL divergence, which is +inf here",
            )
    if term.kind == "KL":
        rows = dv.kl_rows(a, b)
    elif term.kind == "JS":
        rows = dv.js_rows(a, b)
    elif term.kind == "D_f":
        rows = dv.f_rows(a, b, f)
    elif term.kind == "MMD":
        rows = dv.mmd2_rows(a, b, geometry.kernel(term.left.vars))
    elif term.kind == "W":
        if term.left.vars == ("x", "z"):
            rows = np.array([dv.w1_lp(a[0], b[0], geometry.joint_cost())])
        else:
            pos = geometry.positions_x if term.left.vars == ("x",) else geometry.positions_z
            rows = dv.w1_rows(a, b, pos)
    else:  # pragma: no cover - terms.py admits only DIVERGENCES
        raise ObjectiveError(f"unknown divergence {term.kind}", expected="KL, JS, MMD, W or D_f",
                             given=term.kind, fix="use one of those")
    with np.errstate(invalid="ignore"):
        return float(np.sum(w * rows))


def _check_model(model) -> None:
    if not isinstance(model, DiscreteModel):
        raise ObjectiveError("the exact backend evaluates on a DiscreteModel",
                             expected="a lagrangian_family.backends.exact.DiscreteModel",
                             given=f"{type(model).__name__}", fix="build one with DiscreteModel.random(nx, nz, rng)")


def term_value(term: Term, model: DiscreteModel, *, kernels: Mapping | None = None,
               positions: Mapping | None = None, f=None, geometry: dv.Geometry | None = None) -> float:
    """The exact value of one term (no coefficient).

    >>> m = DiscreteModel.random(2, 2, rng=3)
    >>> bool(np.isclose(term_value(MutualInformation("q"), m), m.I_q))
    True
    """
    _check_model(model)
    if isinstance(term, ExpectedLog):
        return _expected_log(model, term)
    if isinstance(term, MutualInformation):
        return model.I_q if term.family == "q" else model.I_p
    if isinstance(term, Divergence):
        if geometry is None:
            geometry = dv.Geometry.build(model.nx, model.nz, positions=positions, kernels=kernels)
        return _divergence(model, term, geometry, f)
    raise ObjectiveError(f"the exact backend cannot evaluate {type(term).__name__}",
                         expected="ExpectedLog, Divergence or MutualInformation terms",
                         given=f"{type(term).__name__} {term}", fix="build objectives from the term classes")


def _as_objective(objective) -> Objective:
    if isinstance(objective, str):
        try:
            from lagrangian_family.symbolic.parse import parse
        except ImportError as e:  # pragma: no cover - depends on the parser being installed
            raise ObjectiveError("text objectives need the parser", expected="an Objective or a Term",
                                 given=repr(objective), fix="build the objective from the term classes") from e
        return parse(objective).as_objective()
    if isinstance(objective, (Term, Objective)):
        return objective.as_objective()
    raise ObjectiveError("the exact backend evaluates objectives and terms",
                         expected="an Objective, a Term or objective text",
                         given=f"{type(objective).__name__} {objective!r}", fix="build the objective with lf.parse")


def bind_coefficients(objective, values: Mapping | None = None) -> list[tuple[Term, float]]:
    """(term, float coefficient) pairs with every symbol bound from ``values``.

    ``values`` maps names (``"beta"``) or sympy symbols to numbers. A free symbol left
    unbound raises an :class:`ObjectiveError` naming it.

    >>> from lagrangian_family.symbolic.objective import symbol
    >>> t = MutualInformation("q")
    >>> bind_coefficients((symbol("beta") - 1) * t, {"beta": 4.0})
    [(MutualInformation(family='q', vars=('x', 'z')), 3.0)]
    """
    objective = _as_objective(objective)
    values = {k: as_expr(v, context=f"the value of {k}") for k, v in dict(values or {}).items()}
    try:
        key = tuple(sorted((str(k), float(v)) for k, v in values.items()))
        return list(_bind_cached(objective, key))
    except (TypeError, ValueError):  # unhashable or non-float values: bind without the cache
        return _bind(objective, values)


@lru_cache(maxsize=256)
def _bind_cached(objective: Objective, key: tuple) -> tuple:
    return tuple(_bind(objective, dict(key)))


def _bind(objective: Objective, values: dict) -> list[tuple[Term, float]]:
    by_name: dict[str, object] = {}
    for k, v in values.items():
        name = k if isinstance(k, str) else getattr(k, "name", None)
        if name is None:
            raise ObjectiveError("a key of values is neither a name nor a symbol", expected="str or sympy.Symbol keys",
                                 given=repr(k), fix="write values={'beta': 4.0}")
        by_name[name] = as_coefficient(v, context=f"the value of {name}")
    free = sorted({s.name for s in objective.free_symbols})
    missing = [s for s in free if s not in by_name]
    if missing:
        raise ObjectiveError(
            f"the objective has unbound parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            expected="a number for every symbol of the coefficients (" + ", ".join(free) + ")",
            given="values for " + (", ".join(sorted(by_name)) if by_name else "nothing"),
            fix="pass values={" + ", ".join(f"{s!r}: ..." for s in missing) + "}",
        )
    out = []
    for term, coef in objective.items():
        mapping = {s: by_name[s.name] for s in coef.free_symbols}
        try:
            value = complex(as_expr(coef).subs(mapping).evalf())
        except (TypeError, ValueError) as e:
            raise ObjectiveError(f"the coefficient of {term} does not evaluate to a number",
                                 expected="numeric values for its parameters", given=str(coef),
                                 fix="bind every parameter to a real number") from e
        if value.imag != 0 or not np.isfinite(value.real):
            raise ObjectiveError(f"the coefficient of {term} is not a finite real number",
                                 expected="a finite real coefficient", given=f"{coef} = {value}",
                                 fix="check the parameter values (division by zero, negative square roots)")
        out.append((term, float(value.real)))
    return out


def evaluate_terms(objective, model: DiscreteModel, *, kernels: Mapping | None = None,
                   positions: Mapping | None = None, f=None) -> dict[Term, float]:
    """The exact value of each term of an objective (coefficients not applied).

    >>> m = DiscreteModel.random(2, 2, rng=0)
    >>> list(evaluate_terms(MutualInformation("q") + MutualInformation("p"), m).values()) == [m.I_q, m.I_p]
    True
    """
    objective = _as_objective(objective)
    _check_model(model)
    geometry = dv.Geometry.build(model.nx, model.nz, positions=positions, kernels=kernels)
    return {t: term_value(t, model, geometry=geometry, f=f) for t in objective}


def evaluate(objective, model: DiscreteModel, *, values: Mapping | None = None, kernels: Mapping | None = None,
             positions: Mapping | None = None, f=None) -> float:
    """The exact value of an objective or term on a discrete model (a float, possibly inf).

    ``values`` binds the coefficients' symbols ({"beta": 4.0}); ``kernels`` overrides the MMD
    kernel matrices ({"x": (nx, nx), "z": (nz, nz), "xz": (nx*nz, nx*nz), x-major});
    ``positions`` moves the values of x or z on the line (MMD default kernel and W);
    ``f`` is the f of D_f terms (a name from :data:`.divergences.F_GENERATORS`, a callable or
    an :class:`.divergences.FGenerator`; default t log t).

    >>> from lagrangian_family.symbolic.objective import symbol
    >>> m = DiscreteModel.random(3, 2, rng=0)
    >>> obj = symbol("beta") * MutualInformation("q")
    >>> bool(np.isclose(evaluate(obj, m, values={"beta": 2.0}), 2 * m.I_q))
    True
    """
    pairs = bind_coefficients(objective, values)
    _check_model(model)
    geometry = dv.Geometry.build(model.nx, model.nz, positions=positions, kernels=kernels)
    total = 0.0
    for term, coef in pairs:
        if coef == 0.0:
            continue
        total += coef * term_value(term, model, geometry=geometry, f=f)
    return float(total)
