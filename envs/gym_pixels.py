"""Any Gymnasium environment as a pixel environment: its ``rgb_array`` renders as observations.

``make_pixel_env`` builds a registered Gymnasium id (one outside ``worldmodels/`` too, e.g.
``CartPole-v1``) with ``render_mode="rgb_array"`` and wraps it in ``PixelObservations``: each
observation is the rendered frame, resized by area averaging (antialiased) and optionally made
grey; each step repeats the action ``frame_skip`` times, sums the rewards and keeps the last
frame; the environment's own observation, when it is a flat vector, is the true state in
``info["state"]`` (``state_dim`` 0 otherwise). Ids are looked up in Gymnasium's registry only,
never imported from a string.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MAX_FRAME_SIDE = 1024
MAX_FRAME_SKIP = 1000
#: ITU-R 601 luma weights of R, G, B
_LUMA = np.array([0.299, 0.587, 0.114])


class EnvNotSupported(ValueError):
    """The environment id cannot be used as a pixel environment (unknown, no ``rgb_array``
    rendering, or an action space other than ``Box`` or ``Discrete``)."""


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix averaging the input cells each output cell covers (rows sum to 1)."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0.0, None)
    return overlap / overlap.sum(1, keepdims=True)


def resize_area(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` uint8 ``[H, W, C]`` resized to ``size = (h, w)`` by area averaging (each output
    pixel is the mean of the input area it covers; antialiased when shrinking); float32 0-255."""
    H, W, C = frame.shape
    rows, cols = _area_weights(H, size[0]), _area_weights(W, size[1])
    x = rows.astype(np.float32) @ frame.reshape(H, W * C).astype(np.float32)  # [h, W * C]
    x = x.reshape(size[0], W, C).transpose(0, 2, 1) @ cols.T.astype(np.float32)  # [h, C, w]
    return x.transpose(0, 2, 1)


def check_frame_size(name: str, size: Any) -> tuple[int, int]:
    """``size`` as ``(h, w)`` integers in ``[1, MAX_FRAME_SIDE]``; ``ValueError`` naming ``name``."""
    ok = (isinstance(size, (list, tuple)) and len(size) == 2
          and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_FRAME_SIDE for d in size))
    if not ok:
        raise ValueError(f"{name}: expected [height, width] integers in [1, {MAX_FRAME_SIDE}], got {size!r}")
    return int(size[0]), int(size[1])


def check_frame_skip(name: str, k: Any) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_FRAME_SKIP:
        raise ValueError(f"{name}: expected an integer in [1, {MAX_FRAME_SKIP}], got {k!r}")
    return k


