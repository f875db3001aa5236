"""``LGSSM``: an ``nn.Module`` holding learnable LGSSM parameters, with PD-parameterised noise."""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import nn
from torch.nn import functional as F

from worldmodels.kalman.api import kalman_filter, kalman_smoother, sample_posterior
from worldmodels.kalman.results import FilterResult, SmootherResult

NOISE_KINDS = ("full", "diag", "iso")


def _softplus_inv(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


class PDMatrix(nn.Module):
    """A learnable symmetric positive-definite ``[k, k]`` matrix.

    ``kind="full"``: L L^T with L lower-triangular, softplus diagonal; ``"diag"``: softplus
    diagonal; ``"iso"``: softplus(scalar) * I.  ``min_var`` is added to the diagonal (of L for
    ``full``, of the matrix otherwise) so the matrix stays PD whatever the raw parameters.
    """

    def __init__(self, size: int, init: float | torch.Tensor = 1.0, kind: str = "full",
                 min_var: float = 1e-6) -> None:
        super().__init__()
        if kind not in NOISE_KINDS:
            raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
        self.size, self.kind, self.min_var = size, kind, min_var
        init_m = init if isinstance(init, torch.Tensor) else init * torch.eye(size)
        init_m = init_m.to(torch.get_default_dtype())
        if init_m.shape != (size, size):
            raise ValueError(f"init: expected shape [{size}, {size}], got {list(init_m.shape)}")
        if kind == "full":
            L = torch.linalg.cholesky(init_m)
            d = (torch.diagonal(L) - math.sqrt(min_var)).clamp_min(1e-6)
            raw = torch.tril(L, -1) + torch.diag(_softplus_inv(d))
        elif kind == "diag":
            raw = _softplus_inv((torch.diagonal(init_m) - min_var).clamp_min(1e-6))
        else:
            raw = _softplus_inv((torch.diagonal(init_m).mean() - min_var).clamp_min(1e-6))
        self.raw = nn.Parameter(raw)

    def forward(self) -> torch.Tensor:
        """The ``[k, k]`` matrix."""
        if self.kind == "full":
            diag = F.softplus(torch.diagonal(self.raw)) + math.sqrt(self.min_var)
            L = torch.tril(self.raw, -1) + torch.diag_embed(diag)
            return L @ L.mT
        eye = torch.eye(self.size, dtype=self.raw.dtype, device=self.raw.device)
        if self.kind == "diag":
            return torch.diag_embed(F.softplus(self.raw) + self.min_var)
        return (F.softplus(self.raw) + self.min_var) * eye


class _LGSSMArgs(TypedDict):
    A: torch.Tensor
    C: torch.Tensor
    Q: torch.Tensor
    R: torch.Tensor
    mu0: torch.Tensor
    P0: torch.Tensor


class LGSSMArgs(_LGSSMArgs, total=False):
    """Keyword arguments of the functional API (``kalman_filter`` ...): the model's matrices, and
    ``B`` with ``controls`` when controls are given."""

    B: torch.Tensor
    controls: torch.Tensor


class LGSSM(nn.Module):
    """Linear Gaussian state-space model with learnable shared ``A, B, C, Q, R, mu0, P0``.

    Args:
        state_dim: n; obs_dim: m; control_dim: p (0 = no controls).
        noise: parameterisation of Q and R: ``"full"``, ``"diag"`` or ``"iso"``.
        init_Q, init_R, init_P0: initial (isotropic) variances.
        learn_initial: learn ``mu0`` and ``P0`` (else they are fixed buffers).
        generator: seeds the random initialisation of ``B`` and ``C`` (0.05 N(0, 1) as in the KVAE).

    ``filter`` / ``smooth`` / ``sample_posterior`` take ``obs`` ``[B, T, m]`` and the optional
    keyword overrides ``A`` ``[B, T, n, n]``, ``B`` ``[B, T, n, p]``, ``C`` ``[B, T, m, n]`` (e.g.
    from a mixture network), ``controls`` ``[B, T, p]``, ``mask`` ``[B, T]`` and ``method``.
    """

    P0_fixed: torch.Tensor  # buffer [n, n] (registered in __init__ when learn_initial=False)

    def __init__(self, state_dim: int, obs_dim: int, control_dim: int = 0, noise: str = "full",
                 init_Q: float = 0.08, init_R: float = 0.03, init_P0: float = 1.0,
                 learn_initial: bool = True, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {noise!r}")
        n, m, p = state_dim, obs_dim, control_dim
        self.state_dim, self.obs_dim, self.control_dim = n, m, p
        self.A = nn.Parameter(torch.eye(n))
        self.C = nn.Parameter(0.05 * torch.randn(m, n, generator=generator))
        self.B = nn.Parameter(0.05 * torch.randn(n, p, generator=generator)) if p > 0 else None
        self.Q = PDMatrix(n, init_Q, noise)
        self.R = PDMatrix(m, init_R, noise)
        if learn_initial:
            self.mu0 = nn.Parameter(torch.zeros(n))
            self.P0 = PDMatrix(n, init_P0, "full")
        else:
            self.register_buffer("mu0", torch.zeros(n))
            self.register_buffer("P0_fixed", init_P0 * torch.eye(n))
            self.P0 = None

    def initial_cov(self) -> torch.Tensor:
        """``[n, n]`` covariance of z_0."""
        return self.P0() if self.P0 is not None else self.P0_fixed

    def parameters_dict(self, *, A: torch.Tensor | None = None, B: torch.Tensor | None = None,
                        C: torch.Tensor | None = None, controls: torch.Tensor | None = None
                        ) -> LGSSMArgs:
        """Keyword arguments for the functional API, with optional per-step overrides."""
        kw = LGSSMArgs(A=self.A if A is None else A, C=self.C if C is None else C, Q=self.Q(),
                  R=self.R(), mu0=self.mu0, P0=self.initial_cov())
        if controls is not None:
            Bm = self.B if B is None else B
            if Bm is None:
                raise ValueError("controls given but the model has control_dim=0 and no B override")
            kw["B"], kw["controls"] = Bm, controls
        return kw

    def filter(self, obs: torch.Tensor, *, controls: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, A: torch.Tensor | None = None,
               B: torch.Tensor | None = None, C: torch.Tensor | None = None,
               method: str = "sequential") -> FilterResult:
        """Kalman filter of ``obs`` ``[B, T, m]``; see :func:`worldmodels.kalman.kalman_filter`."""
        return kalman_filter(obs, mask=mask, method=method,
                             **self.parameters_dict(A=A, B=B, C=C, controls=controls))

    def smooth(self, obs: torch.Tensor, *, controls: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, A: torch.Tensor | None = None,
               B: torch.Tensor | None = None, C: torch.Tensor | None = None,
               method: str = "sequential") -> SmootherResult:
        """RTS smoother; see :func:`worldmodels.kalman.kalman_smoother`."""
        return kalman_smoother(obs, mask=mask, method=method,
                               **self.parameters_dict(A=A, B=B, C=C, controls=controls))

    def sample_posterior(self, obs: torch.Tensor, *, num_samples: int = 1,
                         generator: torch.Generator | None = None,
                         controls: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                         A: torch.Tensor | None = None, B: torch.Tensor | None = None,
                         C: torch.Tensor | None = None, method: str = "sequential") -> torch.Tensor:
        """Posterior samples ``[num_samples, B, T, n]``; see :func:`worldmodels.kalman.sample_posterior`."""
        return sample_posterior(obs, mask=mask, method=method, num_samples=num_samples,
                                generator=generator,
                                **self.parameters_dict(A=A, B=B, C=C, controls=controls))

    def forward(self, obs: torch.Tensor, **kwargs) -> SmootherResult:
        """Same as :meth:`smooth`."""
        return self.smooth(obs, **kwargs)
