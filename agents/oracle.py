"""Oracle world model: the true pendulum dynamics, batched in torch, behind the planner protocol.

The latent is the true state ``[cos(theta), sin(theta), theta_dot]`` (``info["state"]`` of
``worldmodels/Pendulum-v0``), so an MPC agent with this "model" and ``pendulum_reward`` is the
oracle baseline: the same planner on the true simulator. Dynamics and reward match Gymnasium's
``Pendulum-v1`` (``g = 10``, ``m = l = 1``, ``dt = 0.05``, speed clipped to 8, torque to 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldmodels.base import Belief, LossOutput, TensorBelief, WorldModel
from worldmodels.checks import check_shape


@dataclass
class PendulumOracleConfig:
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0
    dt: float = 0.05
    max_speed: float = 8.0
    max_torque: float = 2.0
    image_size: int = 16


#: a known true state ``[B, D]`` as the planner's belief
StateBelief = TensorBelief


class SimulatorOracle(WorldModel):
    """A simulator's true dynamics behind the planner protocol: the latent is the true state.

    Subclasses set ``latent_dim`` (the state size S), ``action_dim`` and ``step``; ``observe``
    takes true states ``[B, T, >= S]`` (``info["state"]``) instead of frames.
    """

    _dummy: torch.Tensor  # buffer (registered in __init__): carries the oracle's dtype and device

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("_dummy", torch.zeros(()), persistent=False)

    def loss(self, batch) -> LossOutput:
        raise NotImplementedError("an oracle is not trained")

    def observe(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> Belief:
        """``obs [B, T, >= S]`` true states; the belief is the last one's first S entries."""
        S = self.latent_dim
        if obs.dim() != 3 or obs.shape[-1] < S:
            raise ValueError(f"obs: expected shape [B, T, {S}] (true states), got {list(obs.shape)}")
        return StateBelief(obs[:, -1, :S].to(self._dummy.dtype))

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One step: ``state [..., S]``, ``action [..., A]`` -> next state ``[..., S]``."""
        raise NotImplementedError

    def imagine(self, belief: Belief, actions: torch.Tensor, *, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Deterministic rollout of ``actions [B, N, H, A]`` -> states ``[B, N, H, S]``."""
        s0 = belief.features()
        B = s0.shape[0]
        check_shape("actions", actions, (B, "N", "H", self.action_dim))
        s = s0[:, None].expand(B, actions.shape[1], self.latent_dim)
        out = []
        for h in range(actions.shape[2]):  # the horizon is sequential; batch and candidates are not
            s = self.step(s, actions[:, :, h])
            out.append(s)
        return torch.stack(out, dim=2)


class PendulumOracle(SimulatorOracle):
    """True pendulum dynamics; ``observe`` takes states ``[B, T, 3]`` instead of frames."""

    config_class = PendulumOracleConfig
    latent_dim = 3
    action_dim = 1

    def __init__(self, config: PendulumOracleConfig | None = None):
        super().__init__(config or PendulumOracleConfig())

    def step(self, state: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One step: ``state [..., 3]``, torque ``u [..., 1]`` -> next state ``[..., 3]``."""
        c = self.config
        th = torch.atan2(state[..., 1], state[..., 0])
        thdot = state[..., 2]
        u = u[..., 0].clamp(-c.max_torque, c.max_torque)
        newthdot = thdot + (3 * c.g / (2 * c.l) * torch.sin(th) + 3.0 / (c.m * c.l ** 2) * u) * c.dt
        newthdot = newthdot.clamp(-c.max_speed, c.max_speed)
        newth = th + newthdot * c.dt
        return torch.stack([torch.cos(newth), torch.sin(newth), newthdot], dim=-1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Render states ``[..., 3]`` as ``[..., 1, S, S]`` frames like the pixel pendulum
        (rod from the centre, length 0.42 S, half-width 0.08 S, one-pixel edge ramp)."""
        S = self.config.image_size
        c = S / 2.0
        rod, hw = 0.42 * S, 0.08 * S
        j = torch.arange(S, device=latents.device, dtype=latents.dtype) + 0.5
        ys, xs = torch.meshgrid(S - j, j, indexing="ij")  # pixel centres, y up as in envs.rendering
        ex = c - rod * latents[..., 1]  # tip x = c - rod sin(th)
        ey = c + rod * latents[..., 0]  # tip y = c + rod cos(th)
        dx, dy = (ex - c)[..., None, None], (ey - c)[..., None, None]
        px, py = xs - c, ys - c
        t = ((px * dx + py * dy) / (dx * dx + dy * dy).clamp_min(1e-9)).clamp(0, 1)
        dist = torch.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2)
        img = (hw + 0.5 - dist).clamp(0, 1)
        return img.unsqueeze(-3)


