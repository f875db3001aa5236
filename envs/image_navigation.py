"""Image navigation (GTM-SM, thesis 7.4.1 and 7.10.1): walk on an image, see a small crop."""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worldmodels.envs.validation import int_in
from worldmodels.envs.world_images import list_image_files, load_image, procedural_world

#: Action meanings, in the order of the discrete action indices.
ACTIONS = ("up", "down", "left", "right", "stay")
_MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)], dtype=np.int64)
GOAL_MODES = ("none", "position", "view")
OBSTACLE_GREY = 128
MAX_WORLD_SIZE = 1024  # px
MAX_RENDER_SCALE = 64


class ImageNavigationEnv(gym.Env):
    """An agent walks on a ``world_size`` RGB image and sees the ``view x view`` crop at its position.

    ## Description
    The world is a 32x32 RGB image: a fresh procedural image per episode (seeded by
    ``reset(seed=...)``, unlimited variety) or, with ``image_folder``, a random image of the
    user's folder (e.g. CelebA), centre-cropped and resized. The agent's crop moves by
    ``step_px = 3`` pixels, so there are ``(32 - 8) / 3 + 1 = 9`` positions per axis. The border
    acts as a wall: a blocked move leaves the agent in place. With ``obstacles=True``,
    ``num_obstacles`` grey squares of ``obstacle_cells x obstacle_cells`` positions are placed at
    random each episode (thesis 7.10.1); they are drawn in the world image and block moves.

    ## Options and their ranges
    Integers: ``world_size`` in [1, 1024] px, ``view`` in [1, world_size], ``step_px`` >= 1 with
    ``(world_size - view)`` divisible by it; with obstacles ``num_obstacles`` in [1, n_pos^2] and
    ``obstacle_cells`` in [1, n_pos - 1] (``n_pos`` positions per axis); ``render_scale`` in
    [1, 64]. Anything else raises ``ValueError`` naming the option.

    ## Observation space
    ``Box(0, 255, (view, view, 3), uint8)``, channel-last (HWC) RGB crop (8x8 by default).

    ## Action space
    ``Discrete(5)``: 0 up, 1 down, 2 left, 3 right, 4 stay. A one-hot vector of length 5 is
    accepted too; anything else (wrong shape, NaN, out of range) raises ``ValueError``.

    ## Reward
    ``goal="position"`` (default): 1 when the agent is at the goal position, else 0.
    ``goal="view"``: 1 when the current crop equals the goal crop (``info["goal_view"]``),
    else 0. ``goal="none"``: always 0. With ``terminate_on_goal=True`` reaching it ends the
    episode. The goal is drawn uniformly among free positions other than the start, or set with
    ``reset(options={"goal": (row, col)})``.

    ## Starting state
    The centre position (4, 4), or a uniformly random free position with ``random_start=True``,
    or ``options={"start": (row, col)}``. ``options={"world": uint8 [32, 32, 3]}`` sets the image.

    ## Info
    ``info["state"]``: float32 ``[row, col]`` grid position (0..8, row 0 at the top);
    ``info["action_mask"]``: int8 ``[5]``, 1 for actions that change the position (and stay);
    ``info["goal"]``: int64 ``[row, col]`` of the goal (-1 with ``goal="none"``).

    ## Version history
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        render_mode: str | None = None,
        world_size: int = 32,
        view: int = 8,
        step_px: int = 3,
        image_folder: str | os.PathLike | None = None,
        obstacles: bool = False,
        num_obstacles: int = 2,
        obstacle_cells: int = 2,
        goal: str | None = "position",
        terminate_on_goal: bool = False,
        random_start: bool = False,
        render_scale: int = 4,
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}")
        goal = "none" if goal is None else goal
        if goal not in GOAL_MODES:
            raise ValueError(f"goal: expected one of {GOAL_MODES}, got {goal!r}")
        world_size = int_in("world_size", world_size, 1, MAX_WORLD_SIZE)
        view = int_in("view", view, 1, world_size)
        step_px = int_in("step_px", step_px, 1, world_size)
        if (world_size - view) % step_px:
            raise ValueError(f"world_size, view, step_px: need (world_size - view) divisible by step_px, "
                             f"got {world_size}, {view}, {step_px}")
        self.render_mode = render_mode
        self.world_size, self.view, self.step_px = world_size, view, step_px
        self.n_pos = (self.world_size - self.view) // self.step_px + 1
        if obstacles:
            self.num_obstacles = int_in("num_obstacles", num_obstacles, 1, self.n_pos**2)
            self.obstacle_cells = int_in("obstacle_cells", obstacle_cells, 1, max(self.n_pos - 1, 1))
        else:  # unused: only their type is checked
            self.num_obstacles = int_in("num_obstacles", num_obstacles, 0, MAX_WORLD_SIZE**2)
            self.obstacle_cells = int_in("obstacle_cells", obstacle_cells, 0, MAX_WORLD_SIZE)
        self.obstacles = bool(obstacles)
        self.goal_mode = goal
        self.terminate_on_goal = bool(terminate_on_goal)
        self.random_start = bool(random_start)
        self.render_scale = int_in("render_scale", render_scale, 1, MAX_RENDER_SCALE)
        self.image_files = list_image_files(image_folder) if image_folder is not None else None
        self.state_dim = 2
        self.observation_space = spaces.Box(0, 255, (self.view, self.view, 3), np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.world: np.ndarray | None = None
        self.blocked = np.zeros((self.n_pos, self.n_pos), dtype=bool)
        self.pos = np.array([self.n_pos // 2, self.n_pos // 2], dtype=np.int64)
        self.goal = np.array([-1, -1], dtype=np.int64)
        self._goal_view: np.ndarray | None = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"start", "goal", "world"}
        if unknown:
            raise ValueError(f"options: unknown reset option(s) {sorted(unknown)}; "
                             "expected 'start', 'goal' and/or 'world'")
        rng = self.np_random
        if "world" in options:
            world = np.asarray(options["world"])
            want = (self.world_size, self.world_size, 3)
            if world.shape != want or world.dtype != np.uint8:
                raise ValueError(f"options['world']: expected uint8 {want}, got {world.dtype} {world.shape}")
            world = world.copy()
        elif self.image_files is not None:
            world = load_image(self.image_files[int(rng.integers(len(self.image_files)))], self.world_size)
        else:
            world = procedural_world(rng, self.world_size)
        start = self._cell_option(options, "start")
        if start is None:
            start = (self.n_pos // 2, self.n_pos // 2)
            if self.random_start:
                start = tuple(rng.integers(0, self.n_pos, 2))
        self.blocked = self._place_obstacles(rng, start) if self.obstacles else np.zeros_like(self.blocked)
        if self.blocked[start]:
            raise ValueError(f"options['start']: position {start} is inside an obstacle")
        for r, c in zip(*np.nonzero(self.blocked)):
            y0, x0 = r * self.step_px + self.view // 2 - 2, c * self.step_px + self.view // 2 - 2
            world[y0 : y0 + 4, x0 : x0 + 4] = OBSTACLE_GREY
        self.world = world
        self.pos = np.array(start, dtype=np.int64)
        self._goal_view = None
        if self.goal_mode == "none":
            self.goal = np.array([-1, -1], dtype=np.int64)
        else:
            goal = self._cell_option(options, "goal")
            if goal is None:
                free = np.argwhere(~self.blocked)
                free = free[(free != self.pos).any(axis=1)]
                goal = tuple(free[int(rng.integers(len(free)))])
            elif self.blocked[goal]:
                raise ValueError(f"options['goal']: position {goal} is inside an obstacle")
            self.goal = np.array(goal, dtype=np.int64)
            self._goal_view = self._crop(self.goal)
        return self._crop(self.pos), self._info()

    def step(self, action):
        a = self._action_index(action)
        nxt = self.pos + _MOVES[a]
        if 0 <= nxt[0] < self.n_pos and 0 <= nxt[1] < self.n_pos and not self.blocked[nxt[0], nxt[1]]:
            self.pos = nxt
        obs = self._crop(self.pos)
        if self.goal_mode == "position":
            reached = bool((self.pos == self.goal).all())
        elif self.goal_mode == "view":
            reached = self._goal_view is not None and bool(np.array_equal(obs, self._goal_view))
        else:
            reached = False
        return obs, float(reached), reached and self.terminate_on_goal, False, self._info()

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        s = self.render_scale
        img = self._world().repeat(s, axis=0).repeat(s, axis=1)
        y0, x0 = self.pos * self.step_px * s
        y1, x1 = y0 + self.view * s - 1, x0 + self.view * s - 1
        yellow = np.array([255, 220, 0], np.uint8)
        img[y0, x0 : x1 + 1] = img[y1, x0 : x1 + 1] = yellow
        img[y0 : y1 + 1, x0] = img[y0 : y1 + 1, x1] = yellow
        return img

    # ------------------------------------------------------------------ helpers
    def _action_index(self, action) -> int:
        a = np.asarray(action)
        if a.shape == (len(ACTIONS),):  # one-hot
            if not np.isfinite(a).all():
                raise ValueError(f"action contains NaN or inf: {a}")
            return int(np.argmax(a))
        if a.shape != () or not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"action: expected an integer in [0, 5) or a one-hot vector of shape (5,), "
                             f"got {action!r}")
        if not np.isfinite(a):
            raise ValueError(f"action is NaN or inf: {action!r}")
        if a != int(a) or not 0 <= int(a) < len(ACTIONS):
            raise ValueError(f"action: expected an integer in [0, 5), got {action!r}")
        return int(a)

    def _cell_option(self, options: dict, key: str) -> tuple[int, int] | None:
        if key not in options:
            return None
        cell = np.asarray(options[key])
        if cell.shape != (2,) or not np.issubdtype(cell.dtype, np.integer) or not (
            (cell >= 0).all() and (cell < self.n_pos).all()
        ):
            raise ValueError(f"options[{key!r}]: expected (row, col) integers in [0, {self.n_pos}), "
                             f"got {options[key]!r}")
        return int(cell[0]), int(cell[1])

    def _place_obstacles(self, rng: np.random.Generator, start: tuple[int, int]) -> np.ndarray:
        """Random obstacle blocks that keep ``start`` free and the free cells connected."""
        k, n = self.obstacle_cells, self.n_pos
        for _ in range(1000):
            blocked = np.zeros((n, n), dtype=bool)
            for r, c in rng.integers(0, n - k + 1, (self.num_obstacles, 2)):
                blocked[r : r + k, c : c + k] = True
            if not blocked[start] and self._connected(blocked, start):
                return blocked
        raise ValueError(f"num_obstacles={self.num_obstacles} x {k}x{k} cells leave no connected free space")

    @staticmethod
    def _connected(blocked: np.ndarray, start: tuple[int, int]) -> bool:
        seen = np.zeros_like(blocked)
        seen[start] = True
        todo = deque([start])
        n = blocked.shape[0]
        while todo:
            r, c = todo.popleft()
            for dr, dc in _MOVES[:4]:
                rr, cc = r + dr, c + dc
                if 0 <= rr < n and 0 <= cc < n and not blocked[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    todo.append((rr, cc))
        return bool(seen.sum() == (~blocked).sum())

    def _crop(self, pos: np.ndarray) -> np.ndarray:
        y, x = int(pos[0]) * self.step_px, int(pos[1]) * self.step_px
        return self._world()[y : y + self.view, x : x + self.view].copy()

    def _world(self) -> np.ndarray:
        if self.world is None:
            raise RuntimeError("the environment has no world yet: call reset() first")
        return self.world

    def _info(self) -> dict[str, Any]:
        n = self.n_pos
        nxt = self.pos + _MOVES
        ok = (nxt >= 0).all(axis=1) & (nxt < n).all(axis=1)
        mask = np.zeros(len(ACTIONS), dtype=np.int8)
        mask[ok] = ~self.blocked[nxt[ok, 0], nxt[ok, 1]]
        mask[4] = 1
        info = {"state": self.pos.astype(np.float32), "action_mask": mask, "goal": self.goal.copy()}
        if self._goal_view is not None and self.goal_mode == "view":
            info["goal_view"] = self._goal_view.copy()
        return info
