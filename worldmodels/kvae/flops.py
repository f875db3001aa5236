"""Analytic FLOPs of one imagined latent step of a KVAE, per candidate trajectory.

The count is of the arithmetic a means-only rollout needs (``KVAE.imagine(..., sample=False)``
as ``worldmodels.kvae.mean_imagine`` computes it), in matmul FLOPs (two per multiply-add; see
``worldmodels.flops``): per step and candidate,

* the alpha network: LSTM gates ``2 * 4h * (m + h)`` and head ``2 * K * h``, or the MLP's
  linear layers;
* the LGSSM mixing and transition: all K modes at once, ``2 * K * n * (n + p)`` for
  ``[A_k | B_k] [z; u]`` and ``2 * K * m * n`` for ``C_k z``;

with ``h`` hidden units, ``K`` modes, ``n = z_dim``, ``m = a_dim``, ``p`` control dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from worldmodels.flops import linear_flops

if TYPE_CHECKING:
    from worldmodels.kvae.model import KVAE


@dataclass(frozen=True)
class ImagineStepFlops:
    """Matmul FLOPs of one imagined step of one candidate: ``alpha`` (the dynamics network) and
    ``mixing`` (mode mixing, transition and emission); ``total`` is their sum."""

    alpha: int
    mixing: int

    @property
    def total(self) -> int:
        return self.alpha + self.mixing


def imagine_step_flops(model: KVAE) -> ImagineStepFlops:
    """FLOPs per latent step and candidate of ``model``'s means-only imagination.

    Raises ``ValueError`` for a KVAE without an LGSSM prior (it has no dynamics to roll out).
    """
    cfg = model.config
    if cfg.prior != "lgssm":
        raise ValueError(f"model: expected a KVAE with prior='lgssm', got prior={cfg.prior!r}")
    K, n, m, p = model.num_modes, model.z_dim, model.a_dim, model.control_dim
    dyn = model.dynamics
    if dyn.kind == "lstm":
        rnn = dyn.rnn
        h = rnn.hidden_size
        alpha = 2 * 4 * h * (rnn.input_size + h) + linear_flops(dyn.head)
    else:
        alpha = linear_flops(dyn.mlp)
    mixing = 2 * K * n * (n + p) + 2 * K * m * n
    return ImagineStepFlops(alpha=alpha, mixing=mixing)
