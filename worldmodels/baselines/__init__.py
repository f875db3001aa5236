"""Baselines the KVAE is compared with: the deep Kalman filter / deep Markov model."""

from worldmodels.baselines.dkf import DKF, DKFBelief, DKFConfig

__all__ = ["DKF", "DKFBelief", "DKFConfig"]
