"""Exact divergences between discrete distributions, row by row (vectorised numpy).

Every function takes two row-stacked tables ``a`` and ``b`` of shape (rows, n), one
distribution per row, and returns one value per row. Conventions:

* natural logarithms throughout; 0 log 0 = 0 and 0 log(0/0) = 0;
* ``kl_rows``: +inf where a row of ``a`` puts mass where ``b`` has none (support mismatch);
* ``js_rows``: 0.5 KL(a || m) + 0.5 KL(b || m) with m = (a + b) / 2, in [0, log 2]. A GAN
  term is written JS with the GAN's weight as its coefficient (DESIGN.md); the GAN value at
  the optimal discriminator is 2 JS - log 4;
* ``mmd2_rows``: the squared MMD (a - b)^T K (a - b) for a kernel matrix K over the points,
  i.e. the biased (V-statistic) population value. The default kernel (see :class:`Geometry`)
  places the values of x and of z at evenly spaced positions in [0, 1] and uses the Gaussian
  kernel exp(-(u - v)^2) on each coordinate (the paper's exp(-|u - v|^2 / dim^2) for dim = 1),
  with the product kernel exp(-(dx^2 + dz^2)) on the joint (x, z);
* ``w1_rows``: the 1-Wasserstein distance on those positions (the CDF formula in one
  dimension); :func:`w1_lp` solves the transport linear program for joints, with ground cost
  |dx| + |dz|;
* ``f_rows``: sum_i b_i f(a_i / b_i) for a convex f with f(1) = 0 (:class:`FGenerator`), where
  a_i > 0 = b_i contributes a_i * lim_{t->inf} f(t)/t and a_i = 0 < b_i contributes b_i f(0).

>>> a = np.array([[0.5, 0.5]]); b = np.array([[0.9, 0.1]])
>>> bool(np.allclose(kl_rows(a, b), 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from lagrangian_family.errors import ObjectiveError, closest


def kl_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KL(a_r || b_r) for each row r (nats); +inf on a support mismatch.

    >>> kl_rows(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    array([inf])
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a > 0, a * (np.log(np.where(a > 0, a, 1.0)) - np.log(b)), 0.0)
    return terms.sum(axis=-1)


def js_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Jensen-Shannon divergence 0.5 KL(a||m) + 0.5 KL(b||m), m = (a + b)/2, per row.

    >>> bool(np.isclose(js_rows(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))[0], np.log(2)))
    True
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m = 0.5 * (a + b)
    return 0.5 * kl_rows(a, m) + 0.5 * kl_rows(b, m)


def mmd2_rows(a: np.ndarray, b: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The squared MMD (a_r - b_r)^T K (a_r - b_r) per row for a kernel matrix K.

    >>> K = np.eye(2)
    >>> mmd2_rows(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), K)
    array([2.])
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return np.einsum("ri,ij,rj->r", d, kernel, d)


def w1_rows(a: np.ndarray, b: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The 1-Wasserstein distance per row between distributions on points of the real line.

    ``positions`` are the locations of the n columns (any order).

    >>> w1_rows(np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 1.0]]), np.array([0.0, 0.5, 1.0]))
    array([1.])
    """
    positions = np.asarray(positions, dtype=np.float64)
    order = np.argsort(positions, kind="stable")
    pos = positions[order]
    diff = np.cumsum(np.asarray(a, dtype=np.float64)[..., order] - np.asarray(b, dtype=np.float64)[..., order],
                     axis=-1)
    return np.abs(diff[..., :-1]) @ np.diff(pos)


