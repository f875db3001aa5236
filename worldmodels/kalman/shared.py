"""Kalman filter and RTS smoother when the covariance recursion is shared by the batch.

With ``A``, ``C``, ``P0`` shared and nothing masked (``Problem.shared``) every covariance and
gain depends on the step only.  They are computed once, on single ``[n, n]`` matrices (the filter
in information form, the smoothed covariances of the steady run in closed form), and kept
as compact stacks ``[k, ., .]`` whose steps ``t >= k`` repeat step ``k - 1``: without gradients
the Riccati recursion stops at its steady state (the covariance changes by at most
``STEADY_ULPS`` units of rounding in one step), with gradients it runs every step (``k = T``).
Without gradients on the CPU the same recursions run in float64 NumPy
(:mod:`worldmodels.kalman.shared_host`, a microsecond per small-matrix operation where PyTorch
takes several) and are converted once to the batch's dtype; with gradients, or on another
device, they run in PyTorch (:func:`compute_covariances` chooses).

The means then follow affine recursions ``x_t = F_t x_{t-1} + c_t`` whose matrices are shared by
the batch (:func:`affine_recursion`): everything else (the inputs ``c_t``, predictions,
innovations, log-likelihood) is a few whole-sequence matrix products, and without autograd the
recursions run in place, one ``addmm_`` per step (in inference mode, into ordinary output
tensors allocated beforehand).  (Solving the constant-matrix run in blocks of about sqrt(T) steps
with large products was measured slower on a loaded 2-core CPU at T = 100 to 1000: the extra
passes over memory cost more than the per-step calls they save.)

Layout inside: means and observations are feature-first ``[n or m, T, B]``, so a product with a
shared matrix is one GEMM ``M @ X``.  Means are returned batch-first ``[B, T, n]`` as views of
that storage (no copy; ``.contiguous()`` makes one), covariances as broadcast views.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from worldmodels.kalman import shared_host
from worldmodels.kalman.inputs import Problem, check_spd_inputs
from worldmodels.kalman.results import FilterResult, SmootherResult
from worldmodels.kalman.steps import raise_if_not_pd, symmetrise

STEADY_ULPS = 4      # steady state: one step changes the covariance by at most this many ulps
CHECK_FIRST = 4      # steps before the first (vectorised, host-synchronising) steady-state check;
                     # each later check comes one step later than the previous interval
CACHE_SIZE = 4       # covariance computations kept for repeated calls (see CovarianceCache)
HOST_DEVICES = ("cpu",)  # device types ...
HOST_DTYPES = (torch.float32, torch.float64)  # ... and dtypes whose covariances run in NumPy (on_host)


def steady_state_allowed(pb: Problem) -> bool:
    """The steady-state shortcut is used only when no gradient flows into the covariances.

    (Steps whose covariances are equal in value still have different derivatives.)"""
    return not (torch.is_grad_enabled()
                and any(x.requires_grad for x in (pb.A, pb.C, pb.Q, pb.R, pb.P0)))


def first_converged(X: torch.Tensor) -> int | None:
    """Smallest ``i >= 1`` with ``X[i]`` within ``STEADY_ULPS`` units of rounding of ``X[i - 1]``
    (relative to ``max |X[i]|``), for a stack ``X`` ``[j, r, c]``; None if there is none."""
    if X.shape[0] < 2:
        return None
    tol = STEADY_ULPS * torch.finfo(X.dtype).eps
    ok = X.diff(dim=0).abs().amax((-2, -1)) <= tol * X[1:].abs().amax((-2, -1))
    hits = ok.nonzero()
    return int(hits[0, 0].item()) + 1 if hits.shape[0] else None


def converged(P: torch.Tensor, P_prev: torch.Tensor) -> bool:
    """``P`` equals ``P_prev`` up to ``STEADY_ULPS`` units of rounding (relative to ``max |P|``)."""
    return first_converged(torch.stack([P_prev, P])) is not None


def repeat_last(X: torch.Tensor, steps: int) -> torch.Tensor:
    """``X [k, ...]`` -> ``[steps, ...]`` with entries >= k equal to ``X[k - 1]`` (k <= steps)."""
    k = X.shape[0]
    if k == steps:
        return X
    return torch.cat([X, X[-1:].expand(steps - k, *X.shape[1:])], 0)


def shift(X: torch.Tensor, s: int) -> torch.Tensor:
    """Compact stack of step ``t + s`` from the compact stack ``X`` ``[k, ...]`` of step t."""
    return X[min(s, X.shape[0] - 1):]


@dataclass
class SharedGains:
    """Filter covariances and gains shared by the batch, compact (steps >= k repeat step k - 1).

    ``pred_cov``, ``filt_cov`` ``[k, n, n]``; ``pred_prec`` ``[k, n, n]`` (P_t|t-1^-1); ``gain``
    ``[k, n, m]`` (the Kalman gain K_t); ``update`` ``[k, n, n]`` (G_t = I - K_t C);
    ``transition`` ``[max(k, 2), n, n]`` (the filtered-mean recursion's F_0 = G_0, F_t = G_t A);
    ``chol_inv`` ``[k, m, m]`` (L_t^-1 with L_t L_t^T = C P_t|t-1 C^T + R); ``half_logdet``
    ``[]`` (sum over all T steps of sum log diag L_t).
    """

    pred_cov: torch.Tensor
    filt_cov: torch.Tensor
    pred_prec: torch.Tensor
    gain: torch.Tensor
    update: torch.Tensor
    transition: torch.Tensor
    chol_inv: torch.Tensor
    half_logdet: torch.Tensor


def filter_covariances(pb: Problem) -> SharedGains:
    """Riccati recursion on ``[n, n]`` in information form, stopped at the steady state when
    :func:`steady_state_allowed` (the first step whose filtered covariance is within
    ``STEADY_ULPS`` of the previous one ends it; later steps repeat it).

    Per step: ``P_t|t = (P_t|t-1^-1 + C^T R^-1 C)^-1`` and ``P_t+1|t = A P_t|t A^T + Q``, both
    through Cholesky factors (no subtraction, so both stay positive definite): seven small ops.
    Gains, innovation factors and log-determinants are then computed for all steps at once.
    """
    A, C, Q, R = pb.A, pb.C, pb.Q, pb.R
    m, T = pb.m, pb.steps
    At = A.mT
    LR, info_r = torch.linalg.cholesky_ex(R)
    RinvC = torch.cholesky_solve(C, LR)                    # R^-1 C
    info_gain = C.mT @ RinvC                               # C^T R^-1 C
    steady = steady_state_allowed(pb)
    P = pb.P0
    P_pred, P_filt, Y_pred, infos = [], [], [], [info_r]
    k, t, chunk = T, 0, CHECK_FIRST
    while t < k:
        stop = min(T, t + chunk) if steady else T
        chunk += 1
        for s in range(t, stop):
            if s > 0:
                P = torch.addmm(Q, A @ P, At)
            P_pred.append(P)
            Lp, info_p = torch.linalg.cholesky_ex(P)
            Y = torch.cholesky_inverse(Lp)
            Y_pred.append(Y)
            Lf, info_f = torch.linalg.cholesky_ex(Y + info_gain)
            P = torch.cholesky_inverse(Lf)
            P_filt.append(P)
            infos += [info_p, info_f]
        if steady:
            lo = max(0, t - 1)                             # include the last step of the previous chunk
            i = first_converged(torch.stack(P_filt[lo:stop]))
            if i is not None:
                k = lo + i + 1                             # step lo + i repeats step lo + i - 1
        t = stop
    pred_cov = symmetrise(torch.stack(P_pred[:k]))
    filt_cov = torch.stack(P_filt[:k])
    L, info = torch.linalg.cholesky_ex(torch.baddbmm(R, C @ pred_cov, C.mT.expand(k, -1, -1)))
    raise_if_not_pd(torch.cat([torch.stack(infos[:2 * k + 1]), info]),
                    "R, a predicted, filtered or innovation covariance")
    eye_m = torch.eye(m, dtype=L.dtype, device=L.device)
    gain = filt_cov @ RinvC.mT                             # K = P_t|t C^T R^-1
    G = torch.eye(pb.n, dtype=A.dtype, device=A.device) - gain @ C
    half_logdet = torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
    return SharedGains(
        pred_cov=pred_cov, filt_cov=filt_cov, pred_prec=torch.stack(Y_pred[:k]), gain=gain,
        update=G, transition=torch.cat([G[:1], shift(G @ A, 1)], 0),
        chol_inv=torch.linalg.solve_triangular(L, eye_m.expand_as(L), upper=False),
        half_logdet=half_logdet.sum() + (T - k) * half_logdet[-1])


def _recording(*xs: torch.Tensor | None) -> bool:
    """Whether autograd records operations on any of ``xs``."""
    return torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in xs)


def _problem_recording(pb: Problem) -> bool:
    return _recording(pb.obs, pb.A, pb.C, pb.Q, pb.R, pb.mu0, pb.P0, pb.Bu)


def steps_mm(M: torch.Tensor, X: torch.Tensor, bias: torch.Tensor | None = None,
             alpha: float = 1.0, out: torch.Tensor | None = None) -> torch.Tensor:
    """``bias_t + alpha M_t X_t`` for every step t: ``M`` ``[k, a, b]`` compact, ``X`` ``[b, T, B]``,
    ``bias`` ``[a, T, B]`` or None -> ``[a, T, B]`` (written into ``out`` if given; ``out`` may
    be ``bias``; no autograd then).

    One GEMM with the repeated matrix ``M[k - 1]`` over all steps, then the distinct head steps
    (t < k - 1) are overwritten by one batched product (computed first, so ``out`` may alias)."""
    k, a, b = M.shape
    T = X.shape[1]
    h = min(k - 1, T)
    head = None
    if h:
        head = torch.bmm(M[:h], X[:, :h].transpose(0, 1)).transpose(0, 1)
        if bias is not None:
            head = torch.add(bias[:, :h], head, alpha=alpha)
        elif alpha != 1.0:
            head = head * alpha
    X2 = X.reshape(b, -1)
    if out is None:
        if bias is None:
            res = torch.mm(M[-1], X2) if alpha == 1.0 else torch.mm(M[-1], X2).mul_(alpha)
        else:
            res = torch.addmm(bias.reshape(a, -1), M[-1], X2, alpha=alpha)
        out = res.view(a, T, -1)
    else:
        o2 = out.view(a, -1)
        if bias is None:
            torch.mm(M[-1], X2, out=o2)
            if alpha != 1.0:
                o2.mul_(alpha)
        else:
            torch.addmm(bias.reshape(a, -1), M[-1], X2, alpha=alpha, out=o2)
    if head is not None:
        out[:, :h] = head
    return out


def affine_solve_(buf: torch.Tensor, F: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """In-place (no autograd) :func:`affine_recursion`: ``buf`` ``[n, S + 1, B]`` holds ``x0`` in
    its boundary slot (first forward, last reverse) and ``c`` in the others, and receives the
    solution there: one in-place ``addmm_`` on a contiguous ``[n, B]`` slice per step.  Returns
    ``buf``."""
    S = buf.shape[1] - 1
    Fs = F.unbind(0)
    head, Fc = min(len(Fs) - 1, S), Fs[-1]                 # steps t < head have their own F_t
    cols = buf.unbind(1)
    if reverse:
        x = cols[S]
        for col in cols[S - 1:head - 1 if head else None:-1]:
            x = col.addmm_(Fc, x)
        for t in range(head - 1, -1, -1):
            x = cols[t].addmm_(Fs[t], x)
    else:
        x = cols[0]
        for t in range(head):
            x = cols[t + 1].addmm_(Fs[t], x)
        for col in cols[head + 1:]:
            x = col.addmm_(Fc, x)
    return buf


def affine_recursion(x0: torch.Tensor, c: torch.Tensor, F: torch.Tensor, reverse: bool = False
                     ) -> torch.Tensor:
    """Solve an affine recursion with matrices shared by the batch (column vectors, feature-first).

    Forward: ``x_t = F_t x_{t-1} + c_t`` for t = 0..S-1 from ``x_{-1} = x0``; reverse:
    ``x_t = F_t x_{t+1} + c_t`` for t = S-1..0 from ``x_S = x0``.  ``x0`` ``[n, B]``, ``c``
    ``[n, S, B]``, ``F`` ``[h, n, n]`` compact (``F_t = F[min(t, h - 1)]``).

    Returns ``[n, S + 1, B]``: the solution with ``x0`` in front (forward) or at the end
    (reverse).  Differentiable when autograd records; otherwise solved in place by
    :func:`affine_solve_`.
    """
    n, S, B = c.shape
    h = F.shape[0]
    if _recording(x0, c, F):
        xs, x = [x0], x0
        for t in (range(S - 1, -1, -1) if reverse else range(S)):
            x = torch.addmm(c[:, t], F[min(t, h - 1)], x)
            xs.append(x)
        if reverse:
            xs.reverse()
        return torch.stack(xs, 1)
    buf = c.new_empty(n, S + 1, B)
    buf[:, S if reverse else 0] = x0
    (buf[:, :S] if reverse else buf[:, 1:]).copy_(c)
    return affine_solve_(buf, F, reverse)


def _whitened_sq_norm(Linv: torch.Tensor, V: torch.Tensor, recording: bool) -> torch.Tensor:
    """``sum_t |Linv_t v_t|^2`` per sequence: ``Linv`` ``[k, m, m]`` compact lower-triangular,
    ``V`` ``[m, T, B]`` -> ``[B]`` (one GEMM, squared in place unless autograd records)."""
    W = steps_mm(Linv, V)
    return (W * W if recording else W.square_()).sum((0, 1))


def _filter_means(pb: Problem, g: SharedGains) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted and filtered means (feature-first ``[n, T, B]``) and the log-likelihood ``[B]``.

    ``m_t|t = G_t (A m_t-1|t-1 + B u_t) + K_t a_t`` with ``G_t = I - K_t C``: an affine recursion
    with ``F_t = G_t A`` (``F_0 = G_0`` applied to ``mu0``).  Without autograd recording,
    :func:`_filter_means_inplace` computes the same in place."""
    if not _problem_recording(pb):
        return _filter_means_inplace(pb, g)
    A, C = pb.A, pb.C
    n, m, T, B = pb.n, pb.m, pb.steps, pb.batch
    Y = pb.obs.permute(2, 1, 0).contiguous()               # [m, T, B]
    c = steps_mm(g.gain, Y)
    mu0 = pb.mu0.t()                                       # [n, B]
    if pb.Bu is None:
        ext = affine_recursion(mu0, c, g.transition)       # [n, T + 1, B]: mu0, then filtered
        pred = (A @ ext[:, :T].reshape(n, -1)).view(n, T, B)
    else:
        Bu = pb.Bu.permute(2, 1, 0).contiguous()           # [n, T, B]; Bu_0 = 0
        ext = affine_recursion(mu0, steps_mm(g.update, Bu, bias=c), g.transition)
        pred = torch.addmm(Bu.reshape(n, -1), A, ext[:, :T].reshape(n, -1)).view(n, T, B)
    pred[:, 0] = mu0
    V = torch.addmm(Y.view(m, -1), C, pred.view(n, -1), alpha=-1.0).view(m, T, B)
    quad = _whitened_sq_norm(g.chol_inv, V, recording=True)
    return pred, ext[:, 1:], _log_likelihood(quad, g, T, m)


def _log_likelihood(quad: torch.Tensor, g: SharedGains, steps: int, m: int) -> torch.Tensor:
    """``[B]`` log-likelihood from the whitened innovations' squared norms ``quad`` ``[B]``."""
    return -0.5 * quad - (g.half_logdet + 0.5 * steps * m * math.log(2 * math.pi))


def _filter_means_inplace(pb: Problem, g: SharedGains
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_filter_means` without autograd recording.  The returned means' storage is
    allocated first; the work then runs in inference mode (no autograd bookkeeping, so each of
    the small per-step operations costs less), in place into that storage and into temporaries
    of its own, so the returned tensors are ordinary ones.  ``obs`` is always copied, never
    written: its feature-first view can be contiguous (one sequence, one step, or m = 1)."""
    A, C = pb.A, pb.C
    n, m, T, B = pb.n, pb.m, pb.steps, pb.batch
    ext = pb.obs.new_empty(n, T + 1, B)                    # mu0, then the filtered means
    pred = pb.obs.new_empty(n, T, B)
    with torch.inference_mode():
        Y = pb.obs.permute(2, 1, 0).clone(memory_format=torch.contiguous_format)   # [m, T, B]
        mu0 = pb.mu0.t()                                   # [n, B]
        ext[:, 0] = mu0
        c = steps_mm(g.gain, Y, out=ext[:, 1:])
        prev, pred2 = ext[:, :T].reshape(n, -1), pred.view(n, -1)
        if pb.Bu is None:
            affine_solve_(ext, g.transition)
            torch.mm(A, prev, out=pred2)
        else:
            Bu = pb.Bu.permute(2, 1, 0).contiguous()       # [n, T, B]; Bu_0 = 0
            steps_mm(g.update, Bu, bias=c, out=c)
            affine_solve_(ext, g.transition)
            torch.addmm(Bu.view(n, -1), A, prev, out=pred2)
        pred[:, 0] = mu0
        V = Y.view(m, -1).addmm_(C, pred2, alpha=-1.0).view(m, T, B)
        quad = _whitened_sq_norm(g.chol_inv, V, recording=False)
    return pred, ext[:, 1:], _log_likelihood(quad, g, T, m)


def _batch_first(X: torch.Tensor) -> torch.Tensor:
    """Feature-first ``[n, T, B]`` -> ``[B, T, n]`` view (no copy: the returned means are strided)."""
    return X.permute(2, 1, 0)


def _filter_result(pb: Problem, g: SharedGains, pred: torch.Tensor, filt: torch.Tensor,
                   ll: torch.Tensor) -> FilterResult:
    B, T, n = pb.batch, pb.steps, pb.n
    return FilterResult(pred_mean=_batch_first(pred),
                        pred_cov=repeat_last(g.pred_cov, T).expand(B, T, n, n),
                        filt_mean=_batch_first(filt),
                        filt_cov=repeat_last(g.filt_cov, T).expand(B, T, n, n),
                        log_likelihood=ll)


def filter_shared(pb: Problem) -> FilterResult:
    """Kalman filter for ``pb.shared`` problems (see the module docstring)."""
    g = shared_covariances(pb, smoother=False).gains
    return _filter_result(pb, g, *_filter_means(pb, g))


def stein_steps(P: torch.Tensor, J: torch.Tensor, Lc: torch.Tensor, count: int) -> torch.Tensor:
    """``P_i = Lc + J P_{i-1} J^T`` for i = 1..count from ``P_0 = P`` (all ``[n, n]``): ``[count, n, n]``.

    Closed form ``P_i = sum_{l<i} J^l Lc J^lT + J^i P J^iT``, batched over i; the powers of J
    come from log2(count) doublings, so the Python cost does not grow with ``count``."""
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    pw = torch.stack([eye, J], 0)                          # J^0 .. J^(m-1)
    while pw.shape[0] < count + 1:
        pw = torch.cat([pw, (pw[-1] @ J) @ pw], 0)         # J^m J^l = J^(m+l)
    head, tail = pw[:count], pw[1:count + 1]
    sums = ((head @ Lc) @ head.mT).cumsum(0)
    return symmetrise(sums + (tail @ P) @ tail.mT)


def _smoothed_covariances(P_last: torch.Tensor, J: torch.Tensor, Lc: torch.Tensor, steps: int,
                          steady: bool) -> torch.Tensor:
    """``P_t = Lc_t + J_t P_{t+1} J_t^T`` backwards from ``P_{T-1} = P_last``: ``[T, n, n]``.

    ``J``, ``Lc`` ``[kk, n, n]`` compact.  Their constant run (t >= kk - 1) is solved in closed
    form (:func:`stein_steps`) in chunks, stopped once the recursion reaches its fixed point
    (when ``steady``; the rest of the run repeats it); the distinct steps t < kk - 1 are stepped.
    """
    T, lo = steps, J.shape[0] - 1
    n = P_last.shape[-1]
    parts = [P_last.unsqueeze(0)]                          # reverse time order: T-1, T-2, ...
    P, remaining, count = P_last, T - 1 - lo, 8            # steps of the first closed-form chunk
    while remaining > 0:
        count = min(count, remaining)
        seq = stein_steps(P, J[-1], Lc[-1], count)
        i = first_converged(torch.cat([P.unsqueeze(0), seq], 0)) if steady else None
        if i is not None:                                  # seq[i - 1] repeats its predecessor
            parts += [seq[:i], seq[i - 1:i].expand(remaining - i, n, n)]
            P = seq[i - 1]
            break
        parts.append(seq)
        P, remaining, count = seq[-1], remaining - count, 2 * count
    Js, Jts, Ls = J.unbind(0), J.mT.unbind(0), Lc.unbind(0)
    trans = []
    for s in range(lo - 1, -1, -1):
        P = torch.addmm(Ls[s], Js[s] @ P, Jts[s])
        trans.append(P)
    if trans:
        parts.append(torch.stack(trans, 0))
    return symmetrise(torch.cat(parts, 0).flip(0))


def _smoother_covariances(pb: Problem, g: SharedGains
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smoother gains ``J`` ``[kk, n, n]`` (compact), smoothed covariances ``[T, n, n]`` and cross
    covariances ``[T-1, n, n]`` (``cross[t] = Cov(z_t+1, z_t | all)``), for T >= 2."""
    A, Q, T, n = pb.A, pb.Q, pb.steps, pb.n
    kk = min(g.gain.shape[0], T - 1)                       # distinct smoother gains, t = 0..T-2
    Pf = g.filt_cov[:kk]
    Yp = repeat_last(shift(g.pred_prec, 1), kk)[:kk]       # P_t+1|t^-1
    J = (Pf @ A.mT) @ Yp                                   # J_t = P_t|t A^T P_t+1|t^-1
    IJA = torch.eye(n, dtype=A.dtype, device=A.device) - J @ A
    Lc = (IJA @ Pf) @ IJA.mT + (J @ Q) @ J.mT              # Joseph-like, PSD in low precision
    cov = _smoothed_covariances(g.filt_cov[-1], J, Lc, T, steady_state_allowed(pb))
    return J, cov, cov[1:] @ repeat_last(J, T - 1).mT


@dataclass
class _Covariances:
    gains: SharedGains
    smoother: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


def _detached_copy(x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(False):                      # a normal tensor, usable with autograd
        return x.detach().clone()


class CovarianceCache:
    """The last ``size`` covariance computations of the shared path, reused by later calls with
    equal ``A, C, Q, R, P0`` (compared by value), T, dtype and device: the covariances do not
    depend on the observations, controls or ``mu0``.  Used only when no gradient flows into
    the covariances.  Returned covariances are copies, so the cache cannot be written through
    them.  Thread-safe."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.enabled = True
        self._entries: list[tuple[tuple, tuple[torch.Tensor, ...], _Covariances]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _key(pb: Problem) -> tuple[tuple, tuple[torch.Tensor, ...]]:
        meta = (pb.steps, pb.Q.dtype, pb.Q.device, tuple(pb.A.shape), tuple(pb.C.shape))
        return meta, (pb.A, pb.C, pb.Q, pb.R, pb.P0)

    def find(self, pb: Problem) -> _Covariances | None:
        meta, keys = self._key(pb)
        with self._lock:
            for i, (m, ks, value) in enumerate(self._entries):
                if m == meta and all(torch.equal(a, b) for a, b in zip(ks, keys)):
                    self._entries.insert(0, self._entries.pop(i))
                    return value
        return None

    def add(self, pb: Problem, value: _Covariances) -> None:
        meta, keys = self._key(pb)
        g = value.gains
        stored = _Covariances(
            replace(g, **{f: _detached_copy(getattr(g, f)) for f in g.__dataclass_fields__}),
            None if value.smoother is None else tuple(_detached_copy(x) for x in value.smoother))  # type: ignore[arg-type]
        with self._lock:
            self._entries = [e for e in self._entries
                             if not (e[0] == meta and all(torch.equal(a, b) for a, b in zip(e[1], keys)))]
            self._entries.insert(0, (meta, tuple(_detached_copy(k) for k in keys), stored))
            del self._entries[self.size:]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


COVARIANCE_CACHE = CovarianceCache()


@contextmanager
def covariance_cache_disabled() -> Iterator[None]:
    """Recompute the covariances on every call inside this block (e.g. to time them)."""
    old = COVARIANCE_CACHE.enabled
    COVARIANCE_CACHE.enabled = False
    try:
        yield
    finally:
        COVARIANCE_CACHE.enabled = old


def on_host(pb: Problem) -> bool:
    """Whether the covariances run in float64 NumPy (:mod:`worldmodels.kalman.shared_host`):
    on a device type in :data:`HOST_DEVICES`, for a dtype in :data:`HOST_DTYPES`, when no
    gradient flows into them."""
    return (pb.Q.device.type in HOST_DEVICES and pb.Q.dtype in HOST_DTYPES
            and steady_state_allowed(pb))


def _float64_numpy(x: torch.Tensor) -> np.ndarray:
    """A CPU tensor of a dtype in :data:`HOST_DTYPES` as a float64 array (no copy for float64)."""
    return np.asarray(x.detach().numpy(), dtype=np.float64)


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _to_torch(arrays: list[np.ndarray], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """NumPy arrays -> tensors of ``dtype`` (one of :data:`HOST_DTYPES`) on ``device``; the
    dtype conversion runs in NumPy (several times cheaper than a PyTorch one per small array)."""
    np_dtype = _NUMPY_DTYPES[dtype]
    out = [torch.from_numpy(np.asarray(a, dtype=np_dtype)) for a in arrays]
    return out if device.type == "cpu" else [x.to(device) for x in out]


def check_pending_spd(pb: Problem) -> None:
    """Check ``Q``, ``R``, ``P0`` of a problem whose checks :func:`prepare` deferred
    (``pb.spd_pending``; ``ValueError`` naming the culprit), once."""
    if pb.spd_pending:
        check_spd_inputs(pb.Q, pb.R, pb.P0)
        pb.spd_pending = False


def host_covariances(pb: Problem, smoother: bool) -> _Covariances:
    """:func:`compute_covariances` in float64 NumPy (:mod:`worldmodels.kalman.shared_host`),
    converted once to the problem's dtype and device (``pred_cov`` and ``filt_cov`` at full
    length T, as the results expose them); the steady-state tolerance is
    ``STEADY_ULPS`` units of rounding of that dtype.  Pending input checks (``pb.spd_pending``)
    are folded in: the recursion factorises ``R``, ``P0`` and ``Q`` anyway, so only their
    symmetry is tested on top (the exact checks name the culprit on a failure)."""
    dtype, device = pb.Q.dtype, pb.Q.device
    A, C, Q, R, P0 = (_float64_numpy(x) for x in (pb.A, pb.C, pb.Q, pb.R, pb.P0))
    noise = shared_host.noise_stack(R, P0, Q)
    if pb.spd_pending and not shared_host.symmetric([noise]):
        check_spd_inputs(pb.Q, pb.R, pb.P0, known_bad=True)
    tol = STEADY_ULPS * torch.finfo(dtype).eps
    try:
        hg = shared_host.filter_covariances(A, C, Q, R, P0, pb.steps, tol, CHECK_FIRST, noise)
    except shared_host.NotPositiveDefinite:
        if pb.spd_pending:
            check_spd_inputs(pb.Q, pb.R, pb.P0, known_bad=True)
        raise
    pb.spd_pending = False
    fields = list(SharedGains.__dataclass_fields__)
    arrays = [getattr(hg, f) for f in fields]
    full = ("pred_cov", "filt_cov")                        # returned as [B, T, n, n] views
    arrays = [shared_host.repeat_last(a, pb.steps) if f in full else a for f, a in zip(fields, arrays)]
    if smoother:
        arrays += shared_host.smoother_covariances(hg, A, Q, pb.steps, tol)
    out = _to_torch(arrays, dtype, device)
    g = SharedGains(**dict(zip(fields, out)))
    return _Covariances(g, tuple(out[len(fields):]) if smoother else None)  # type: ignore[arg-type]


def compute_covariances(pb: Problem, smoother: bool) -> _Covariances:
    """Filter covariances and gains, and with ``smoother`` (T >= 2) the smoother's: in float64
    NumPy when :func:`on_host`, else in PyTorch (differentiable, on the problem's device)."""
    if on_host(pb):
        return host_covariances(pb, smoother)
    check_pending_spd(pb)
    g = filter_covariances(pb)
    return _Covariances(g, _smoother_covariances(pb, g) if smoother else None)


def shared_covariances(pb: Problem, smoother: bool) -> _Covariances:
    """:func:`compute_covariances`, or its result from :data:`COVARIANCE_CACHE` when that
    applies (no gradient into the covariances)."""
    use_cache = COVARIANCE_CACHE.enabled and steady_state_allowed(pb)
    hit = COVARIANCE_CACHE.find(pb) if use_cache else None
    if hit is not None and (hit.smoother is not None or not smoother):
        check_pending_spd(pb)
        g, sm = hit.gains, hit.smoother                    # copies of what callers may expose
        return _Covariances(replace(g, pred_cov=g.pred_cov.clone(), filt_cov=g.filt_cov.clone()),
                            None if sm is None else (sm[0], sm[1].clone(), sm[2].clone()))
    if hit is None or on_host(pb):
        value = compute_covariances(pb, smoother)
    else:
        check_pending_spd(pb)
        value = _Covariances(hit.gains, _smoother_covariances(pb, hit.gains))
    if use_cache:
        COVARIANCE_CACHE.add(pb, value)
    return value


def smoother_shared(pb: Problem) -> SmootherResult:
    """Kalman filter and RTS smoother for ``pb.shared`` problems (see the module docstring)."""
    B, T, n = pb.batch, pb.steps, pb.n
    covs = shared_covariances(pb, smoother=T > 1)
    g = covs.gains
    pred, filt, ll = _filter_means(pb, g)
    fres = _filter_result(pb, g, pred, filt, ll)
    if covs.smoother is None:
        return SmootherResult(mean=fres.filt_mean, cov=fres.filt_cov,
                              cross_cov=fres.filt_cov.new_zeros(B, 0, n, n), filter=fres)
    J, cov, cross = covs.smoother
    # m_t = f_t + J_t (m_t+1 - p_t+1), i.e. u_t = m_t - p_t = (f_t - p_t) + J_t u_t+1 from
    # u_T-1 = f_T-1 - p_T-1: an affine recursion whose inputs need no matrix product
    u = filt - pred
    if _problem_recording(pb):
        mean = pred + affine_recursion(u[:, -1], u[:, :-1], J, reverse=True)
    else:
        with torch.inference_mode():                       # in place into u, an ordinary tensor
            affine_solve_(u, J, reverse=True).add_(pred)
        mean = u
    return SmootherResult(mean=_batch_first(mean), cov=cov.expand(B, T, n, n),
                          cross_cov=cross.expand(B, T - 1, n, n), filter=fres)
