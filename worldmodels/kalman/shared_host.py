"""The shared path's covariance recursion on the host, in float64 NumPy.

When ``A``, ``C``, ``P0`` are shared, the covariances and gains depend on the step only and are
computed on single ``[n, n]`` matrices (see :mod:`worldmodels.kalman.shared`).  A small-matrix
NumPy operation costs about a microsecond where a PyTorch one costs several, so when no gradient
flows into the covariances and the tensors live on the CPU, the shared path runs the same
recursions here, in float64, and converts the results once to the batch's dtype
(:func:`worldmodels.kalman.shared.compute_covariances` decides).  With gradients, or on another
device, the PyTorch implementation runs instead; both give the same values up to rounding.

The recursions are those of :mod:`worldmodels.kalman.shared`: the filter's Riccati recursion,
stopped at its steady state (the filtered covariance changes by at most ``tol`` relative to its
largest entry in one step; later steps repeat it), and the smoother's covariance recursion
``P_t = Lc_t + J_t P_t+1 J_t^T``, whose constant run is solved in closed form up to where it
stops changing.  Compact stacks ``[k, ., .]`` mean that steps ``t >= k`` repeat step ``k - 1``.
Everything here is NumPy ``float64``; nothing imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class NotPositiveDefinite(ValueError):
    """A covariance of the recursion is not positive definite."""


@dataclass
class HostGains:
    """Filter covariances and gains (float64, compact ``k`` steps), as
    :class:`worldmodels.kalman.shared.SharedGains`: ``pred_cov``, ``filt_cov``, ``pred_prec``
    ``[k, n, n]``, ``gain`` ``[k, n, m]``, ``update`` ``[k, n, n]``, ``transition``
    ``[max(k, 2), n, n]``, ``chol_inv`` ``[k, m, m]``, ``half_logdet`` ``[]``."""

    pred_cov: np.ndarray
    filt_cov: np.ndarray
    pred_prec: np.ndarray
    gain: np.ndarray
    update: np.ndarray
    transition: np.ndarray
    chol_inv: np.ndarray
    half_logdet: np.ndarray


def _mT(X: np.ndarray) -> np.ndarray:
    return X.swapaxes(-1, -2)


def _sym(X: np.ndarray) -> np.ndarray:
    return (X + _mT(X)) * 0.5


def _cholesky(X: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factors of ``X`` ``[..., k, k]``; :class:`NotPositiveDefinite` naming
    ``what`` if one fails."""
    try:
        return np.linalg.cholesky(X)
    except np.linalg.LinAlgError:
        raise NotPositiveDefinite(f"{what} is not positive definite; check the scale of Q, R, P0 "
                                  "and the observations, or use float64") from None


NOISE_NAMES = ("R", "P0", "Q")   # the matrices of :func:`noise_stack`, in order


