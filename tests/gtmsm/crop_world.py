"""A tensor-level image-navigation world for tests: random images, an agent crop on a grid.

Actions (one-hot, 5): 0 up, 1 down, 2 left, 3 right, 4 stay; the border blocks moves.
The action is repeated for 1 + Poisson(rate) steps, as in the thesis' data (7.4.1).
"""

from __future__ import annotations

import numpy as np
import torch

MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)])


def crop_world_batch(batch: int, T: int, grid: int = 3, view: int = 8, step: int = 2,
                     rate: float = 1.0, seed: int = 0, block: int = 4, centre_start: bool = False,
                     dtype: torch.dtype = torch.float32):
    """Returns ``(obs [B, T, 3, view, view], actions [B, T, 5], positions [B, T, 2])``.

    ``actions[:, t]`` is taken after ``obs[:, t]`` and leads to ``obs[:, t + 1]``.
    """
    rng = np.random.default_rng(seed)
    size = view + step * (grid - 1)
    if block > 1:  # blocky images: few numbers per view, so a small VAE can encode them
        nb = -(-size // block)
        coarse = rng.random((batch, 3, nb, nb))
        worlds = coarse.repeat(block, -1).repeat(block, -2)[..., :size, :size]
    else:
        worlds = rng.random((batch, 3, size, size))
    pos = np.zeros((batch, T, 2), np.int64)
    acts = np.zeros((batch, T), np.int64)
    p = rng.integers(0, grid, size=(batch, 2))
    if centre_start:  # as in the image-navigation env: walls are then fixed in state space
        p[:] = grid // 2
    left = np.zeros(batch, np.int64)
    a = np.zeros(batch, np.int64)
    for t in range(T):
        pos[:, t] = p
        new = left <= 0
        a = np.where(new, rng.integers(0, 5, size=batch), a)
        left = np.where(new, 1 + rng.poisson(rate, size=batch), left) - 1
        acts[:, t] = a
        p = np.clip(p + MOVES[a], 0, grid - 1)
    rows = (pos[..., 0] * step)[..., None] + np.arange(view)  # [B, T, view]
    cols = (pos[..., 1] * step)[..., None] + np.arange(view)
    b = np.arange(batch)[:, None, None, None, None]
    ch = np.arange(3)[None, None, :, None, None]
    obs = worlds[b, ch, rows[:, :, None, :, None], cols[:, :, None, None, :]]  # [B, T, 3, v, v]
    actions = np.eye(5)[acts]
    return (torch.tensor(obs, dtype=dtype), torch.tensor(actions, dtype=dtype),
            torch.tensor(pos, dtype=dtype))
