"""The swing-up experiment's three latent agents: MPC, MPC with the learned value, the actor alone."""

from __future__ import annotations

import json

import pytest

from experiments import pendulum_swingup as exp
from experiments.protocol import ConfigMismatchError


def _run(tmp_path, *extra):
    argv = ["--quick", "--seeds", "0", "--no-progress", "--run-dir", str(tmp_path / "run"),
            "--out-dir", str(tmp_path / "out"), *extra]
    assert exp.main(argv) == 0
    return json.loads((tmp_path / "out" / "pendulum_swingup.json").read_text())["results"]


def test_three_agents_scored_against_one_oracle_and_actor_critic_reused(tmp_path, one_thread):
    res = _run(tmp_path)
    methods = res["headline"]["per_method"]
    assert set(methods) == {"latent MPC (KVAE)", "latent MPC + learned value", "actor alone"}
    oracle = res["evaluation"]["oracle"]["mean_return"]
    random = res["evaluation"]["random"]["mean_return"]
    seed = res["per_seed"]["0"]
    for kind in ("mpc", "mpc_value", "actor"):
        r = seed[kind]
        assert r["normalised_score"] == pytest.approx((r["mean_return"] - random) / (oracle - random))
        assert r["reaches_0.9"] == (r["normalised_score"] >= 0.9)
    # each MPC variant's horizon is picked from the tuning starts only
    for kind, h in res["chosen_horizons"].items():
        tuned = res["tuning_mean"][kind]
        assert tuned[str(h)] == max(tuned.values())
    reached = res["secondary"][0]["per_method"]
    assert set(reached) == set(methods)
    assert reached["actor alone"]["values"] == [float(seed["actor"]["normalised_score"] >= 0.9)]
    assert res["actor_critic"]["0"]["updates"] == exp.QUICK["policy_updates"]
    assert res["env_steps"]["dataset_frames"] > 0 and res["env_steps"]["online"] == 0

    policy = tmp_path / "run" / "seed_0" / "actor_critic" / "actor_critic.pt"
    stamp = policy.stat().st_mtime_ns
    again = _run(tmp_path)  # the trained actor-critic is read back, not retrained
    assert policy.stat().st_mtime_ns == stamp
    assert again["per_seed"]["0"]["actor"]["mean_return"] == pytest.approx(seed["actor"]["mean_return"])


def test_actor_critic_trained_under_another_config_is_refused(tmp_path, one_thread):
    _run(tmp_path)
    with pytest.raises(ConfigMismatchError, match="actor_critic"):
        _run(tmp_path, "--policy-updates", "5")


def test_skip_policy_reports_mpc_only(tmp_path, one_thread):
    res = _run(tmp_path, "--skip-policy")
    assert set(res["headline"]["per_method"]) == {"latent MPC (KVAE)"}
    assert set(res["per_seed"]["0"]) == {"mpc"}
