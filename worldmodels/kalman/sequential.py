"""Sequential (loop over time) Kalman filter, RTS smoother and backward sampler.

Layout conventions inside this module: per-step quantities that are the same for every
sequence (covariances when ``A``, ``C``, ``P0`` are shared and nothing is masked) are stored
as ``[T, n, n]``; per-sequence ones as ``[B, T, n, n]``.  Either way time is dim -3 of a
matrix stack, so ``X[..., t, :, :]`` picks step t.  Means are always ``[B, T, n]``.
"""

from __future__ import annotations

import torch

from worldmodels.kalman import batch_last, shared
from worldmodels.kalman.inputs import Problem
from worldmodels.kalman.results import FilterResult, SmootherResult
from worldmodels.kalman.shared import converged, repeat_last, steady_state_allowed
from worldmodels.kalman.steps import (
    gaussian_log_prob_chol,
    predict_rows,
    raise_if_not_pd,
    symmetrise,
    update_rows,
)


def _log_likelihood(pb: Problem, pred_mean: torch.Tensor, pred_cov: torch.Tensor) -> torch.Tensor:
    """Sum over observed steps of log N(a_t; C_t m_t|t-1, C_t P_t|t-1 C_t^T + R): ``[B]``."""
    C = pb.C
    S = C @ pred_cov @ C.mT + pb.R
    L, info = torch.linalg.cholesky_ex(S)
    raise_if_not_pd(info, "innovation covariance C P C^T + R")
    v = pb.obs - (pred_mean.unsqueeze(-2) @ C.mT).squeeze(-2)
    ll = gaussian_log_prob_chol(v, L)                      # [B, T] (or broadcast)
    ll = ll.expand(pb.batch, pb.steps)
    if pb.mask is not None:
        ll = torch.where(pb.mask, ll, torch.zeros((), dtype=ll.dtype, device=ll.device))
    return ll.sum(-1)


