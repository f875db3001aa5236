"""The model as an environment: exact imagined dynamics and rewards, episode ends, Gymnasium
compliance, and Stable-Baselines3 PPO training inside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.costs import QuadraticCost
from agents.model_env import ModelEnv, ModelVectorEnv, contexts_from_batch
from agents_toy_models import LinearWorldModel

GOAL = torch.tensor([1.0, 0.0])


def contexts(M=8, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(M, T, 1, 1, 2, generator=g) - 0.5
    return contexts_from_batch(obs, torch.zeros(M, T, 1), context=T)


def test_vector_env_follows_model_dynamics_and_reward():
    model = LinearWorldModel()
    ctx = contexts()
    env = ModelVectorEnv(model, QuadraticCost(GOAL), ctx, spaces.Box(-1, 1, (1,), np.float32),
                         num_envs=3, episode_length=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 2) and env.observation_space.shape == (3, 2)
    # every start is the last frame of one of the real contexts
    starts = ctx["obs"][:, -1, 0, 0].numpy()
    assert all(np.isclose(starts, o, atol=1e-6).all(-1).any() for o in obs)
    z = obs.astype(np.float64)
    A, B = model.A.detach().numpy(), model.B.detach().numpy()
    for t in range(4):
        a = np.array([[0.5], [-2.0], [0.1]], np.float32)  # -2 is clipped to the box
        nxt, r, term, trunc, info = env.step(a)
        z = z @ A.T + np.clip(a, -1, 1) @ B.T
        np.testing.assert_allclose(r, -((z - GOAL.numpy()) ** 2).sum(-1), rtol=1e-4, atol=1e-5)
        assert not term.any()
        if t < 3:
            np.testing.assert_allclose(nxt, z, atol=1e-5)
            assert not trunc.any()
    assert trunc.all()  # fixed-length episodes end together; same-step autoreset
    np.testing.assert_allclose(info["final_obs"], z, atol=1e-5)
    assert env._t == 0 and all(np.isclose(starts, o, atol=1e-6).all(-1).any() for o in nxt)
    frames = env.render()
    assert frames.shape == (3, 1, 2, 3) and frames.dtype == np.uint8


def test_pixels_mode_and_discrete_actions():
    model = LinearWorldModel()
    model.B.data = torch.tensor([[0.0, 0.0], [-0.1, 0.1]])
    model.action_dim = 2
    ctx = {"obs": torch.full((2, 2, 1, 1, 2), 0.25), "actions": torch.zeros(2, 2, 2)}
    env = ModelVectorEnv(model, QuadraticCost(GOAL), ctx, spaces.Discrete(2), num_envs=2,
                         obs_mode="pixels")
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (2, 1, 2, 1)
    obs, r, *_ = env.step(np.array([0, 1]))
    # one-hot action 0 lowers the velocity 0.25 -> 0.15, action 1 raises it to 0.35; the goal
    # has zero velocity, and positions move equally (0.25 + 0.1 * 0.25)
    np.testing.assert_allclose(r, [-(0.725 ** 2 + 0.15 ** 2), -(0.725 ** 2 + 0.35 ** 2)], rtol=1e-5)
    with pytest.raises(ValueError, match="action_space"):
        ModelVectorEnv(model, QuadraticCost(GOAL), ctx, spaces.Discrete(3))


def test_model_env_passes_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    env = ModelEnv(LinearWorldModel(), QuadraticCost(GOAL), contexts(),
                   spaces.Box(-1, 1, (1,), np.float32), episode_length=5)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    obs2, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, obs2)
    for _ in range(5):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert trunc and not term and np.allclose(info["latent"], obs)


def test_sb3_ppo_trains_in_the_model_env():
    sb3 = pytest.importorskip("stable_baselines3")
    torch.manual_seed(0)
    model = LinearWorldModel()
    env = ModelEnv(model, QuadraticCost(GOAL), contexts(M=32), spaces.Box(-1, 1, (1,), np.float32),
                   episode_length=20)

    def mean_return(policy, episodes=8):
        total = 0.0
        for ep in range(episodes):
            obs, _ = env.reset(seed=100 + ep)
            for _ in range(20):
                obs, r, term, trunc, _ = env.step(policy(obs))
                total += r
        return total / episodes

    ppo = sb3.PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=4, learning_rate=3e-3,
                  seed=0, device="cpu", policy_kwargs={"net_arch": [32, 32]})
    before = mean_return(lambda o: ppo.predict(o, deterministic=True)[0])
    ppo.learn(total_timesteps=3072)
    after = mean_return(lambda o: ppo.predict(o, deterministic=True)[0])
    assert np.isfinite(after)
    assert after > before  # PPO improved its return inside the imagined environment
