"""experiments.sb3_in_model: the real-env baseline's state observations, the wall-time budget of
the baseline, per-seed resumption, and reuse of a world model only under the same configuration."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

from experiments import sb3_in_model as exp


def test_state_observation_is_the_true_state():
    from worldmodels import envs  # noqa: F401

    env = exp.StateObservation(gym.make(exp.ENV_ID))
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, info["state"])
    theta, theta_dot = env.unwrapped.state
    np.testing.assert_allclose(obs, [np.cos(theta), np.sin(theta), theta_dot], rtol=1e-6)
    for a in np.linspace(-2, 2, 40, dtype=np.float32):  # a fast spin stays inside the declared space
        obs, _, _, _, info = env.step(np.array([a]))
        np.testing.assert_array_equal(obs, info["state"])
        assert env.observation_space.contains(obs)


def test_quick_seed_resumes_and_its_baseline_gets_the_same_wall_time(tmp_path, one_thread):
    run, out = tmp_path / "run", tmp_path / "out"
    argv = ["--quick", "--seeds", "5", "--no-progress", "--run-dir", str(run), "--out-dir", str(out)]
    assert exp.main(argv) == 0
    rec = json.loads((out / "sb3_in_model.json").read_text())
    seed = rec["results"]["per_seed"]["5"]
    train = seed["training"]
    assert train["in_model"]["imagined_steps"] == exp.QUICK["model_steps"]
    assert train["real"]["env_steps"] > 0
    # the real-env baseline trains until the in-model training time is spent, not much longer
    assert train["real"]["seconds"] >= train["in_model"]["seconds"]
    assert train["real"]["seconds"] < train["in_model"]["seconds"] + 5.0
    for m in exp.METHODS:
        assert len(seed[m]["returns"]) == exp.QUICK["episodes"]
        assert seed[m]["mean_return"] == pytest.approx(np.mean(seed[m]["returns"]))
        assert all(r <= 0 for r in seed[m]["returns"])  # pendulum rewards are never positive
    assert rec["protocol"]["evaluation"]["ranges"] == [[exp.EVALUATION_START,
                                                       exp.EVALUATION_START + exp.QUICK["episodes"]]]
    # a rerun resumes: the finished seed is read back, not trained again
    done = run / "seed_5" / "sb3" / exp.SEED_RESULT
    policy = run / "seed_5" / "sb3" / "in_model_policy.pt"
    weights = torch.load(policy, weights_only=True)
    assert weights and all(torch.isfinite(w).all() for w in weights.values())
    stamps = (done.stat().st_mtime_ns, policy.stat().st_mtime_ns)
    assert exp.main(argv) == 0
    assert (done.stat().st_mtime_ns, policy.stat().st_mtime_ns) == stamps
    assert json.loads((out / "sb3_in_model.json").read_text())["results"]["per_seed"]["5"] == seed

    # a finished world-model run with the same configuration is reused; another configuration is not
    shared = tmp_path / "shared"
    shutil.copytree(run / "seed_5" / "model", shared / "seed_5")
    args = exp.parse_args(["--quick", "--seeds", "5", "--run-dir", str(tmp_path / "other")])
    args.model_run_dir = str(shared)
    _, _, info, _ = exp.world_model(args, 5, tmp_path / "other" / "seed_5", torch.device("cpu"), False)
    assert info["reused"] == str(shared / "seed_5")
    assert not (tmp_path / "other" / "seed_5" / "model").exists()
    args.reward_steps += 1
    _, _, info, _ = exp.world_model(args, 5, tmp_path / "other" / "seed_5", torch.device("cpu"), False)
    assert info.get("reused") is None
    assert (tmp_path / "other" / "seed_5" / "model" / "kvae" / "summary.json").is_file()


def test_quick_never_reuses_or_writes_full_size_runs():
    args = exp.parse_args(["--quick"])
    assert args.run_dir == "runs/sb3_in_model_quick" and args.model_run_dir == "none"
    assert exp.parse_args([]).model_run_dir == "runs/pendulum_swingup"
    with pytest.raises(SystemExit):
        exp.parse_args(["--seeds", "1", "1"])