def _steps_matmul_tm(x: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Time-major ``x[t] @ M_t``: ``x [T, B, a]``, ``M [k, a, b]`` (steps >= k use ``M[k - 1]``)."""
    k, T = M.shape[0], x.shape[0]
    head = torch.bmm(x[:k], M) if x.is_contiguous() else torch.einsum("tba,tac->tbc", x[:k], M)
    if k == T:
        return head
    return torch.cat([head, (x[k:].reshape(-1, x.shape[-1]) @ M[-1]).reshape(T - k, x.shape[1], -1)], 0)


IMPLS = ("auto", "shared", "batch_first", "batch_last")


def _choose(pb: Problem, impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        if pb.shared:
            return "shared"
        return "batch_last" if batch_last.usable(pb) else "batch_first"
    if impl == "shared" and not pb.shared:
        raise ValueError("impl='shared' needs shared A, C, P0 and no mask")
    return impl


def filter_sequential(pb: Problem, impl: str = "auto") -> FilterResult:
    """Batched sequential Kalman filter (Joseph form, Cholesky gains, symmetrised covariances).

    ``impl``: ``"shared"`` (covariances computed once for the batch; needs ``pb.shared``),
    ``"batch_last"`` (elementwise tiny-matrix kernels, fastest on CPU), ``"batch_first"``
    (bmm / batched LAPACK, for GPUs) or ``"auto"`` (the best applicable one).
    """
    impl = _choose(pb, impl)
    if impl == "shared":
        return shared.filter_shared(pb)
    if impl == "batch_last":
        return batch_last.filter_batch_last(pb)
    batch, T, n = pb.batch, pb.steps, pb.n
    m = pb.mu0.unsqueeze(-2)                               # [B, 1, n]
    P = pb.P0.expand(batch, n, n)
    pm, pP, fm, fP, infos = [], [], [], [], []
    for t in range(T):
        if t > 0:
            m, P = predict_rows(m, P, pb.A_at(t), pb.Q, None if pb.Bu is None else pb.Bu[:, t])
        pm.append(m)
        pP.append(P)
        m_f, P_f, _, _, info = update_rows(m, P, pb.obs[:, t], pb.C_at(t), pb.R)
        if pb.mask is not None:
            keep = pb.mask[:, t, None, None]
            m_f = torch.where(keep, m_f, m)
            P_f = torch.where(keep, P_f, P)
            info = torch.where(pb.mask[:, t], info, torch.zeros_like(info))
        infos.append(info)
        m, P = m_f, P_f
        fm.append(m)
        fP.append(P)
    raise_if_not_pd(torch.stack(infos, 1), "innovation covariance C P C^T + R")
    pred_mean = torch.cat(pm, -2)
    pred_cov = symmetrise(torch.stack(pP, 1))
    ll = _log_likelihood(pb, pred_mean, pred_cov)
    return FilterResult(pred_mean=pred_mean, pred_cov=pred_cov, filt_mean=torch.cat(fm, -2),
                        filt_cov=torch.stack(fP, 1), log_likelihood=ll)


def smooth_sequential(pb: Problem, impl: str = "auto") -> SmootherResult:
    """Filter and RTS smoother in one call (``impl`` as in :func:`filter_sequential`).

    Problems with covariances shared by the batch (``"shared"``) use
    :func:`worldmodels.kalman.shared.smoother_shared`, which reuses the filter's compact gains.
    """
    impl = _choose(pb, impl)
    if impl == "shared":
        return shared.smoother_shared(pb)
    filt = filter_sequential(pb, impl)
    mean, cov, cross = smoother_sequential(pb, filt, impl)
    return SmootherResult(mean=mean, cov=cov, cross_cov=cross, filter=filt)


def _compact_cov(pb: Problem, cov: torch.Tensor) -> torch.Tensor:
    """``[T, n, n]`` view of a covariance stack that is shared by the batch, else unchanged."""
    if pb.shared and cov.dim() == 4 and cov.stride(0) == 0:
        return cov[0]
    return cov


def smoother_elements(pb: Problem, filt: FilterResult, impl: str = "auto"
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward conditionals p(z_t | z_{t+1}, a_{0:t}) = N(J_t z_{t+1} + g_t, L_t), t = 0..T-2.

    Returns ``Jt`` (= J_t^T) ``[(B,) T-1, n, n]``, ``g`` ``[B, T-1, n]``, ``L`` ``[(B,) T-1, n, n]``
    (leading B absent when the covariances are shared by the batch).  ``L`` uses the Joseph-like
    form ``(I - J A) P (I - J A)^T + J Q J^T`` so it stays PSD in low precision.
    """
    if _choose(pb, impl) == "batch_last":
        return batch_last.smoother_elements_batch_last(pb, filt)
    Pf = _compact_cov(pb, filt.filt_cov)[..., :-1, :, :]
    Pp = _compact_cov(pb, filt.pred_cov)[..., 1:, :, :]
    T1 = Pf.shape[-3]
    if Pf.dim() == 3 and T1 > 2 and steady_state_allowed(pb):
        # steady state: trailing steps repeat one covariance pair, compute it once
        same = (Pf == Pf[-1]).flatten(1).all(1) & (Pp == Pp[-1]).flatten(1).all(1)
        tail = int(same.flip(0).int().cumprod(0).sum().item())
        if tail >= 2:
            Pf, Pp = Pf[:T1 - tail + 1], Pp[:T1 - tail + 1]
    A = pb.A_from(1)                                       # [n, n] or [B, T-1, n, n]
    AP = A @ Pf
    Lp, info = torch.linalg.cholesky_ex(Pp)
    raise_if_not_pd(info, "predicted covariance")
    Jt = torch.cholesky_solve(AP, Lp)                      # J^T = Pp^-1 A Pf
    J = Jt.mT
    IJA = torch.eye(pb.n, dtype=Pf.dtype, device=Pf.device) - J @ A
    Lc = symmetrise((IJA @ Pf) @ IJA.mT + (J @ pb.Q) @ Jt)
    if Jt.dim() == 3:
        g = filt.filt_mean[:, :-1] - _steps_matmul_tm(filt.pred_mean[:, 1:].transpose(0, 1), Jt).transpose(0, 1)
        Jt, Lc = repeat_last(Jt, T1), repeat_last(Lc, T1)
    else:
        g = filt.filt_mean[:, :-1] - (filt.pred_mean[:, 1:].unsqueeze(-2) @ Jt).squeeze(-2)
    return Jt, g, Lc


def backward_affine(x_last: torch.Tensor, c: torch.Tensor, Jt: torch.Tensor) -> torch.Tensor:
    """Solve ``x_t = c_t + x_{t+1} J_t^T`` backwards (row vectors).

    ``x_last`` ``[*, n]`` (the value at T-1), ``c`` ``[*, T-1, n]``, ``Jt`` ``[(B,) T-1, n, n]``
    broadcasting with ``*``'s trailing dims.  Returns ``[*, T, n]``.
    """
    T1, n = c.shape[-2], c.shape[-1]
    if Jt.dim() == 3:                                      # shared: one addmm per step
        lead = c.shape[:-2]
        cf = c.reshape(-1, T1, n).transpose(0, 1).contiguous()   # time-major: contiguous rows
        x = x_last.expand(*lead, n).reshape(-1, n)
        xs = [x]
        for t in range(T1 - 1, -1, -1):
            x = torch.addmm(cf[t], x, Jt[t])
            xs.append(x)
        xs.reverse()
        return torch.stack(xs, 1).reshape(*lead, T1 + 1, n)
    xs = [x_last.unsqueeze(-2)]
    x = xs[0]
    for t in range(T1 - 1, -1, -1):
        x = torch.add(c[..., t, :].unsqueeze(-2), x @ Jt[..., t, :, :])
        xs.append(x)
    xs.reverse()
    return torch.cat(xs, -2)


def smoother_sequential(pb: Problem, filt: FilterResult, impl: str = "auto"
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RTS smoother. Returns ``(mean [B, T, n], cov [B, T, n, n], cross_cov [B, T-1, n, n])``.

    ``impl`` as in :func:`filter_sequential` (``"shared"`` and ``"batch_first"`` share this code).
    """
    batch, T, n = pb.batch, pb.steps, pb.n
    if T == 1:
        return filt.filt_mean, filt.filt_cov, filt.filt_cov.new_zeros(batch, 0, n, n)
    impl = _choose(pb, impl)
    if impl == "batch_last":
        return batch_last.smoother_batch_last(pb, filt)
    Jt, g, Lc = smoother_elements(pb, filt, impl)
    mean = backward_affine(filt.filt_mean[:, -1], g, Jt)
    P = _compact_cov(pb, filt.filt_cov)[..., -1, :, :]
    covs: list[torch.Tensor | None] = [None] * T
    covs[T - 1] = P
    # steady-state region of the filter: J_t and L_t are identical for t >= start
    start = T - 1
    if P.dim() == 2 and steady_state_allowed(pb):
        same = ((Jt == Jt[-1]).flatten(1).all(1) & (Lc == Lc[-1]).flatten(1).all(1)).flip(0)
        start = T - 1 - int(same.int().cumprod(0).sum().item())
    t = T - 2
    P_next = P  # covs[t + 1]
    while t >= 0:
        Jt_t = Jt[..., t, :, :]
        if P.dim() == 2:
            P = torch.addmm(Lc[t], Jt_t.mT @ P, Jt_t)
        else:
            P = torch.add(Lc[..., t, :, :], (Jt_t.mT @ P) @ Jt_t)
        P = (P + P.mT) * 0.5
        covs[t] = P
        if start < t < T - 2 and converged(P, P_next):
            covs[start:t] = [P] * (t - start)      # backward recursion at its fixed point too
            t = start
        P_next = P
        t -= 1
    done = [c for c in covs if c is not None]
    if len(done) != T:
        raise RuntimeError(f"smoother: {T - len(done)} of {T} smoothed covariances were not computed")
    cov = torch.stack(done, -3)
    cross = cov[..., 1:, :, :] @ Jt
    if cov.dim() == 3:
        cov = cov.expand(batch, T, n, n)
        cross = cross.expand(batch, T - 1, n, n)
    return mean, cov, cross


def cholesky_jitter(X: torch.Tensor, what: str) -> torch.Tensor:
    """Lower Cholesky factor of PSD ``X`` ``[..., k, k]``, retrying with a small relative jitter."""
    L, info = torch.linalg.cholesky_ex(X)
    if bool((info != 0).any()):
        scale = torch.diagonal(X, dim1=-2, dim2=-1).mean(-1, keepdim=True).unsqueeze(-1).detach()
        eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
        eps = torch.finfo(X.dtype).eps
        for k in (10, 1000, 100000):
            L, info = torch.linalg.cholesky_ex(X + (k * eps) * scale * eye)
            if not bool((info != 0).any()):
                break
        raise_if_not_pd(info, what)
    return L


def sample_noise_terms(pb: Problem, filt: FilterResult, eps: torch.Tensor, impl: str = "auto"
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Reparameterised backward-sampling terms for standard normal ``eps`` ``[S, B, T, n]``.

    Returns ``(z_last [S, B, n], c [S, B, T-1, n], Jt)`` with ``z_t = c_t + z_{t+1} J_t^T``
    (``Jt`` is None for a single step).
    """
    Pf_last = _compact_cov(pb, filt.filt_cov)[..., -1, :, :]
    L_last = cholesky_jitter(Pf_last, "filtered covariance")
    z_last = filt.filt_mean[:, -1] + (eps[:, :, -1].unsqueeze(-2) @ L_last.mT).squeeze(-2)
    if pb.steps == 1:
        return z_last, eps[:, :, :0], None
    Jt, g, Lc = smoother_elements(pb, filt, impl)
    chol = cholesky_jitter(Lc, "backward conditional covariance")
    c = g + (eps[:, :, :-1].unsqueeze(-2) @ chol.mT).squeeze(-2)
    return z_last, c, Jt


def sample_sequential(pb: Problem, filt: FilterResult, eps: torch.Tensor, impl: str = "auto"
                      ) -> torch.Tensor:
    """Forward-filtering backward-sampling: ``eps`` ``[S, B, T, n]`` -> samples ``[S, B, T, n]``."""
    z_last, c, Jt = sample_noise_terms(pb, filt, eps, impl)
    if Jt is None:
        return z_last.unsqueeze(-2)
    return backward_affine(z_last, c, Jt)
