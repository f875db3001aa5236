"""Public functional API of the Kalman core: filter, smoother, posterior sampler, rollout.

Model (B batch, T steps; state z dim n, observation a dim m, control u dim p)::

    z_0 ~ N(mu0, P0)
    z_t = A_t z_{t-1} + B_t u_t + eps_t,  eps_t ~ N(0, Q)       t >= 1
    a_t = C_t z_t + delta_t,              delta_t ~ N(0, R)     t >= 0

Index 0 of ``A``, ``B`` and ``controls`` is ignored.  ``A`` / ``B`` / ``C`` are shared
(``[n, n]``, ``[n, p]``, ``[m, n]``) or time-varying per sequence (``[B, T, n, n]``,
``[B, T, n, p]``, ``[B, T, m, n]``).  ``mask`` ``[B, T]`` (non-zero = observed): masked steps skip
the update and add nothing to the log-likelihood; their observations may be NaN.

``method="sequential"`` loops over T and picks the fastest exact implementation for the problem
(see :func:`worldmodels.kalman.sequential.filter_sequential`); ``method="parallel"`` uses an
associative scan (O(log T) depth; for GPUs and long sequences).  Both give the same results up
to float rounding.  Returned covariances that are identical for every sequence (shared ``A``,
``C``, ``P0``, no mask) are broadcast views (``expand``), and the means of that case are strided
views of feature-first storage (see :mod:`worldmodels.kalman.shared`): call ``.contiguous()``
before writing into them in place or reshaping them.
"""

from __future__ import annotations

import torch

from worldmodels.kalman.inputs import Problem, prepare
from worldmodels.kalman.results import FilterResult, SmootherResult
from worldmodels.kalman.sequential import backward_affine, filter_sequential, sample_noise_terms, smooth_sequential

METHODS = ("sequential", "parallel")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _filter(pb: Problem, method: str) -> FilterResult:
    if method == "parallel":
        from worldmodels.kalman.parallel import filter_parallel
        return filter_parallel(pb)
    return filter_sequential(pb)


def kalman_filter(obs: torch.Tensor, *, A: torch.Tensor, C: torch.Tensor, Q: torch.Tensor,
                  R: torch.Tensor, mu0: torch.Tensor, P0: torch.Tensor,
                  B: torch.Tensor | None = None, controls: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None, method: str = "sequential",
                  validate: bool = True) -> FilterResult:
    """Batched Kalman filter and exact log-likelihood.

    Args:
        obs: ``[B, T, m]`` observations.
        A: ``[n, n]`` or ``[B, T, n, n]`` transition matrices.
        C: ``[m, n]`` or ``[B, T, m, n]`` emission matrices.
        Q: ``[n, n]`` transition noise covariance; R: ``[m, m]`` observation noise covariance.
        mu0: ``[n]`` or ``[B, n]`` prior mean of z_0; P0: ``[n, n]`` or ``[B, n, n]`` its covariance.
        B: ``[n, p]`` or ``[B, T, n, p]`` control matrices; controls: ``[B, T, p]`` (both or neither).
        mask: ``[B, T]``, 1 = observed, 0 = missing.
        method: ``"sequential"`` (loop over T) or ``"parallel"`` (associative scan, O(log T) depth).
        validate: check PD-ness of Q, R, P0 and finiteness of the inputs (one host sync).

    Returns:
        :class:`FilterResult` (``pred_mean``/``filt_mean`` ``[B, T, n]``, ``pred_cov``/``filt_cov``
        ``[B, T, n, n]``, ``log_likelihood`` ``[B]``).
    """
    _check_method(method)
    pb = prepare(obs, A=A, C=C, Q=Q, R=R, mu0=mu0, P0=P0, B=B, controls=controls, mask=mask,
                 validate=validate, defer_spd=method == "sequential")
    return _filter(pb, method)


def _smooth(pb: Problem, method: str) -> SmootherResult:
    if method == "sequential":
        return smooth_sequential(pb)
    from worldmodels.kalman.parallel import filter_parallel, smoother_parallel
    filt = filter_parallel(pb)
    mean, cov, cross = smoother_parallel(pb, filt)
    return SmootherResult(mean=mean, cov=cov, cross_cov=cross, filter=filt)


def kalman_smoother(obs: torch.Tensor, *, A: torch.Tensor, C: torch.Tensor, Q: torch.Tensor,
                    R: torch.Tensor, mu0: torch.Tensor, P0: torch.Tensor,
                    B: torch.Tensor | None = None, controls: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None, method: str = "sequential",
                    validate: bool = True) -> SmootherResult:
    """Kalman filter followed by the Rauch-Tung-Striebel smoother (arguments as :func:`kalman_filter`).

    Returns:
        :class:`SmootherResult`: ``mean`` ``[B, T, n]``, ``cov`` ``[B, T, n, n]``, ``cross_cov``
        ``[B, T-1, n, n]`` with ``cross_cov[:, t] = Cov(z_{t+1}, z_t | all)``, and ``filter``.
    """
    _check_method(method)
    pb = prepare(obs, A=A, C=C, Q=Q, R=R, mu0=mu0, P0=P0, B=B, controls=controls, mask=mask,
                 validate=validate, defer_spd=method == "sequential")
    return _smooth(pb, method)


