"""The MPC agent: filter real observations into a belief, plan in latent space, act.

``agent.act(obs)`` drops into any Gymnasium loop; with ``num_envs=n`` it takes the stacked
observations of a vector env (``[n, ...]``) and plans for all environments in one batch.
For vector envs, use ``autoreset_mode=SAME_STEP`` and call ``agent.reset(done)`` after a step
where episodes ended, so the next ``act`` starts a fresh history for those environments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from worldmodels.base import WorldModel
from worldmodels.checks import model_dtype

from .costs import ObjectiveTimer, RewardFn, rollout_objective
from .planners import Planner, PlanResult


def image_obs_to_tensor(obs) -> torch.Tensor:
    """Gymnasium pixels ``uint8 [..., H, W, C]`` -> float ``[..., C, H, W]`` in [0, 1];
    any other array is returned as a float tensor unchanged (e.g. true states for the oracle)."""
    x = torch.as_tensor(np.asarray(obs))
    if x.dtype == torch.uint8:
        return x.float().div_(255.0).movedim(-1, -3)
    return x.float()


@dataclass
class MPCConfig:
    """MPC agent settings.

    Attributes:
        context: number of most recent frames given to ``model.observe`` at each decision.
        replan_every: plan every n steps and execute the plan open loop in between.
        warm_start: initialise each search with the previous plan shifted by the executed steps.
        exploration_noise: Gaussian action noise std as a fraction of the half-range
            (continuous), or the probability of a uniformly random action (discrete).
        discount: reward discount inside the planning horizon.
        terminal_weight: the last imagined step's reward counts ``1 + terminal_weight`` times
            (``rollout_objective``).
        sample: imagine with sampled (True) or mean (False) latent trajectories.
        record: keep the real frames and the decoded imagined futures (for videos).
        seed: seeds the planner's and the exploration noise's generators.
        fused: plan through the fused means-only path where one exists (KVAE + ``RewardHead``,
            see ``worldmodels.agents.fast_imagine``); False forces ``model.imagine`` + ``reward_fn``.
    """

    context: int = 16
    replan_every: int = 1
    warm_start: bool = True
    exploration_noise: float = 0.0
    discount: float = 1.0
    terminal_weight: float = 0.0
    sample: bool = False
    record: bool = False
    seed: int = 0
    fused: bool = True


class FilteringAgent:
    """An agent that keeps the last ``context`` real observations and actions of ``n``
    environments and filters them into the model's belief (``belief()``).

    Subclasses decide the actions (``MPCAgent`` plans, ``worldmodels.agents.policy.ActorPolicy`` runs a
    learned actor) and write the action taken into ``self._act[:, -1]``.
    """

    def __init__(self, model: WorldModel, context: int, *, num_envs: int | None = None,
                 obs_to_tensor: Callable = image_obs_to_tensor,
                 device: str | torch.device | None = None):
        if context < 1:
            raise ValueError(f"context: expected >= 1, got {context}")
        self.model = model
        self.context = context
        self.num_envs = num_envs
        self.batched = num_envs is not None
        self.n = num_envs if num_envs is not None else 1
        self.obs_to_tensor = obs_to_tensor
        if device is None:
            p = next(iter(model.parameters()), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.dtype = model_dtype(model)  # observations and actions are kept in the model's dtype

    # --- episode bookkeeping ---------------------------------------------------------------
    def reset(self, env_mask=None) -> None:
        """Forget the history of all environments, or of those where ``env_mask [n]`` is True."""
        if env_mask is None or not hasattr(self, "_obs"):
            self._obs: torch.Tensor | None = None  # [n, L, *obs_shape]
            self._act = torch.zeros(self.n, 0, self.model.action_dim, device=self.device, dtype=self.dtype)
            self._valid = torch.zeros(self.n, 0, dtype=torch.bool, device=self.device)
            return
        m = torch.as_tensor(np.asarray(env_mask), dtype=torch.bool, device=self.device).reshape(self.n)
        if m.any():
            self._valid[m] = False
            self._act[m] = 0.0

    def _observation(self, obs) -> torch.Tensor:
        """``obs`` (one, or ``[n, ...]`` if batched) as a tensor ``[n, ...]``, pushed to the history."""
        x = self.obs_to_tensor(obs)
        if not self.batched:
            x = x[None]
        if x.shape[0] != self.n:
            raise ValueError(f"obs: expected {self.n} observations, got shape {list(x.shape)}")
        self._push(x)
        return x

    def _push(self, obs_t: torch.Tensor) -> None:
        L = self.context
        obs_t = obs_t.to(self.device, self.dtype if obs_t.is_floating_point() else None)
        if self._obs is None:
            self._obs = obs_t[:, None]
        else:
            self._obs = torch.cat([self._obs, obs_t[:, None]], dim=1)[:, -L:]
        self._act = torch.cat([self._act, torch.zeros_like(self._act[:, :1]) if self._act.shape[1]
                               else torch.zeros(self.n, 1, self.model.action_dim, device=self.device,
                                                dtype=self.dtype)],
                              dim=1)[:, -L:]
        self._valid = torch.cat([self._valid, torch.ones(self.n, 1, dtype=torch.bool, device=self.device)],
                                dim=1)[:, -L:]

    def _obs_history(self) -> torch.Tensor:
        """The observation history ``[n, L, *obs_shape]``; an error before the first observation."""
        if self._obs is None:
            raise RuntimeError("no observation yet: act() on an observation first")
        return self._obs

    def _context(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Window trimmed to the longest valid history; mask only if histories differ."""
        valid_len = self._valid.flip(1).cumprod(1).sum(1)  # trailing run of valid frames [n]
        T = int(valid_len.max())
        obs, act = self._obs_history()[:, -T:], self._act[:, -T:]
        if bool((valid_len == T).all()):
            return obs, act, None
        idx = torch.arange(T, device=self.device)
        mask = (idx[None] >= (T - valid_len)[:, None]).to(obs.dtype)
        return obs, act, mask

    def belief(self):
        """The model's belief over the current latent state from the kept history."""
        obs, act, mask = self._context()
        return self.model.observe(obs, act, mask)


