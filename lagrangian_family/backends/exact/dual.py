"""The paper's Algorithm 1 (section 5, Theorem 2) in distribution space.

The parameters are the logits of the encoder q(z|x) and the decoder p(x|z) (one softmax per
row); the data distribution q(x) and the prior p(z) are fixed. The primal objective is
alpha1 * I_q + alpha2 * I_p with each mutual information replaced by the bound of eq. 13 that
makes its term convex-looking: the upper bound when its alpha is >= 0, the lower bound when it
is < 0 (the paper's rule for alpha1, alpha2 of one sign, applied to each term):

* upper  Ī_q = E_q(x)[KL(q(z|x) || p(z))],        Ī_p = E_p(z)[KL(p(x|z) || q(x))];
* lower  I̲_q = E_q(x,z)[log p(x|z)] + H_q(x),     I̲_p = E_p(x,z)[log q(z|x)] + H_p(z).

The constraints are divergences D_i <= eps_i. Algorithm 1 alternates a primal descent step on
f + lambda^T (D - eps) (by default a mirror-descent step on the tables, see :func:`algorithm1`;
plain gradient descent or Adam on the logits on request) with the projected ascent step
lambda <- max(0, lambda + rho_lambda (D - eps)), starting at lambda = 1. Gradients come from
torch autograd in float64; torch is imported when the algorithm runs, not when this module is
imported.

Constraints: KL in any form, and JS and MMD between marginals, joints or (averaged)
conditionals. Lemma 1 makes KL, MMD and f-divergences (JS included) between marginals or joints
convex in the tables; an averaged conditional divergence is not covered by Lemma 1 and is
refused unless ``allow_nonconvex=True``.

Findings (see tests/backends/exact/test_dual_exact.py):

* with alpha >= 0 the problem is convex, but its optimum is always the independent model
  q(z|x) = p(z), p(x|z) = q(x) (both upper bounds vanish, and so does every divergence,
  since then q(x,z) = p(x,z) = q(x) p(z)): no constraint is ever active;
* with alpha < 0 the lower bound I̲_q = sum q(x) q(z|x) log p(x|z) + H_q(x) is not jointly
  concave in (q(z|x), p(x|z)) ((a, b) -> a log b has an indefinite Hessian), so the paper's
  Lemma 2, and with it the convexity behind Theorem 2, fails for the lower bounds. The
  problem has local optima (a multi-start SLSQP finds several), and a deterministic
  encoder-decoder pair is a local minimum of the Lagrangian for every lambda (moving mass
  into a cell where both q(z|x) and p(x|z) vanish costs -log 0): when eps is below the
  divergence of that vertex, a run that reaches it stays infeasible while lambda grows
  (``DualResult.max_violation`` > 0). Run from several starts and keep the best feasible
  result; on the small problems of the tests that reaches the solver's global optimum.

>>> import numpy as np
>>> from lagrangian_family.backends.exact.tables import DiscreteModel
>>> from lagrangian_family.symbolic.terms import Density, Divergence
>>> kl = Divergence("KL", Density("q", ("x", "z")), Density("p", ("x", "z")))
>>> m = DiscreteModel.random(3, 3, rng=0)
>>> res = algorithm1(m, alpha=(1.0, 0.0), constraints={kl: 0.1}, steps=300)
>>> bool(res.model.I_q < 1e-2 and res.constraints[-1][0] <= 0.1 + 1e-3)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lagrangian_family.backends.exact.divergences import Geometry
from lagrangian_family.backends.exact.tables import DiscreteModel
from lagrangian_family.errors import ObjectiveError
from lagrangian_family.symbolic.terms import Divergence

_SUPPORTED = ("KL", "JS", "MMD")
#: mirror steps keep every probability above exp(-_LOGIT_FLOOR) times the row maximum
_LOGIT_FLOOR = 60.0
#: the largest change of a logit in one mirror step (before the rate)
_MAX_STEP = 5.0


@dataclass(frozen=True, eq=False)
class DualResult:
    """The outcome of :func:`algorithm1`.

    ``lambdas``, ``constraints`` (T, k) and ``objective``, ``lagrangian`` (T,) are recorded
    after every outer iteration t: the multipliers after the ascent step, the divergences
    D_i and the primal objective f at the parameters after the descent step, and
    f + lambda^T (D - eps) with the multipliers used in that step. ``model`` holds the final
    tables; ``terms`` and ``eps`` name the constraints in order.
    """

    model: DiscreteModel
    terms: tuple[Divergence, ...]
    eps: np.ndarray
    lambdas: np.ndarray
    constraints: np.ndarray
    objective: np.ndarray
    lagrangian: np.ndarray
    alpha: tuple[float, float]
    bounds: tuple[str, str] = field(default=("upper", "upper"))

    @property
    def final_lambda(self) -> np.ndarray:
        """The multipliers after the last iteration."""
        return self.lambdas[-1]

    @property
    def max_violation(self) -> float:
        """max_i (D_i - eps_i) at the final parameters (<= 0 when feasible)."""
        if not self.terms:
            return -np.inf
        return float(np.max(self.constraints[-1] - self.eps))


def primal_bounds(model: DiscreteModel, alpha: tuple[float, float]) -> float:
    """The primal objective alpha1 * (bound of I_q) + alpha2 * (bound of I_p) in numpy.

    Upper bounds for alpha >= 0, lower bounds for alpha < 0 (eq. 13).

    >>> m = DiscreteModel.random(3, 3, rng=1)
    >>> primal_bounds(m, (1.0, 0.0)) >= m.I_q - 1e-12
    True
    """
    a1, a2 = (float(a) for a in alpha)
    with np.errstate(divide="ignore"):
        log_qzx, log_pxz = np.log(model.q_z_given_x), np.log(model.p_x_given_z)
        up_q = np.sum(model.q_xz * (log_qzx - np.log(model.p_z)[None, :]))
        up_p = np.sum(model.p_xz.T * (log_pxz - np.log(model.q_x)[None, :]))
        lo_q = np.sum(model.q_xz * log_pxz.T) + model.H_q_x
        lo_p = np.sum(model.p_xz * log_qzx) + model.H_p_z
    out = 0.0
    if a1 != 0:
        out += a1 * (up_q if a1 >= 0 else lo_q)
    if a2 != 0:
        out += a2 * (up_p if a2 >= 0 else lo_p)
    return float(out)


def _check_constraints(constraints, allow_nonconvex: bool) -> tuple[tuple[Divergence, ...], np.ndarray]:
    if isinstance(constraints, Mapping):
        items = list(constraints.items())
    elif isinstance(constraints, Sequence) and not isinstance(constraints, str):
        items = list(constraints)
    else:
        raise ObjectiveError("the constraints are neither a mapping nor a list",
                             expected="{divergence: eps} or [(divergence, eps), ...]",
                             given=f"{type(constraints).__name__}", fix="pass constraints={kl_joint: 0.1}")
    terms, eps = [], []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ObjectiveError("a constraint is not a (divergence, eps) pair", expected="(Divergence, float)",
                                 given=repr(item), fix="pass [(kl_joint, 0.1)]")
        term, e = item
        if not isinstance(term, Divergence):
            raise ObjectiveError(f"the constraint {term} is not a divergence",
                                 expected="a Divergence term D in D <= eps",
                                 given=f"{type(term).__name__} {term}",
                                 fix="constrain divergences such as KL(q(x,z) || p(x,z))")
        if term.kind not in _SUPPORTED:
            raise ObjectiveError(
                f"Algorithm 1 in distribution space does not support {term.kind} constraints ({term})",
                expected="KL, JS or MMD divergences",
                given=str(term),
                fix="use KL, JS or MMD (W is not smooth; D_f has no torch generator here)",
            )
        if term.outer is not None and not allow_nonconvex:
            raise ObjectiveError(
                f"the constraint {term} is not convex in the tables (Lemma 1 covers marginals and joints)",
                expected="a divergence between marginals or joints",
                given=str(term),
                fix="constrain the joint divergence instead, or pass allow_nonconvex=True (no duality guarantee)",
            )
        try:
            e = float(e)
        except (TypeError, ValueError) as err:
            raise ObjectiveError(f"the bound of {term} is not a number", expected="a float eps > 0",
                                 given=repr(e), fix=f"pass ({term}, 0.1)") from err
        if not e > 0 or not np.isfinite(e):
            raise ObjectiveError(f"the bound of {term} is not positive",
                                 expected="eps > 0 (Theorem 2 needs strict feasibility)",
                                 given=repr(e), fix="relax the constraint to a small positive eps")
        terms.append(term)
        eps.append(e)
    return tuple(terms), np.array(eps, dtype=np.float64)


class _TorchTables:
    """Log-tables of every density of a model as differentiable functions of the logits."""

    def __init__(self, torch, log_qx, log_pz, theta_q, theta_p):
        t = torch
        self.t = t
        self.log_qzx = t.log_softmax(theta_q, dim=1)  # [x, z]
        self.log_pxz_c = t.log_softmax(theta_p, dim=1)  # [z, x]
        self.log_qx = log_qx
        self.log_pz = log_pz
        self.log_q_joint = log_qx[:, None] + self.log_qzx  # [x, z]
        self.log_p_joint = (log_pz[:, None] + self.log_pxz_c).T  # [x, z]
        self.log_qz = t.logsumexp(self.log_q_joint, dim=0)
        self.log_px = t.logsumexp(self.log_p_joint, dim=1)

    def log_grid(self, d):
        key = (d.family, d.vars, d.given)
        return {
            ("q", ("x",), ()): lambda: self.log_qx[:, None],
            ("q", ("z",), ()): lambda: self.log_qz[None, :],
            ("q", ("x", "z"), ()): lambda: self.log_q_joint,
            ("q", ("z",), ("x",)): lambda: self.log_qzx,
            ("q", ("x",), ("z",)): lambda: self.log_q_joint - self.log_qz[None, :],
            ("p", ("x",), ()): lambda: self.log_px[:, None],
            ("p", ("z",), ()): lambda: self.log_pz[None, :],
            ("p", ("x", "z"), ()): lambda: self.log_p_joint,
            ("p", ("x",), ("z",)): lambda: self.log_pxz_c.T,
            ("p", ("z",), ("x",)): lambda: self.log_p_joint - self.log_px[:, None],
        }[key]()

    def rows(self, term: Divergence, shape):
        """(log weights (r,), log left rows (r, n), log right rows (r, n))."""
        t = self.t
        left, right = self.log_grid(term.left), self.log_grid(term.right)
        vars_ = term.left.vars
        if term.outer is None:
            sub = (shape[0] if "x" in vars_ else 1, shape[1] if "z" in vars_ else 1)
            a = left.expand(sub).reshape(1, -1)
            b = right.expand(sub).reshape(1, -1)
            return t.zeros(1, dtype=a.dtype), a, b
        w = self.log_grid(term.outer)
        a, b = left.expand(shape), right.expand(shape)
        if term.outer.vars == ("x",):
            return w[:, 0], a, b
        return w[0, :], a.T, b.T

    def divergence(self, term: Divergence, shape, kernel):
        t = self.t
        log_w, la, lb = self.rows(term, shape)
        w = t.exp(log_w)
        if term.kind == "KL":
            a = t.exp(la)
            per_row = (a * (la - lb)).sum(dim=1)
        elif term.kind == "JS":
            a, b = t.exp(la), t.exp(lb)
            lm = t.logaddexp(la, lb) - np.log(2.0)
            per_row = 0.5 * (a * (la - lm)).sum(dim=1) + 0.5 * (b * (lb - lm)).sum(dim=1)
        else:  # MMD
            d = t.exp(la) - t.exp(lb)
            per_row = t.einsum("ri,ij,rj->r", d, kernel, d)
        return (w * per_row).sum()


def algorithm1(model: DiscreteModel, *, alpha=(1.0, 0.0), constraints=(), steps: int = 2000,
               lr_theta: float = 0.3, lr_lambda: float = 0.1, inner_steps: int = 1, lambda_init: float = 1.0,
               optimizer: str = "mirror", kernels: Mapping | None = None, positions: Mapping | None = None,
               allow_nonconvex: bool = False) -> DualResult:
    """Run Algorithm 1 from the conditionals of ``model`` (q(x) and p(z) stay fixed).

    ``alpha`` = (alpha1, alpha2) weighs I_q and I_p (each replaced by its upper bound when
    >= 0, its lower bound when < 0); ``constraints`` is {Divergence: eps} or a list of pairs.
    Each of the ``steps`` outer iterations makes ``inner_steps`` primal steps on the
    parameters and one projected ascent step lambda <- max(0, lambda + lr_lambda (D - eps)).
    The primal step (rate ``lr_theta``) is one of

    * ``"mirror"`` (default): exponentiated gradient in distribution space, each row of
      q(z|x) and p(x|z) multiplied by exp(-lr_theta * dL/dprob) and renormalised (the
      entropic counterpart of the paper's projected gradient step on the tables; it reaches
      optima on the boundary of the simplex, where softmax-logit steps crawl). Per step a
      logit moves by at most 5 * lr_theta and no probability falls below exp(-60) times its
      row's largest;
    * ``"gd"``: plain gradient descent on the logits;
    * ``"adam"``: Adam on the logits.

    ``kernels`` and ``positions`` set the MMD kernel as in
    :func:`~lagrangian_family.backends.exact.evaluate.evaluate`. Start from a random point
    with ``DiscreteModel.random(nx, nz, rng, fixed=model)``.

    >>> m = DiscreteModel.random(2, 2, rng=0)
    >>> algorithm1(m, alpha=(0.0, 0.0), steps=5).objective.shape
    (5,)
    """
    import torch  # lazily: the exact backend stays importable without torch

    if not isinstance(model, DiscreteModel):
        raise ObjectiveError("Algorithm 1 runs on a DiscreteModel", expected="a DiscreteModel",
                             given=f"{type(model).__name__}", fix="build one with DiscreteModel.random(nx, nz, rng)")
    try:
        a1, a2 = (float(a) for a in alpha)
    except (TypeError, ValueError) as e:
        raise ObjectiveError("alpha is not a pair of numbers", expected="(alpha1, alpha2)",
                             given=repr(alpha), fix="pass alpha=(-1.0, 0.0) to maximise I_q") from e
    for name, table in (("q_x", model.q_x), ("p_z", model.p_z)):
        if np.any(table <= 0):
            raise ObjectiveError(
                f"{name} has zeros; Algorithm 1 needs a strictly positive data distribution and prior",
                expected=f"{name} > 0 everywhere", given=f"{int(np.sum(table <= 0))} zero entries",
                fix="drop the values of zero probability from the model",
            )
    if optimizer not in ("mirror", "gd", "adam"):
        raise ObjectiveError(f"unknown optimizer {optimizer!r}", expected="'mirror', 'gd' or 'adam'",
                             given=repr(optimizer), fix="pass optimizer='mirror'")
    for name, v in (("steps", steps), ("inner_steps", inner_steps)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ObjectiveError(f"{name} is not a positive integer", expected="an int >= 1",
                                 given=repr(v), fix=f"pass {name}=1 or more")
    for name, v in (("lr_theta", lr_theta), ("lr_lambda", lr_lambda)):
        if not (isinstance(v, (int, float)) and v > 0 and np.isfinite(v)):
            raise ObjectiveError(f"{name} is not a positive step size", expected="a float > 0",
                                 given=repr(v), fix=f"pass {name}=0.1")
    if not (lambda_init >= 0 and np.isfinite(lambda_init)):
        raise ObjectiveError("lambda_init is not a non-negative number", expected="a float >= 0",
                             given=repr(lambda_init), fix="pass lambda_init=1.0 (the paper's)")
    terms, eps = _check_constraints(constraints, allow_nonconvex)
    geometry = Geometry.build(model.nx, model.nz, positions=positions, kernels=kernels)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 3x3 tables: worker threads only spin
    try:
        return _run(torch, model, a1, a2, terms, eps, geometry, int(steps), float(lr_theta), float(lr_lambda),
                    int(inner_steps), float(lambda_init), optimizer)
    finally:
        torch.set_num_threads(threads)


class _Problem:
    """The primal objective and the constraint divergences as torch functions of the logits."""

    def __init__(self, torch, model: DiscreteModel, a1: float, a2: float, terms, geometry: Geometry):
        dt = torch.float64
        self.torch, self.dt = torch, dt
        self.a1, self.a2, self.terms = a1, a2, terms
        self.shape = model.shape
        self.log_qx = torch.tensor(np.log(model.q_x), dtype=dt)
        self.log_pz = torch.tensor(np.log(model.p_z), dtype=dt)
        self.h_qx, self.h_pz = float(model.H_q_x), float(model.H_p_z)
        self.kernels = [torch.tensor(geometry.kernel(term.left.vars), dtype=dt) for term in terms]

    def logits(self, table: np.ndarray):
        """Row-normalised logits of a table, each probability floored at exp(-_LOGIT_FLOOR) of its row's max."""
        floor = np.exp(-_LOGIT_FLOOR)
        lg = np.log(np.maximum(table, floor * table.max(axis=1, keepdims=True)))
        return self.torch.tensor(lg - lg.max(axis=1, keepdims=True), dtype=self.dt, requires_grad=True)

    def forward(self, theta_q, theta_p):
        """(f, D, (log q(z|x), log p(x|z))) at the logits."""
        t = self.torch
        tab = _TorchTables(t, self.log_qx, self.log_pz, theta_q, theta_p)
        f = t.zeros((), dtype=self.dt)
        if self.a1 != 0:
            if self.a1 >= 0:  # E_q(x)[KL(q(z|x) || p(z))]
                bound = (tab.log_q_joint.exp() * (tab.log_qzx - self.log_pz[None, :])).sum()
            else:  # E_q(x,z)[log p(x|z)] + H_q(x)
                bound = (tab.log_q_joint.exp() * tab.log_pxz_c.T).sum() + self.h_qx
            f = f + self.a1 * bound
        if self.a2 != 0:
            if self.a2 >= 0:  # E_p(z)[KL(p(x|z) || q(x))]
                bound = (tab.log_p_joint.exp().T * (tab.log_pxz_c - self.log_qx[None, :])).sum()
            else:  # E_p(x,z)[log q(z|x)] + H_p(z)
                bound = (tab.log_p_joint.exp() * tab.log_qzx).sum() + self.h_pz
            f = f + self.a2 * bound
        ds = [tab.divergence(term, self.shape, k) for term, k in zip(self.terms, self.kernels)]
        d = t.stack(ds) if ds else t.zeros(0, dtype=self.dt)
        return f, d, (tab.log_qzx, tab.log_pxz_c)


