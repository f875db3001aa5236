"""The image-navigation experiment runs end to end on a tiny dataset (a few training steps)."""

from __future__ import annotations

import json

import pytest


def test_gtmsm_navigation_experiment_smoke(tmp_path, one_thread):
    generate = pytest.importorskip("worldmodels.envs.generate")
    from experiments import gtmsm_navigation

    generate.generate_dataset("image_navigation_small", tmp_path / "data", num_workers=1,
                              progress=False)
    rc = gtmsm_navigation.main([
        "--reduced", "--preset", "image_navigation_small", "--data-dir", str(tmp_path / "data"),
        "--run-dir", str(tmp_path / "run"), "--results-dir", str(tmp_path / "res"),
        "--tau", "64", "--train-predict", "16", "--test-predict", "32", "--steps", "3",
        "--baseline-steps", "2", "--max-test", "6", "--batch-size", "4", "--name", "smoke",
        "--no-video", "--timing-repeats", "1"])
    assert rc == 0
    rec = json.loads((tmp_path / "res" / "smoke.json").read_text())
    res = rec["results"]
    assert res["n_sequences"] == 6
    for k in ("gtmsm", "floor", "baseline"):
        assert len(res["per_step"][k]["mean"]) == 32
        assert res["mean_mse"][k] > 0
    assert -1.0 <= res["r2_memorised_states"] <= 1.0
    assert res["train_step_s"]["T"] == 80 and res["train_step_s"]["median_s"] > 0
    for f in ("smoke.png", "smoke_states.png", "smoke_frames.png"):
        assert (tmp_path / "res" / f).stat().st_size > 0
    assert (tmp_path / "run" / "gtmsm" / "checkpoints").is_dir()
    assert res["mean_mse"]["mean_frame"] > 0 and len(res["ratio_baseline_to_gtmsm_ci95"]) == 2
    lo, hi = res["ratio_gtmsm_to_floor_ci95"]
    assert lo <= res["ratio_gtmsm_to_floor"] <= hi
    # landmark inference (7.10) on the thesis model's states, no gate (7.10.1 setting)
    rc = gtmsm_navigation.main([
        "--reduced", "--preset", "image_navigation_small", "--data-dir", str(tmp_path / "data"),
        "--run-dir", str(tmp_path / "run_lm"), "--results-dir", str(tmp_path / "res"),
        "--tau", "64", "--train-predict", "16", "--test-predict", "16", "--steps", "2",
        "--baseline-steps", "1", "--max-test", "4", "--batch-size", "4", "--name", "smoke_lm",
        "--landmark", "--no-gate", "--no-video", "--timing-repeats", "1",
        "--init-from", str(tmp_path / "run" / "gtmsm")])
    assert rc == 0
    res = json.loads((tmp_path / "res" / "smoke_lm.json").read_text())["results"]
    init = res["training"]["gtmsm"]["init_from"]  # warm start: VAE and M copied, no gate here
    assert "transition.M.weight" in init["copied"] and "transition.gate_net.0.weight" in init["not_used"]
    assert "landmark.beta_net.0.weight" in init["not_in_checkpoint"]
    assert -1.0 <= res["without_landmark"]["r2_memorised_states"] <= 1.0
    assert res["memorised_position_error_cells"]["fraction_blocked_steps"] > 0
