"""Batched, differentiable linear Gaussian state-space model (Kalman filter, RTS smoother,
posterior sampling, open-loop rollout), sequential or parallel in time.

See :mod:`worldmodels.kalman.api` for the model and shape conventions.
"""

from worldmodels.kalman.api import kalman_filter, kalman_smoother, rollout, sample_posterior
from worldmodels.kalman.batch_last import set_compile
from worldmodels.kalman.module import LGSSM, PDMatrix
from worldmodels.kalman.results import FilterResult, SmootherResult
from worldmodels.kalman.steps import predict_step, update_step

__all__ = [
    "FilterResult", "SmootherResult", "kalman_filter", "kalman_smoother", "sample_posterior",
    "predict_step", "update_step", "rollout", "LGSSM", "PDMatrix", "set_compile",
]
