"""MPC agent: beats random on a tiny task (single and vector env), replanning, warm start,
partial resets, and the real-vs-imagined video; the pendulum oracle beats random."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from agents_toy_models import LinearEnv, LinearWorldModel

from worldmodels.agents.costs import QuadraticCost
from worldmodels.agents.mpc import MPCAgent, MPCConfig, imagination_video
from worldmodels.agents.planners import CEM, CEMConfig, make_planner

GOAL = (1.0, 0.0)


def run_episode(env, policy, seed):
    obs, info = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, r, term, trunc, info = env.step(policy(obs))
        total += r
        done = term or trunc
    return total


def make_agent(model, num_envs=None, **cfg):
    planner = CEM(CEMConfig(horizon=8, population=100, num_elites=10, iterations=4), -1.0, 1.0)
    return MPCAgent(model, planner, QuadraticCost(torch.tensor(GOAL)), MPCConfig(context=4, **cfg),
                    num_envs=num_envs)


def test_agent_beats_random_on_tiny_task():
    model = LinearWorldModel()
    env = LinearEnv(model, goal=GOAL, max_steps=30)
    agent = make_agent(model)
    rng = np.random.default_rng(0)
    mpc, rnd = [], []
    for seed in range(3):
        agent.reset()
        mpc.append(run_episode(env, agent.act, seed))
        rnd.append(run_episode(env, lambda o: rng.uniform(-1, 1, 1).astype(np.float32), seed))
    assert np.mean(mpc) > 0.5 * np.mean(rnd)  # returns are negative: at least 2x better
    assert agent.stats["plans"] == 90 and agent.timer.calls == 90 * 4


def test_agent_in_vector_env_with_partial_resets():
    model = LinearWorldModel()
    n = 4
    envs = gym.vector.SyncVectorEnv([lambda i=i: LinearEnv(model, goal=GOAL, max_steps=10 + 5 * i)
                                     for i in range(n)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    agent = make_agent(model, num_envs=n)
    obs, _ = envs.reset(seed=0)
    returns = np.zeros(n)
    episodes = np.zeros(n, dtype=int)
    masked = []
    for _ in range(24):
        a = agent.act(obs)
        ctx_obs, _, mask = agent._context()
        masked.append(mask is not None)
        if mask is not None:  # the reset env sees only frames since its reset, the newest last
            assert torch.equal(ctx_obs[:, -1, 0, 0], torch.as_tensor(obs)[:, 0, 0])
        assert a.shape == (n, 1) and np.all(np.abs(a) <= 1.0)
        obs, r, term, trunc, _ = envs.step(a)
        returns += r * (episodes == 0)
        done = term | trunc
        episodes += done
        agent.reset(done)
    assert episodes[0] == 2 and episodes[3] == 0  # env 0 ended twice (10 steps), env 3 not yet
    # histories differ in length only in the 3 steps after each (partial) reset at steps 10, 15, 20
    assert sum(masked) == 9 and masked[10] and not masked[9]
    rng = np.random.default_rng(0)
    rand_env = LinearEnv(model, goal=GOAL, max_steps=10)
    rand = np.mean([run_episode(rand_env, lambda o: rng.uniform(-1, 1, 1).astype(np.float32), s)
                    for s in range(4)])
    assert returns[0] > 0.5 * rand


def test_replan_every_and_warm_start():
    model = LinearWorldModel()
    agent = make_agent(model, replan_every=3)
    calls = []
    optimize = agent.planner.optimize

    def spy(objective, batch_size, *, warm_start=None, **kw):
        res = optimize(objective, batch_size, warm_start=warm_start, **kw)
        calls.append((warm_start, res))
        return res

    agent.planner.optimize = spy
    env = LinearEnv(model, goal=GOAL, max_steps=7)
    obs, _ = env.reset(seed=0)
    actions = []
    for _ in range(7):
        actions.append(agent.act(obs))
        obs, *_ = env.step(actions[-1])
    assert len(calls) == 3  # steps 0, 3, 6
    assert calls[0][0] is None
    first, second = calls[0][1], calls[1][0]
    assert torch.equal(second.mean[:, :5], first.mean[:, 3:]) and second.num_padded == 3
    # between replans the agent executes the stored plan open loop
    np.testing.assert_allclose(np.stack(actions[:3]), first.actions[0, :3].numpy(), atol=1e-6)


def test_exploration_noise_respects_bounds():
    model = LinearWorldModel()
    agent = make_agent(model, exploration_noise=5.0)
    env = LinearEnv(model, goal=GOAL, max_steps=5)
    obs, _ = env.reset(seed=0)
    acts = [agent.act(obs) for _ in range(5)]
    assert all(np.all(np.abs(a) <= 1.0) for a in acts) and np.std(acts) > 0.1


def test_discrete_agent_returns_ints():
    model = LinearWorldModel()
    model.B.data = torch.tensor([[0.0, 0.0, 0.0], [-0.1, 0.0, 0.1]])
    model.action_dim = 3
    planner = make_planner("categorical", num_actions=3, horizon=5, population=30, num_elites=5,
                           iterations=2)
    agent = MPCAgent(model, planner, QuadraticCost(torch.tensor(GOAL)), MPCConfig(context=2))
    a = agent.act(np.zeros((1, 1, 2), np.float32))
    assert isinstance(a, int) and 0 <= a < 3


def test_imagination_video(tmp_path):
    model = LinearWorldModel()
    agent = make_agent(model, record=True)
    env = LinearEnv(model, goal=GOAL, max_steps=6)
    obs, _ = env.reset(seed=0)
    for _ in range(6):
        obs, *_ = env.step(agent.act(obs))
    assert len(agent.real) == 6 and agent.imagined[0].shape == (1, 8, 1, 1, 2)
    path = agent.imagination_video(tmp_path / "v.gif", horizon=3, scale=2)
    assert path.exists() and path.stat().st_size > 0
    with pytest.raises(ValueError):
        imagination_video(np.zeros((3, 1, 4, 4)), np.zeros((3, 2, 1, 5, 5)), tmp_path / "bad.gif")


def test_pendulum_oracle_beats_random():
    from worldmodels import envs  # noqa: F401  (registers worldmodels/Pendulum-v0)
    from worldmodels.agents.oracle import PendulumOracle, pendulum_reward

    env = gym.make("worldmodels/Pendulum-v0", max_episode_steps=100)
    oracle = PendulumOracle()
    planner = make_planner("cem_fast", -2.0, 2.0, horizon=15)
    agent = MPCAgent(oracle, planner, pendulum_reward, MPCConfig(context=1))

    def run(policy, seed):
        env.reset(seed=seed)
        env.unwrapped.state = np.array([np.pi, 0.0])  # hanging straight down, at rest
        info = {"state": np.array([-1.0, 0.0, 0.0], np.float32)}
        total = 0.0
        for _ in range(100):
            obs, r, term, trunc, info = env.step(policy(info["state"]))
            total += r
        return total

    rng = np.random.default_rng(0)
    oracle_ret = run(agent.act, 1)
    random_ret = run(lambda s: rng.uniform(-2, 2, 1).astype(np.float32), 1)
    assert oracle_ret > 0.6 * random_ret  # negative returns; swing-up leaves ~half the cost


@pytest.mark.parametrize("name", ["cem", "icem", "mppi", "random", "gradcem"])
def test_every_planner_drives_the_agent(name):
    """Every planner works inside the agent (GradCEM needs gradients inside the no-grad agent)."""
    model = LinearWorldModel()
    planner = make_planner(name, -1.0, 1.0, horizon=6, population=60,
                           **({"num_elites": 6} if name in ("cem", "icem", "gradcem") else {}))
    agent = MPCAgent(model, planner, QuadraticCost(torch.tensor(GOAL)), MPCConfig(context=2))
    env = LinearEnv(model, goal=GOAL, max_steps=20)
    rng = np.random.default_rng(0)
    mpc = run_episode(env, agent.act, 0)
    rnd = run_episode(env, lambda o: rng.uniform(-1, 1, 1).astype(np.float32), 0)
    assert mpc > rnd
