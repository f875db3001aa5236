"""The evaluation protocol (seed sets, intervals, config-hashed run folders) and the generated tables."""

from __future__ import annotations

import json
import math
import random

import pytest

from experiments import tables
from experiments._results import relative_command, save_results
from experiments.protocol import (
    ConfigMismatchError,
    Protocol,
    SeedSet,
    config_hash,
    mean_ci,
    paired_claim,
    prepare_run_dir,
    seed_ranges,
    t_quantile,
)

# --- protocol -------------------------------------------------------------------------------------

def test_overlapping_tuning_and_evaluation_seeds_are_rejected():
    with pytest.raises(ValueError, match="overlap"):
        Protocol((0, 1, 2), SeedSet.span("env reset seed", 0, 10), SeedSet.span("env reset seed", 9, 5))
    # different namespaces (e.g. two dataset splits) never collide
    Protocol((0, 1, 2), SeedSet.span("ball/test sequence", 0, 10), SeedSet.span("ball/valid sequence", 0, 10))


def test_protocol_round_trips_through_json_and_rechecks():
    p = Protocol((3, 1, 2), SeedSet("s", (1000, 1001, 1002, 7)), SeedSet.span("s", 0, 5))
    d = json.loads(json.dumps(p.to_json()))
    assert Protocol.from_json(d) == p
    d["tuning"]["ranges"] = [[0, 1001]]  # now overlaps the evaluation seeds
    with pytest.raises(ValueError):
        Protocol.from_json(d)


def test_seed_ranges_compress_runs_in_order():
    assert seed_ranges([0, 1, 2, 5, 6, 9]) == [[0, 3], [5, 7], [9, 10]]
    s = SeedSet("x", (4, 5, 6, 1))
    assert SeedSet.from_json(s.to_json()).seeds == (4, 5, 6, 1)


def test_duplicate_training_seeds_are_rejected():
    with pytest.raises(ValueError, match="distinct"):
        Protocol((0, 0, 1), SeedSet.span("x", 0, 3))


def test_t_interval_matches_the_definition_and_covers_the_mean_at_95_percent():
    assert t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(1000) == pytest.approx(1.962, abs=1e-3)
    s = mean_ci([1.0, 2.0, 6.0])
    std = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2)
    assert s["mean"] == 3.0 and s["std"] == pytest.approx(std)
    assert s["half_width"] == pytest.approx(t_quantile(2) * std / math.sqrt(3))
    assert s["low"] < s["mean"] < s["high"]
    # coverage: about 95 % of intervals from 3 normal draws contain the true mean
    rng = random.Random(0)
    covered = 0
    for _ in range(2000):
        c = mean_ci([rng.gauss(5.0, 2.0) for _ in range(3)])
        covered += c["low"] <= 5.0 <= c["high"]
    assert 0.93 <= covered / 2000 <= 0.97
    assert mean_ci([4.0])["half_width"] is None


def test_equal_values_have_an_exactly_zero_interval():
    s = mean_ci([0.1, 0.1, 0.1])
    assert s["mean"] == 0.1 and s["std"] == 0.0 and s["half_width"] == 0.0
    assert tables.fmt_ci({"mean": 0.1, "half_width": 4.2e-17}) == "0.1 ± 0"


def test_paired_claim_verdicts():
    assert paired_claim("a < b", [1.0, 1.1, 0.9], [2.0, 2.2, 1.9])["verdict"] == "holds"
    assert paired_claim("a < b", [2.0, 2.2, 1.9], [1.0, 1.1, 0.9])["verdict"] == "does not hold"
    assert paired_claim("a < b", [1.0, 2.0, 1.5], [1.5, 1.0, 1.6])["verdict"] == "undecided"


def test_run_folder_trained_under_another_config_is_an_error_unless_retrain(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, {"steps": 10, "seed": 0})
    (run / "checkpoint.pt").write_text("weights")
    assert prepare_run_dir(run, {"seed": 0, "steps": 10}) == run  # same config, key order irrelevant
    assert (run / "checkpoint.pt").is_file()
    with pytest.raises(ConfigMismatchError, match="--retrain"):
        prepare_run_dir(run, {"steps": 20, "seed": 0})
    assert (run / "checkpoint.pt").is_file()  # nothing deleted without the flag
    prepare_run_dir(run, {"steps": 20, "seed": 0}, retrain=True)
    assert not (run / "checkpoint.pt").exists()
    assert (run / "config_hash.txt").read_text().strip() == config_hash({"steps": 20, "seed": 0})
    # a folder with files but no recorded hash (an older run) is not silently reused either
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text("{}")
    with pytest.raises(ConfigMismatchError, match="unrecorded"):
        prepare_run_dir(old, {"steps": 1})


