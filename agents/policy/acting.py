"""``ActorPolicy``: the learned actor acting in a real environment through the model's filter."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from worldmodels.base import WorldModel

from ..mpc import FilteringAgent, image_obs_to_tensor
from .actor_critic import ActorCritic


class ActorPolicy(FilteringAgent):
    """Acts from raw observations: keeps the last ``context`` frames and actions, filters them into
    the model's belief and asks the actor for the next action.

    ``act(obs)`` takes one observation (or ``[n, ...]`` with ``num_envs=n``) and returns a float
    array ``[A]`` / ``[n, A]`` (continuous) or an int / int array ``[n]`` (discrete).
    ``deterministic=True`` takes the actor's mode (evaluation), else a draw seeded by ``seed``.
    For vector envs call ``reset(done)`` after steps where episodes ended (as for ``MPCAgent``).
    """

    def __init__(self, model: WorldModel, actor_critic: ActorCritic, *, context: int = 8,
                 deterministic: bool = True, num_envs: int | None = None, seed: int = 0,
                 obs_to_tensor: Callable = image_obs_to_tensor, device: str | torch.device | None = None):
        if actor_critic.config.action_dim != model.action_dim or actor_critic.config.latent_dim != model.latent_dim:
            raise ValueError(f"actor_critic: built for latent_dim={actor_critic.config.latent_dim}, "
                             f"action_dim={actor_critic.config.action_dim}; the model has "
                             f"{model.latent_dim}, {model.action_dim}")
        super().__init__(model, context, num_envs=num_envs, obs_to_tensor=obs_to_tensor, device=device)
        self.actor_critic = actor_critic.to(self.device).eval()
        self.deterministic = deterministic
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.reset()

    @torch.no_grad()
    def act(self, obs):
        """The next action(s) for observation(s) ``obs``."""
        self._observation(obs)
        features = self.belief().features()  # [n, D]
        dist = self.actor_critic.actor(features)
        a = dist.mode() if self.deterministic else dist.sample(self.generator)[0]
        self._act[:, -1] = a.to(self.dtype)
        if self.actor_critic.config.discrete:
            out = a.argmax(-1).cpu().numpy()
            return out if self.batched else int(out[0])
        out = a.float().cpu().numpy().astype(np.float32)
        return out if self.batched else out[0]