def w1_lp(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """The optimal transport cost between two distributions for a ground-cost matrix (linprog).

    >>> w1_lp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([[0.0, 3.0], [3.0, 0.0]]))
    3.0
    """
    from scipy.optimize import linprog  # scipy is an optional dependency: imported on use

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, m = a.size, b.size
    # plan[i, j] flattened row-major; rows sum to a, columns sum to b
    a_eq = np.zeros((n + m, n * m))
    for i in range(n):
        a_eq[i, i * m:(i + 1) * m] = 1.0
    for j in range(m):
        a_eq[n + j, j::m] = 1.0
    b_eq = np.concatenate([a, b])
    res = linprog(np.asarray(cost, dtype=np.float64).ravel(), A_eq=a_eq[:-1], b_eq=b_eq[:-1],
                  bounds=(0, None), method="highs")
    if res.status != 0:  # pragma: no cover - a balanced transport problem is always feasible
        raise ObjectiveError("the Wasserstein linear program failed", expected="a solved transport problem",
                             given=res.message, fix="check that both tables sum to one")
    return float(res.fun)


@dataclass(frozen=True)
class FGenerator:
    """A convex function f with f(1) = 0 defining D_f(a || b) = sum_i b_i f(a_i / b_i).

    ``f`` is vectorised over numpy arrays of positive ratios. ``at_zero`` is f(0) (computed
    as ``f(0.0)`` when not given) and ``slope_at_infinity`` is lim_{t->inf} f(t)/t (+inf
    when not given), used where b_i = 0 < a_i.

    >>> g = FGenerator("tv", lambda t: 0.5 * np.abs(t - 1), slope_at_infinity=0.5)
    >>> float(g.at_zero)
    0.5
    """

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    at_zero: float | None = None
    slope_at_infinity: float = math.inf

    def __post_init__(self):
        if not callable(self.f):
            raise ObjectiveError("the f of D_f is not callable", expected="a function of the ratio t = a/b",
                                 given=repr(self.f), fix="pass f=lambda t: t * np.log(t)")
        if self.at_zero is None:
            with np.errstate(all="ignore"):
                value = float(np.asarray(self.f(np.array([0.0])), dtype=np.float64).ravel()[0])
            if math.isnan(value):
                raise ObjectiveError(
                    f"f(0) of the f-divergence {self.name!r} is not defined by evaluating f at 0",
                    expected="f(0) as a number or +inf",
                    given="f(0.0) = nan",
                    fix="pass FGenerator(name, f, at_zero=lim_{t->0} f(t))",
                )
            object.__setattr__(self, "at_zero", value)


def _xlogx(t):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)


def _neglog(t):
    with np.errstate(divide="ignore"):
        return -np.log(t)


def _js_f(t):
    return 0.5 * (_xlogx(t) - _xlogx(t + 1.0)) + 0.5 * (t + 1.0) * math.log(2.0)


#: Named f-divergences (natural log). "kl" is the default of D_f.
F_GENERATORS: dict[str, FGenerator] = {
    "kl": FGenerator("kl", _xlogx, at_zero=0.0, slope_at_infinity=math.inf),
    "reverse_kl": FGenerator("reverse_kl", _neglog, at_zero=math.inf, slope_at_infinity=0.0),
    "js": FGenerator("js", _js_f, at_zero=0.5 * math.log(2.0), slope_at_infinity=0.5 * math.log(2.0)),
    "hellinger": FGenerator("hellinger", lambda t: (np.sqrt(t) - 1.0) ** 2, at_zero=1.0, slope_at_infinity=1.0),
    "tv": FGenerator("tv", lambda t: 0.5 * np.abs(t - 1.0), at_zero=0.5, slope_at_infinity=0.5),
    "pearson": FGenerator("pearson", lambda t: (t - 1.0) ** 2, at_zero=1.0, slope_at_infinity=math.inf),
}


def as_f_generator(f) -> FGenerator:
    """An :class:`FGenerator` from a name in :data:`F_GENERATORS`, a callable or an FGenerator.

    >>> as_f_generator(None).name
    'kl'
    """
    if f is None:
        return F_GENERATORS["kl"]
    if isinstance(f, FGenerator):
        return f
    if isinstance(f, str):
        if f not in F_GENERATORS:
            near = closest(f, F_GENERATORS)
            raise ObjectiveError(
                f"unknown f-divergence {f!r}",
                expected="one of " + ", ".join(F_GENERATORS),
                given=repr(f),
                fix=(f"did you mean {near[0]!r}?" if near else "pass a name from the list or a callable f(t)"),
            )
        return F_GENERATORS[f]
    if callable(f):
        return FGenerator(getattr(f, "__name__", "f"), f)
    raise ObjectiveError("the f of D_f is neither a name nor a function",
                         expected="a name (" + ", ".join(F_GENERATORS) + "), a callable or an FGenerator",
                         given=f"{type(f).__name__} {f!r}", fix="pass f='kl' or f=lambda t: t * np.log(t)")


def f_rows(a: np.ndarray, b: np.ndarray, f=None) -> np.ndarray:
    """D_f(a_r || b_r) = sum_i b_i f(a_i / b_i) per row (default f(t) = t log t, i.e. KL).

    >>> a = np.array([[0.2, 0.8]]); b = np.array([[0.6, 0.4]])
    >>> bool(np.allclose(f_rows(a, b), kl_rows(a, b)))
    True
    """
    gen = as_f_generator(f)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    both = (a > 0) & (b > 0)
    t = np.where(both, a / np.where(b > 0, b, 1.0), 1.0)
    with np.errstate(all="ignore"):
        inside = b * np.asarray(gen.f(t), dtype=np.float64)
        only_b = b * gen.at_zero
        only_a = a * gen.slope_at_infinity
    out = np.where(both, inside, np.where(b > 0, only_b, np.where(a > 0, only_a, 0.0)))
    return out.sum(axis=-1)


# -- geometry: where the discrete values sit, for MMD and W ------------------------------------