def sample_posterior(obs: torch.Tensor, *, A: torch.Tensor, C: torch.Tensor, Q: torch.Tensor,
                     R: torch.Tensor, mu0: torch.Tensor, P0: torch.Tensor,
                     B: torch.Tensor | None = None, controls: torch.Tensor | None = None,
                     mask: torch.Tensor | None = None, method: str = "sequential",
                     num_samples: int = 1, generator: torch.Generator | None = None,
                     validate: bool = True) -> torch.Tensor:
    """Joint posterior samples z_{0:T-1} ~ p(z | a, u) by forward filtering, backward sampling.

    Reparameterised: samples are a differentiable function of the inputs and of standard
    normal noise drawn from ``generator``.  Arguments as :func:`kalman_filter`.

    Returns:
        ``[num_samples, B, T, n]``.
    """
    _check_method(method)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    pb = prepare(obs, A=A, C=C, Q=Q, R=R, mu0=mu0, P0=P0, B=B, controls=controls, mask=mask,
                 validate=validate)
    filt = _filter(pb, method)
    eps = torch.randn((num_samples, pb.batch, pb.steps, pb.n), generator=generator,
                      dtype=obs.dtype, device=obs.device)
    z_last, c, Jt = sample_noise_terms(pb, filt, eps)
    if Jt is None:
        return z_last.unsqueeze(-2)
    if method == "parallel":
        from worldmodels.kalman.parallel import backward_affine_parallel
        return backward_affine_parallel(z_last, c, Jt)
    return backward_affine(z_last, c, Jt)


def rollout(mean: torch.Tensor, A: torch.Tensor, B: torch.Tensor | None = None,
            controls: torch.Tensor | None = None, cov: torch.Tensor | None = None,
            Q: torch.Tensor | None = None
            ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Open-loop prediction ``z_{h+1} = A_h z_h + B_h u_h`` for h = 0..H-1, no observations.

    Batched over any leading dims ``...`` (e.g. ``[B, N]`` for N candidate control sequences).

    Args:
        mean: ``[..., n]`` current state mean.
        A: ``[n, n]`` (shared) or ``[..., H, n, n]`` (per step; broadcasts against ``...``).
        B: ``[n, p]`` or ``[..., H, n, p]``; controls: ``[..., H, p]`` (both or neither).
        cov: optional ``[..., n, n]`` current covariance; then ``Q`` ``[n, n]`` is required.

    Returns:
        means ``[..., H, n]`` (``means[..., h, :]`` is the state after applying ``controls[..., h, :]``),
        and covs ``[..., H, n, n]`` if ``cov`` was given.
    """
    if mean.dim() < 1:
        raise ValueError(f"mean: expected shape [..., n], got {list(mean.shape)}")
    n = mean.shape[-1]
    if (B is None) != (controls is None):
        raise ValueError("B and controls must be given together")
    if A.dim() < 2 or A.shape[-2:] != (n, n):
        raise ValueError(f"A: expected shape [n, n] or [..., H, {n}, {n}], got {list(A.shape)}")
    shared_A = A.dim() == 2
    if controls is not None and B is not None:  # given together (checked above)
        if controls.dim() < 2:
            raise ValueError(f"controls: expected shape [..., H, p], got {list(controls.shape)}")
        H, p = controls.shape[-2:]
        if B.dim() < 2 or B.shape[-2:] != (n, p):
            raise ValueError(f"B: expected shape [{n}, {p}] or [..., H, {n}, {p}], got {list(B.shape)}")
        if B.dim() > 2 and B.shape[-3] != H:
            raise ValueError(f"B: expected {H} steps in dim -3 (from controls), got {list(B.shape)}")
        Bu = (B @ controls.unsqueeze(-1)).squeeze(-1) if B.dim() > 2 else controls @ B.mT
    else:
        if shared_A:
            raise ValueError("rollout: give controls (with B) or a per-step A [..., H, n, n] to set H")
        H, Bu = A.shape[-3], None
    if not shared_A and A.shape[-3] != H:
        raise ValueError(f"A: expected {H} steps in dim -3, got {list(A.shape)}")
    if cov is not None:
        if Q is None:
            raise ValueError("rollout: Q [n, n] is required when cov is given")
        if cov.shape[-2:] != (n, n):
            raise ValueError(f"cov: expected shape [..., {n}, {n}], got {list(cov.shape)}")
        if Q.shape[-2:] != (n, n):
            raise ValueError(f"Q: expected shape [{n}, {n}], got {list(Q.shape)}")
    At = A.mT
    z = mean.unsqueeze(-2)
    P = cov
    means, covs = [], []
    for h in range(H):
        A_h = A if shared_A else A[..., h, :, :]
        z = z @ (At if shared_A else At[..., h, :, :])
        if Bu is not None:
            z = z + Bu[..., h, :].unsqueeze(-2)
        means.append(z)
        if P is not None and Q is not None:  # Q is required with cov (checked above)
            P = (A_h @ P) @ A_h.mT + Q
            P = (P + P.mT) * 0.5
            covs.append(P)
    out = torch.cat(means, -2)
    if cov is None:
        return out
    return out, torch.stack(covs, -3)
