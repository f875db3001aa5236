"""Structured latent world models: Kalman VAE, GTM-SM, their inference engines and training.

`worldmodels` knows tensors, not simulators: it never imports `envs` or `agents`.
"""

__version__ = "0.1.0"
