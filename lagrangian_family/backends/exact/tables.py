"""Tabular distributions on discrete x in {0..nx-1} and z in {0..nz-1}.

A :class:`DiscreteModel` holds the four tables that define the two sampling joints of the
paper, q(x,z) = q(x) q(z|x) (data, then encoder) and p(x,z) = p(z) p(x|z) (prior, then
decoder), and derives every other marginal and conditional from them.

Array conventions (one place, stated once):

* joints are indexed ``[x, z]``: ``q_xz`` and ``p_xz`` have shape (nx, nz);
* a conditional "a given b" is indexed ``[b, a]``, rows summing to one: ``q_z_given_x`` is
  (nx, nz), ``p_x_given_z`` (nz, nx), ``q_x_given_z`` (nz, nx), ``p_z_given_x`` (nx, nz);
* a derived conditional of a condition of probability zero (``q_x_given_z`` at a z with
  q(z) = 0, ``p_z_given_x`` at an x with p(x) = 0) is undefined and is stored as a row of
  zeros (no mass): a log-density under it is -inf and a KL divergence against it is +inf.

>>> import numpy as np
>>> m = DiscreteModel(q_x=[0.5, 0.5], p_z=[0.5, 0.5],
...                   q_z_given_x=[[1.0, 0.0], [0.0, 1.0]], p_x_given_z=[[1.0, 0.0], [0.0, 1.0]])
>>> m.shape
(2, 2)
>>> bool(np.isclose(m.H_q_x, np.log(2)))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lagrangian_family.errors import ObjectiveError

#: absolute tolerance on row sums of the tables
NORMALISATION_TOL = 1e-8


def _as_generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ObjectiveError(
        "the random source is not a numpy generator",
        expected="a numpy.random.Generator, an int seed or None",
        given=f"{type(rng).__name__} {rng!r}",
        fix="pass np.random.default_rng(0)",
    )


def _check_table(name: str, value, shape: tuple[int, ...] | None, rows: str) -> np.ndarray:
    """A read-only float64 copy of a probability table, or an ObjectiveError saying what is wrong."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ObjectiveError(
            f"{name} is not a numeric table",
            expected=f"an array of probabilities{'' if shape is None else f' of shape {shape}'}",
            given=f"{type(value).__name__}",
            fix="pass a numpy array or nested lists of floats",
        ) from e
    ndim = 1 if rows == "vector" else 2
    if arr.ndim != ndim or (shape is not None and arr.shape != shape):
        want = f"shape {shape}" if shape is not None else f"a {ndim}-dimensional array"
        raise ObjectiveError(
            f"{name} has the wrong shape",
            expected=want + ("" if rows == "vector" else f" ({rows})"),
            given=f"shape {arr.shape}",
            fix=f"pass {name} with {want}" + ("" if rows == "vector" else "; transpose it if the axes are swapped"),
        )
    if arr.size == 0:
        raise ObjectiveError(f"{name} is empty", expected="at least one value of each variable",
                             given=f"shape {arr.shape}", fix="use nx >= 1 and nz >= 1")
    if not np.all(np.isfinite(arr)):
        raise ObjectiveError(f"{name} has non-finite entries", expected="finite probabilities",
                             given=f"{int(np.sum(~np.isfinite(arr)))} entries that are nan or inf",
                             fix="check how the table was computed")
    if np.any(arr < 0):
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ObjectiveError(
            f"{name} has negative probabilities",
            expected="entries >= 0",
            given=f"{name}[{', '.join(map(str, idx))}] = {arr[idx]:g}",
            fix="clip the table at 0 and renormalise, or build it with a softmax",
        )
    sums = arr.sum(axis=-1)
    bad = np.abs(sums - 1.0) > NORMALISATION_TOL
    if np.any(bad):
        if rows == "vector":
            given = f"sum {float(sums):.12g}"
        else:
            i = int(np.argmax(bad))
            given = f"row {i} sums to {sums[i]:.12g}"
        raise ObjectiveError(
            f"{name} is not normalised",
            expected="probabilities summing to 1" + ("" if rows == "vector" else f" along each row ({rows})"),
            given=given,
            fix=f"divide {name} by its {'sum' if rows == 'vector' else 'row sums'}",
        )
    arr = arr / arr.sum(axis=-1, keepdims=True)  # exact normalisation within the tolerance
    arr.setflags(write=False)
    return arr


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _condition(joint_rows: np.ndarray) -> np.ndarray:
    """Rows of a joint (condition first) divided by their sums; zero rows stay zero."""
    mass = joint_rows.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(mass > 0, joint_rows / np.where(mass > 0, mass, 1.0), 0.0)
    return _frozen(out)


