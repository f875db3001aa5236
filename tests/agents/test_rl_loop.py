"""Rollouts with an agent in vector envs, growing a dataset, and the plan command."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from agents_toy_models import LinearEnv, LinearWorldModel

from worldmodels.agents.costs import QuadraticCost
from worldmodels.agents.mpc import MPCAgent, MPCConfig
from worldmodels.agents.planners import make_planner
from worldmodels.agents.rl_loop import append_episodes, rollout


def linear_venv(n, steps):
    return gym.vector.SyncVectorEnv([lambda: LinearEnv(max_steps=steps + 1) for _ in range(n)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def test_rollout_records_dataset_arrays():
    model = LinearWorldModel()
    agent = MPCAgent(model, make_planner("cem_fast", -1, 1, horizon=5), QuadraticCost(torch.tensor([1.0, 0.0])),
                     MPCConfig(context=2), num_envs=3)
    out = rollout(linear_venv(3, 12), lambda o, i: agent.act(o), 12, seed=[0, 1, 2], reset_fn=agent.reset)
    assert out["obs"].shape == (3, 12, 1, 1, 2) and out["actions"].shape == (3, 12, 1)
    assert out["rewards"].shape == (3, 12) and out["states"].shape == (3, 12, 2)
    np.testing.assert_allclose(out["returns"], out["rewards"].sum(1), rtol=1e-6)
    # dataset convention: obs[:, t+1] follows from obs[:, t] and actions[:, t]
    A, B = model.A.detach().numpy(), model.B.detach().numpy()
    z = out["obs"][:, :, 0, 0]
    pred = z[:, :-1] @ A.T + out["actions"][:, :-1] @ B.T
    np.testing.assert_allclose(pred, z[:, 1:], atol=1e-5)
    # rewards[:, t] is what step(actions[:, t]) returned: -|z_{t+1} - goal|^2
    np.testing.assert_allclose(out["rewards"][:, :-1], -((z[:, 1:] - [1.0, 0.0]) ** 2).sum(-1), atol=1e-5)
    with pytest.raises(RuntimeError, match="ended"):
        rollout(linear_venv(2, 5), lambda o, i: np.zeros((2, 1), np.float32), 10)


def test_append_episodes_adds_a_shard(tmp_path):
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    manifest = {"seq_len": 4, "obs_shape": [3, 3, 1], "action_dim": 1, "state_dim": 3, "complete": True,
                "splits": {"train": {"num_sequences": 0, "shards": []}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    rng = np.random.default_rng(0)
    eps = {"obs": rng.integers(0, 255, (2, 10, 3, 3, 1), dtype=np.uint8),
           "actions": rng.standard_normal((2, 10, 1)).astype(np.float32),
           "rewards": rng.standard_normal((2, 10)).astype(np.float32),
           "states": rng.standard_normal((2, 10, 3)).astype(np.float32)}
    p1 = append_episodes(root, eps)
    p2 = append_episodes(root, eps)
    m = json.loads((root / "manifest.json").read_text())
    shards = m["splits"]["train"]["shards"]
    assert [s["file"] for s in shards] == ["train/shard_00000.npz", "train/shard_00001.npz"]
    assert m["splits"]["train"]["num_sequences"] == 8 and shards[1]["start"] == 4
    d = np.load(p2)
    assert d["obs"].shape == (4, 4, 3, 3, 1) and d["obs"].dtype == np.uint8
    # windows are consecutive chunks of each episode (the last 2 steps are dropped)
    np.testing.assert_array_equal(d["obs"][1], eps["obs"][0, 4:8])
    np.testing.assert_array_equal(d["actions"][2], eps["actions"][1, :4])
    assert p1.stat().st_size == shards[0]["bytes"]


def test_plan_command_with_oracle(tmp_path):
    from worldmodels.agents.cli import main

    rc = main(["plan", "--oracle", "--env", "worldmodels/Pendulum-v0", "--planner", "cem_fast", "--episodes", "2",
               "--steps", "5", "--out", str(tmp_path), "--no-video", "--no-progress", "--horizon", "4"])
    assert rc == 0
    res = json.loads((tmp_path / "plan.json").read_text())
    assert len(res["returns"]) == 2 and res["planner_config"]["horizon"] == 4
    assert all(-16.3 * 5 <= r <= 0 for r in res["returns"])


def test_rl_loop_round_trip_and_resume(tmp_path):
    """One collect / fine-tune / evaluate round on the pixel pendulum with a tiny KVAE; a rerun
    resumes (nothing is redone) and a second round continues from the saved model."""
    pytest.importorskip("worldmodels.data")
    from worldmodels.agents.reward import RewardHead, RewardHeadConfig
    from worldmodels.agents.rl_loop import RLLoopConfig, run_rl_loop
    from worldmodels.envs.generate import DatasetSpec, generate_dataset
    from worldmodels.kvae import KVAE, KVAEConfig

    spec = DatasetSpec("tiny_pendulum", "worldmodels/Pendulum-v0", 6, {"train": 8, "valid": 4},
                       policy="uniform", shard_size=8, seed=0)
    data = tmp_path / "data"
    generate_dataset(spec, data, num_workers=1, progress=False)
    torch.manual_seed(0)
    model = KVAE(KVAEConfig(obs_shape=(1, 16, 16), action_dim=1, a_dim=2, z_dim=3, num_modes=2,
                            encoder="mlp", decoder="mlp", mlp_hidden=(32,), dynamics_hidden=8))
    head = RewardHead(RewardHeadConfig(latent_dim=model.latent_dim, action_dim=1, hidden=(16,)))
    cfg = RLLoopConfig(rounds=1, collect_episodes=2, episode_steps=12, eval_episodes=2, context=3,
                       planner="cem", planner_overrides={"horizon": 3, "population": 16, "num_elites": 4,
                                                         "iterations": 2},
                       train_steps=2, reward_steps=5, batch_size=4, video=False)
    run = tmp_path / "run"
    recs = run_rl_loop(model, head, data, run, cfg, progress=False)
    assert len(recs) == 1 and np.isfinite(recs[0]["eval_return_mean"])
    m = json.loads((run / "data" / "manifest.json").read_text())
    assert m["splits"]["train"]["num_sequences"] == 8 + 2 * 2  # two 12-step episodes -> 4 windows of 6
    assert (run / "round_000" / "reward_head.pt").exists()
    again = run_rl_loop(model, head, data, run, cfg, progress=False)  # resume: nothing left to do
    assert again == recs
    cfg.rounds, cfg.eval_episodes = 2, 0  # no evaluation: the round still collects and fine-tunes
    recs2 = run_rl_loop(model, head, data, run, cfg, progress=False)
    assert [r["round"] for r in recs2] == [0, 1]
    assert recs2[1]["eval_return_mean"] is None and (run / "round_001" / "reward_head.pt").exists()
    assert json.loads((run / "data" / "manifest.json").read_text())["splits"]["train"]["num_sequences"] == 16
    # a round stopped after collecting (its shard is in, its record is not) is redone without
    # keeping the first collection: round 2's data enter once
    from worldmodels.agents.rl_loop import append_episodes

    shard = np.load(run / "data" / "train" / "shard_00002.npz")
    append_episodes(run / "data", {k: np.concatenate([shard[k][:2], shard[k][2:]], 1) for k in shard.files},
                    meta={"round": 2})
    assert json.loads((run / "data" / "manifest.json").read_text())["splits"]["train"]["num_sequences"] == 20
    cfg.rounds = 3
    recs3 = run_rl_loop(model, head, data, run, cfg, progress=False)
    m = json.loads((run / "data" / "manifest.json").read_text())
    assert [r["round"] for r in recs3] == [0, 1, 2] and m["splits"]["train"]["num_sequences"] == 20
    assert [s.get("round") for s in m["splits"]["train"]["shards"]] == [None, 0, 1, 2]
