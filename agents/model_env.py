"""The world model as an environment: step a trained model in imagination.

``ModelVectorEnv`` (a Gymnasium ``VectorEnv``) and ``ModelEnv`` (a Gymnasium ``Env``) start each
episode from the belief the model filters out of a *real* context (a window of recorded frames
and actions), then advance the latent under the agent's actions and score transitions with a
reward function (e.g. a trained ``RewardHead``). Observations are the latent features ``[D]``
(``obs_mode="latent"``) or decoded frames ``uint8 [H, W, C]`` (``"pixels"``); ``render()``
decodes the current latent. Episodes have a fixed length and end by truncation; a sub-environment
whose episode ends is reset in the same step (``SAME_STEP`` autoreset, the final observation in
``info["final_obs"]``, rows marked by ``info["_final_obs"]``) while the others keep their state.
``reset(options={"reset_mask": mask})`` resets only the sub-environments where ``mask`` is True.

Models with the stepwise protocol (``initial_state`` / ``step``, see ``worldmodels.base``) are
advanced one action at a time, so the cost of a step does not depend on the episode length.
Models without it fall back to re-imagining the episode's whole action history from the start
belief with ``imagine`` at every step: the cost per step then grows linearly with the episode
length, all sub-environments must reset together (no ``reset_mask``) and ``sample`` is
unavailable.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from worldmodels.base import Belief, LatentState, WorldModel, supports_step
from worldmodels.checks import check_shape

from .costs import RewardFn

ObsMode = Literal["latent", "pixels"]


def contexts_from_batch(obs: torch.Tensor, actions: torch.Tensor, context: int) -> dict[str, torch.Tensor]:
    """Real starting contexts: the first ``context`` frames/actions of ``obs [M, T, C, H, W]``,
    ``actions [M, T, A]`` (e.g. a ``Batch`` from the dataset loader)."""
    if obs.dim() < 3 or obs.shape[1] < context:
        raise ValueError(f"obs: expected [M, T >= {context}, ...], got {list(obs.shape)}")
    return {"obs": obs[:, :context], "actions": actions[:, :context]}


class _Stepper:
    """Advances the model with ``step``; one row per sub-environment, rows reset independently."""

    def __init__(self, model: WorldModel, sample: bool):
        self.model, self.sample = model, sample
        self.state: LatentState | None = None

    def start(self, belief: Belief, rows: torch.Tensor | None, generator: torch.Generator | None) -> None:
        """New episodes from ``belief`` for all rows (``rows=None``) or rows ``rows [K]``."""
        fresh = self.model.initial_state(belief, sample=self.sample, generator=generator)
        if rows is None:
            self.state = fresh
        elif self.state is None:
            raise RuntimeError("reset_mask: the first reset() must start every sub-environment")
        else:
            self.state = self.state.replace(rows, fresh)

    def advance(self, actions: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Features ``[n, D]`` after ``actions [n, A]``."""
        if self.state is None:
            raise RuntimeError("step() called before reset()")
        self.state, features = self.model.step(self.state, actions, sample=self.sample,
                                               generator=generator)
        return features


