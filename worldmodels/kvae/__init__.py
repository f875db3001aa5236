"""Kalman variational auto-encoder (thesis chapter 6): VAE per frame + LGSSM prior mixed by a
dynamics parameter network; exact Kalman inference, imputation, generation, planner protocol."""

from worldmodels.kvae.config import KVAEConfig
from worldmodels.kvae.dynamics import DynamicsNetwork
from worldmodels.kvae.mean_imagine import KVAEMeanImagine
from worldmodels.kvae.model import KVAE, KVAEBelief, KVAEState

__all__ = ["KVAE", "KVAEBelief", "KVAEState", "KVAEConfig", "KVAEMeanImagine", "DynamicsNetwork"]
