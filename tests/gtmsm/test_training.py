"""A tiny GTM-SM on a 3x3-position crop world memorises and beats the no-memory baseline."""

from __future__ import annotations

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.gtmsm import GTMSM, GTMSMConfig

from .crop_world import crop_world_batch

TAU, PRED = 40, 12


def train(memory: bool, steps: int, seed: int = 0) -> GTMSM:
    torch.manual_seed(seed)
    m = GTMSM(GTMSMConfig(tau=TAU, z_dim=8, hidden=(128,), kl_samples=4, memory=memory))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for i in range(steps):
        obs, a, _ = crop_world_batch(16, TAU + PRED, seed=1000 + i)  # fresh worlds every step
        out = m.loss(Batch(obs, a, torch.ones(16, TAU + PRED)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return m


def r2_linear(x: torch.Tensor, y: torch.Tensor) -> float:
    """R^2 of the least-squares affine map x -> y (pooled over dims)."""
    X = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    coef = torch.linalg.lstsq(X, y.double()).solution
    res = ((X @ coef - y) ** 2).sum()
    return 1 - (res / ((y - y.mean(0)) ** 2).sum()).item()


@pytest.fixture
def one_thread():
    """Tiny tensors: extra intra-op threads only add overhead (and contend on shared CI)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_tiny_gtmsm_memorises_and_beats_no_memory_baseline(one_thread):
    obs, a, pos = crop_world_batch(48, TAU + PRED, seed=1)  # held-out worlds
    results = {}
    for memory in (True, False):
        # the baseline's prediction (decoding the prior mean) converges within ~100 steps
        m = train(memory, steps=500 if memory else 250)
        with torch.no_grad():
            pred = m.predict(obs, a, TAU)
            results[memory] = ((pred - obs[:, TAU:]) ** 2).mean().item()
            floor = ((m.reconstruct(obs[:, TAU:]) - obs[:, TAU:]) ** 2).mean().item()
            if memory:
                M = m.transition.M.weight
                still_norm = M[:, 4].norm().item()  # "stay" learned as no displacement
                move_norm = M[:, :4].norm(dim=0).min().item()
                moved, known = m.frame_moved(obs)
                states = m.infer_states(a, moved, known, sample=False).mean[:, :TAU]
                rel = pos[:, :TAU] - pos[:, :1]  # s_0 = 0 is the start position
                r2 = r2_linear(states.reshape(-1, 2), rel.reshape(-1, 2))
    assert still_norm < 0.1 * move_norm, (still_norm, move_norm)
    assert r2 > 0.95, f"learned states do not map linearly to positions: R^2 = {r2:.3f}"
    assert results[True] < 0.75 * results[False], results
    assert results[True] < 2.5 * floor, (results, floor)
