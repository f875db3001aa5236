"""Toy data for the KVAE tests: a dot bouncing in a small box, rendered to binary frames."""

import numpy as np
import pytest
import torch


def bouncing_dot(num: int, T: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``obs [num, T, 1, size, size]`` binary frames of a 2x2 dot and its positions ``[num, T, 2]``."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(1.0, size - 2.0, size=(num, 2))
    vel = rng.uniform(0.5, 1.0, size=(num, 2)) * rng.choice([-1.0, 1.0], size=(num, 2))
    obs = np.zeros((num, T, 1, size, size), np.float32)
    traj = np.zeros((num, T, 2), np.float32)
    for t in range(T):
        traj[:, t] = pos
        ij = np.floor(pos).astype(int)
        for n in range(num):
            i, j = ij[n]
            obs[n, t, 0, i:i + 2, j:j + 2] = 1.0
        pos = pos + vel
        low, high = pos < 0.0, pos > size - 2.0
        pos = np.where(low, -pos, np.where(high, 2 * (size - 2.0) - pos, pos))
        vel = np.where(low | high, -vel, vel)
    return torch.from_numpy(obs), torch.from_numpy(traj)


@pytest.fixture
def dots():
    return bouncing_dot
