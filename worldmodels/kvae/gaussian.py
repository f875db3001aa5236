"""Gaussian densities of the LGSSM that the KVAE's ELBO estimators need.

Conventions follow ``worldmodels.kalman`` (contract 2): states ``z [.., T, n]``, encodings
``a [.., T, m]``, time-varying ``A [B, T, n, n]`` (index 0 ignored), ``B [B, T, n, p]``,
``C [B, T, m, n]``, controls ``u [B, T, p]`` (index 0 ignored).
"""

from __future__ import annotations

import math

import torch

_LOG_2PI = math.log(2.0 * math.pi)


def mvn_log_prob(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor,
                 jitter: float = 0.0) -> torch.Tensor:
    """``log N(x; mean, cov)`` for ``x, mean [..., n]``, ``cov [..., n, n]``; returns ``[...]``."""
    n = x.shape[-1]
    if jitter:
        cov = cov + jitter * torch.eye(n, dtype=cov.dtype, device=cov.device)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    L = torch.linalg.cholesky(cov)
    d = x - mean
    batch = torch.broadcast_shapes(d.shape[:-1], L.shape[:-2])
    sol = torch.linalg.solve_triangular(L.expand(*batch, n, n),
                                        d.expand(*batch, n).unsqueeze(-1), upper=False).squeeze(-1)
    logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (sol ** 2).sum(-1) - logdet - 0.5 * n * _LOG_2PI


def _mv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def lgssm_log_joint(a: torch.Tensor, z: torch.Tensor, *, A: torch.Tensor, C: torch.Tensor,
                    Q: torch.Tensor, R: torch.Tensor, mu0: torch.Tensor, P0: torch.Tensor,
                    B: torch.Tensor | None = None, controls: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """``log p(a, z | u)`` of the LGSSM for samples ``z [S, B, T, n]``, ``a [S or 1, B, T, m]``.

    Emissions of missing steps (``mask [B, T]`` = 0) are left out. Returns ``[S, B]``.
    """
    mean = _mv(A[:, 1:], z[:, :, :-1])
    if B is not None and controls is not None:
        mean = mean + _mv(B[:, 1:], controls[:, 1:])
    lp = mvn_log_prob(z[:, :, 0], mu0, P0)
    lp = lp + mvn_log_prob(z[:, :, 1:], mean, Q).sum(-1)
    em = mvn_log_prob(a, _mv(C, z), R)
    if mask is not None:
        em = em * mask.to(em.dtype)
    return lp + em.sum(-1)


def smoothed_joint_log_prob(z: torch.Tensor, *, filt_mean: torch.Tensor, filt_cov: torch.Tensor,
                            pred_mean: torch.Tensor, pred_cov: torch.Tensor,
                            A: torch.Tensor, jitter: float = 1e-6) -> torch.Tensor:
    """``log p(z | a, u)`` of the exact smoothed joint posterior, ``z [S, B, T, n] -> [S, B]``.

    Uses the backward factorisation ``p(z_{T-1} | a) prod_t p(z_t | z_{t+1}, a_{0:t})`` with
    ``J_t = P_{t|t} A_{t+1}^T P_{t+1|t}^{-1}``, mean ``m_{t|t} + J_t (z_{t+1} - m_{t+1|t})`` and
    covariance ``P_{t|t} - J_t P_{t+1|t} J_t^T``.
    """
    Pf, Pp = filt_cov[:, :-1], pred_cov[:, 1:]
    # J^T = Pp^{-1} A Pf  (Pp, Pf symmetric)
    Jt = torch.linalg.solve(Pp, A[:, 1:] @ Pf)
    J = Jt.transpose(-1, -2)
    cond_mean = filt_mean[:, :-1] + _mv(J, z[:, :, 1:] - pred_mean[:, 1:])
    cond_cov = Pf - J @ Pp @ Jt
    lp = mvn_log_prob(z[:, :, :-1], cond_mean, cond_cov, jitter=jitter).sum(-1)
    return lp + mvn_log_prob(z[:, :, -1], filt_mean[:, -1], filt_cov[:, -1], jitter=jitter)