def test_recorded_command_is_relative_to_the_repository(tmp_path):
    inside = str(tables.REPO_ROOT / "runs" / "x")
    cmd = relative_command("kvae_imputation", ["--run-dir", inside, "--steps", "3"])
    assert cmd == "python -m experiments.kvae_imputation --run-dir runs/x --steps 3"
    rec = json.loads(save_results("t", {"a": 1}, {"b": 2}, module="experiments.bench_dnd", args=["--quick"],
                                  protocol=Protocol((0, 1, 2), SeedSet.span("s", 5, 2)),
                                  out_dir=tmp_path).read_text())
    assert rec["command"] == "python -m experiments.bench_dnd --quick"
    assert rec["protocol"]["training_seeds"] == [0, 1, 2]
    for key in ("config", "package_version", "git_commit", "machine", "date"):
        assert key in rec


def test_recorded_commit_is_the_checkout_at_the_start_of_the_run(tmp_path, monkeypatch):
    from experiments import _results

    monkeypatch.setattr(_results, "START_COMMIT", "a" * 40)
    monkeypatch.setattr(_results, "_git_commit", lambda: "b" * 40)  # commits landed while the run went
    rec = json.loads(save_results("t", {}, {}, module="bench_dnd", out_dir=tmp_path).read_text())
    assert rec["git_commit"] == "a" * 40 and rec["git_commit_at_save"] == "b" * 40
    monkeypatch.setattr(_results, "_git_commit", lambda: "a" * 40)
    rec = json.loads(save_results("t", {}, {}, module="bench_dnd", out_dir=tmp_path).read_text())
    assert rec["git_commit"] == "a" * 40 and "git_commit_at_save" not in rec
    assert "git_dirty_at_start" in rec