def lagrangian_parts(model: DiscreteModel, *, alpha=(1.0, 0.0), constraints=(), kernels: Mapping | None = None,
                     positions: Mapping | None = None) -> tuple[float, np.ndarray]:
    """(f, D): the primal objective and the constraint divergences as Algorithm 1 computes them (torch).

    ``constraints`` is a sequence of divergences (or the {divergence: eps} of :func:`algorithm1`).
    Tables are floored at exp(-60) of each row's maximum, as in Algorithm 1.

    >>> from lagrangian_family.symbolic.terms import Density, Divergence
    >>> m = DiscreteModel.random(3, 3, rng=1)
    >>> f, d = lagrangian_parts(m, alpha=(1.0, 0.0))
    >>> bool(np.isclose(f, primal_bounds(m, (1.0, 0.0)))), d.shape
    (True, (0,))
    """
    import torch

    a1, a2 = (float(a) for a in alpha)
    if isinstance(constraints, Mapping):
        constraints = list(constraints)
    terms, _ = _check_constraints([(t, 1.0) for t in constraints], allow_nonconvex=True)
    geometry = Geometry.build(model.nx, model.nz, positions=positions, kernels=kernels)
    problem = _Problem(torch, model, a1, a2, terms, geometry)
    with torch.no_grad():
        f, d, _ = problem.forward(problem.logits(model.q_z_given_x), problem.logits(model.p_x_given_z))
    return float(f), d.numpy().copy()