class PixelObservations(gym.Wrapper):
    """Observations are ``uint8 [h, w, C]`` renders (C = 1 if ``grayscale`` else 3).

    Args:
        env: an environment made with ``render_mode="rgb_array"``; its action space must be
            ``Box`` or ``Discrete``.
        frame_size: ``(h, w)`` of the frames, or None for the render's own size.
        grayscale: one luma channel instead of RGB.
        frame_skip: each ``step`` repeats the action this many times (stopping early when the
            episode ends), returns the summed reward and the last frame.

    Attributes:
        state_dim: length of ``info["state"]``: the environment's observation if it is a flat
            ``Box`` vector, else 0.
    """

    def __init__(self, env: gym.Env, frame_size: tuple[int, int] | None = None, grayscale: bool = False,
                 frame_skip: int = 1):
        super().__init__(env)
        a = env.action_space
        if not isinstance(a, (spaces.Box, spaces.Discrete)):
            raise EnvNotSupported(f"action space {a} is not supported: expected Box (float actions) or "
                                  "Discrete (one-hot actions)")
        self.frame_size = None if frame_size is None else check_frame_size("frame_size", frame_size)
        self.grayscale = bool(grayscale)
        self.frame_skip = check_frame_skip("frame_skip", frame_skip)
        o = env.observation_space
        shape = o.shape if isinstance(o, spaces.Box) else None
        flat = shape is not None and len(shape) == 1 and np.issubdtype(o.dtype, np.number)
        self.state_dim = int(shape[0]) if flat and shape is not None else 0
        self.observation_space = spaces.Box(0, 255, self._frame_shape(), np.uint8)

    def _frame_shape(self) -> tuple[int, int, int]:
        """``(h, w, C)`` of one frame rendered after ``reset(seed=0)`` (checks that rendering works)."""
        self.env.reset(seed=0)
        return self._frame().shape  # type: ignore[return-value]

    def _state(self, obs: Any) -> np.ndarray:
        if self.state_dim == 0:
            return np.zeros(0, np.float32)
        return np.asarray(obs, np.float32).reshape(self.state_dim)

    def _frame(self) -> np.ndarray:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
            raise EnvNotSupported(f"render() returned {type(frame).__name__} "
                                  f"{getattr(frame, 'shape', '')}, expected an RGB array [H, W, 3]")
        x = frame[..., :3]
        size = self.frame_size or x.shape[:2]
        if tuple(size) != x.shape[:2]:
            x = resize_area(x, size)
        if self.grayscale:
            x = (np.asarray(x, np.float64) @ _LUMA)[..., None]
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._frame(), {**info, "state": self._state(obs)}

    def step(self, action):
        total = 0.0
        for _ in range(self.frame_skip):
            obs, r, terminated, truncated, info = self.env.step(action)
            total += float(r)
            if terminated or truncated:
                break
        return self._frame(), total, terminated, truncated, {**info, "state": self._state(obs)}


def check_registered(env_id: Any) -> str:
    """``env_id`` if Gymnasium's registry holds it, else ``EnvNotSupported`` with a hint."""
    if not isinstance(env_id, str) or env_id not in gym.registry:
        near = sorted(k for k in gym.registry if isinstance(env_id, str) and env_id.split("-v")[0].lower()
                      in k.lower())[:5]
        hint = f"similar: {', '.join(near)}" if near else "list them with gymnasium.pprint_registry()"
        raise EnvNotSupported(f"{env_id!r} is not a registered Gymnasium id ({hint}; an id from another "
                              "package needs that package imported first)")
    return env_id


def make_pixel_env(env_id: str, env_kwargs: dict[str, Any] | None = None, frame_size: tuple[int, int] | None = None,
                   grayscale: bool = False, frame_skip: int = 1) -> PixelObservations:
    """The registered Gymnasium ``env_id`` (``gym.make(env_id, render_mode="rgb_array",
    **env_kwargs)``, without its time limit) wrapped in ``PixelObservations``.

    Raises ``EnvNotSupported`` for an unknown id, an environment that does not render
    ``rgb_array`` (or whose renderer is not installed) and unsupported action spaces;
    ``TypeError`` for options the environment does not take."""
    check_registered(env_id)
    kwargs = dict(env_kwargs or {})
    if "render_mode" in kwargs:
        raise TypeError("render_mode is set to 'rgb_array' by the pixel wrapper; remove it from the options")
    try:
        with warnings.catch_warnings():  # an env without rgb_array is refused below, in one line
            warnings.filterwarnings("ignore", message=".*not in the possible render_modes")
            env = gym.make(env_id, render_mode="rgb_array", disable_env_checker=True, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise EnvNotSupported(f"{env_id} cannot be made: {str(e).splitlines()[0]}") from e
    except gym.error.Error as e:  # e.g. a render mode the environment refuses
        raise EnvNotSupported(f"{env_id} cannot be made with render_mode='rgb_array': {e}") from e
    modes = env.unwrapped.metadata.get("render_modes", [])
    if "rgb_array" not in modes:
        env.close()
        raise EnvNotSupported(f"{env_id} does not render 'rgb_array' frames (its render modes: {modes})")
    try:
        return PixelObservations(env.unwrapped, frame_size, grayscale, frame_skip)
    except gym.error.DependencyNotInstalled as e:
        raise EnvNotSupported(f"{env_id} cannot render: {str(e).splitlines()[0]}") from e
