"""experiments.navigation_goal: one GTM-SM per training seed, trained by experiments.gtmsm_navigation's
code in its run folders (reused when that command trained them), held-out episode seeds."""

from __future__ import annotations

import json

from experiments import gtmsm_navigation, navigation_goal
from experiments.protocol import Protocol


def test_goal_rate_per_training_seed_reuses_the_prediction_runs(tmp_path, one_thread):
    run = tmp_path / "run"
    assert gtmsm_navigation.main(["--quick", "--models", "gtmsm", "--run-dir", str(run),
                                  "--out-dir", str(tmp_path / "nav"), "--no-progress"]) == 0
    ckpts = {s: run / f"seed_{s}" / "gtmsm" / "checkpoints" / "last.pt" for s in (0, 1, 2)}
    stamps = {s: p.stat().st_mtime_ns for s, p in ckpts.items()}
    argv = ["--quick", "--run-dir", str(run), "--out-dir", str(tmp_path / "res"), "--no-progress"]
    assert navigation_goal.main(argv) == 0
    assert {s: p.stat().st_mtime_ns for s, p in ckpts.items()} == stamps  # reused, not retrained
    rec = json.loads((tmp_path / "res" / "navigation_goal.json").read_text())
    proto = Protocol.from_json(rec["protocol"])
    assert proto.training_seeds == (0, 1, 2) and proto.tuning is None
    assert proto.evaluation.seeds == tuple(range(3000, 3004))
    res = rec["results"]
    head = res["headline"]["per_method"]
    rates = {s: res["per_seed"][s]["success_rate"] for s in ("0", "1", "2")}
    assert head[navigation_goal.LABELS["gtmsm"]]["values"] == [rates["0"], rates["1"], rates["2"]]
    for s in ("0", "1", "2"):
        ok = res["per_seed"][s]["successes"]
        assert len(ok) == 4 and rates[s] == sum(ok) / 4
    oracle = res["references"]["oracle"]["success_rate"]
    assert head[navigation_goal.LABELS["oracle"]]["values"] == [oracle] * 3
    assert oracle > 0  # the true-position planner reaches goals one move away within 4 steps


def test_goal_rate_trains_missing_gtmsm_runs(tmp_path, one_thread):
    run = tmp_path / "fresh"
    argv = ["--quick", "--seeds", "4", "5", "6", "--run-dir", str(run), "--out-dir", str(tmp_path / "res"),
            "--no-progress"]
    assert navigation_goal.main(argv) == 0
    for s in (4, 5, 6):
        folder = run / f"seed_{s}" / "gtmsm"
        assert (folder / "config_hash.txt").is_file() and (folder / "checkpoints" / "last.pt").is_file()
    assert not (run / "seed_4" / "vae_rnn").exists()  # only the GTM-SM is needed here
