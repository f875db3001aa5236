"""FeaturePolicyAgent: a policy on latent features acting in a real environment through the filter."""

from __future__ import annotations

import numpy as np
import pytest
from agents_toy_models import LinearConfig, LinearEnv, LinearWorldModel
from gymnasium import spaces

from worldmodels.agents.feature_policy import FeaturePolicyAgent

BOX = spaces.Box(-1.0, 1.0, (2,), np.float32)


def point_model(action_dim: int = 2) -> LinearWorldModel:
    """The latent is the observation itself (``observe`` returns the last frame)."""
    B = [[0.3, 0.0], [0.0, 0.3]] if action_dim == 2 else [[0.3, 0.0, -0.3], [0.0, 0.3, 0.0]]
    return LinearWorldModel(LinearConfig(A=[[1.0, 0.0], [0.0, 1.0]], B=B))


def frames(z: np.ndarray) -> np.ndarray:
    """Observations ``[n, 1, 1, D]`` of the toy model for latents ``z [n, D]``."""
    return z.astype(np.float32)[:, None, None, :]


def test_policy_sees_the_filtered_features_and_its_clipped_actions_enter_the_history():
    model = point_model()
    seen = []

    def policy(f):
        seen.append(f.copy())
        return 3.0 * f  # beyond the bounds for |f| > 1/3

    agent = FeaturePolicyAgent(model, policy, BOX, context=3, num_envs=2)
    z = np.array([[0.1, -0.2], [0.5, 0.9]], np.float32)
    a = agent.act(frames(z))
    np.testing.assert_allclose(seen[-1], z)
    assert seen[-1].dtype == np.float32 and seen[-1].shape == (2, 2)
    np.testing.assert_allclose(a, np.clip(3.0 * z, -1, 1))
    assert a.dtype == np.float32 and a.shape == (2, 2)
    np.testing.assert_allclose(agent._act[:, -1].numpy(), a)  # the action the env will receive
    # the next step filters the new frame, and the history keeps the actions taken
    agent.act(frames(z + 0.05))
    np.testing.assert_allclose(seen[-1], z + 0.05, atol=1e-6)
    np.testing.assert_allclose(agent._act[:, -2].numpy(), a)


def test_single_env_returns_one_action_and_reset_forgets_the_history():
    model = point_model()
    agent = FeaturePolicyAgent(model, lambda f: -f, BOX, context=2)
    a = agent.act(np.array([[[0.2, 0.4]]], np.float32))
    assert a.shape == (2,)
    np.testing.assert_allclose(a, [-0.2, -0.4])
    agent.act(np.array([[[0.0, 0.0]]], np.float32))
    assert agent._obs.shape[1] == 2
    agent.reset()
    agent.act(np.array([[[0.1, 0.1]]], np.float32))
    assert agent._obs.shape[1] == 1


def test_discrete_actions_are_ints_and_enter_the_history_one_hot():
    model = point_model(action_dim=3)
    agent = FeaturePolicyAgent(model, lambda f: (f[:, 0] > 0).astype(np.int64) * 2, spaces.Discrete(3),
                               context=2, num_envs=3)
    a = agent.act(frames(np.array([[0.5, 0], [-0.5, 0], [0.1, 0]])))
    assert a.tolist() == [2, 0, 2] and a.dtype.kind == "i"
    np.testing.assert_array_equal(agent._act[:, -1].numpy(), np.eye(3, dtype=np.float32)[[2, 0, 2]])
    single = FeaturePolicyAgent(model, lambda f: np.array([1]), spaces.Discrete(3), context=1)
    assert single.act(np.zeros((1, 1, 2), np.float32)) == 1


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros((1, 2))])
def test_wrong_action_shapes_are_refused(bad):
    agent = FeaturePolicyAgent(point_model(), lambda f: bad, BOX, context=1, num_envs=2)
    with pytest.raises(ValueError, match="policy_fn"):
        agent.act(np.zeros((2, 1, 1, 2), np.float32))


def test_action_space_must_fit_the_model():
    with pytest.raises(ValueError, match="action_space"):
        FeaturePolicyAgent(point_model(), lambda f: f, spaces.Box(-1, 1, (3,), np.float32))
    with pytest.raises(ValueError, match="action_space"):
        FeaturePolicyAgent(point_model(), lambda f: f, spaces.Discrete(5))
    agent = FeaturePolicyAgent(point_model(action_dim=3), lambda f: np.array([7]), spaces.Discrete(3))
    with pytest.raises(ValueError, match="policy_fn"):
        agent.act(np.zeros((1, 1, 2), np.float32))


def test_a_feature_controller_drives_the_real_system_to_the_goal():
    """Closed loop: a proportional controller on the features beats random actions in the real env."""
    model = point_model()
    goal = np.array([0.8, -0.6], np.float32)
    env = LinearEnv(model, goal=tuple(goal.tolist()), max_steps=20)
    agent = FeaturePolicyAgent(model, lambda f: 3.0 * (goal - f), env.action_space, context=2)
    rng = np.random.default_rng(0)

    def episode(act, seed):
        obs, _ = env.reset(seed=seed)
        agent.reset()
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total, done = total + r, term or trunc
        return total

    controlled = [episode(agent.act, s) for s in range(3)]
    rand = [episode(lambda o: rng.uniform(-1, 1, 2).astype(np.float32), s) for s in range(3)]
    assert np.mean(controlled) > 0.2 * np.mean(rand)  # returns are negative: at least 5x less cost
