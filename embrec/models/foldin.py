"""Fold-in solvers: the factors of a user known only by a history, the item side held fixed.

Every history is solved on its own: there is no state shared between users, so a user's vector never
depends on who else is in the call, and a batch gives what one-at-a-time calls give. The expensive
parts of one user's solve are BLAS-3 products over that user's own history (and the catalogue); the
small (d x d) systems of all users of a call are solved together (``np.linalg.solve`` on a stack).

    weighted_ridge(...)      closed form: (G + Y_hᵀ diag(a) Y_h + λ I) x = Y_hᵀ b    (ALS, explicit MF)
    newton(...)              a few damped Newton steps on each user's own convex objective, from a
                             closed-form start (rating-dnn's Gauss-Newton); the caller supplies
                             gradient and Hessian of ONE user's objective
    quasi_newton(...)        BFGS on each user's own convex objective from the closed-form start and
                             its Hessian (BPR, implicit MF): gradients only, O(I·d) a step instead of
                             a catalogue-wide d x d Hessian, O(I·d²)

Memory is bounded per user: callers stream a long history against the catalogue in row blocks of
``pair_block(n_items)`` history items, so a 2,000-item history over 50,000 items never holds a
2,000 x 50,000 matrix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from embrec.data.ragged import Ragged

T = TypeVar("T")

#: history x catalogue cells one block of a per-user computation may hold (float32: 1 MiB, so a
#: block and the catalogue's vectors stay in a core's L2 cache: measured on BPR's gradient at 500
#: history items over 3,000 items, 1.0 ms against 1.35 ms with 8 MiB blocks; at 50 items one block
#: either way)
BLOCK_CELLS = 2**18


def pair_block(n_items: int) -> int:
    """How many history items one block holds so that block x n_items stays within BLOCK_CELLS."""
    return max(1, BLOCK_CELLS // max(n_items, 1))


@functools.cache
def _blas_libraries() -> tuple[Any, list[Any]]:
    """threadpoolctl's controller of the BLAS libraries numpy and scipy load, scanned once a process
    (a scan costs milliseconds: too much for every call)."""
    import scipy.linalg  # noqa: F401  (scipy's own OpenBLAS must be loaded to be found)
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    return blas, blas.lib_controllers


def one_blas_thread(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` with BLAS limited to one thread (restored after). Fold-in is small linear algebra
    per user (d x d Cholesky, history x d products), where BLAS threads cost more than they save, and
    far more on a busy machine: a 65 x 65 SPD inverse took 0.3 ms on one thread against 3.8 ms on two
    threads at load 20 (50 ms inside a fit, whose calibration folds in 300 users). Nothing is changed
    when BLAS already runs one thread (``OMP_NUM_THREADS=1``, a serving worker), and the check then
    costs a few microseconds."""

    @functools.wraps(fn)
    def limited(*args: Any, **kwargs: Any) -> T:
        blas, libs = _blas_libraries()
        if all(lib.num_threads == 1 for lib in libs):
            return fn(*args, **kwargs)
        with blas.limit(limits=1):
            return fn(*args, **kwargs)

    return limited


