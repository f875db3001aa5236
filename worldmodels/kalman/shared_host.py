"""The shared path's covariance recursion on the host, in float64 NumPy.

When ``A``, ``C``, ``P0`` are shared, the covariances and gains depend on the step only and are
computed on single ``[n, n]`` matrices (see :mod:`worldmodels.kalman.shared`).  A small-matrix
NumPy operation costs about a microsecond where a PyTorch one costs several, so when no gradient
flows into the covariances and the tensors live on the CPU, the shared path runs the same
recursion here, in float64, and converts the results once to the batch's dtype
(:func:`worldmodels.kalman.shared.shared_covariances` decides).  With gradients, or on another
device, the PyTorch implementation runs instead; both give the same values up to rounding.

The recursions are those of :mod:`worldmodels.kalman.shared`: the filter in information form,
stopped at its steady state (the filtered covariance changes by at most ``tol`` relative to its
largest entry in one step; later steps repeat it), and the smoother's covariance recursion
``P_t = Lc_t + J_t P_t+1 J_t^T``, stopped likewise once it reaches its fixed point.  Compact
stacks ``[k, ., .]`` mean that steps ``t >= k`` repeat step ``k - 1``.  Everything here is
NumPy ``float64``; nothing imports torch.
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
    ``what`` if one fails or is not finite."""
    try:
        L = np.linalg.cholesky(X)
    except np.linalg.LinAlgError:
        L = None
    if L is None or not np.isfinite(L).all():
        raise NotPositiveDefinite(f"{what} is not positive definite; check the scale of Q, R, P0 "
                                  "and the observations, or use float64")
    return L


def _step_converged(P: np.ndarray, prev: np.ndarray, tol: float) -> bool:
    """``P`` within ``tol`` of ``prev`` relative to ``max |P|``: the stop rule of
    :func:`worldmodels.kalman.shared.first_converged`."""
    return float(np.abs(P - prev).max()) <= tol * float(np.abs(P).max())


def filter_covariances(A: np.ndarray, C: np.ndarray, Q: np.ndarray, R: np.ndarray,
                       P0: np.ndarray, steps: int, tol: float) -> HostGains:
    """Riccati recursion in information form, stopped at the steady state (``tol``: relative
    change per step, e.g. ``STEADY_ULPS`` units of rounding of the result's dtype).

    ``A`` ``[n, n]``, ``C`` ``[m, n]``, ``Q`` ``[n, n]``, ``R`` ``[m, m]``, ``P0`` ``[n, n]``
    float64.  Per step ``P_t|t = (P_t|t-1^-1 + C^T R^-1 C)^-1`` and ``P_t+1|t = A P_t|t A^T + Q``;
    the positive definiteness of every covariance is checked once, on the whole stack, at the end.
    """
    n = A.shape[0]
    _cholesky(R, "R")
    RinvC = np.linalg.solve(R, C)                          # R^-1 C
    info_gain = C.T @ RinvC                                # C^T R^-1 C
    At = A.T
    P = P0
    preds, precs, filts = [], [], []
    for t in range(steps):
        if t > 0:
            P = A @ P @ At + Q
        preds.append(P)
        Y = np.linalg.inv(P)
        precs.append(Y)
        P = np.linalg.inv(Y + info_gain)
        filts.append(P)
        if t > 0 and _step_converged(P, filts[-2], tol):
            break
    pred_cov, filt_cov = _sym(np.stack(preds)), _sym(np.stack(filts))
    k = pred_cov.shape[0]
    _cholesky(np.concatenate([pred_cov, filt_cov]), "a predicted or filtered covariance")
    L = _cholesky(C @ pred_cov @ C.T + R, "an innovation covariance")
    gain = filt_cov @ RinvC.T                              # K = P_t|t C^T R^-1
    G = np.eye(n) - gain @ C
    GA = G @ A
    half = np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
    return HostGains(pred_cov=pred_cov, filt_cov=filt_cov, pred_prec=_sym(np.stack(precs)),
                     gain=gain, update=G,
                     transition=np.concatenate([G[:1], GA[min(1, k - 1):]]),
                     chol_inv=np.linalg.inv(L),
                     half_logdet=np.asarray(half.sum() + (steps - k) * half[-1]))


def smoother_covariances(g: HostGains, A: np.ndarray, Q: np.ndarray, steps: int, tol: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoother gains ``J`` ``[kk, n, n]`` (compact), smoothed covariances ``[T, n, n]`` and
    cross covariances ``[T-1, n, n]`` (``cross[t] = Cov(z_t+1, z_t | all)``), for T >= 2.

    ``J_t = P_t|t A^T P_t+1|t^-1`` and ``P_t = Lc_t + J_t P_t+1 J_t^T`` backwards from
    ``P_T-1|T-1``, with ``Lc_t = (I - J_t A) P_t|t (I - J_t A)^T + J_t Q J_t^T``: the constant
    run (t >= kk - 1) is stepped until its fixed point (``tol`` as in
    :func:`filter_covariances`) and repeated, the distinct steps t < kk - 1 are stepped."""
    T, n = steps, A.shape[0]
    kk = min(g.gain.shape[0], T - 1)                       # distinct smoother gains, t = 0..T-2
    Pf = g.filt_cov[:kk]
    prec_next = g.pred_prec[1:] if g.pred_prec.shape[0] > 1 else g.pred_prec
    Yp = prec_next[np.minimum(np.arange(kk), prec_next.shape[0] - 1)]   # P_t+1|t^-1
    J = Pf @ A.T @ Yp
    IJA = np.eye(n) - J @ A
    Lc = IJA @ Pf @ _mT(IJA) + J @ Q @ _mT(J)
    cov = np.empty((T, n, n))
    P = cov[T - 1] = g.filt_cov[-1]
    Jc, Jct, Lcc = J[-1], J[-1].T, Lc[-1]
    t = T - 2
    while t >= kk - 1:                                     # constant run, backwards
        P_next = Lcc + Jc @ P @ Jct
        cov[t] = P_next
        if _step_converged(P_next, P, tol):
            cov[kk - 1:t] = P_next
            t = kk - 2
            P = P_next
            break
        P, t = P_next, t - 1
    for s in range(t, -1, -1):                             # distinct head steps
        P = Lc[s] + J[s] @ P @ J[s].T
        cov[s] = P
    cov = _sym(cov)
    Jfull = J[np.minimum(np.arange(T - 1), kk - 1)]
    return J, cov, cov[1:] @ _mT(Jfull)
