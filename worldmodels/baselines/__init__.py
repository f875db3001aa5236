"""Baselines the KVAE is compared with: the deep Kalman filter / deep Markov model, the
locally linear deep variational Bayes filter and the AE-RNN over a frozen auto-encoder's codes."""

from worldmodels.baselines.code_rnn import CodeRNN, CodeRNNConfig
from worldmodels.baselines.dkf import DKF, DKFBelief, DKFConfig
from worldmodels.baselines.dvbf import DVBF, DVBFBelief, DVBFConfig
from worldmodels.baselines.gaussian_state import GaussianStateBelief, GaussianStateModel, GaussianStepState

__all__ = ["CodeRNN", "CodeRNNConfig", "DKF", "DKFBelief", "DKFConfig", "DVBF", "DVBFBelief", "DVBFConfig",
           "GaussianStateBelief", "GaussianStateModel", "GaussianStepState"]
