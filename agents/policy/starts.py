"""Start states of imagination: filtered beliefs of real context windows, as stepwise states."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import cast

import torch

from worldmodels.base import Batch, LatentState, WorldModel
from worldmodels.checks import check_shape, model_dtype


@dataclass
class StartStates:
    """A pool of ``M`` start states: the model's stepwise ``state`` (batch ``M``) and its latent
    ``features [M, D]`` (``belief.features()``, the actor's first input)."""

    state: LatentState
    features: torch.Tensor

    def __len__(self) -> int:
        return self.features.shape[0]

    def sample(self, n: int, generator: torch.Generator) -> tuple[LatentState, torch.Tensor]:
        """``n`` starts drawn uniformly with replacement: ``(state [n], features [n, D])``."""
        idx = torch.randint(len(self), (n,), generator=generator, device=generator.device)
        idx = idx.to(self.features.device)
        return self.state.index(idx), self.features[idx]


#: what ``train_actor_critic`` takes as start data: a ready pool, contexts ``{"obs": [M, T, C, H, W],
#: "actions": [M, T, A]}``, a dataset folder (its train split) or an iterable of ``Batch``.
StartData = StartStates | Mapping[str, torch.Tensor] | str | os.PathLike | Iterable[Batch]


def cat_states(states: list[LatentState]) -> LatentState:
    """States of one kind concatenated along the batch dimension."""
    kind = type(states[0])
    return kind(**{f.name: torch.cat([getattr(s, f.name) for s in states]) for f in fields(kind)})


def context_windows(batches: Iterable[Batch], context: int, stride: int,
                    limit: int) -> dict[str, torch.Tensor]:
    """Windows of ``context`` frames ending every ``stride`` frames of each sequence (the first
    ends at frame ``context - 1``), at most ``limit``: ``{"obs": [M, context, C, H, W],
    "actions": [M, context, A]}`` on the CPU."""
    obs, act, count = [], [], 0
    for batch in batches:
        T = batch.seq_len
        if T < context:
            raise ValueError(f"context: {context} frames do not fit sequences of {T} frames")
        for end in range(context - 1, T, stride):
            obs.append(batch.obs[:, end - context + 1:end + 1].cpu())
            act.append(batch.actions[:, end - context + 1:end + 1].cpu())
            count += obs[-1].shape[0]
            if count >= limit:
                break
        if count >= limit:
            break
    if not obs:
        raise ValueError("data: no sequences to start imagination from")
    return {"obs": torch.cat(obs)[:limit], "actions": torch.cat(act)[:limit]}


@torch.no_grad()
def start_states(model: WorldModel, data: StartData, *, context: int = 8, stride: int = 4,
                 limit: int = 4096, chunk: int = 256, device: str | torch.device = "cpu") -> StartStates:
    """Filter real context windows into start states (``model.observe`` then ``initial_state``).

    ``data``: a `StartStates` (returned as is), contexts ``{"obs", "actions"}`` (used whole), a
    dataset folder (its ``train`` split) or an iterable of ``Batch`` (windows by
    `context_windows`). Contexts are filtered ``chunk`` at a time on ``device``.
    """
    if isinstance(data, StartStates):
        return data
    if isinstance(data, (str, os.PathLike)):
        from worldmodels.data import make_dataloader

        data = make_dataloader(str(data), "train", 64, shuffle=False)
    # the only mapping StartData admits is the contexts dict (pyright cannot rule out an
    # Iterable[Batch] that is also a Mapping)
    windows = cast(Mapping[str, torch.Tensor], data) if isinstance(data, Mapping) else \
        context_windows(data, context, stride, limit)
    obs, actions = windows["obs"], windows["actions"]
    if obs.dim() != 5:
        raise ValueError(f"obs: expected shape [M, T, C, H, W], got {list(obs.shape)}")
    check_shape("actions", actions, (obs.shape[0], obs.shape[1], model.action_dim))
    dtype = model_dtype(model)
    was_training = model.training
    model.eval()
    try:
        states, feats = [], []
        for i in range(0, min(obs.shape[0], limit), chunk):
            o = obs[i:i + chunk].to(device)
            o = o.to(dtype) if o.is_floating_point() else o
            belief = model.observe(o, actions[i:i + chunk].to(device=device, dtype=dtype))
            states.append(model.initial_state(belief))
            feats.append(belief.features())
    finally:
        model.train(was_training)
    return StartStates(cat_states(states), torch.cat(feats))
