"""A small known linear world model and the matching Gymnasium environment for agent tests.

Latent = true state ``z [D]``; frames are the state itself, shaped ``[1, 1, D]`` (C=1, H=1, W=D);
dynamics ``z' = A z + B a``. The quadratic goal cost then has a closed-form optimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from worldmodels import register_model
from worldmodels.base import LossOutput, TensorBelief, WorldModel


@dataclass
class LinearConfig:
    A: list = field(default_factory=lambda: [[1.0, 0.1], [0.0, 1.0]])  # double integrator
    B: list = field(default_factory=lambda: [[0.0], [0.1]])


LinearBelief = TensorBelief


class LinearWorldModel(WorldModel):
    config_class = LinearConfig

    def __init__(self, config: LinearConfig | None = None):
        super().__init__()
        self.config = config or LinearConfig()
        self.A = nn.Parameter(torch.tensor(self.config.A))
        self.B = nn.Parameter(torch.tensor(self.config.B))
        self.latent_dim = self.A.shape[0]
        self.action_dim = self.B.shape[1]

    def loss(self, batch):
        z = batch.obs[:, :, 0, 0]  # [B, T, D]
        pred = z[:, :-1] @ self.A.T + batch.actions[:, :-1] @ self.B.T
        loss = ((pred - z[:, 1:]) ** 2).mean()
        return LossOutput(loss, {"mse": loss.detach()})

    def observe(self, obs, actions, mask=None):
        if mask is None:
            return LinearBelief(obs[:, -1, 0, 0])
        # last observed frame per row, propagated with the actions since (exact for this model)
        B, T = mask.shape
        z = obs[:, 0, 0, 0] * 0
        for t in range(T):
            m = mask[:, t, None].bool()
            pred = z @ self.A.T + actions[:, t - 1] @ self.B.T if t > 0 else z
            z = torch.where(m, obs[:, t, 0, 0], pred)
        return LinearBelief(z)

    def imagine(self, belief, actions, *, sample=False, generator=None):
        z = belief.features()[:, None].expand(-1, actions.shape[1], -1)
        out = []
        for h in range(actions.shape[2]):
            z = z @ self.A.T + actions[:, :, h] @ self.B.T
            out.append(z)
        return torch.stack(out, dim=2)

    def decode(self, latents):
        return latents[..., None, None, :]


def optimal_plan(model: LinearWorldModel, z0: torch.Tensor, goal: torch.Tensor, H: int,
                 action_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form maximiser of ``sum_h -|z_h - goal|^2 - c |a_h|^2``: ``(a* [B, H, A], J* [B])``."""
    A, Bm = model.A.detach().double(), model.B.detach().double()
    D, Ad = Bm.shape
    G = torch.zeros(H * D, H * Ad, dtype=torch.float64)
    powers = [torch.eye(D, dtype=torch.float64)]
    for _ in range(H):
        powers.append(A @ powers[-1])
    for h in range(H):
        for k in range(h + 1):
            G[h * D:(h + 1) * D, k * Ad:(k + 1) * Ad] = powers[h - k] @ Bm
    F = torch.cat([powers[h + 1] for h in range(H)], 0)  # [H*D, D]
    r = (z0.double() @ F.T) - goal.double().repeat(H)  # [B, H*D]
    M = G.T @ G + action_weight * torch.eye(H * Ad, dtype=torch.float64)
    a = -torch.linalg.solve(M, (r @ G).T).T  # [B, H*A]
    J = -(((a @ G.T + r) ** 2).sum(-1) + action_weight * (a ** 2).sum(-1))
    return a.reshape(-1, H, Ad).float(), J.float()


class LinearEnv(gym.Env):
    """The real system the linear model describes: reward ``-|z - goal|^2`` of the state reached."""

    def __init__(self, model: LinearWorldModel | None = None, goal=(1.0, 0.0), max_steps: int = 30,
                 bound: float = 1.0):
        self.model = model or LinearWorldModel()
        self.A = self.model.A.detach().numpy().astype(np.float64)
        self.B = self.model.B.detach().numpy().astype(np.float64)
        D, Ad = self.B.shape
        self.goal = np.asarray(goal, dtype=np.float64)
        self.max_steps = max_steps
        self.action_space = spaces.Box(-bound, bound, (Ad,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (1, 1, D), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.z = self.np_random.uniform(-0.5, 0.5, self.A.shape[0])
        self.t = 0
        return self.z.astype(np.float32)[None, None], {"state": self.z.astype(np.float32)}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        self.z = self.A @ self.z + self.B @ a
        self.t += 1
        r = -float(((self.z - self.goal) ** 2).sum())
        return (self.z.astype(np.float32)[None, None], r, False, self.t >= self.max_steps,
                {"state": self.z.astype(np.float32)})


register_model("toy_linear", LinearWorldModel, replace=True)
