"""The oracle reproduces the pixel pendulum: states, rewards and frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldmodels.agents.oracle import PendulumOracle, StateBelief, pendulum_reward, upright_fraction


def test_oracle_matches_pendulum_env():
    from worldmodels import envs  # noqa: F401

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


def test_upright_fraction_counts_the_last_steps_near_upright():
    th = np.zeros((2, 60))
    th[0, -50:-10] = np.pi  # hanging for 40 of the last 50 steps
    th[1, :10] = np.pi  # hanging only before the last 50 steps
    th[1, -1] = 0.6  # just outside the 0.5 rad tolerance
    states = np.stack([np.cos(th), np.sin(th), np.zeros_like(th)], -1)
    np.testing.assert_allclose(upright_fraction(states), [0.2, 0.98])
    np.testing.assert_allclose(upright_fraction(states, last=1, tolerance=0.7), [1.0, 1.0])
    with pytest.raises(ValueError, match="pendulum states"):
        upright_fraction(states[..., :2])


def test_terminal_weight_lets_a_short_horizon_pump_from_hanging_still():
    """At H = 12 (0.6 s) no plan from rest at the bottom gains reward within the horizon, so
    plain MPC does not pump; weighting the last imagined step (``terminal_weight``) makes
    ending higher pay, and the same planner swings up."""
    from worldmodels import envs  # noqa: F401
    from worldmodels.agents.mpc import MPCAgent, MPCConfig
    from worldmodels.agents.planners import make_planner

    def final_states(terminal_weight: float) -> np.ndarray:
        env = gym.make("worldmodels/Pendulum-v0", max_episode_steps=200)
        _, info = env.reset(seed=4)  # theta 2.8 rad from the top, nearly at rest
        agent = MPCAgent(PendulumOracle(), make_planner("cem_fast", -2.0, 2.0, horizon=12), pendulum_reward,
                         MPCConfig(context=1, terminal_weight=terminal_weight))
        state, states = info["state"], []
        for _ in range(200):
            *_, info = env.step(agent.act(state))
            state = info["state"]
            states.append(state)
        return np.stack(states)[None]

    assert upright_fraction(final_states(0.0))[0] < 0.5
    assert upright_fraction(final_states(2.0))[0] >= 0.9