class _Reimaginer:
    """Fallback for models without ``step``: re-imagine the whole action history every step."""

    def __init__(self, model: WorldModel, sample: bool):
        if sample:
            raise ValueError(f"sample: {type(model).__name__} has no stepwise state; "
                             "sampled model environments need initial_state/step")
        self.model = model
        self.belief: Belief | None = None
        self.hist: torch.Tensor | None = None

    def start(self, belief: Belief, rows: torch.Tensor | None, generator: torch.Generator | None) -> None:
        if rows is not None:
            raise NotImplementedError(f"{type(self.model).__name__} has no stepwise state: its "
                                      "sub-environments can only be reset together")
        self.belief = belief
        self.hist = None

    def advance(self, actions: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.belief is None:
            raise RuntimeError("step() called before reset()")
        a = actions[:, None]
        self.hist = a if self.hist is None else torch.cat([self.hist, a], dim=1)
        return self.model.imagine(self.belief, self.hist[:, None])[:, 0, -1]


class ModelVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` imagined environments stepped in one batched model call per step.

    Args:
        model: a trained ``WorldModel`` (used in eval mode, no gradients).
        reward_fn: ``(before, actions, after) -> rewards`` on latents (see ``worldmodels.agents.costs``).
        contexts: real starting contexts ``{"obs": [M, T, ...], "actions": [M, T, A]}``; each
            (re)started episode draws one of them at random.
        action_space: the single-env Gymnasium ``Box`` action space (or ``Discrete``: actions
            are then ints, fed to the model as one-hot).
        num_envs: sub-environments stepped together.
        episode_length: steps per imagined episode.
        obs_mode: "latent" (features ``[D]`` float32) or "pixels" (decoded ``uint8 [H, W, C]``).
        device: where the model runs (default: the device of its parameters).
        sample: draw the model's noise (``step(sample=True)``, seeded by ``reset(seed=...)``)
            instead of propagating means; needs a model with the stepwise protocol.
    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, model: WorldModel, reward_fn: RewardFn, contexts: dict[str, torch.Tensor],
                 action_space: spaces.Space, num_envs: int = 1, episode_length: int = 50,
                 obs_mode: ObsMode = "latent", render_mode: str | None = None,
                 device: str | torch.device | None = None, sample: bool = False):
        if obs_mode not in ("latent", "pixels"):
            raise ValueError(f"obs_mode: expected 'latent' or 'pixels', got {obs_mode!r}")
        if episode_length < 1 or num_envs < 1:
            raise ValueError("episode_length and num_envs must be >= 1")
        self.model = model.eval()
        self.reward_fn = reward_fn
        p = next(iter(model.parameters()), None)
        default = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device) if device is not None else default
        self._dtype = p.dtype if p is not None and p.is_floating_point() else torch.get_default_dtype()
        M, T = contexts["obs"].shape[:2]
        check_shape("contexts['actions']", contexts["actions"], (M, T, model.action_dim))
        self.contexts = {k: v.to(self.device) for k, v in contexts.items()}
        self.num_envs = num_envs
        self.episode_length = episode_length
        self.obs_mode = obs_mode
        self.render_mode = render_mode
        self.sample = sample
        self.stepwise = supports_step(model)
        self._dynamics = (_Stepper if self.stepwise else _Reimaginer)(model, sample)
        self.discrete = isinstance(action_space, spaces.Discrete)
        if isinstance(action_space, spaces.Discrete):
            if int(action_space.n) != model.action_dim:
                raise ValueError(f"action_space: Discrete({action_space.n}) != model.action_dim={model.action_dim}")
        elif not isinstance(action_space, spaces.Box):
            raise ValueError(f"action_space: expected a Box or Discrete space, got {action_space}")
        else:
            if action_space.shape != (model.action_dim,):
                raise ValueError(f"action_space: expected shape ({model.action_dim},), got {action_space.shape}")
            self._low = torch.as_tensor(action_space.low, device=self.device, dtype=self._dtype)
            self._high = torch.as_tensor(action_space.high, device=self.device, dtype=self._dtype)
        self.single_action_space = action_space
        if obs_mode == "latent":
            self.single_observation_space = spaces.Box(-np.inf, np.inf, (model.latent_dim,), np.float32)
        else:
            with torch.no_grad():
                C, H, W = model.decode(torch.zeros(1, model.latent_dim, device=self.device,
                                                   dtype=self._dtype)).shape[-3:]
            self.single_observation_space = spaces.Box(0, 255, (H, W, C), np.uint8)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self._rng = np.random.default_rng()
        self._generator: torch.Generator | None = None
        self._z: torch.Tensor | None = None
        self._t = np.zeros(num_envs, dtype=np.int64)

    # --- internals -------------------------------------------------------------------------
    def _action_tensor(self, actions) -> torch.Tensor:
        a = torch.as_tensor(np.asarray(actions), device=self.device)
        if self.discrete:
            a = a.reshape(self.num_envs).long()
            return torch.nn.functional.one_hot(a, self.model.action_dim).to(self._dtype)
        a = a.to(self._dtype).reshape(self.num_envs, self.model.action_dim)
        return torch.minimum(torch.maximum(a, self._low), self._high)

    def _latents(self) -> torch.Tensor:
        """The current latents ``[n, D]`` of the sub-environments; an error before the first reset."""
        if self._z is None:
            raise RuntimeError("step() called before reset()")
        return self._z

    def _obs(self, z: torch.Tensor) -> np.ndarray:
        if self.obs_mode == "latent":
            return z.float().cpu().numpy()
        frames = self.model.decode(z).clamp(0, 1)  # [n, C, H, W]
        return (frames.movedim(-3, -1) * 255 + 0.5).to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def _start(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes in every sub-environment, or where ``mask [n]`` is True; returns
        the observations of all sub-environments."""
        if mask is not None and mask.all():
            mask = None
        k = self.num_envs if mask is None else int(mask.sum())
        if k == 0:
            return self._obs(self._latents())
        M = self.contexts["obs"].shape[0]
        idx = torch.as_tensor(self._rng.integers(0, M, k), device=self.device)
        belief = self.model.observe(self.contexts["obs"][idx], self.contexts["actions"][idx])
        rows = None if mask is None else torch.as_tensor(np.flatnonzero(mask), device=self.device)
        self._dynamics.start(belief, rows, self._generator)
        z0 = belief.features()
        self._z = z0 if rows is None else self._latents().index_copy(0, rows, z0)
        if mask is None:
            self._t[:] = 0
        else:
            self._t[mask] = 0
        return self._obs(self._latents())

    @torch.no_grad()
    def _advance(self, actions) -> tuple[torch.Tensor, np.ndarray]:
        """One model step for all sub-environments: ``(actions as a tensor [n, A], rewards)``."""
        if self._z is None:
            raise RuntimeError("step() called before reset()")
        a = self._action_tensor(actions)  # [n, A]
        z_next = self._dynamics.advance(a, self._generator)
        reward = self.reward_fn(self._z, a, z_next)  # [n]
        self._z = z_next
        self._t += 1
        return a, reward.float().cpu().numpy().astype(np.float64)

    # --- Gymnasium API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start new episodes; ``options={"reset_mask": bool [n]}`` restarts only those rows."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            if self.sample:
                self._generator = torch.Generator(device=self.device).manual_seed(seed)
        if self.sample and self._generator is None:
            self._generator = torch.Generator(device=self.device).manual_seed(int(self._rng.integers(2 ** 62)))
        mask = (options or {}).get("reset_mask")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"reset_mask: expected shape ({self.num_envs},), got {mask.shape}")
            if self._z is None and not mask.all():
                raise RuntimeError("reset_mask: the first reset() must start every sub-environment")
        return self._start(mask), {}

    def step(self, actions):
        """Advance every sub-environment; those whose episode ends restart in the same step."""
        _, rew = self._advance(actions)
        with torch.no_grad():
            obs = self._obs(self._latents())
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = self._t >= self.episode_length
        info: dict[str, Any] = {}
        if truncated.any():
            info = {"final_obs": obs, "_final_obs": truncated.copy()}
            obs = self._start(truncated)
        return obs, rew, terminated, truncated, info

    @torch.no_grad()
    def render(self):
        """Decoded current frames ``uint8 [n, H, W, 3]``."""
        if self._z is None:
            return None
        frames = self.model.decode(self._z).clamp(0, 1).movedim(-3, -1)
        if frames.shape[-1] == 1:
            frames = frames.expand(*frames.shape[:-1], 3)
        return (frames * 255 + 0.5).to(torch.uint8).cpu().numpy()


class ModelEnv(gym.Env):
    """A single imagined environment (``ModelVectorEnv`` with one env), for any RL library.

    Same arguments as ``ModelVectorEnv`` minus ``num_envs``. ``info["latent"]`` holds the
    latent features also in ``"pixels"`` mode. The episode is truncated after
    ``episode_length`` steps; the caller resets it.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, model: WorldModel, reward_fn: RewardFn, contexts: dict[str, torch.Tensor],
                 action_space: spaces.Space, episode_length: int = 50, obs_mode: ObsMode = "latent",
                 render_mode: str | None = None, device: str | torch.device | None = None,
                 sample: bool = False):
        self._venv = ModelVectorEnv(model, reward_fn, contexts, action_space, num_envs=1,
                                    episode_length=episode_length, obs_mode=obs_mode,
                                    device=device, sample=sample)
        self.action_space = action_space
        self.observation_space = self._venv.single_observation_space
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        v = self._venv
        v._rng = self.np_random
        if v.sample:
            v._generator = torch.Generator(device=v.device).manual_seed(int(self.np_random.integers(2 ** 62)))
        obs = v._start()
        return obs[0], {"latent": v._latents()[0].float().cpu().numpy()}

    def step(self, action):
        v = self._venv
        _, reward = v._advance(np.asarray(action)[None])
        with torch.no_grad():
            obs = v._obs(v._latents())[0]
        truncated = bool(v._t[0] >= v.episode_length)
        return obs, float(reward[0]), False, truncated, {"latent": v._latents()[0].float().cpu().numpy()}

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        frames = self._venv.render()
        return None if frames is None else frames[0]