def test_dirty_means_code_changed_not_results_or_prose(tmp_path, monkeypatch):
    """A run right after another benchmark rewrote its committed JSON still runs committed code."""
    import shutil
    import subprocess

    from experiments import _results

    if shutil.which("git") is None:
        pytest.skip("git not installed")

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    files = {"experiments/results/b.json": "{}", "docs/x.md": "a", "README.md": "a", "worldmodels/m.py": "x = 1"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    monkeypatch.setattr(_results, "REPO_ROOT", tmp_path)
    assert _results._git_dirty() is False
    for rel in ("experiments/results/b.json", "docs/x.md", "README.md"):
        (tmp_path / rel).write_text("changed")
    assert _results._git_dirty() is False
    (tmp_path / "worldmodels/m.py").write_text("x = 2")
    assert _results._git_dirty() is True


def test_paths_inside_the_repository_are_recorded_relative_to_it(tmp_path):
    inside = str(tables.REPO_ROOT / "runs" / "x" / "checkpoints" / "last.pt")
    rec = json.loads(save_results("t", {"run_dir": str(tables.REPO_ROOT / "runs" / "x")},
                                  {"training": [{"checkpoint": inside, "note": "/ is not a path here"}]},
                                  module="bench_dnd", out_dir=tmp_path).read_text())
    assert rec["config"]["run_dir"] == "runs/x"
    assert rec["results"]["training"][0]["checkpoint"] == "runs/x/checkpoints/last.pt"
    assert rec["results"]["training"][0]["note"] == "/ is not a path here"


# --- tables ---------------------------------------------------------------------------------------

def _headline_record(values: dict[str, list[float]], claims=()) -> dict:
    proto = Protocol((0, 1, 2), SeedSet.span("t", 100, 4), SeedSet.span("t", 0, 4))
    return {"experiment": "kvae_pendulum_elbo", "command": "python -m experiments.kvae_pendulum_elbo",
            "protocol": proto.to_json(), "date": "2026-01-01T00:00:00", "git_commit": "abc",
            "results": {"headline": {"metric": "m", "lower_is_better": False,
                                     "per_method": {k: mean_ci(v) for k, v in values.items()}},
                        "claims": list(claims),
                        "budget": {"updates": 10, "batch_size": 2, "paper_updates": None,
                                   "paper_batch_size": None, "scale_vs_paper": None, "baselines": "equal"}}}


def test_tables_show_protocol_results_and_label_the_rest(tmp_path):
    rec = _headline_record({"kvae": [3.0, 4.0, 5.0], "dmm": [1.0, 1.5, 2.0]},
                           [paired_claim("kvae beats dmm", [1.0, 1.5, 2.0], [3.0, 4.0, 5.0]),
                            paired_claim("dmm beats kvae", [3.0, 4.0, 5.0], [1.0, 1.5, 2.0])])
    (tmp_path / "kvae_pendulum_elbo.json").write_text(json.dumps(rec))
    legacy = {"experiment": "kvae_imputation", "command": "python -m experiments.kvae_imputation", "seed": 0,
              "results": {"random": {}}}
    (tmp_path / "kvae_imputation.json").write_text(json.dumps(legacy))
    readme = "intro\n<!-- results:start -->\nSTALE TEXT\n<!-- results:end -->\nrest\n"
    page, new_readme = tables.render(tmp_path, readme)
    section = page.split("## Pendulum test ELBO")[1].split("## ")[0]
    assert "| kvae | 3 | 4 | 5 | 4 ± " in section
    assert "dmm beats kvae: **does not hold**" in section and "kvae beats dmm: holds" in section
    # the single-seed JSON is not a headline: listed as such, its experiment "not yet measured"
    imp = page.split("## KVAE imputation")[1].split("## ")[0]
    assert "Not yet measured under the protocol" in imp
    assert "| kvae_imputation | headline; single run, not under the protocol |" in page
    assert new_readme.startswith("intro\n<!-- results:start -->\n")
    assert new_readme.endswith("<!-- results:end -->\nrest\n")
    assert "STALE TEXT" not in new_readme and "dmm beats kvae" in new_readme
    # two training seeds are not enough for a headline
    rec2 = dict(rec, protocol=dict(rec["protocol"], training_seeds=[0, 1]))
    (tmp_path / "kvae_pendulum_elbo.json").write_text(json.dumps(rec2))
    assert "Not yet measured" in tables.render(tmp_path)[0].split("## Pendulum test ELBO")[1].split("## ")[0]


def test_paper_values_keyed_by_method_get_a_column_and_the_comparability_note(tmp_path):
    rec = _headline_record({"kvae": [3.0, 4.0, 5.0], "dmm": [1.0, 1.5, 2.0]})
    rec["results"]["paper"] = {"kvae": 810.08, "dmm": 784.7}
    (tmp_path / "kvae_pendulum_elbo.json").write_text(json.dumps(rec))
    section = tables.render(tmp_path)[0].split("## Pendulum test ELBO")[1].split("## ")[0]
    assert "| mean ± 95 % CI | paper |" in section
    assert "| kvae | 3 | 4 | 5 | 4 ± " in section and section.split("| kvae |")[1].split("\n")[0].endswith(" 810.1 |")
    assert "Beside the paper: the paper's column" in section
    # paper numbers keyed otherwise (curves, settings) add no column
    rec["results"]["paper"] = {"random_smooth": {"0.1": 0.006}}
    (tmp_path / "kvae_pendulum_elbo.json").write_text(json.dumps(rec))
    assert "paper |" not in tables.render(tmp_path)[0].split("## Pendulum test ELBO")[1].split("## ")[0]


def test_readme_without_markers_fails_clearly():
    with pytest.raises(tables.MarkersMissing, match="results:start"):
        tables.replace_block("no markers here\n", "x")
    with pytest.raises(tables.MarkersMissing):
        tables.replace_block("<!-- results:end -->\n<!-- results:start -->\n", "x")


def test_committed_results_page_and_readme_block_match_the_jsons():
    page, readme = tables.render(tables.RESULTS_DIR, tables.README.read_text())
    assert tables.DOCS_PAGE.read_text() == page, "docs/results.md is stale: run python -m experiments.tables"
    assert tables.README.read_text() == readme, "README results block is stale: run python -m experiments.tables"


def test_no_committed_result_records_a_machine_path():
    """Result JSONs (archived ones too) name files relative to the repository, never /work or /tmp."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "experiments" / "results"
    bad = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*.json"))
           if re.search(r'"[^"]*(?:/work/|/tmp/|/home/|/root/)', p.read_text())]
    assert bad == [], f"absolute paths recorded in {bad}"
