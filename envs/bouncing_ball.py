"""Bouncing ball in a 32x32 scene (pymunk physics), binary frames as in the KVAE experiments."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pymunk
from gymnasium import spaces

from worldmodels.envs.rendering import PixelGrid, rasterize_segments
from worldmodels.envs.validation import finite_float, finite_vector, int_in

#: Per-variant defaults, following the KVAE reference data (thesis 6.5.1 and 6.8).
VARIANTS: dict[str, dict[str, Any]] = {
    "box": dict(speed=(10.0, 15.0), start_std=10.0, gravity=(0.0, 0.0)),
    "gravity": dict(speed=(5.0, 10.0), start_std=8.0, gravity=(0.0, -5.0)),
    "polygon": dict(speed=(10.0, 15.0), start_std=2.5, gravity=(0.0, 0.0)),
    "pong": dict(speed=(10.0, 10.0), start_std=3.0, gravity=(0.0, 0.0)),
}

# An irregular hexagon (fractions of the scene size), counter-clockwise.
_HEXAGON = [(0.30, 0.06), (0.80, 0.12), (0.95, 0.55), (0.72, 0.94), (0.20, 0.88), (0.05, 0.40)]
_WALL = 2.5  # walls are inset this many px from the scene's edges
MAX_SIZE = 512  # px
MAX_FORCE_SCALE = 100.0  # px/s^2
MAX_GRAVITY = 100.0  # px/s^2, per axis
_MAX_START_DRAWS = 1000


class BouncingBallEnv(gym.Env):
    """A ball bouncing elastically inside walls; the agent pushes it with a 2-D force.

    ## Description
    A ball of radius 3 px moves in a ``size x size`` scene (32 by default) simulated with pymunk
    at ``dt = 0.2`` s per frame (split into ``substeps`` physics steps). Walls are inset 2 px and
    drawn in the frame. Variants (thesis 6.5.1 and 6.8, KVAE reference data):

    * ``"box"``: square walls, launch speed U(10, 15) px/s.
    * ``"gravity"``: the box with gravity (0, -5) px/s^2, launch speed U(5, 10) px/s.
    * ``"polygon"``: an irregular hexagon of walls.
    * ``"pong"``: floor and roof walls and two 6-px paddles (left, right) that follow the ball
      at up to 2 px per frame; the episode terminates if the ball leaves the scene.

    With the zero action the ball moves passively, which gives the videos of the paper.

    ## Observation space
    ``Box(0, 255, (size, size, 1), uint8)``, channel-last (HWC) binary frames: 255 where the
    ball or a wall is, 0 elsewhere.

    ## Action space
    ``Box(-1, 1, (2,), float32)``: a force ``action * force_scale`` (px/s^2 on a unit mass)
    applied to the ball during the frame; values outside [-1, 1] are clipped. Actions of the
    wrong shape or with NaN raise ``ValueError``.

    ## Reward
    ``-||ball - target|| / size``: the negative distance (in scene widths) from the ball centre
    to ``target`` (default: the scene centre).

    ## Starting state
    Position ``(size/2, size/2) + N(0, start_std^2)`` per axis, clipped to
    ``[radius + 3, size - radius - 3]`` (``[6, size - 6]`` for the default radius; redrawn until
    inside the polygon for that variant); launch angle U(0, 2 pi); speed as above.
    ``reset(options={"position": (x, y), "velocity": (vx, vy)})`` sets them; the ball must lie
    inside the walls and ``|velocity| <= max_speed``.

    ## Options and their ranges
    ``size`` an integer in [16, 512] px; ``radius`` in (0, size / 4] px; ``dt`` in (0, 1] s;
    ``substeps`` an integer in [1, 1000]; ``force_scale`` in [0, 100] px/s^2; ``target`` inside
    the scene ``[0, size]^2``; ``gravity`` each component in [-100, 100] px/s^2; ``start_std``
    >= 0 px; ``speed = (low, high)`` with ``0 <= low <= high <= max_speed``, where
    ``max_speed = radius * substeps / dt`` (75 px/s by default) is the speed at which the ball
    moves its own radius in one physics step: faster balls can pass through the walls. Every
    float must be finite; anything else raises ``ValueError`` naming the option.

    ## Info
    ``info["state"]``: float32 ``[x, y, vx, vy]`` in px and px/s (y up), plus the paddles' ``y``
    for ``"pong"`` (state dim 6).

    ## Episode end
    Truncation by the ``TimeLimit`` of the registered id (100 steps); ``"pong"`` terminates when
    the ball leaves the scene.

    ## Version history
    * v0: initial version (pymunk 7).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(
        self,
        variant: str = "box",
        render_mode: str | None = None,
        size: int = 32,
        radius: float = 3.0,
        dt: float = 0.2,
        substeps: int = 5,
        force_scale: float = 10.0,
        target: tuple[float, float] | None = None,
        speed: tuple[float, float] | None = None,
        start_std: float | None = None,
        gravity: tuple[float, float] | None = None,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        defaults = VARIANTS[variant]
        self.variant = variant
        self.render_mode = render_mode
        self.size = int_in("size", size, 16, MAX_SIZE)
        self.radius = finite_float("radius", radius, 0.0, self.size / 4, low_open=True)
        self.dt = finite_float("dt", dt, 0.0, 1.0, low_open=True)
        self.substeps = int_in("substeps", substeps, 1, 1000)
        self.force_scale = finite_float("force_scale", force_scale, 0.0, MAX_FORCE_SCALE)
        self.max_speed = self.radius * self.substeps / self.dt
        lo, hi = finite_vector("speed", speed if speed is not None else defaults["speed"], 2, 0.0, self.max_speed,
                               why=" (max_speed = radius * substeps / dt: faster balls can pass through walls)")
        if lo > hi:
            raise ValueError(f"speed: expected (low, high) with low <= high, got {speed!r}")
        self.speed = (float(lo), float(hi))
        self.start_std = finite_float("start_std", start_std if start_std is not None else defaults["start_std"], 0.0)
        g = finite_vector("gravity", gravity if gravity is not None else defaults["gravity"], 2,
                          -MAX_GRAVITY, MAX_GRAVITY)
        self.target = finite_vector("target", target if target is not None else (size / 2, size / 2), 2,
                                    0.0, float(self.size))

        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 1), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state_dim = 6 if variant == "pong" else 4

        self._grid = PixelGrid(self.size)
        self._space = pymunk.Space()
        self._space.gravity = (float(g[0]), float(g[1]))
        self._ball = pymunk.Body(1.0, float("inf"))
        ball_shape = pymunk.Circle(self._ball, self.radius)
        ball_shape.elasticity = 1.0
        ball_shape.friction = 0.0
        self._space.add(self._ball, ball_shape)
        self._walls = self._wall_segments()
        for x0, y0, x1, y1 in self._walls:
            seg = pymunk.Segment(self._space.static_body, (x0, y0), (x1, y1), 0.0)
            seg.elasticity = 0.9 if variant == "pong" else 1.0
            seg.friction = 0.0
            self._space.add(seg)
        self._background = rasterize_segments(self.size, self._walls)
        self._paddles: list[pymunk.Body] = []
        if variant == "pong":
            self._paddle_x = (2.5, self.size - 2.5)
            self._paddle_half = 3.0
            for x in self._paddle_x:
                body = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
                body.position = (x, self.size / 2)
                seg = pymunk.Segment(body, (0.0, -self._paddle_half), (0.0, self._paddle_half), 0.5)
                seg.elasticity = 0.99
                seg.friction = 0.0
                self._space.add(body, seg)
                self._paddles.append(body)
        self._frame: np.ndarray | None = None

    # ------------------------------------------------------------------ geometry
    def _wall_segments(self) -> list[tuple[float, float, float, float]]:
        s, lo = float(self.size), _WALL
        hi = s - lo
        if self.variant in ("box", "gravity"):
            pts = [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]
        elif self.variant == "polygon":
            pts = [(lo + fx * (hi - lo), lo + fy * (hi - lo)) for fx, fy in _HEXAGON]
        else:  # pong: floor and roof only
            return [(lo, lo, hi, lo), (lo, hi, hi, hi)]
        return [(*pts[i], *pts[(i + 1) % len(pts)]) for i in range(len(pts))]

    def _inside_polygon(self, x: float, y: float, margin: float) -> bool:
        """Whether ``(x, y)`` is inside the (convex, counter-clockwise) walls by ``margin`` px."""
        for x0, y0, x1, y1 in self._walls:
            ex, ey = x1 - x0, y1 - y0
            # signed distance to the left of the edge (inside for a CCW polygon)
            if (ex * (y - y0) - ey * (x - x0)) / math.hypot(ex, ey) < margin:
                return False
        return True

    def _random_position(self, rng: np.random.Generator) -> np.ndarray:
        """The starting position: ``N(centre, start_std^2)`` clipped to ``[radius + 3, size - radius - 3]``
        per axis, redrawn until inside the polygon (that variant)."""
        c = self.size / 2
        lo, hi = self.radius + 3.0, self.size - self.radius - 3.0
        for _ in range(_MAX_START_DRAWS):
            pos = np.clip(c + self.start_std * rng.standard_normal(2), lo, hi)
            if self.variant != "polygon" or self._inside_polygon(pos[0], pos[1], self.radius + 1):
                return pos
        raise ValueError(f"radius: a ball of radius {self.radius:g} px found no starting position inside the "
                         f"polygon of a {self.size} px scene in {_MAX_START_DRAWS} draws; use a smaller radius")

    def _position_option(self, value) -> np.ndarray:
        """``options["position"]`` checked: the whole ball inside the walls."""
        pos = finite_vector("options['position']", value, 2)
        lo, hi = _WALL + self.radius, self.size - _WALL - self.radius
        if self.variant == "polygon":
            inside = self._inside_polygon(pos[0], pos[1], self.radius)
            where = f"at least the radius ({self.radius:g} px) inside the polygon's walls"
        else:
            inside = bool(((pos >= lo) & (pos <= hi)).all())
            where = f"with each coordinate in [{lo:g}, {hi:g}] (inside the walls)"
        if not inside:
            raise ValueError(f"options['position']: expected a ball centre {where}, got {value!r}")
        return pos

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options:
            unknown = set(options) - {"position", "velocity"}
            if unknown:
                raise ValueError(f"options: unknown reset option(s) {sorted(unknown)}; "
                                 "expected 'position' and/or 'velocity'")
        rng = self.np_random
        pos = self._random_position(rng)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        speed = rng.uniform(*self.speed)
        vel = speed * np.array([math.cos(angle), math.sin(angle)])
        if options and "position" in options:
            pos = self._position_option(options["position"])
        if options and "velocity" in options:
            vel = finite_vector("options['velocity']", options["velocity"], 2)
            if math.hypot(*vel) > self.max_speed:
                raise ValueError(f"options['velocity']: expected a speed |v| <= max_speed = {self.max_speed:g} px/s "
                                 f"(radius * substeps / dt), got {options['velocity']!r}")
        self._ball.position = (float(pos[0]), float(pos[1]))
        self._ball.velocity = (float(vel[0]), float(vel[1]))
        self._ball.force = (0.0, 0.0)
        for body in self._paddles:
            body.position = (body.position.x, float(pos[1]))
            body.velocity = (0.0, 0.0)
        self._space.reindex_shapes_for_body(self._ball)
        self._frame = None
        return self._observation(), self._info()

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise ValueError(f"action: expected shape (2,), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action contains NaN or inf: {a}")
        fx = min(max(float(a[0]), -1.0), 1.0) * self.force_scale
        fy = min(max(float(a[1]), -1.0), 1.0) * self.force_scale
        h = self.dt / self.substeps
        if self._paddles:
            by = self._ball.position.y
            max_v = 2.0 / self.dt  # 2 px per frame
            for body in self._paddles:
                body.velocity = (0.0, min(max((by - body.position.y) / self.dt, -max_v), max_v))
        ball, space_step = self._ball, self._space.step
        if fx == 0.0 and fy == 0.0:  # pymunk resets forces after every step
            for _ in range(self.substeps):
                space_step(h)
        else:
            for _ in range(self.substeps):
                ball.force = (fx, fy)
                space_step(h)
        self._frame = None
        pos = ball.position
        x, y = pos.x, pos.y
        terminated = bool(self.variant == "pong" and not (0.0 <= x <= self.size and 0.0 <= y <= self.size))
        reward = -math.hypot(x - self.target[0], y - self.target[1]) / self.size
        return self._observation(pos), reward, terminated, False, self._info(pos)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        return np.repeat(self._observation(), 3, axis=2)

    # ------------------------------------------------------------------ helpers
    def _observation(self, pos=None) -> np.ndarray:
        frame = self._frame
        if frame is None:
            x, y = pos if pos is not None else self._ball.position
            img = self._grid.disc(x, y, self.radius) | self._background
            for body, px in zip(self._paddles, getattr(self, "_paddle_x", ())):
                py = body.position.y
                img |= rasterize_segments(self.size, [(px, py - self._paddle_half, px, py + self._paddle_half)])
            frame = self._frame = (img.astype(np.uint8) * 255)[:, :, None]
        return frame

    def _info(self, pos=None) -> dict[str, Any]:
        p = pos if pos is not None else self._ball.position
        v = self._ball.velocity
        s = [p.x, p.y, v.x, v.y]
        s += [body.position.y for body in self._paddles]
        return {"state": np.asarray(s, dtype=np.float32)}
