"""Exploration policies that generate the datasets.

A policy is called as ``policy(obs, info) -> action`` after ``policy.reset(rng)`` at the start of
each episode; all randomness comes from the ``np.random.Generator`` given to ``reset``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from worldmodels.envs.validation import finite_float, int_in

MAX_RATE = 1000.0


class Policy:
    """Base class: ``reset(rng)`` once per episode, then ``__call__(obs, info) -> action``."""

    def __init__(self, action_space: spaces.Space):
        self.action_space = action_space
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, obs: np.ndarray, info: dict[str, Any]):
        raise NotImplementedError


class ZeroPolicy(Policy):
    """Always the zero action of a ``Box`` space (passive bouncing-ball videos)."""

    def __init__(self, action_space: spaces.Box):
        super().__init__(action_space)
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"action_space: ZeroPolicy needs a Box space, got {action_space}")
        self._zero = np.zeros(action_space.shape, dtype=action_space.dtype)

    def __call__(self, obs, info):
        return self._zero.copy()


class UniformPolicy(Policy):
    """I.i.d. uniform actions in ``[low, high] * scale`` of a ``Box`` space (random torques/forces);
    ``scale`` in (0, 1]."""

    def __init__(self, action_space: spaces.Box, scale: float = 1.0):
        super().__init__(action_space)
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"action_space: UniformPolicy needs a Box space, got {action_space}")
        finite_float("scale", scale, 0.0, 1.0, low_open=True)
        mid = (action_space.high + action_space.low) / 2
        half = (action_space.high - action_space.low) / 2 * scale
        self._low, self._high = mid - half, mid + half

    def __call__(self, obs, info):
        return self.rng.uniform(self._low, self._high).astype(self.action_space.dtype)


class PoissonRepeatPolicy(Policy):
    """Random discrete moves repeated a Poisson number of steps (the GTM-SM exploration data).

    When the current run is over, draws ``n ~ Poisson(rate)``; ``n = 0`` gives one ``stay_action``
    step, otherwise a direction uniformly among the moves that ``info["action_mask"]`` allows
    right now (all moves if there is no mask) is repeated ``n`` times, even after it hits a
    wall (the agent then stays put and must learn that walls block). With
    ``blocked_as_stay=True`` a repeated move that the mask now blocks is emitted as ``stay``
    instead (chenxy99's ``random_walk_wo_wall`` data, where a linear transition fits).
    ``rate`` is a finite number in (0, 1000]; ``stay_action`` an action index.
    """

    def __init__(self, action_space: spaces.Discrete, rate: float = 2.0, stay_action: int = 4,
                 blocked_as_stay: bool = False):
        super().__init__(action_space)
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"action_space: PoissonRepeatPolicy needs a Discrete space, got {action_space}")
        self.rate = finite_float("rate", rate, 0.0, MAX_RATE, low_open=True)
        self.stay = int_in("stay_action", stay_action, 0, int(action_space.n) - 1)
        self.blocked_as_stay = bool(blocked_as_stay)
        self._moves = np.array([a for a in range(int(action_space.n)) if a != self.stay])
        self._left = 0
        self._current = self.stay

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self._left = 0

    def __call__(self, obs, info):
        if self._left <= 0:
            n = int(self.rng.poisson(self.rate))
            if n == 0:
                return self.stay
            moves = self._moves
            mask = info.get("action_mask") if isinstance(info, dict) else None
            if mask is not None:
                allowed = moves[np.asarray(mask)[moves] > 0]
                moves = allowed if len(allowed) else moves
            self._current = int(moves[int(self.rng.integers(len(moves)))])
            self._left = n
        self._left -= 1
        if self.blocked_as_stay and isinstance(info, dict) and info.get("action_mask") is not None:
            if not np.asarray(info["action_mask"])[self._current]:
                return self.stay
        return self._current


class RandomPolicy(Policy):
    """I.i.d. samples of a ``Discrete`` or ``Box`` action space drawn with the episode's generator:
    uniform indices, uniform values where a ``Box`` dimension is bounded and standard normal ones
    (clipped to the bound it has, if any) where it is not."""

    def __init__(self, action_space: spaces.Space):
        super().__init__(action_space)
        if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
            raise ValueError(f"action_space: RandomPolicy needs a Box or Discrete space, got {action_space}")

    def __call__(self, obs, info):
        a = self.action_space
        if isinstance(a, spaces.Discrete):
            return int(a.start) + int(self.rng.integers(int(a.n)))
        if not isinstance(a, spaces.Box):  # checked in __init__
            raise TypeError(f"action_space: expected Box or Discrete, got {a}")
        low, high = np.broadcast_to(a.low, a.shape), np.broadcast_to(a.high, a.shape)
        bounded = np.isfinite(low) & np.isfinite(high)
        u = self.rng.uniform(np.where(bounded, low, 0.0), np.where(bounded, high, 1.0))
        x = np.where(bounded, u, np.clip(self.rng.standard_normal(a.shape), low, high))
        return x.astype(a.dtype)


#: Policy names usable in dataset specs -> constructors ``(action_space, **kwargs) -> Policy``.
POLICIES: dict[str, Callable[..., Policy]] = {
    "zero": ZeroPolicy,
    "uniform": UniformPolicy,
    "poisson_repeat": PoissonRepeatPolicy,
    "random": RandomPolicy,
}


def make_policy(name: str, action_space: spaces.Space, **kwargs) -> Policy:
    """Build a policy by name (see ``POLICIES``); unknown names or options raise ``ValueError``."""
    if name not in POLICIES:
        raise ValueError(f"policy: expected one of {sorted(POLICIES)}, got {name!r}")
    try:
        return POLICIES[name](action_space, **kwargs)
    except TypeError as e:
        raise ValueError(f"policy {name!r}: bad options {kwargs}: {e}") from e
