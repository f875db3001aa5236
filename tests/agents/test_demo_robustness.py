"""``experiments.demo_robustness``: the seeds x rounds x horizons table, shrunk to seconds."""

import json

import pytest

from experiments.demo_robustness import main

TINY = ["--set", "train.steps=2", "--set", "train.batch_size=16", "--set", "train.val_every=2",
        "--set", "train.checkpoint_every=2",
        "--set", "model.config={a_dim: 2, z_dim: 3, num_modes: 2, encoder: mlp, decoder: mlp, mlp_hidden: [32]}",
        "--set", "control.reward_steps=5", "--set", "control.rl_episodes=1", "--set", "control.rl_episode_steps=15",
        "--set", "control.rl_train_steps=2", "--set", "control.rl_horizon=2"]


def test_table_covers_every_cell_and_resumes_from_its_cache(tmp_path):
    from worldmodels.envs.generate import generate_dataset

    data = tmp_path / "pendulum_small"
    generate_dataset("pendulum_small", data, num_workers=1, progress=False)
    run, out = tmp_path / "run", tmp_path / "results"
    args = ["--seeds", "0", "1", "--rounds", "1", "--settings", "2", "3", "2/tw2", "3/tw2", "--episodes", "2",
            "--eval-episodes", "2", "--steps", "5", "--run-dir", str(run), "--out", str(out),
            "--set", f"data.root={data}", *TINY]
    assert main(args) == 0
    record = json.loads((out / "demo_robustness.json").read_text())
    cells = record["results"]["cells"]
    assert set(cells) == {"0", "1"}
    for seed in ("0", "1"):
        tuning = {k for k in cells[seed] if not k.startswith("eval/")}
        assert tuning == {f"{k}/{h}{w}" for k in (0, 1) for h in (2, 3) for w in ("", "/tw2")}
        # the setting chosen on the tuning starts, after the last round, on the held-out starts
        assert set(cells[seed]) - tuning == {"eval/1/" + record["results"]["evaluation"]["setting"]}
        for key, c in cells[seed].items():
            assert c["terminal_weight"] == (2.0 if key.endswith("/tw2") else 0.0)
            assert len(c["returns"]) == 2 and all(r <= 0 for r in c["returns"])  # pendulum costs
            assert 0 <= c["upright"] <= 2
        # the round's episode joined that seed's data; round 0 is the seed's own model
        manifest = json.loads((run / f"seed_{seed}" / "rl" / "data" / "manifest.json").read_text())
        assert manifest["splits"]["train"]["num_sequences"] == 256 + 1
    assert record["results"]["upright_total"]["2/tw2"] == {
        str(k): sum(cells[s][f"{k}/2/tw2"]["upright"] for s in ("0", "1")) for k in (0, 1)}
    # the two seeds' base models differ (train.seed), so their round-0 returns do too
    assert cells["0"]["0/2"]["returns"] != cells["1"]["0/2"]["returns"]
    assert (out / "demo_robustness.png").is_file()

    # a second run finds every cell cached: nothing is retrained or re-evaluated
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "demo_robustness.json").read_text())["results"]["cells"] == cells


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(SystemExit):
        main(["--rounds", "-1", "--run-dir", str(tmp_path)])
    for bad in ("0", "12/tw-1", "twelve", "12/2"):
        with pytest.raises(SystemExit):
            main(["--settings", bad, "--run-dir", str(tmp_path)])
