"""The oracle reproduces the pixel pendulum: states, rewards and frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from agents.oracle import PendulumOracle, StateBelief, pendulum_reward


def test_oracle_matches_pendulum_env():
    import envs  # noqa: F401

    env = gym.make("worldmodels/Pendulum-v0")
    _, info = env.reset(seed=0)
    oracle = PendulumOracle()
    s0 = torch.as_tensor(info["state"])[None]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-2.5, 2.5, (40, 1)).astype(np.float32)  # some beyond the bounds
    states, rewards, frames = [], [], []
    for a in actions:
        obs, r, *_, info = env.step(a)
        states.append(info["state"]), rewards.append(r), frames.append(obs[..., 0] / 255.0)
    # one batched open-loop rollout with the same actions, among other candidates
    cands = torch.zeros(1, 3, 40, 1)
    cands[0, 1] = torch.as_tensor(actions)
    traj = oracle.imagine(StateBelief(s0), cands)[0, 1]  # [40, 3]
    np.testing.assert_allclose(traj.numpy(), np.stack(states), atol=1e-4)
    before = torch.cat([s0, traj[:-1]])
    np.testing.assert_allclose(pendulum_reward(before, torch.as_tensor(actions)).numpy(), rewards,
                               atol=1e-4)
    np.testing.assert_allclose(oracle.decode(traj)[:, 0].numpy(), np.stack(frames), atol=1 / 255)
    assert oracle.observe(torch.as_tensor(np.stack(states))[None], torch.zeros(1, 40, 1)).features().shape == (1, 3)
