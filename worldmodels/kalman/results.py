"""Result containers of the Kalman filter and RTS smoother."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FilterResult:
    """Output of :func:`worldmodels.kalman.kalman_filter`.

    Shapes (B batch, T steps, n state dim):

    * ``pred_mean`` ``[B, T, n]``, ``pred_cov`` ``[B, T, n, n]``: p(z_t | a_{0:t-1}, u) (t = 0: the prior).
    * ``filt_mean`` ``[B, T, n]``, ``filt_cov`` ``[B, T, n, n]``: p(z_t | a_{0:t}, u) (equal to the
      prediction at masked steps).
    * ``log_likelihood`` ``[B]``: log p(a_{observed} | u), summed over observed steps, in nats.

    Covariances shared by the whole batch are returned as broadcast (expanded) views.
    """

    pred_mean: torch.Tensor
    pred_cov: torch.Tensor
    filt_mean: torch.Tensor
    filt_cov: torch.Tensor
    log_likelihood: torch.Tensor


@dataclass
class SmootherResult:
    """Output of :func:`worldmodels.kalman.kalman_smoother`.

    * ``mean`` ``[B, T, n]``, ``cov`` ``[B, T, n, n]``: p(z_t | all observed a, u).
    * ``cross_cov`` ``[B, T-1, n, n]``: ``cross_cov[:, t] = Cov(z_{t+1}, z_t | all)``.
    * ``filter``: the :class:`FilterResult` of the forward pass.
    """

    mean: torch.Tensor
    cov: torch.Tensor
    cross_cov: torch.Tensor
    filter: FilterResult

    @property
    def log_likelihood(self) -> torch.Tensor:
        """``[B]`` log-likelihood of the observations (from the forward pass)."""
        return self.filter.log_likelihood
