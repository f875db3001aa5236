"""The fast means-only imagination a world model offers for planning, if any.

The fused kernels live with their model (``worldmodels.kvae.mean_imagine`` for the KVAE) behind
``WorldModel.fast_mean_imagine``; planners only ask for them here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worldmodels.base import FastMeanImagine
from worldmodels.kvae.mean_imagine import KVAEMeanImagine, Workspace

__all__ = ["KVAEMeanImagine", "Workspace", "mean_imagine_fn"]


def mean_imagine_fn(model: Any) -> FastMeanImagine | None:
    """The model's fast means-only ``imagine`` (with ``imagine_features_first``) if it offers
    one (``WorldModel.fast_mean_imagine``), else None."""
    fast: Callable[[], FastMeanImagine | None] | None = getattr(model, "fast_mean_imagine", None)
    return fast() if callable(fast) else None