def pendulum_reward(before: torch.Tensor, actions: torch.Tensor, after: torch.Tensor | None = None,
                    max_torque: float = 2.0) -> torch.Tensor:
    """Pendulum-v1 reward ``-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)`` of the state ``before
    [..., 3]`` at which torque ``actions [..., 1]`` is applied -> ``[...]``."""
    th = torch.atan2(before[..., 1], before[..., 0])
    u = actions[..., 0].clamp(-max_torque, max_torque)
    return -(th ** 2 + 0.1 * before[..., 2] ** 2 + 0.001 * u ** 2)


def upright_fraction(states: np.ndarray, last: int = 50, tolerance: float = 0.5) -> np.ndarray:
    """Fraction of the last ``last`` steps with the rod within ``tolerance`` rad of upright, per
    episode, from pendulum states ``[n, steps, 3]`` (``[cos, sin, theta_dot]``) -> ``[n]``."""
    states = np.asarray(states)
    if states.ndim != 3 or states.shape[-1] != 3:
        raise ValueError(f"states: expected [n, steps, 3] pendulum states, got shape {states.shape}")
    th = np.arctan2(states[:, -last:, 1], states[:, -last:, 0])
    return (np.abs(th) < tolerance).mean(1)


@dataclass
class BallOracleConfig:
    """The force-controlled ball of ``worldmodels/BouncingBall-v0`` (box variant, no paddles)."""

    size: float = 32.0
    radius: float = 3.0
    wall_inset: float = 2.5
    dt: float = 0.2
    substeps: int = 10
    force_scale: float = 10.0
    gravity: tuple[float, float] = (0.0, 0.0)
    image_size: int = 32


class BallOracle(SimulatorOracle):
    """Ball in a box, semi-implicit Euler substeps with elastic reflection at the walls.

    Latent = true state ``[x, y, vx, vy]`` (px, px/s, y up) as in ``info["state"]``; ``observe``
    takes states ``[B, T, 4]``. It matches pymunk's integration between collisions; contacts
    are resolved by reflection, so trajectories agree closely but not to the last bit.
    """

    config_class = BallOracleConfig
    latent_dim = 4
    action_dim = 2

    def __init__(self, config: BallOracleConfig | None = None):
        super().__init__(config or BallOracleConfig())

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        c = self.config
        lo = c.wall_inset + c.radius
        hi = c.size - c.wall_inset - c.radius
        h = c.dt / c.substeps
        acc = action.clamp(-1, 1) * c.force_scale + torch.tensor(c.gravity, dtype=state.dtype,
                                                                  device=state.device)
        pos, vel = state[..., :2], state[..., 2:4]
        for _ in range(c.substeps):
            vel = vel + acc * h
            pos = pos + vel * h
            below, above = pos < lo, pos > hi
            pos = torch.where(below, 2 * lo - pos, torch.where(above, 2 * hi - pos, pos))
            vel = torch.where(below | above, -vel, vel)
        return torch.cat([pos, vel], dim=-1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames ``[..., 1, S, S]``: the ball as a disc (walls not drawn)."""
        S, c = self.config.image_size, self.config
        j = torch.arange(S, device=latents.device, dtype=latents.dtype) + 0.5
        ys, xs = torch.meshgrid(S - j, j, indexing="ij")
        d2 = (xs - latents[..., 0, None, None]) ** 2 + (ys - latents[..., 1, None, None]) ** 2
        return (d2 <= c.radius ** 2).to(latents.dtype).unsqueeze(-3)


class TargetDistanceReward:
    """``-|position(after) - target| / size`` (the ball env's reward) on states ``[..., >=2]``."""

    def __init__(self, target=(16.0, 16.0), size: float = 32.0):
        self.target = torch.as_tensor(target, dtype=torch.float32)
        self.size = size

    def __call__(self, before: torch.Tensor, actions: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return -(after[..., :2] - self.target.to(after)).norm(dim=-1) / self.size


@dataclass
class GridOracleConfig:
    """The agent's grid of ``worldmodels/ImageNavigation-v0`` (no obstacles): 9x9 positions,
    actions up, down, left, right, stay (one-hot)."""

    grid: int = 9


class GridOracle(SimulatorOracle):
    """True position dynamics of the image-navigation agent; latent = ``[row, col]``."""

    config_class = GridOracleConfig
    latent_dim = 2
    action_dim = 5
    moves: torch.Tensor  # buffer (registered in __init__): [5, 2] grid offset of each move

    def __init__(self, config: GridOracleConfig | None = None):
        super().__init__(config or GridOracleConfig())
        self.register_buffer("moves", torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [0.0, 0.0]]),
                             persistent=False)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Grid position ``[..., 2]`` after a one-hot move ``[..., 5]`` (walls at the border)."""
        return (state + action @ self.moves).clamp(0, self.config.grid - 1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the grid oracle has no frames")