class MPCAgent(FilteringAgent):
    """Latent-space MPC over a ``WorldModel`` with any planner and reward function.

    ``value_fn`` (latents ``[..., D]`` -> ``[...]``, e.g. the critic of ``worldmodels.agents.policy``) adds
    ``discount^H V(z_H)`` to the planning objective (``rollout_objective``).
    """

    def __init__(self, model: WorldModel, planner: Planner, reward_fn: RewardFn,
                 config: MPCConfig | None = None, *, num_envs: int | None = None,
                 obs_to_tensor: Callable = image_obs_to_tensor,
                 device: str | torch.device | None = None,
                 value_fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.planner = planner
        self.reward_fn = reward_fn
        self.value_fn = value_fn
        self.config = config or MPCConfig()
        if self.config.context < 1 or self.config.replan_every < 1:
            raise ValueError("context and replan_every must be >= 1")
        if self.config.replan_every > planner.config.horizon:
            raise ValueError(f"replan_every: expected <= horizon={planner.config.horizon}, "
                             f"got {self.config.replan_every}")
        if planner.action_dim != model.action_dim:
            raise ValueError(f"planner.action_dim={planner.action_dim} != model.action_dim={model.action_dim}")
        super().__init__(model, self.config.context, num_envs=num_envs, obs_to_tensor=obs_to_tensor,
                         device=device)
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.np_random = np.random.default_rng(self.config.seed)
        self.timer = ObjectiveTimer()
        self.stats = {"decisions": 0, "plans": 0, "plan_s": 0.0, "observe_s": 0.0}
        self.reset()

    def reset(self, env_mask=None) -> None:
        """Forget the history (and the plan) of all environments, or of those where
        ``env_mask [n]`` is True."""
        if env_mask is None or not hasattr(self, "_obs"):
            super().reset()
            self._plan: PlanResult | None = None
            self._step = 0
            self.real: list[np.ndarray] = []
            self.imagined: list[np.ndarray] = []
            return
        m = torch.as_tensor(np.asarray(env_mask), dtype=torch.bool, device=self.device).reshape(self.n)
        if m.any():
            super().reset(m)
            self._plan = None  # replan everything at the next step
            self._step = 0

    # --- acting ----------------------------------------------------------------------------
    @torch.no_grad()
    def _replan(self) -> PlanResult:
        t0 = time.perf_counter()
        belief = self.belief()
        t1 = time.perf_counter()
        warm = None
        if self.config.warm_start and self._plan is not None:
            warm = self._plan.shifted(self.config.replan_every)
        objective = rollout_objective(self.model, belief, self.reward_fn,
                                      discount=self.config.discount,
                                      terminal_weight=self.config.terminal_weight, sample=self.config.sample,
                                      generator=self.generator if self.config.sample else None,
                                      timer=self.timer, fast=self.config.fused, value_fn=self.value_fn)
        plan = self.planner.optimize(objective, self.n, warm_start=warm, generator=self.generator,
                                     device=self.device, dtype=self._obs_history().dtype)
        self.stats["observe_s"] += t1 - t0
        self.stats["plan_s"] += time.perf_counter() - t1
        self.stats["plans"] += 1
        if self.config.record:
            latents = self.model.imagine(belief, plan.actions[:, None])[:, 0]  # [n, H, D]
            self.imagined.append(self.model.decode(latents).float().cpu().numpy())
        return plan

    def act(self, obs):
        """Next action(s) for observation(s) ``obs`` (``[n, ...]`` if ``num_envs`` was given).

        Returns a float array ``[A]`` / ``[n, A]`` (continuous) or an int / int array ``[n]``
        (discrete planners).
        """
        x = self._observation(obs)
        if self.config.record:
            self.real.append(x.float().cpu().numpy())
        k = self._step % self.config.replan_every
        if self._plan is None or k == 0:
            self._plan = self._replan()
            k = 0
        a = self._plan.actions[:, k]  # [n, A]
        a = self._explore(a)
        self._act[:, -1] = a
        self._step += 1
        self.stats["decisions"] += self.n
        if self.planner.discrete:
            out = a.argmax(-1).cpu().numpy()
            return out if self.batched else int(out[0])
        out = a.cpu().numpy().astype(np.float32)
        return out if self.batched else out[0]

    def _explore(self, a: torch.Tensor) -> torch.Tensor:
        eps = self.config.exploration_noise
        if eps <= 0:
            return a
        if self.planner.discrete:
            flip = torch.rand(self.n, device=a.device, generator=self.generator) < eps
            rnd = torch.randint(0, a.shape[-1], (self.n,), device=a.device, generator=self.generator)
            return torch.where(flip[:, None], F.one_hot(rnd, a.shape[-1]).to(a.dtype), a)
        low, high = self.planner._bounds(a)
        noise = torch.randn(a.shape, device=a.device, dtype=a.dtype, generator=self.generator)
        return torch.minimum(torch.maximum(a + eps * 0.5 * (high - low) * noise, low), high)

    # --- videos ----------------------------------------------------------------------------
    def imagination_video(self, path: str | Path, env_index: int = 0, horizon: int = 6,
                          fps: float = 10.0, scale: int = 4) -> Path:
        """Write real (top row) vs imagined (bottom row) futures ``t+1 .. t+horizon`` for every
        planning step of the recorded episode (needs ``config.record`` and ``replan_every=1``)."""
        if not self.real or not self.imagined:
            raise RuntimeError("nothing recorded: create the agent with MPCConfig(record=True)")
        real = np.stack([r[env_index] for r in self.real])  # [T, C, h, w]
        imag = np.stack([m[env_index] for m in self.imagined])  # [P, H, C, h, w]
        return imagination_video(real, imag, path, horizon=horizon, fps=fps, scale=scale)


def imagination_video(real: np.ndarray, imagined: np.ndarray, path: str | Path, horizon: int = 6,
                      fps: float = 10.0, scale: int = 4) -> Path:
    """Side-by-side video: frame t shows the real frames ``t+1..t+k`` (top) and the frames the
    model imagined at time t for its plan (bottom). ``real [T, C, h, w]``, ``imagined
    [T, H, C, h, w]`` in [0, 1]; future real frames past the episode end are blank."""
    from worldmodels.video import tile_clips, write_video

    T = min(len(real), len(imagined))
    k = min(horizon, imagined.shape[1])
    blank = np.ones_like(real[0])
    top = [[real[t + j] if t + j < len(real) else blank for t in range(T)] for j in range(1, k + 1)]
    bottom = [[imagined[t, j - 1] for t in range(T)] for j in range(1, k + 1)]
    rows = [[np.stack(c) for c in top], [np.stack(c) for c in bottom]]
    grid = tile_clips(rows, pad=1, scale=scale, col_labels=[f"t+{j}" for j in range(1, k + 1)],
                      row_labels=["real", "imagined"])
    return write_video(grid, path, fps=fps)
