"""Parallel-in-time Kalman filter and RTS smoother (Sarkka & Garcia-Fernandez, "Temporal
parallelization of Bayesian smoothers", IEEE TAC 2021) via an associative scan: O(log T)
depth, O(T) work.  Numerically it is the same model as :mod:`worldmodels.kalman.sequential`.

Inside this module time is dim 0 of every element tensor (``[T, B, ...]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from worldmodels.kalman.inputs import Problem
from worldmodels.kalman.results import FilterResult
from worldmodels.kalman.sequential import _log_likelihood, smoother_elements
from worldmodels.kalman.steps import symmetrise, update_rows

Elems = Sequence[torch.Tensor]


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Merge ``even`` (steps 0, 2, ...) and ``odd`` (1, 3, ...) along dim 0."""
    k = odd.shape[0]
    merged = torch.stack([even[:k], odd], 1).reshape(2 * k, *odd.shape[1:])
    if even.shape[0] > k:
        merged = torch.cat([merged, even[k:]], 0)
    return merged


def associative_scan(fn: Callable[[Elems, Elems], list[torch.Tensor]], elems: Elems,
                     reverse: bool = False) -> list[torch.Tensor]:
    """Inclusive scan of an associative ``fn(earlier, later)`` along dim 0 of every tensor.

    ``reverse=True`` computes suffix combinations ``fn(e_t, fn(e_{t+1}, ...))`` instead.
    Depth O(log T): each level is one batched call of ``fn`` on half the elements.
    """
    if reverse:
        out = associative_scan(lambda a, b: fn(b, a), [e.flip(0) for e in elems])
        return [o.flip(0) for o in out]
    T = elems[0].shape[0]
    if T < 2:
        return list(elems)
    reduced = fn([e[0:-1:2] for e in elems], [e[1::2] for e in elems])
    odd = associative_scan(fn, reduced)
    rest = [e[2::2] for e in elems]
    if rest[0].shape[0] == 0:
        even = [e[:1] for e in elems]
    else:
        head = [o[:rest[0].shape[0]] for o in odd]
        even = [torch.cat([e[:1], x], 0) for e, x in zip(elems, fn(head, rest))]
    return [_interleave(ev, od) for ev, od in zip(even, odd)]