def default_positions(n: int) -> np.ndarray:
    """The values 0..n-1 placed evenly in [0, 1] (one value sits at 0).

    >>> default_positions(3)
    array([0. , 0.5, 1. ])
    """
    return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)


def gaussian_kernel(positions: np.ndarray, bandwidth: float = 1.0) -> np.ndarray:
    """The Gaussian kernel matrix exp(-(u - v)^2 / bandwidth^2) over points of the line.

    >>> bool(gaussian_kernel(np.array([0.0, 1.0]))[0, 1] == np.exp(-1.0))
    True
    """
    pos = np.asarray(positions, dtype=np.float64)
    return np.exp(-((pos[:, None] - pos[None, :]) / bandwidth) ** 2)


@dataclass(frozen=True, eq=False)
class Geometry:
    """Positions of the values of x and z and the kernel matrices MMD uses.

    The joint (x, z) is flattened x-major (index x * nz + z); its kernel defaults to the
    product ``np.kron(kernel_x, kernel_z)`` and its transport cost to ``|dx| + |dz|``.
    """

    positions_x: np.ndarray
    positions_z: np.ndarray
    kernel_x: np.ndarray
    kernel_z: np.ndarray
    kernel_xz: np.ndarray

    @classmethod
    def build(cls, nx: int, nz: int, *, positions: Mapping | None = None,
              kernels: Mapping | None = None) -> Geometry:
        """The default geometry for an nx-by-nz model, with optional overrides.

        ``positions`` maps "x" and/or "z" to 1-d arrays; ``kernels`` maps "x", "z" and/or
        "xz" to kernel matrices (shapes (nx, nx), (nz, nz), (nx*nz, nx*nz)).

        >>> g = Geometry.build(2, 3)
        >>> g.kernel_xz.shape
        (6, 6)
        """
        positions = dict(positions or {})
        kernels = dict(kernels or {})
        for what, given, allowed in (("positions", positions, ("x", "z")), ("kernels", kernels, ("x", "z", "xz"))):
            unknown = set(given) - set(allowed)
            if unknown:
                raise ObjectiveError(f"unknown key {sorted(unknown)[0]!r} in {what}",
                                     expected="keys " + ", ".join(map(repr, allowed)),
                                     given=", ".join(sorted(map(repr, given))),
                                     fix=f"name the variable of each entry of {what}: {', '.join(allowed)}")
        pos = {}
        for v, n in (("x", nx), ("z", nz)):
            if v in positions:
                p = np.asarray(positions[v], dtype=np.float64)
                if p.shape != (n,) or not np.all(np.isfinite(p)):
                    raise ObjectiveError(f"the positions of {v} have the wrong shape",
                                         expected=f"{n} finite numbers, one per value of {v}",
                                         given=f"shape {p.shape}", fix=f"pass positions={{'{v}': np.arange({n})}}")
                pos[v] = p
            else:
                pos[v] = default_positions(n)
        ker = {}
        for v, n in (("x", nx), ("z", nz), ("xz", nx * nz)):
            if v in kernels:
                k = np.asarray(kernels[v], dtype=np.float64)
                if k.shape != (n, n):
                    raise ObjectiveError(f"the kernel matrix of {v} has the wrong shape",
                                         expected=f"shape ({n}, {n})", given=f"shape {k.shape}",
                                         fix="pass one kernel value per pair of values"
                                             + (" (x-major flattening for xz)" if v == "xz" else ""))
                if not np.allclose(k, k.T, atol=1e-12):
                    raise ObjectiveError(f"the kernel matrix of {v} is not symmetric",
                                         expected="k(u, v) = k(v, u)", given="an asymmetric matrix",
                                         fix="pass (K + K.T) / 2")
                ker[v] = k
            elif v != "xz":
                ker[v] = gaussian_kernel(pos[v])
        if "xz" not in ker:
            ker["xz"] = np.kron(ker["x"], ker["z"])
        return cls(pos["x"], pos["z"], ker["x"], ker["z"], ker["xz"])

    def kernel(self, vars: tuple[str, ...]) -> np.ndarray:
        """The kernel matrix over the values of ``vars``: ``("x",)``, ``("z",)`` or ``("x", "z")``.

        >>> Geometry.build(2, 3).kernel(("z",)).shape
        (3, 3)
        """
        return {("x",): self.kernel_x, ("z",): self.kernel_z, ("x", "z"): self.kernel_xz}[tuple(vars)]

    def joint_cost(self) -> np.ndarray:
        """The ground cost ``|dx| + |dz|`` between points of the flattened (x, z) grid."""
        gx, gz = np.meshgrid(self.positions_x, self.positions_z, indexing="ij")
        px, pz = gx.ravel(), gz.ravel()
        return np.abs(px[:, None] - px[None, :]) + np.abs(pz[:, None] - pz[None, :])
