"""Gymnasium environments with pixel observations; importing this package registers them.

Ids (all ``render_mode="rgb_array"``, true low-dimensional state in ``info["state"]``):

* ``worldmodels/BouncingBall-v0``, ``worldmodels/BouncingBallGravity-v0``,
  ``worldmodels/BouncingBallPolygon-v0``, ``worldmodels/BouncingBallPong-v0``: 32x32 binary frames.
* ``worldmodels/Pendulum-v0``: ``Pendulum-v1`` dynamics, 16x16 grey frames.
* ``worldmodels/ImageNavigation-v0``: 8x8 RGB views of a 32x32 world image, 5 discrete actions.
"""

from __future__ import annotations

if __name__ == "envs":  # imported as a top-level package from a checkout: one name, one module
    raise ImportError("import worldmodels.envs, not envs: the package installs as worldmodels.envs")

from gymnasium.envs.registration import register, registry

from worldmodels.envs.bouncing_ball import BouncingBallEnv
from worldmodels.envs.image_navigation import ImageNavigationEnv
from worldmodels.envs.pendulum import PixelPendulumEnv

#: Registered ids -> (entry point, default kwargs, max_episode_steps).
ENV_IDS: dict[str, tuple[str, dict, int]] = {
    "worldmodels/BouncingBall-v0": ("worldmodels.envs.bouncing_ball:BouncingBallEnv", {"variant": "box"}, 100),
    "worldmodels/BouncingBallGravity-v0": ("worldmodels.envs.bouncing_ball:BouncingBallEnv", {"variant": "gravity"},
                                           100),
    "worldmodels/BouncingBallPolygon-v0": ("worldmodels.envs.bouncing_ball:BouncingBallEnv", {"variant": "polygon"},
                                           100),
    "worldmodels/BouncingBallPong-v0": ("worldmodels.envs.bouncing_ball:BouncingBallEnv", {"variant": "pong"}, 100),
    "worldmodels/Pendulum-v0": ("worldmodels.envs.pendulum:PixelPendulumEnv", {}, 200),
    "worldmodels/ImageNavigation-v0": ("worldmodels.envs.image_navigation:ImageNavigationEnv", {}, 512),
}

for _id, (_entry, _kwargs, _steps) in ENV_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry, kwargs=_kwargs, max_episode_steps=_steps)

__all__ = ["ENV_IDS", "BouncingBallEnv", "ImageNavigationEnv", "PixelPendulumEnv", "write_dataset"]


def __getattr__(name: str):
    """``write_dataset`` (``worldmodels.envs.writer``), imported on first use."""
    if name == "write_dataset":
        from worldmodels.envs.writer import write_dataset

        return write_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