def noise_stack(R: np.ndarray, P0: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``R`` ``[m, m]``, ``P0`` and ``Q`` ``[n, n]`` in one stack ``[3, s, s]``, ``s = max(m, n)``,
    each in the top-left corner with zeros around it (so per-matrix maxima are those of the
    matrices): one symmetry test (:func:`symmetric`) and one factorisation
    (:func:`check_noise_positive_definite`) cover all three."""
    mats = (R, P0, Q)
    s = max(R.shape[0], Q.shape[0])
    X = np.zeros((3, s, s))
    for i, a in enumerate(mats):
        X[i, :a.shape[0], :a.shape[0]] = a
    return X


def check_noise_positive_definite(X: np.ndarray, sizes: tuple[int, int, int]) -> None:
    """:class:`NotPositiveDefinite` naming the first of ``R``, ``P0``, ``Q`` (a
    :func:`noise_stack` ``X``, whose matrices are ``sizes`` square) that is not positive definite.

    One Cholesky factorisation of the stack, whose padding is set to the identity in place (a
    block-diagonal matrix is positive definite exactly when its blocks are); only after a
    failure are the matrices factorised one by one, to name the culprit."""
    s = X.shape[-1]
    for i, k in enumerate(sizes):
        if k < s:
            X[i, k:, k:] = np.eye(s - k)
    try:
        np.linalg.cholesky(X)
    except np.linalg.LinAlgError:
        for name, a, k in zip(NOISE_NAMES, X, sizes):
            _cholesky(a[:k, :k], name)
        raise NotPositiveDefinite("R, P0 or Q is not positive definite") from None


def symmetric(mats: list[np.ndarray]) -> bool:
    """Every matrix of ``mats`` (each ``[..., k, k]``) is symmetric to ``1e-5`` relative to its
    largest entry, as the input checks require; a NaN or inf entry fails (``inf - inf``)."""
    for a in mats:
        scale = np.abs(a).max(axis=(-2, -1))
        if not (np.abs(a - a.swapaxes(-1, -2)).max(axis=(-2, -1)) <= 1e-5 * scale).all():
            return False
    return True


def repeat_last(X: np.ndarray, steps: int) -> np.ndarray:
    """Compact stack ``X`` ``[k, ...]`` at full length ``[steps, ...]`` (entries >= k repeat
    ``X[k - 1]``; ``k <= steps``)."""
    k = X.shape[0]
    if k == steps:
        return X
    return np.concatenate([X, np.broadcast_to(X[-1], (steps - k, *X.shape[1:]))])


def first_converged(X: np.ndarray, tol: float) -> int | None:
    """Smallest ``i >= 1`` with ``X[i]`` within ``tol`` of ``X[i - 1]`` relative to ``max |X[i]|``
    (``X`` ``[j, r, c]``): the stop rule of :func:`worldmodels.kalman.shared.first_converged`."""
    if X.shape[0] < 2:
        return None
    X = X.reshape(X.shape[0], -1)
    change = np.abs(X[1:] - X[:-1]).max(1)
    hits = np.flatnonzero(change <= tol * np.abs(X[1:]).max(1))
    return int(hits[0]) + 1 if hits.size else None


def filter_covariances(A: np.ndarray, C: np.ndarray, Q: np.ndarray, R: np.ndarray,
                       P0: np.ndarray, steps: int, tol: float, check_first: int,
                       noise: np.ndarray | None = None) -> HostGains:
    """Riccati recursion, stopped at the steady state (``tol``: relative
    change per step, e.g. ``STEADY_ULPS`` units of rounding of the result's dtype; checked after
    ``check_first`` steps, then after chunks one step longer each time).

    ``A`` ``[n, n]``, ``C`` ``[m, n]``, ``Q`` ``[n, n]``, ``R`` ``[m, m]``, ``P0`` ``[n, n]``
    float64.  Per step ``P_t|t = (P_t|t-1^-1 + C^T R^-1 C)^-1``, computed as
    ``(I + P_t|t-1 C^T R^-1 C)^-1 P_t|t-1`` (one solve), and ``P_t+1|t = A P_t|t A^T + Q``; the
    inverses ``P_t|t-1^-1`` come in one batched call.  ``R``, ``P0`` and ``Q`` positive definite
    make every covariance of the recursion positive definite; they (in one factorisation of
    ``noise``, their :func:`noise_stack`, built here if not given; its padding is overwritten)
    and the innovation covariances are checked (:class:`NotPositiveDefinite`).
    """
    n, m = A.shape[0], R.shape[0]
    check_noise_positive_definite(noise_stack(R, P0, Q) if noise is None else noise, (m, n, n))
    RinvC = np.linalg.solve(R, C)                          # R^-1 C
    info_gain = C.T @ RinvC                                # C^T R^-1 C
    At, eye, solve = A.T, np.eye(n), np.linalg.solve
    P = P0
    preds, filts = [], []
    k, t, chunk = steps, 0, check_first
    while t < k:
        stop = min(steps, t + chunk)
        chunk += 1
        for s in range(t, stop):
            if s > 0:
                P = A @ P @ At + Q
            preds.append(P)
            P = solve(eye + P @ info_gain, P)              # (P^-1 + C^T R^-1 C)^-1, one solve
            filts.append(P)
        lo = max(0, t - 1)                                 # include the previous chunk's last step
        i = first_converged(np.array(filts[lo:stop]), tol)
        if i is not None:
            k = lo + i + 1                                 # step lo + i repeats step lo + i - 1
        t = stop
    pred_cov, filt_cov = _sym(np.array([preds[:k], filts[:k]]))   # [k, n, n] each
    pred_prec = _sym(np.linalg.inv(pred_cov))
    L = _cholesky(C @ pred_cov @ C.T + R, "an innovation covariance")
    gain = filt_cov @ RinvC.T                              # K = P_t|t C^T R^-1
    G = np.eye(n) - gain @ C
    half = np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
    return HostGains(pred_cov=pred_cov, filt_cov=filt_cov, pred_prec=pred_prec,
                     gain=gain, update=G,
                     transition=np.concatenate([G[:1], (G @ A)[min(1, k - 1):]]),
                     chol_inv=np.linalg.inv(L),
                     half_logdet=np.asarray(half.sum() + (steps - k) * half[-1]))


def powers(J: np.ndarray, count: int, tol: float) -> np.ndarray:
    """``J^0 .. J^c`` ``[c + 1, n, n]`` by doublings (log2 c products): ``c = count``, or fewer
    once ``(n max |J^c|)^2 <= tol``, so that later terms ``J^s X J^sT`` change ``X``-sized
    sums by less than ``tol`` relative (the stop rule of :func:`filter_covariances`)."""
    n = J.shape[0]
    pw = np.array([np.eye(n), J])
    while pw.shape[0] < count + 1 and (n * np.abs(pw[-1]).max()) ** 2 > tol:
        pw = np.concatenate([pw, pw[-1] @ J @ pw])         # J^(m-1) J J^l = J^(m+l)
    return pw[:count + 1]


def smoother_covariances(g: HostGains, A: np.ndarray, Q: np.ndarray, steps: int, tol: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoother gains ``J`` ``[kk, n, n]`` (compact), smoothed covariances ``[T, n, n]`` and
    cross covariances ``[T-1, n, n]`` (``cross[t] = Cov(z_t+1, z_t | all)``), for T >= 2.

    ``J_t = P_t|t A^T P_t+1|t^-1`` and ``P_t = Lc_t + J_t P_t+1 J_t^T`` backwards from
    ``P_T-1|T-1``, with ``Lc_t = (I - J_t A) P_t|t (I - J_t A)^T + J_t Q J_t^T``.  The constant
    run (t >= kk - 1) in closed form, ``P_T-1-s = sum_{l<s} J^l Lc J^lT + J^s P_T-1 J^sT``,
    batched over s up to where the powers of J become negligible (:func:`powers` with ``tol`` as
    in :func:`filter_covariances`; earlier steps repeat that one); the distinct steps t < kk - 1
    are stepped."""
    T, n = steps, A.shape[0]
    kk = min(g.gain.shape[0], T - 1)                       # distinct smoother gains, t = 0..T-2
    Pf = g.filt_cov[:kk]
    Yp = g.pred_prec[np.minimum(np.arange(1, kk + 1), g.pred_prec.shape[0] - 1)]   # P_t+1|t^-1
    J = Pf @ A.T @ Yp
    IJA = np.eye(n) - J @ A
    Lc = IJA @ Pf @ _mT(IJA) + J @ Q @ _mT(J)
    P_last = g.filt_cov[-1]
    run = T - kk                                           # steps t = T-2 .. kk-1 of the constant run
    pw = powers(J[-1], run, tol)
    c = pw.shape[0] - 1
    head, tail = pw[:-1], pw[1:]
    seq = (head @ Lc[-1] @ _mT(head)).cumsum(0) + tail @ P_last @ _mT(tail)   # P_T-1-s, s = 1..c
    cov = np.empty((T, n, n))
    cov[T - 1] = P_last
    cov[T - 1 - c:T - 1] = seq[::-1]
    cov[kk - 1:T - 1 - c] = seq[-1]
    P = cov[kk - 1]
    Jt = _mT(J)
    for s in range(kk - 2, -1, -1):                        # distinct head steps
        P = cov[s] = Lc[s] + J[s] @ P @ Jt[s]
    cov = _sym(cov)
    Jfull = J[np.minimum(np.arange(T - 1), kk - 1)]
    return J, cov, cov[1:] @ _mT(Jfull)
