"""A tiny deterministic-or-noisy world model and dataset for trainer tests (not a test module).

``ToyModel`` predicts the next 4x4 frame from the current one and the action with one linear
layer (two parameter groups: ``dynamics`` and ``readout``). ``noise > 0`` perturbs inputs with
``torch.randn`` so that RNG restoration matters. Env var ``WM_TOY_KILL_AT`` = n makes the
process SIGKILL itself at the n-th loss call (for the resume tests; ``WM_TOY_SIGNAL`` picks another
signal, e.g. SIGINT for Ctrl-C).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from worldmodels import register_model
from worldmodels.base import LossOutput, TensorBelief, WorldModel


@dataclass
class ToyConfig:
    size: int = 4
    action_dim: int = 2
    noise: float = 0.0
    hidden: int = 16


ToyBelief = TensorBelief


class ToyModel(WorldModel):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig | None = None) -> None:
        super().__init__()
        config = config or ToyConfig()
        self.config = config
        d = config.size * config.size
        self.latent_dim, self.action_dim = d, config.action_dim
        self.dynamics = nn.Linear(d + config.action_dim, config.hidden)
        self.readout = nn.Linear(config.hidden, d)
        self.calls = 0
        self.nan_calls: set[int] = set()  # loss calls (1-based) that return a NaN "kl" term

    def step(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.readout(torch.tanh(self.dynamics(torch.cat([z, a], -1)))))

    def loss(self, batch) -> LossOutput:
        self.calls += 1
        kill_at = os.environ.get("WM_TOY_KILL_AT")
        if kill_at is not None and self.calls == int(kill_at):
            os.kill(os.getpid(), int(os.environ.get("WM_TOY_SIGNAL", signal.SIGKILL)))
        B, T = batch.obs.shape[:2]
        z = batch.obs.reshape(B, T, -1)
        inp = z[:, :-1]
        if self.config.noise > 0:
            inp = inp + self.config.noise * torch.randn_like(inp)
        pred = self.step(inp, batch.actions[:, :-1])
        mse = ((pred - z[:, 1:]) ** 2).mean()
        kl = (self.dynamics.weight ** 2).mean() * 1e-3
        if self.calls in self.nan_calls:
            kl = kl * float("nan")
        return LossOutput(mse + kl, {"mse": mse.detach(), "kl": kl.detach()})

    def parameter_groups(self):
        return {"dynamics": list(self.dynamics.parameters()), "readout": list(self.readout.parameters())}

    def observe(self, obs, actions, mask=None):
        return ToyBelief(obs[:, -1].reshape(obs.shape[0], -1))

    def imagine(self, belief, actions, *, sample=False, generator=None):
        B, N, H, _ = actions.shape
        z = belief.z[:, None].expand(B, N, -1)
        out = []
        for h in range(H):
            z = self.step(z, actions[:, :, h])
            out.append(z)
        return torch.stack(out, 2)

    def decode(self, latents):
        s = self.config.size
        return latents.reshape(*latents.shape[:-1], 1, s, s)


class ToyDataset(Dataset):
    """``n`` sequences of length ``T`` of 4x4 frames following a fixed random linear map."""

    def __init__(self, n: int = 32, T: int = 6, size: int = 4, action_dim: int = 2, seed: int = 0) -> None:
        d = size * size
        gm = torch.Generator().manual_seed(1234)  # the same dynamics for every split
        M = torch.randn(d, d, generator=gm) / d ** 0.5
        U = torch.randn(action_dim, d, generator=gm)
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(n, T, action_dim, generator=g)
        z = [torch.rand(n, d, generator=g)]
        for t in range(T - 1):
            z.append(torch.sigmoid(z[-1] @ M + a[:, t] @ U))
        self.obs = torch.stack(z, 1).reshape(n, T, 1, size, size)
        self.actions = a
        self.action_dim = action_dim
        self.obs_shape = (1, size, size)
        self.seq_len = T

    def __len__(self) -> int:
        return self.obs.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        T = self.obs.shape[1]
        return {"obs": self.obs[i], "actions": self.actions[i], "mask": torch.ones(T),
                "rewards": torch.zeros(T), "states": self.obs[i].reshape(T, -1)[:, :2]}


register_model("toy", ToyModel, replace=True)
