"""The model as an environment: exact imagined dynamics and rewards, episode ends, Gymnasium
compliance, and Stable-Baselines3 PPO training inside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from agents_toy_models import LinearWorldModel
from gymnasium import spaces

from worldmodels.agents.costs import QuadraticCost
from worldmodels.agents.model_env import ModelEnv, ModelVectorEnv, contexts_from_batch

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
    assert (env._t == 0).all() and all(np.isclose(starts, o, atol=1e-6).all(-1).any() for o in nxt)
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


# --- the stepwise path (models with initial_state / step) -----------------------------------

def _kvae_env_parts(M=16, seed=0):
    from worldmodels.kvae import KVAE, KVAEConfig

    torch.manual_seed(seed)
    model = KVAE(KVAEConfig(obs_shape=(1, 4, 4), action_dim=1, a_dim=2, z_dim=3, num_modes=3,
                            encoder="mlp", decoder="mlp", mlp_hidden=(16,), dynamics="lstm",
                            dynamics_hidden=8)).eval()
    with torch.no_grad():  # dynamics that visibly move and depend on the actions
        model.A_modes.add_(0.2 * torch.randn_like(model.A_modes))
        model.B_modes.mul_(20.0)
        model.C_modes.mul_(5.0)
    g = torch.Generator().manual_seed(seed + 1)
    ctx = contexts_from_batch(torch.rand(M, 3, 1, 4, 4, generator=g), torch.randn(M, 3, 1, generator=g), 3)
    return model, QuadraticCost(torch.zeros(model.latent_dim)), ctx, spaces.Box(-1, 1, (1,), np.float32)


def _actions(steps, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (steps, n, 1)).astype(np.float32)


def test_stepwise_env_equals_reimagining_env():
    from experiments.bench_model_env import ImagineOnly

    model, reward, ctx, box = _kvae_env_parts()
    new = ModelVectorEnv(model, reward, ctx, box, num_envs=3, episode_length=4)
    old = ModelVectorEnv(ImagineOnly(model), reward, ctx, box, num_envs=3, episode_length=4)
    assert new.stepwise and not old.stepwise
    o_new, _ = new.reset(seed=0)
    o_old, _ = old.reset(seed=0)
    np.testing.assert_allclose(o_new, o_old, atol=1e-5)
    for t, a in enumerate(_actions(10, 3)):  # crosses two autoresets
        out_new, out_old = new.step(a), old.step(a)
        for x, y in zip(out_new[:4], out_old[:4]):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
        assert out_new[3].all() == ((t + 1) % 4 == 0)
    assert np.abs(out_new[0]).max() > 0.1


def test_stepwise_env_steps_once_per_step_and_never_reimagines():
    model, reward, ctx, box = _kvae_env_parts()
    calls = {"step": [], "imagine": 0}
    step, imagine = model.step, model.imagine

    def counting_step(state, actions, **kw):
        calls["step"].append(tuple(actions.shape))
        return step(state, actions, **kw)

    def counting_imagine(*args, **kw):
        calls["imagine"] += 1
        return imagine(*args, **kw)

    model.step, model.imagine = counting_step, counting_imagine
    env = ModelVectorEnv(model, reward, ctx, box, num_envs=5, episode_length=30)
    env.reset(seed=0)
    for a in _actions(25, 5):
        env.step(a)
    # one [n, A] step per env step, whatever the episode's length so far
    assert calls["step"] == [(5, 1)] * 25 and calls["imagine"] == 0


def test_partial_reset_keeps_the_other_sub_environments():
    model, reward, ctx, box = _kvae_env_parts()
    env = ModelVectorEnv(model, reward, ctx, box, num_envs=4, episode_length=5)
    ref = ModelVectorEnv(model, reward, ctx, box, num_envs=4, episode_length=5)
    acts = _actions(9, 4, seed=3)
    env.reset(seed=0)
    ref.reset(seed=0)
    for a in acts[:3]:
        before, *_ = env.step(a)
        ref.step(a)
    mask = np.array([True, False, False, True])
    obs, _ = env.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs[~mask], before[~mask])
    with torch.no_grad():
        starts = model.observe(ctx["obs"], ctx["actions"]).features().numpy()
    assert all(np.isclose(starts, o, atol=1e-5).all(-1).any() for o in obs[mask])
    assert list(env._t) == [0, 3, 3, 0]
    for k, a in enumerate(acts[3:]):
        obs, r, term, trunc, info = env.step(a)
        r_obs, r_r, _, r_trunc, r_info = ref.step(a)
        if k == 0:  # rows 1, 2 follow the same trajectory as without the partial reset
            np.testing.assert_allclose(obs[~mask], r_obs[~mask], rtol=1e-5, atol=1e-5)
        if k < 2:
            np.testing.assert_allclose(r[~mask], r_r[~mask], rtol=1e-5, atol=1e-5)
        if k == 1:  # rows 1, 2 end their episode; rows 0, 3 go on
            assert list(trunc) == [False, True, True, False] and list(info["_final_obs"]) == list(trunc)
            np.testing.assert_allclose(info["final_obs"][~mask], r_info["final_obs"][~mask],
                                       rtol=1e-5, atol=1e-5)
            assert all(np.isclose(starts, o, atol=1e-5).all(-1).any() for o in obs[~mask])
        if k == 4:
            assert list(trunc) == [True, False, False, True]
    assert list(env._t) == [1, 4, 4, 1]


def test_reimagining_env_resets_together_only():
    from experiments.bench_model_env import ImagineOnly

    model, reward, ctx, box = _kvae_env_parts()
    env = ModelVectorEnv(ImagineOnly(model), reward, ctx, box, num_envs=2, episode_length=5)
    env.reset(seed=0)
    with pytest.raises(NotImplementedError, match="reset together"):
        env.reset(options={"reset_mask": np.array([True, False])})
    with pytest.raises(ValueError, match="sample"):
        ModelVectorEnv(ImagineOnly(model), reward, ctx, box, sample=True)


def test_stepwise_pixels_and_sampled_episodes():
    model, reward, ctx, box = _kvae_env_parts()
    env = ModelEnv(model, reward, ctx, box, episode_length=6, obs_mode="pixels")
    env.reset(seed=1)
    obs, r, term, trunc, info = env.step(np.array([0.5], np.float32))
    with torch.no_grad():
        frame = model.decode(torch.as_tensor(info["latent"])).clamp(0, 1).movedim(-3, -1).numpy()
    assert obs.dtype == np.uint8 and obs.shape == (4, 4, 1)
    np.testing.assert_allclose(obs / 255.0, frame, atol=1 / 255)

    def episode(sample, seed):
        e = ModelVectorEnv(model, reward, ctx, box, num_envs=2, episode_length=6, sample=sample)
        e.reset(seed=seed)
        return np.stack([e.step(a)[0] for a in _actions(5, 2)])

    np.testing.assert_array_equal(episode(True, 4), episode(True, 4))
    assert np.abs(episode(True, 4) - episode(True, 5)).max() > 1e-3
    assert np.abs(episode(True, 4) - episode(False, 4)).max() > 1e-3


def test_bench_model_env_quick_writes_its_record(tmp_path):
    import json

    from experiments.bench_model_env import main

    assert main(["--quick", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "bench_model_env.json").read_text())
    assert (tmp_path / "bench_model_env.png").stat().st_size > 0
    rows = record["results"]["rows"]
    assert {(r["path"], r["obs_mode"]) for r in rows} == {("step", "latent"), ("step", "pixels"),
                                                         ("reimagine", "latent")}
    assert all(r["env_steps_per_s"] > 0 for r in rows)
    assert record["command"].startswith("python -m experiments.bench_model_env --quick")
    assert "untrained" in record["config"]["weights"] and record["config"]["torch_threads"] == 1
