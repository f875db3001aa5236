"""Baselines the KVAE is compared with: the deep Kalman filter / deep Markov model and the
locally linear deep variational Bayes filter."""

from worldmodels.baselines.dkf import DKF, DKFBelief, DKFConfig
from worldmodels.baselines.dvbf import DVBF, DVBFBelief, DVBFConfig
from worldmodels.baselines.gaussian_state import GaussianStateBelief, GaussianStateModel

__all__ = ["DKF", "DKFBelief", "DKFConfig", "DVBF", "DVBFBelief", "DVBFConfig", "GaussianStateBelief",
           "GaussianStateModel"]
