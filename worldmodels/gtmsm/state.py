"""The GTM-SM's stepwise latent state (``GTMSM.initial_state`` / ``GTMSM.step``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldmodels.base import LatentState
from worldmodels.dnd import DNDMemory


@dataclass(frozen=True)
class GTMSMState(LatentState):
    """Stepwise state of the GTM-SM, batch first.

    * ``state [B, S]``: the agent state ``s_t`` (the transition mean, or a sample after steps
      with ``sample=True``);
    * ``disp [B, S]``: the last displacement ``d_t``, input of the momentum transition
      (7.4.2.2; unused without momentum);
    * ``keys [B, C, key_dim]``, ``values [B, C, Dv]``, ``stamps [B, C]`` (long, ``-1`` marks an
      empty slot), ``count [B]`` (long): the belief's DND memory, one per row. Stepping reads it
      and never writes it, so these tensors are shared with the belief and from step to step
      (no copy per step); ``index``, ``where`` and ``replace`` select and merge them row-wise
      like the other fields.
    """

    state: torch.Tensor
    disp: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    stamps: torch.Tensor
    count: torch.Tensor

    @classmethod
    def from_memory(cls, state: torch.Tensor, disp: torch.Tensor, memory: DNDMemory) -> GTMSMState:
        """The state ``state/disp [B, S]`` with the memory ``memory`` (its tensors, not copies)."""
        return cls(state, disp, memory.keys, memory.values, memory.stamps, memory.count)

    @property
    def memory(self) -> DNDMemory:
        """The memory as a :class:`~worldmodels.dnd.DNDMemory` (a view of the same tensors)."""
        return DNDMemory(self.keys, self.values, self.stamps, self.count)
