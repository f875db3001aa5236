"""Structured latent world models: Kalman VAE, GTM-SM, their inference engines and training.

`worldmodels` knows tensors, not simulators: it never imports `envs` or `agents`.
"""

__version__ = "0.1.0"

from .registry import register_model  # noqa: E402  (the one public way to make a model loadable)

__all__ = ["__version__", "register_model"]