def _filter_combine(a: Elems, b: Elems) -> list[torch.Tensor]:
    """Combine filtering elements (A, b, C, eta, J) of an earlier block ``a`` and a later ``b``."""
    A1, b1, C1, e1, J1 = a
    A2, b2, C2, e2, J2 = b
    n = A1.shape[-1]
    eye = torch.eye(n, dtype=A1.dtype, device=A1.device)
    M = eye + C1 @ J2                                     # I + C_i J_j
    lu = torch.linalg.lu_factor(M)
    rhs = torch.cat([A1, (b1 + (C1 @ e2.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1), C1], -1)
    X = torch.linalg.lu_solve(*lu, rhs)                   # M^-1 [A_i | b_i + C_i eta_j | C_i]
    A2X = A2 @ X
    A = A2X[..., :n]
    bb = A2X[..., n] + b2
    C = symmetrise(A2X[..., n + 1:] @ A2.mT + C2)
    rhs2 = torch.cat([(e2 - (J2 @ b1.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1), J2 @ A1], -1)
    Y = torch.linalg.lu_solve(*lu, rhs2, adjoint=True)    # (I + J_j C_i)^-1 [...]
    A1tY = A1.mT @ Y
    eta = A1tY[..., 0] + e1
    J = symmetrise(A1tY[..., 1:] + J1)
    return [A, bb, C, eta, J]


def _filter_elements(pb: Problem) -> list[torch.Tensor]:
    """Filtering elements [A, b, C, eta, J], each ``[T, B, ...]``."""
    batch, T, n = pb.batch, pb.steps, pb.n
    dt, dev = pb.Q.dtype, pb.Q.device
    eye = torch.eye(n, dtype=dt, device=dev)
    # t = 0: condition the prior on a_0
    P0 = pb.P0.expand(batch, n, n)
    m0, Pf0, _, _, info = update_rows(pb.mu0.unsqueeze(-2), P0, pb.obs[:, 0], pb.C_at(0), pb.R)
    m0 = m0.squeeze(-2)
    if pb.mask is not None:
        keep = pb.mask[:, 0]
        m0 = torch.where(keep[:, None], m0, pb.mu0)
        Pf0 = torch.where(keep[:, None, None], Pf0, P0)
    first = [torch.zeros(batch, n, n, dtype=dt, device=dev), m0, Pf0,
             torch.zeros(batch, n, dtype=dt, device=dev), torch.zeros(batch, n, n, dtype=dt, device=dev)]
    first = [x.unsqueeze(0) for x in first]
    if T == 1:
        return first
    # t >= 1: p(z_t | z_{t-1}, a_t) and the information form of p(a_t | z_{t-1})
    A = pb.A_from(1).expand(batch, T - 1, n, n)
    C = (pb.C if pb.C.dim() == 2 else pb.C[:, 1:])
    Q, R = pb.Q, pb.R
    y = pb.obs[:, 1:]
    c = pb.Bu[:, 1:] if pb.Bu is not None else torch.zeros(batch, T - 1, n, dtype=dt, device=dev)
    CQ = C @ Q                                            # [.., m, n]
    S = CQ @ C.mT + R
    L, info = torch.linalg.cholesky_ex(S)
    Kt = torch.cholesky_solve(CQ, L)                      # K^T = S^-1 C Q
    K = Kt.mT
    IKC = eye - K @ C
    v = y - (c.unsqueeze(-2) @ C.mT).squeeze(-2)          # [B, T-1, m]
    Ael = IKC @ A
    bel = c + (v.unsqueeze(-2) @ Kt).squeeze(-2)
    Cel = symmetrise((IKC @ Q) @ IKC.mT + (K @ R) @ Kt).expand(batch, T - 1, n, n)
    HF = C @ A                                            # [B, T-1, m, n]
    W = torch.cholesky_solve(HF, L)                       # S^-1 C A
    eta = (v.unsqueeze(-2) @ W).squeeze(-2)
    J = symmetrise(HF.mT @ W)
    if pb.mask is not None:
        keep = pb.mask[:, 1:]
        k2, k3 = keep[..., None], keep[..., None, None]
        Ael = torch.where(k3, Ael, A)
        bel = torch.where(k2, bel, c)
        Cel = torch.where(k3, Cel, Q)
        eta = torch.where(k2, eta, torch.zeros_like(eta))
        J = torch.where(k3, J, torch.zeros_like(J))
    rest = [x.transpose(0, 1) for x in (Ael, bel, Cel, eta, J)]
    return [torch.cat([f, r], 0) for f, r in zip(first, rest)]


def filter_parallel(pb: Problem) -> FilterResult:
    """Kalman filter by associative scan; returns the same :class:`FilterResult` as the sequential one."""
    elems = _filter_elements(pb)
    _, fm, fP, _, _ = associative_scan(_filter_combine, elems)
    filt_mean, filt_cov = fm.transpose(0, 1), fP.transpose(0, 1)
    A = pb.A_from(1)
    pm = (filt_mean[:, :-1].unsqueeze(-2) @ A.mT).squeeze(-2)
    if pb.Bu is not None:
        pm = pm + pb.Bu[:, 1:]
    pP = symmetrise((A @ filt_cov[:, :-1]) @ A.mT + pb.Q)
    batch, n = pb.batch, pb.n
    pred_mean = torch.cat([pb.mu0.unsqueeze(1), pm], 1)
    pred_cov = torch.cat([pb.P0.expand(batch, n, n).unsqueeze(1), pP], 1)
    ll = _log_likelihood(pb, pred_mean, pred_cov)
    return FilterResult(pred_mean=pred_mean, pred_cov=pred_cov, filt_mean=filt_mean,
                        filt_cov=filt_cov, log_likelihood=ll)


def _smoother_combine(a: Elems, b: Elems) -> list[torch.Tensor]:
    """Compose backward conditionals z_i = E_i z_{i+1} + g_i + N(0, L_i) (``a`` earlier, ``b`` later)."""
    E1, g1, L1 = a
    E2, g2, L2 = b
    E = E1 @ E2
    g = (E1 @ g2.unsqueeze(-1)).squeeze(-1) + g1
    L = symmetrise((E1 @ L2) @ E1.mT + L1)
    return [E, g, L]


def _affine_combine(a: Elems, b: Elems) -> list[torch.Tensor]:
    E1, g1 = a
    E2, g2 = b
    return [E1 @ E2, (E1 @ g2.unsqueeze(-1)).squeeze(-1) + g1]


def smoother_parallel(pb: Problem, filt: FilterResult
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RTS smoother by reverse associative scan: ``(mean [B,T,n], cov [B,T,n,n], cross_cov [B,T-1,n,n])``."""
    batch, T, n = pb.batch, pb.steps, pb.n
    if T == 1:
        return filt.filt_mean, filt.filt_cov, filt.filt_cov.new_zeros(batch, 0, n, n)
    Jt, g, Lc = smoother_elements(pb, filt)
    E = Jt.mT.expand(batch, T - 1, n, n)
    Lc = Lc.expand(batch, T - 1, n, n)
    last = [torch.zeros(batch, 1, n, n, dtype=g.dtype, device=g.device), filt.filt_mean[:, -1:],
            filt.filt_cov[:, -1:]]
    elems = [torch.cat([x, l], 1).transpose(0, 1) for x, l in zip((E, g, Lc), last)]
    _, mean, cov = associative_scan(_smoother_combine, elems, reverse=True)
    mean, cov = mean.transpose(0, 1), cov.transpose(0, 1)
    cross = cov[:, 1:] @ Jt
    return mean, cov, cross


def backward_affine_parallel(x_last: torch.Tensor, c: torch.Tensor, Jt: torch.Tensor) -> torch.Tensor:
    """Parallel version of :func:`worldmodels.kalman.sequential.backward_affine`.

    ``x_last`` ``[*, n]``, ``c`` ``[*, T-1, n]``, ``Jt`` ``[(B,) T-1, n, n]`` -> ``[*, T, n]``.
    """
    T1, n = c.shape[-2], c.shape[-1]
    lead = c.shape[:-2]
    E = Jt.mT.expand(*lead, T1, n, n)
    last_E = torch.zeros(*lead, 1, n, n, dtype=c.dtype, device=c.device)
    E = torch.cat([E, last_E], -3).movedim(-3, 0)
    g = torch.cat([c, x_last.unsqueeze(-2)], -2).movedim(-2, 0)
    _, x = associative_scan(_affine_combine, [E, g], reverse=True)
    return x.movedim(0, -2)