def _run(torch, model, a1, a2, terms, eps, geometry, steps, lr_theta, lr_lambda, inner_steps, lambda_init,
         optimizer) -> DualResult:
    dt = torch.float64
    problem = _Problem(torch, model, a1, a2, terms, geometry)
    theta_q, theta_p = problem.logits(model.q_z_given_x), problem.logits(model.p_x_given_z)
    params = [theta_q, theta_p]

    def forward():
        return problem.forward(theta_q, theta_p)

    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr_theta)
    elif optimizer == "gd":
        opt = torch.optim.SGD(params, lr=lr_theta)
    else:
        opt = None
    lam = np.full(len(terms), lambda_init)
    eps_t = torch.tensor(eps, dtype=dt)
    rec_lam, rec_d, rec_f, rec_l = [], [], [], []
    f, d, log_probs = forward()
    for _ in range(steps):
        lam_t = torch.tensor(lam, dtype=dt)
        for _ in range(inner_steps):
            for theta in params:
                theta.grad = None
            loss = f + (lam_t * (d - eps_t)).sum()
            if not loss.requires_grad:  # alpha = 0 and no constraint: nothing moves
                break
            loss.backward()
            if opt is None:  # mirror descent: the logits move by the gradient w.r.t. the probabilities
                with torch.no_grad():
                    for theta, log_prob in zip(params, log_probs):
                        step = theta.grad * torch.exp(-log_prob)  # dL/dlogit = prob * (dL/dprob - mean)
                        theta -= lr_theta * step.clamp(-_MAX_STEP, _MAX_STEP)
                        theta -= theta.max(dim=1, keepdim=True).values
                        theta.clamp_(min=-_LOGIT_FLOOR)
            else:
                opt.step()
            f, d, log_probs = forward()
        d_np = d.detach().numpy().copy()
        f_val = float(f.detach())
        rec_l.append(f_val + float(np.dot(lam, d_np - eps)))
        lam = np.maximum(0.0, lam + lr_lambda * (d_np - eps))
        rec_lam.append(lam.copy())
        rec_d.append(d_np)
        rec_f.append(f_val)

    with torch.no_grad():
        q_table = torch.softmax(theta_q, dim=1).numpy()
        p_table = torch.softmax(theta_p, dim=1).numpy()
    final = model.with_conditionals(q_z_given_x=q_table / q_table.sum(axis=1, keepdims=True),
                                    p_x_given_z=p_table / p_table.sum(axis=1, keepdims=True))
    k = len(terms)
    bounds = ("upper" if a1 >= 0 else "lower", "upper" if a2 >= 0 else "lower")
    return DualResult(
        model=final, terms=terms, eps=eps,
        lambdas=np.array(rec_lam).reshape(steps, k), constraints=np.array(rec_d).reshape(steps, k),
        objective=np.array(rec_f), lagrangian=np.array(rec_l), alpha=(a1, a2), bounds=bounds,
    )
