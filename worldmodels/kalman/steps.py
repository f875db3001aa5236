"""Single predict / update steps with arbitrary leading batch dimensions.

Means are column vectors in the public API (``[..., n]``); internally the recursions keep them
as row vectors ``[..., 1, n]`` so that ``x @ A^T`` is one batched matmul.  Covariance updates
use the Joseph form and are symmetrised; the gain uses a Cholesky solve, never an inverse.
"""

from __future__ import annotations

import math

import torch


def symmetrise(P: torch.Tensor) -> torch.Tensor:
    """``(P + P^T) / 2`` over the last two dims."""
    return (P + P.mT) * 0.5


def raise_if_not_pd(infos: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` if any Cholesky ``info`` in ``infos`` is non-zero (one host sync)."""
    bad = infos != 0
    if bool(bad.any()):
        idx = bad.nonzero()[0].tolist()
        raise ValueError(f"{what} is not positive definite (first failure at index {idx}); "
                         "check the scale of Q, R, P0 and the observations, or use float64")


def gaussian_log_prob_chol(v: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """log N(v; 0, L L^T) for residuals ``v`` ``[..., m]`` and lower Cholesky factors ``L`` ``[..., m, m]``."""
    w = torch.linalg.solve_triangular(L, v.unsqueeze(-1), upper=False).squeeze(-1)
    m = v.shape[-1]
    logdet = torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (w * w).sum(-1) - logdet - 0.5 * m * math.log(2 * math.pi)


def predict_rows(m: torch.Tensor, P: torch.Tensor, A: torch.Tensor, Q: torch.Tensor,
                 Bu: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-vector prediction: ``m`` ``[..., 1, n]``, ``P`` ``[..., n, n]``, ``Bu`` ``[..., n]`` or None."""
    At = A.mT
    m = m @ At
    if Bu is not None:
        m = m + Bu.unsqueeze(-2)
    P = (A @ P) @ At + Q
    return m, P


def update_rows(m: torch.Tensor, P: torch.Tensor, y: torch.Tensor, C: torch.Tensor,
                R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-vector Joseph-form update.

    ``m`` ``[..., 1, n]``, ``P`` ``[..., n, n]``, ``y`` ``[..., m]``, ``C`` ``[..., m, n]``, ``R`` ``[m, m]``.
    Returns the updated ``(m, P)``, the innovation ``v`` ``[..., m]``, the Cholesky factor ``L`` of
    the innovation covariance ``[..., m, m]`` and the factorisation info (non-zero = not PD).
    """
    Ct = C.mT
    CP = C @ P
    S = CP @ Ct + R
    L, info = torch.linalg.cholesky_ex(S)
    Kt = torch.cholesky_solve(CP, L)                     # K^T = S^-1 C P, [..., m, n]
    v = y.unsqueeze(-2) - m @ Ct                         # [..., 1, m]
    m_new = m + v @ Kt
    K = Kt.mT
    IKC = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device) - K @ C
    P_new = symmetrise((IKC @ P) @ IKC.mT + (K @ R) @ Kt)
    return m_new, P_new, v.squeeze(-2), L, info


def predict_step(mean: torch.Tensor, cov: torch.Tensor, A: torch.Tensor, Q: torch.Tensor,
                 B: torch.Tensor | None = None, u: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One prediction step ``z' = A z + B u + eps``, eps ~ N(0, Q).

    ``mean`` ``[..., n]``, ``cov`` ``[..., n, n]``, ``A`` ``[..., n, n]`` (broadcast), ``Q`` ``[n, n]``
    (or broadcastable ``[..., n, n]``), ``B`` ``[..., n, p]`` and ``u`` ``[..., p]`` optional (together).
    Returns ``(mean [..., n], cov [..., n, n])``.
    """
    if mean.dim() < 1:
        raise ValueError(f"mean: expected shape [..., n], got {list(mean.shape)}")
    n = mean.shape[-1]
    if cov.dim() < 2 or cov.shape[-2:] != (n, n):
        raise ValueError(f"cov: expected shape [..., {n}, {n}], got {list(cov.shape)}")
    if A.dim() < 2 or A.shape[-2:] != (n, n):
        raise ValueError(f"A: expected shape [..., {n}, {n}], got {list(A.shape)}")
    if Q.dim() < 2 or Q.shape[-2:] != (n, n):
        raise ValueError(f"Q: expected shape [..., {n}, {n}], got {list(Q.shape)}")
    if (B is None) != (u is None):
        raise ValueError("B and u must be given together")
    Bu = None
    if B is not None and u is not None:  # given together (checked above)
        if B.dim() < 2 or B.shape[-2] != n:
            raise ValueError(f"B: expected shape [..., {n}, p], got {list(B.shape)}")
        if u.shape[-1] != B.shape[-1]:
            raise ValueError(f"u: expected shape [..., {B.shape[-1]}], got {list(u.shape)}")
        Bu = (B @ u.unsqueeze(-1)).squeeze(-1)
    m, P = predict_rows(mean.unsqueeze(-2), cov, A, Q, Bu)
    return m.squeeze(-2), symmetrise(P)


def update_step(mean: torch.Tensor, cov: torch.Tensor, obs: torch.Tensor, C: torch.Tensor,
                R: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One measurement update with ``a = C z + delta``, delta ~ N(0, R) (Joseph form).

    ``mean`` ``[..., n]``, ``cov`` ``[..., n, n]``, ``obs`` ``[..., m]``, ``C`` ``[..., m, n]``
    (broadcast), ``R`` ``[m, m]``, ``mask`` ``[...]`` (1 = observed; masked entries keep the prior
    and contribute 0 log-likelihood; their ``obs`` may be NaN).
    Returns ``(mean [..., n], cov [..., n, n], log_likelihood [...])`` where the log-likelihood is
    log N(obs; C mean, C cov C^T + R) in nats.
    """
    if mean.dim() < 1 or cov.dim() < 2 or cov.shape[-2:] != (mean.shape[-1], mean.shape[-1]):
        raise ValueError(f"cov: expected shape [..., {mean.shape[-1]}, {mean.shape[-1]}], got {list(cov.shape)}")
    n, m = mean.shape[-1], obs.shape[-1]
    if C.dim() < 2 or C.shape[-2:] != (m, n):
        raise ValueError(f"C: expected shape [..., {m}, {n}], got {list(C.shape)}")
    if R.dim() < 2 or R.shape[-2:] != (m, m):
        raise ValueError(f"R: expected shape [..., {m}, {m}], got {list(R.shape)}")
    if mask is not None:
        if mask.shape != obs.shape[:-1]:
            raise ValueError(f"mask: expected shape {list(obs.shape[:-1])}, got {list(mask.shape)}")
        keep = mask != 0
        obs = torch.where(keep.unsqueeze(-1), obs, torch.zeros((), dtype=obs.dtype, device=obs.device))
    m_new, P_new, v, L, info = update_rows(mean.unsqueeze(-2), cov, obs, C, R)
    if (info != 0).any():
        raise ValueError("innovation covariance C P C^T + R is not positive definite")
    ll = gaussian_log_prob_chol(v, L)
    m_new = m_new.squeeze(-2)
    if mask is not None:
        m_new = torch.where(keep.unsqueeze(-1), m_new, mean)
        P_new = torch.where(keep.unsqueeze(-1).unsqueeze(-1), P_new, cov)
        ll = torch.where(keep, ll, torch.zeros((), dtype=ll.dtype, device=ll.device))
    return m_new, P_new, ll