def spd_inverse(h: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite (d, d) float64 matrix by Cholesky (LAPACK potrf +
    potri: half numpy's general inverse at d = 65); a matrix that is not SPD goes to np.linalg.inv."""
    from scipy.linalg import lapack

    c, info = lapack.dpotrf(h, lower=False, clean=False)
    if info == 0:
        inv, info = lapack.dpotri(c, lower=False)
        if info == 0:  # potri fills the upper triangle: mirror it
            below = _below_diagonal(h.shape[0])
            inv[below] = inv.T[below]
            return inv
    return np.linalg.inv(h)


@functools.cache
def _below_diagonal(d: int) -> np.ndarray:
    return np.tri(d, k=-1, dtype=bool)


def scratch(ctx: dict, name: str, shape: tuple[int, int]) -> np.ndarray:
    """A float32 work array of ``shape`` kept in ``ctx["scratch"]`` (a ``threading.local`` the
    caller's ctx holds) per thread and grown as needed: a fresh history-block x catalogue array every
    gradient costs its page faults (~150 of them for 600 kB) each time, more than the arithmetic on it."""
    local = ctx["scratch"]
    buf = getattr(local, name, None)
    if buf is None or buf.shape[0] < shape[0] or buf.shape[1] != shape[1]:
        buf = np.empty(
            (max(shape[0], 0 if buf is None else buf.shape[0]), shape[1]), dtype=np.float32
        )
        setattr(local, name, buf)
    return buf[: shape[0]]


def distinct_items(hist: Ragged) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per history: its distinct item rows (sorted) and how often each occurs."""
    out = []
    for b in range(len(hist)):
        vals = hist.values[hist.offsets[b] : hist.offsets[b + 1]]
        items, counts = np.unique(vals, return_counts=True)
        out.append((items, counts))
    return out


def weighted_ridge(
    y: np.ndarray, base: np.ndarray, users: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """(B, d) solutions of ``(base + Y_hᵀ diag(a) Y_h) x = Y_hᵀ t`` for each user's (items, a, t).

    ``y`` (I, d) item vectors, ``base`` (d, d) the part shared by every user (e.g. YᵀY + λI, float64).
    Each system is built from that user's rows alone, in float64."""
    d = base.shape[0]
    a_all = np.empty((len(users), d, d))
    b_all = np.empty((len(users), d))
    for u, (items, a, t) in enumerate(users):
        yh = y[items].astype(np.float64)  # (n, d)
        a_all[u] = base + (yh.T * a) @ yh
        b_all[u] = yh.T @ t
    if not len(users):
        return np.zeros((0, d))
    return np.linalg.solve(a_all, b_all[:, :, None])[:, :, 0]


#: one user's objective at z: (gradient (d,), Hessian (d, d)), float64
Objective = Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def newton(
    objective: Objective,
    start: np.ndarray,
    scale: np.ndarray,
    *,
    steps: int,
    tol: float = 1e-9,
    eta: float = 0.5,
    max_halvings: int = 20,
) -> np.ndarray:
    """Damped Newton on each user's convex objective, all users of the call stepping together.

    ``start`` (B, d) the closed-form starting points; ``objective(u, z)`` gives user u's gradient and
    Hessian at z, alone. Along the Newton direction d the slope φ'(t) = g(z + t d) · d is checked, not
    the value (a catalogue-wide float32 sum of softplus is both slower and noisier than its gradient):
    a step is taken when φ'(t) ≤ eta · |φ'(0)| (for a quadratic the full step gives 0), else halved.
    A user stops when the Newton decrement gᵀH⁻¹g falls below ``tol`` · ``scale[u]`` (the step is then
    taken unchecked: quadratic convergence leaves an error of the order of its square), or after
    ``steps`` steps. Nothing is shared between users but the stacked (d x d) solve, so each user's
    result is that of a call with only them."""
    z = np.array(start, dtype=np.float64)
    b = len(z)
    if b == 0:
        return z
    evals = [objective(u, z[u]) for u in range(b)]
    active = np.ones(b, dtype=bool)
    for _ in range(steps):
        idx = np.flatnonzero(active)
        if not idx.size:
            break
        g = np.stack([evals[u][0] for u in idx])  # (A, d)
        h = np.stack([evals[u][1] for u in idx])  # (A, d, d)
        step = np.linalg.solve(h, g[:, :, None])[:, :, 0]  # (A, d): z - step is the Newton point
        decrement = np.einsum("ad,ad->a", g, step)  # (A,) = -φ'(0)
        for a, u in enumerate(idx):
            if not decrement[a] >= tol * scale[u]:  # converged (or a NaN): the last, tiny step
                if np.isfinite(step[a]).all():
                    z[u] -= step[a]
                active[u] = False
                continue
            t = 1.0
            for _ in range(max_halvings):
                cand = z[u] - t * step[a]
                ev = objective(u, cand)
                if -(ev[0] @ step[a]) <= eta * decrement[a]:
                    z[u], evals[u] = cand, ev
                    break
                t *= 0.5
            else:
                active[u] = False  # no acceptable step at machine precision: at the optimum
    return z


#: one user's gradient at z, float64
Gradient = Callable[[int, np.ndarray], np.ndarray]


def quasi_newton(
    gradient: Gradient,
    start: np.ndarray,
    inverse_hessians: np.ndarray,
    scale: np.ndarray,
    *,
    steps: int,
    tol: float = 1e-6,
    eta: float = 0.5,
    max_halvings: int = 20,
) -> np.ndarray:
    """BFGS on each user's convex objective from ``start`` (B, d), each user's inverse-Hessian
    estimate initialised from ``inverse_hessians`` (B, d, d) (the inverse of the closed-form start's
    own Hessian).

    ``gradient(u, z)`` is user u's gradient at z, alone. A step along the quasi-Newton direction is
    accepted when the slope there is at most ``eta`` times the slope at its origin (the test of
    ``newton``), else halved; the inverse Hessian is then updated by BFGS from the step and the change
    of gradient (the objectives are strictly convex: the curvature condition holds), the first update
    rescaling the start's estimate by sᵀy / yᵀH⁻¹y (Oren-Luenberger self-scaling: BPR's start
    overestimates the curvature by taking softplus'' at its maximum, 1/4; measured, 3 scaled steps
    reach the top-10 overlap of 5 unscaled ones). A user stops after ``steps`` steps, or when the estimated Newton decrement gᵀH⁻¹g
    (twice the decrease the quadratic model predicts) falls below ``tol`` · ``scale[u]``: that last,
    small step is then taken without a check (as in ``newton``; BFGS converges superlinearly, and on
    the benchmark's models the decrement after it is 1e-8 to 1e-11 of the scale), which saves the
    gradient evaluation a check would cost. Users share nothing, so a user's result is that of a call
    with only them."""
    z = np.array(start, dtype=np.float64)
    if not len(z) or steps < 1:
        return z
    inv = np.asarray(inverse_hessians, dtype=np.float64)  # (B, d, d)
    for u in range(len(z)):
        hi, zu = inv[u], z[u]
        g = gradient(u, zu)
        first = True
        for _ in range(steps):
            step = hi @ g  # zu - step is the quasi-Newton point
            decrement = float(g @ step)
            if not decrement >= tol * scale[u]:  # converged (or a NaN): the last, small step
                if np.isfinite(decrement):
                    zu = zu - step
                break
            t = 1.0
            for _ in range(max_halvings):
                cand = zu - t * step
                g_new = gradient(u, cand)
                if -float(g_new @ step) <= eta * decrement:
                    break
                t *= 0.5
            else:
                break  # no acceptable step at machine precision: at the optimum
            updated = _bfgs_update(hi, cand - zu, g_new - g, rescale=first)
            if updated is not None:
                hi, first = updated, False
            zu, g = cand, g_new
        z[u] = zu
    return z


def _bfgs_update(
    hi: np.ndarray, s: np.ndarray, y: np.ndarray, *, rescale: bool
) -> np.ndarray | None:
    """The BFGS update of the inverse Hessian estimate ``hi`` by the step ``s`` and the change of
    gradient ``y`` (a new array; ``hi`` is not modified): H⁻¹ − ρ(H⁻¹y sᵀ + s yᵀH⁻¹) + (ρ² yᵀH⁻¹y + ρ) s sᵀ,
    ρ = 1/sᵀy, with ``hi`` first rescaled by sᵀy / yᵀH⁻¹y when ``rescale`` (Oren-Luenberger). None
    when the curvature sᵀy is not safely positive (the estimate is then kept)."""
    sy = float(s @ y)
    if not sy > 1e-12 * float(np.sqrt(float(s @ s) * float(y @ y))):
        return None
    hy = hi @ y
    yhy = float(y @ hy)
    if rescale:
        gamma = sy / yhy
        hi, hy, yhy = hi * gamma, hy * gamma, yhy * gamma
    rho = 1.0 / sy
    u = (0.5 * (rho * rho * yhy + rho)) * s - rho * hy
    us = u[:, None] * s[None, :]  # (d, d)
    out = hi + us
    out += us.T
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = (1 + tanh(x/2)) / 2 elementwise, any x (numpy's tanh is vectorised: 10-50x faster than
    exp-based forms on float32; absolute error below 1e-7)."""
    t = np.tanh(x * x.dtype.type(0.5))
    t *= x.dtype.type(0.5)
    t += x.dtype.type(0.5)
    return t
