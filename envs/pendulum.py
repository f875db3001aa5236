"""Torque-controlled pendulum with pixel observations; dynamics identical to Gymnasium's Pendulum-v1."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldmodels.envs.rendering import RodRenderer
from worldmodels.envs.validation import finite_float

_TWO_PI = 2.0 * math.pi
_f32 = np.float32
MAX_G = 100.0  # m/s^2


class PixelPendulumEnv(gym.Env):
    """The swing-up pendulum of ``Pendulum-v1`` seen through small anti-aliased grey images.

    ## Description
    Same dynamics, constants (``g = 10``, ``m = l = 1``, ``dt = 0.05``, ``max_speed = 8``,
    ``max_torque = 2``), reward, starting distribution and episode length (200, from the
    registered ``TimeLimit``) as Gymnasium's ``Pendulum-v1``: for the same seed and actions the
    state trajectories agree (tested to 1e-6). ``theta = 0`` is upright.

    ## Observation space
    ``Box(0, 255, (size, size, 1), uint8)``, channel-last grey frames, ``size`` in {16, 32, 64}
    (default 16): a rod from the image centre of length ``0.42 * size`` and width
    ``0.16 * size``, anti-aliased (one-pixel edge ramp), rendered in numpy.

    ## Action space
    ``Box(-2, 2, (1,), float32)``: the torque; clipped to the bounds like ``Pendulum-v1``.
    Actions of the wrong shape or with NaN raise ``ValueError``.

    ## Reward
    ``-(angle_normalize(theta)^2 + 0.1 * theta_dot^2 + 0.001 * torque^2)``, in [-16.27, 0].

    ## Starting state
    ``theta ~ U(-pi, pi)``, ``theta_dot ~ U(-1, 1)``; ``options={"x_init": .., "y_init": ..}``
    changes the bounds as in ``Pendulum-v1``: ``x_init`` in [0, pi] rad, ``y_init`` in
    [0, max_speed = 8] rad/s (other values raise ``ValueError``).

    ## Options
    ``g`` (gravity, m/s^2): a finite number in [0, 100]; ``size`` as above.

    ## Info
    ``info["state"]``: float32 ``[cos(theta), sin(theta), theta_dot]`` (the ``Pendulum-v1``
    observation). The exact float64 state ``[theta, theta_dot]`` is ``env.unwrapped.state``.

    ## Version history
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, size: int = 16, g: float = 10.0):
        if size not in (16, 32, 64):
            raise ValueError(f"size: expected 16, 32 or 64, got {size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.size = int(size)
        self.max_speed = 8
        self.max_torque = 2.0
        self.dt = 0.05
        self.g = finite_float("g", g, 0.0, MAX_G)
        self.m = 1.0
        self.l = 1.0
        self.state_dim = 3
        self.action_space = spaces.Box(-self.max_torque, self.max_torque, (1,), np.float32)
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 1), np.uint8)
        self._render_rod = RodRenderer(self.size, length=0.42 * self.size, half_width=0.08 * self.size)
        self.state: np.ndarray | None = None
        self._frame: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        x, y = math.pi, 1.0
        if options:
            unknown = set(options) - {"x_init", "y_init"}
            if unknown:
                raise ValueError(f"options: unknown reset option(s) {sorted(unknown)}; "
                                 "expected 'x_init' and/or 'y_init'")
            x = finite_float("options['x_init']", options.get("x_init", x), 0.0, math.pi)
            y = finite_float("options['y_init']", options.get("y_init", y), 0.0, float(self.max_speed))
        high = np.array([x, y])
        self.state = self.np_random.uniform(low=-high, high=high)
        self._frame = None
        return self._observation(), self._info()

    def step(self, action):
        if self.state is None:
            raise RuntimeError("step() called before reset()")
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (1,):
            raise ValueError(f"action: expected shape (1,), got {a.shape}")
        u = float(a[0])
        if not math.isfinite(u):
            raise ValueError(f"action contains NaN or inf: {a}")
        u = min(max(u, -self.max_torque), self.max_torque)
        th, thdot = float(self.state[0]), float(self.state[1])
        th_norm = ((th + math.pi) % _TWO_PI) - math.pi
        # Pendulum-v1 multiplies the float32 torque by Python floats, which numpy keeps in float32:
        # round those products to float32 too, so the trajectories agree to the last bit.
        u_cost = float(_f32(0.001) * _f32(u * u))
        u_acc = float(_f32(3.0 / (self.m * self.l**2)) * _f32(u))
        costs = th_norm**2 + 0.1 * thdot**2 + u_cost
        newthdot = thdot + (3 * self.g / (2 * self.l) * math.sin(th) + u_acc) * self.dt
        newthdot = min(max(newthdot, -self.max_speed), self.max_speed)
        newth = th + newthdot * self.dt
        self.state = np.array([newth, newthdot])
        self._frame = None
        return self._observation(), -costs, False, False, self._info()

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        return np.repeat(self._observation(), 3, axis=2)

    def _state(self) -> np.ndarray:
        if self.state is None:
            raise RuntimeError("the pendulum has no state yet: call reset() first")
        return self.state

    def _observation(self) -> np.ndarray:
        frame = self._frame
        if frame is None:
            th = float(self._state()[0])
            frame = self._frame = self._render_rod(-math.sin(th), math.cos(th))  # theta = 0 points up
        return frame

    def _info(self) -> dict[str, Any]:
        th, thdot = self._state()
        return {"state": np.array([math.cos(th), math.sin(th), thdot], dtype=np.float32)}