def _entropy(p: np.ndarray) -> float:
    nz = p > 0
    return float(-np.sum(p[nz] * np.log(p[nz])))


@dataclass(frozen=True, eq=False)
class DiscreteModel:
    """The four tables of a latent variable model on discrete x and z.

    ``q_x`` (nx,) is the data distribution, ``p_z`` (nz,) the prior, ``q_z_given_x`` (nx, nz)
    the encoder and ``p_x_given_z`` (nz, nx) the decoder (rows sum to one). The tables are
    validated and stored as read-only float64 arrays.

    >>> m = DiscreteModel.random(3, 2, rng=0)
    >>> m.q_xz.shape, m.p_xz.shape, bool(abs(m.p_x.sum() - 1) < 1e-12)
    ((3, 2), (3, 2), True)
    """

    q_x: np.ndarray
    p_z: np.ndarray
    q_z_given_x: np.ndarray
    p_x_given_z: np.ndarray

    def __post_init__(self):
        q_x = _check_table("q_x", self.q_x, None, "vector")
        p_z = _check_table("p_z", self.p_z, None, "vector")
        nx, nz = q_x.shape[0], p_z.shape[0]
        object.__setattr__(self, "q_x", q_x)
        object.__setattr__(self, "p_z", p_z)
        object.__setattr__(self, "q_z_given_x",
                           _check_table("q_z_given_x", self.q_z_given_x, (nx, nz), "rows x, columns z"))
        object.__setattr__(self, "p_x_given_z",
                           _check_table("p_x_given_z", self.p_x_given_z, (nz, nx), "rows z, columns x"))

    # -- construction ----------------------------------------------------------
    @classmethod
    def random(cls, nx: int, nz: int, rng=None, *, fixed: DiscreteModel | Mapping | None = None,
               concentration: float = 1.0) -> DiscreteModel:
        """Tables drawn from a symmetric Dirichlet(``concentration``) distribution.

        ``fixed`` keeps the data distribution q(x) and the prior p(z) while the conditionals
        (the parameters q(z|x) and p(x|z)) are redrawn: a :class:`DiscreteModel` (its q_x and
        p_z are kept) or a mapping with keys ``"q_x"`` and/or ``"p_z"``.

        >>> rng = np.random.default_rng(0)
        >>> a = DiscreteModel.random(4, 3, rng)
        >>> b = DiscreteModel.random(4, 3, rng, fixed=a)
        >>> bool(np.array_equal(a.q_x, b.q_x)), bool(np.array_equal(a.q_z_given_x, b.q_z_given_x))
        (True, False)
        """
        for name, n in (("nx", nx), ("nz", nz)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ObjectiveError(f"{name} is not a positive integer", expected="an int >= 1",
                                     given=repr(n), fix=f"pass {name}=2 or more")
        if not concentration > 0:
            raise ObjectiveError("the Dirichlet concentration is not positive", expected="a float > 0",
                                 given=repr(concentration), fix="use concentration=1.0 (uniform on the simplex)")
        gen = _as_generator(rng)
        if fixed is None:
            keep: dict = {}
        elif isinstance(fixed, DiscreteModel):
            keep = {"q_x": fixed.q_x, "p_z": fixed.p_z}
        elif isinstance(fixed, Mapping):
            unknown = set(fixed) - {"q_x", "p_z"}
            if unknown:
                raise ObjectiveError(
                    f"unknown fixed table {sorted(unknown)[0]!r}",
                    expected="the keys 'q_x' (data distribution) and/or 'p_z' (prior)",
                    given=", ".join(sorted(map(repr, fixed))),
                    fix="the conditionals are the parameters and are always redrawn",
                )
            keep = dict(fixed)
        else:
            raise ObjectiveError("fixed is neither a model nor a mapping",
                                 expected="a DiscreteModel or {'q_x': ..., 'p_z': ...}",
                                 given=f"{type(fixed).__name__}", fix="pass fixed=model")

        def draw(*shape):
            return gen.dirichlet(np.full(shape[-1], float(concentration)), size=shape[:-1] or None)

        q_x = keep["q_x"] if "q_x" in keep else draw(nx)
        p_z = keep["p_z"] if "p_z" in keep else draw(nz)
        q_x = _check_table("fixed q_x", q_x, (nx,), "vector")
        p_z = _check_table("fixed p_z", p_z, (nz,), "vector")
        return cls(q_x=q_x, p_z=p_z, q_z_given_x=draw(nx, nz), p_x_given_z=draw(nz, nx))

    def with_conditionals(self, q_z_given_x=None, p_x_given_z=None) -> DiscreteModel:
        """The same q(x) and p(z) with new conditionals (the parameters).

        >>> m = DiscreteModel.random(2, 2, rng=1)
        >>> m.with_conditionals(q_z_given_x=[[0.5, 0.5], [0.5, 0.5]]).I_q
        0.0
        """
        return DiscreteModel(
            q_x=self.q_x, p_z=self.p_z,
            q_z_given_x=self.q_z_given_x if q_z_given_x is None else q_z_given_x,
            p_x_given_z=self.p_x_given_z if p_x_given_z is None else p_x_given_z,
        )

    # -- shape -----------------------------------------------------------------
    @property
    def nx(self) -> int:
        """The number of values of x."""
        return int(self.q_x.shape[0])

    @property
    def nz(self) -> int:
        """The number of values of z."""
        return int(self.p_z.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(nx, nz)."""
        return (self.nx, self.nz)

    # -- joints and marginals --------------------------------------------------
    @cached_property
    def q_xz(self) -> np.ndarray:
        """q(x,z) = q(x) q(z|x), indexed [x, z]."""
        return _frozen(self.q_x[:, None] * self.q_z_given_x)

    @cached_property
    def p_xz(self) -> np.ndarray:
        """p(x,z) = p(z) p(x|z), indexed [x, z]."""
        return _frozen((self.p_z[:, None] * self.p_x_given_z).T.copy())

    @cached_property
    def q_z(self) -> np.ndarray:
        """q(z) = sum_x q(x,z)."""
        return _frozen(self.q_xz.sum(axis=0))

    @cached_property
    def p_x(self) -> np.ndarray:
        """p(x) = sum_z p(x,z)."""
        return _frozen(self.p_xz.sum(axis=1))

    # -- derived conditionals --------------------------------------------------
    @cached_property
    def q_x_given_z(self) -> np.ndarray:
        """q(x|z) = q(x,z) / q(z), indexed [z, x]; zero rows where q(z) = 0."""
        return _condition(self.q_xz.T)

    @cached_property
    def p_z_given_x(self) -> np.ndarray:
        """p(z|x) = p(x,z) / p(x), indexed [x, z]; zero rows where p(x) = 0."""
        return _condition(self.p_xz)

    # -- information quantities ------------------------------------------------
    @cached_property
    def H_q_x(self) -> float:
        """The entropy H_q(x) of the data distribution (nats)."""
        return _entropy(self.q_x)

    @cached_property
    def H_p_z(self) -> float:
        """The entropy H_p(z) of the prior (nats)."""
        return _entropy(self.p_z)

    @cached_property
    def I_q(self) -> float:
        """The mutual information I_q(x;z) under q(x,z) (nats, 0 log 0 = 0)."""
        return _mutual_information(self.q_xz)

    @cached_property
    def I_p(self) -> float:
        """The mutual information I_p(x;z) under p(x,z) (nats, 0 log 0 = 0)."""
        return _mutual_information(self.p_xz)

    def __repr__(self) -> str:
        return f"DiscreteModel(nx={self.nx}, nz={self.nz})"


def _mutual_information(joint: np.ndarray) -> float:
    px = joint.sum(axis=1, keepdims=True)
    pz = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    ratio = joint[nz] / (px * pz)[nz]
    return float(np.sum(joint[nz] * np.log(ratio)))
