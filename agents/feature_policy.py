"""Any policy on latent features, acting in a real environment through the model's filter.

A policy trained inside ``ModelVectorEnv`` with ``obs_mode="latent"`` (e.g. a Stable-Baselines3
agent) maps latent features ``[D]`` to actions. ``FeaturePolicyAgent`` lets it act in the real
environment: it keeps the last ``context`` raw observations and actions, filters them into the
model's belief at every step and hands ``belief.features()`` to the policy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from worldmodels.base import WorldModel

from .mpc import FilteringAgent, image_obs_to_tensor

#: ``policy_fn(features float32 [n, D]) -> actions [n, A]`` (``Box``) or ``[n]`` ints (``Discrete``)
FeaturePolicyFn = Callable[[np.ndarray], np.ndarray]


class FeaturePolicyAgent(FilteringAgent):
    """Acts from raw observations with ``policy_fn`` applied to the filtered latent features.

    Args:
        model: the ``WorldModel`` whose latent features the policy was trained on.
        policy_fn: features ``float32 [n, D]`` -> actions ``[n, A]`` (continuous) or ``[n]``
            integers (discrete), e.g. ``lambda f: sb3_model.predict(f, deterministic=True)[0]``.
        action_space: the real environment's single action space (``Box`` of shape
            ``(model.action_dim,)`` or ``Discrete(model.action_dim)``); continuous actions are
            clipped to its bounds.
        context: most recent frames and actions given to ``model.observe`` at each step.
        num_envs: ``None`` for one environment (``act(obs)`` takes one observation), else the
            number of sub-environments of a vector env (``act`` takes ``[n, ...]``); call
            ``reset(done)`` after steps where episodes ended (as for ``MPCAgent``).
        obs_to_tensor: raw observations -> float tensor ``[..., C, H, W]`` (default: uint8
            channel-last pixels to [0, 1] channel-first).
        device: where the model runs (default: its parameters' device).
    """

    def __init__(self, model: WorldModel, policy_fn: FeaturePolicyFn, action_space: spaces.Space, *,
                 context: int = 8, num_envs: int | None = None, obs_to_tensor: Callable = image_obs_to_tensor,
                 device: str | torch.device | None = None):
        self.discrete = isinstance(action_space, spaces.Discrete)
        if isinstance(action_space, spaces.Discrete):
            if int(action_space.n) != model.action_dim:
                raise ValueError(f"action_space: expected Discrete({model.action_dim}), got Discrete({action_space.n})")
        else:
            if not isinstance(action_space, spaces.Box) or action_space.shape != (model.action_dim,):
                raise ValueError(f"action_space: expected a Box of shape ({model.action_dim},), got {action_space}")
            self._low = np.asarray(action_space.low, np.float32)
            self._high = np.asarray(action_space.high, np.float32)
        super().__init__(model, context, num_envs=num_envs, obs_to_tensor=obs_to_tensor, device=device)
        self.policy_fn = policy_fn
        self.reset()

    def _actions(self, raw) -> np.ndarray:
        """``policy_fn``'s output checked: float32 ``[n, A]`` clipped, or int64 ``[n]``."""
        a = np.asarray(raw)
        if self.discrete:
            if a.size != self.n:
                raise ValueError(f"policy_fn: expected {self.n} discrete actions, got shape {list(a.shape)}")
            a = a.reshape(self.n).astype(np.int64)
            if a.min() < 0 or a.max() >= self.model.action_dim:
                raise ValueError(f"policy_fn: actions must lie in [0, {self.model.action_dim}), got {a.tolist()}")
            return a
        if a.size != self.n * self.model.action_dim:
            raise ValueError(f"policy_fn: expected actions of shape [{self.n}, {self.model.action_dim}], "
                             f"got {list(a.shape)}")
        return np.clip(a.reshape(self.n, self.model.action_dim).astype(np.float32), self._low, self._high)

    @torch.no_grad()
    def act(self, obs):
        """The next action(s) for observation(s) ``obs``: float32 ``[A]`` / ``[n, A]``, or an
        int / int64 ``[n]`` for a ``Discrete`` action space."""
        self._observation(obs)
        features = self.belief().features().float().cpu().numpy()  # [n, D]
        a = self._actions(self.policy_fn(features))
        taken = torch.as_tensor(a, device=self.device)
        if self.discrete:
            taken = F.one_hot(taken, self.model.action_dim)
        self._act[:, -1] = taken.to(self.dtype)
        if self.batched:
            return a
        return int(a[0]) if self.discrete else a[0]
