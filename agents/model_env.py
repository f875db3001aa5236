"""The world model as an environment: step a trained model in imagination.

``ModelVectorEnv`` (a Gymnasium ``VectorEnv``) and ``ModelEnv`` (a Gymnasium ``Env``) start each
episode from the belief the model filters out of a *real* context (a window of recorded frames
and actions), then advance the latent with ``model.imagine`` under the agent's actions and score
transitions with a reward function (e.g. a trained ``RewardHead``). Observations are the latent
features ``[D]`` (``obs_mode="latent"``) or decoded frames ``uint8 [H, W, C]`` (``"pixels"``);
``render()`` decodes the current latent. Episodes have a fixed length; all sub-environments of
the vector env end together (truncation), and reset in the same step (``SAME_STEP`` autoreset,
the final observation in ``info["final_obs"]``).

Each step re-imagines the episode's action history from the start belief with mean
propagation (``sample=False``), which only needs the planner protocol; the cost per step grows
linearly with the episode length, so keep episodes short (tens of steps), as in Dyna/MBPO.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from worldmodels.base import WorldModel
from worldmodels.checks import check_shape

from .costs import RewardFn


def contexts_from_batch(obs: torch.Tensor, actions: torch.Tensor, context: int) -> dict[str, torch.Tensor]:
    """Real starting contexts: the first ``context`` frames/actions of ``obs [M, T, C, H, W]``,
    ``actions [M, T, A]`` (e.g. a ``Batch`` from the dataset loader)."""
    if obs.dim() < 3 or obs.shape[1] < context:
        raise ValueError(f"obs: expected [M, T >= {context}, ...], got {list(obs.shape)}")
    return {"obs": obs[:, :context], "actions": actions[:, :context]}


class ModelVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` imagined environments stepped in one batched model call per step.

    Args:
        model: a trained ``WorldModel`` (used in eval mode, no gradients).
        reward_fn: ``(before, actions, after) -> rewards`` on latents (see ``agents.costs``).
        contexts: real starting contexts ``{"obs": [M, T, ...], "actions": [M, T, A]}``; each
            reset draws ``num_envs`` of them at random.
        action_space: the single-env Gymnasium ``Box`` action space (or ``Discrete``: actions
            are then ints, fed to the model as one-hot).
        episode_length: steps per imagined episode.
        obs_mode: "latent" (features ``[D]`` float32) or "pixels" (decoded ``uint8 [H, W, C]``).
    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, model: WorldModel, reward_fn: RewardFn, contexts: dict[str, torch.Tensor],
                 action_space: spaces.Space, num_envs: int = 1, episode_length: int = 50,
                 obs_mode: str = "latent", render_mode: str | None = None,
                 device: str | torch.device | None = None):
        if obs_mode not in ("latent", "pixels"):
            raise ValueError(f"obs_mode: expected 'latent' or 'pixels', got {obs_mode!r}")
        if episode_length < 1 or num_envs < 1:
            raise ValueError("episode_length and num_envs must be >= 1")
        self.model = model.eval()
        self.reward_fn = reward_fn
        p = next(iter(model.parameters()), None)
        self.device = torch.device(device) if device is not None else (p.device if p is not None else torch.device("cpu"))
        M, T = contexts["obs"].shape[:2]
        check_shape("contexts['actions']", contexts["actions"], (M, T, model.action_dim))
        self.contexts = {k: v.to(self.device) for k, v in contexts.items()}
        self.num_envs = num_envs
        self.episode_length = episode_length
        self.obs_mode = obs_mode
        self.render_mode = render_mode
        self.discrete = isinstance(action_space, spaces.Discrete)
        if self.discrete and int(action_space.n) != model.action_dim:
            raise ValueError(f"action_space: Discrete({action_space.n}) != model.action_dim={model.action_dim}")
        if not self.discrete and action_space.shape != (model.action_dim,):
            raise ValueError(f"action_space: expected shape ({model.action_dim},), got {action_space.shape}")
        self.single_action_space = action_space
        if obs_mode == "latent":
            self.single_observation_space = spaces.Box(-np.inf, np.inf, (model.latent_dim,), np.float32)
        else:
            with torch.no_grad():
                C, H, W = model.decode(torch.zeros(1, model.latent_dim, device=self.device)).shape[-3:]
            self.single_observation_space = spaces.Box(0, 255, (H, W, C), np.uint8)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self._rng = np.random.default_rng()
        self._belief = None
        self._t = 0

    # --- internals -------------------------------------------------------------------------
    def _action_tensor(self, actions) -> torch.Tensor:
        a = torch.as_tensor(np.asarray(actions), device=self.device)
        if self.discrete:
            a = a.reshape(self.num_envs).long()
            return torch.nn.functional.one_hot(a, self.model.action_dim).float()
        a = a.float().reshape(self.num_envs, self.model.action_dim)
        low = torch.as_tensor(self.single_action_space.low, device=self.device)
        high = torch.as_tensor(self.single_action_space.high, device=self.device)
        return torch.minimum(torch.maximum(a, low), high)

    def _obs(self, z: torch.Tensor) -> np.ndarray:
        if self.obs_mode == "latent":
            return z.float().cpu().numpy()
        frames = self.model.decode(z).clamp(0, 1)  # [n, C, H, W]
        return (frames.movedim(-3, -1) * 255 + 0.5).to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def _start(self) -> np.ndarray:
        M = self.contexts["obs"].shape[0]
        idx = torch.as_tensor(self._rng.integers(0, M, self.num_envs), device=self.device)
        self._belief = self.model.observe(self.contexts["obs"][idx], self.contexts["actions"][idx])
        self._z = self._belief.features()  # [n, D]
        self._hist = torch.zeros(self.num_envs, 0, self.model.action_dim, device=self.device)
        self._t = 0
        return self._obs(self._z)

    # --- Gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        return self._start(), {}

    @torch.no_grad()
    def step(self, actions):
        if self._belief is None:
            raise RuntimeError("step() called before reset()")
        a = self._action_tensor(actions)  # [n, A]
        self._hist = torch.cat([self._hist, a[:, None]], dim=1)
        latents = self.model.imagine(self._belief, self._hist[:, None])[:, 0]  # [n, t, D]
        z_next = latents[:, -1]
        reward = self.reward_fn(self._z, a, z_next)  # [n]
        self._z = z_next
        self._t += 1
        obs = self._obs(z_next)
        rew = reward.float().cpu().numpy().astype(np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.full(self.num_envs, self._t >= self.episode_length)
        info: dict[str, Any] = {}
        if truncated.all():
            info = {"final_obs": obs, "_final_obs": truncated.copy()}
            obs = self._start()
        return obs, rew, terminated, truncated, info

    @torch.no_grad()
    def render(self):
        """Decoded current frames ``uint8 [n, H, W, 3]``."""
        if self._belief is None:
            return None
        frames = self.model.decode(self._z).clamp(0, 1).movedim(-3, -1)
        if frames.shape[-1] == 1:
            frames = frames.expand(*frames.shape[:-1], 3)
        return (frames * 255 + 0.5).to(torch.uint8).cpu().numpy()


class ModelEnv(gym.Env):
    """A single imagined environment (``ModelVectorEnv`` with one env), for any RL library.

    Same arguments as ``ModelVectorEnv`` minus ``num_envs``. ``info["latent"]`` holds the
    latent features also in ``"pixels"`` mode.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, model: WorldModel, reward_fn: RewardFn, contexts: dict[str, torch.Tensor],
                 action_space: spaces.Space, episode_length: int = 50, obs_mode: str = "latent",
                 render_mode: str | None = None, device: str | torch.device | None = None):
        self._venv = ModelVectorEnv(model, reward_fn, contexts, action_space, num_envs=1,
                                    episode_length=episode_length, obs_mode=obs_mode,
                                    device=device)
        self.action_space = action_space
        self.observation_space = self._venv.single_observation_space
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._venv._rng = self.np_random
        obs = self._venv._start()
        return obs[0], {"latent": self._venv._z[0].cpu().numpy()}

    def step(self, action):
        v = self._venv
        if v._belief is None:
            raise RuntimeError("step() called before reset()")
        a = np.asarray(action)[None]
        with torch.no_grad():
            at = v._action_tensor(a)
            v._hist = torch.cat([v._hist, at[:, None]], dim=1)
            z_next = v.model.imagine(v._belief, v._hist[:, None])[:, 0, -1]
            reward = float(v.reward_fn(v._z, at, z_next)[0])
            v._z = z_next
            v._t += 1
            obs = v._obs(z_next)[0]
        truncated = v._t >= v.episode_length
        return obs, reward, False, truncated, {"latent": v._z[0].cpu().numpy()}

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        return self._venv.render()[0]
