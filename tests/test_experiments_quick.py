"""Every experiment script runs end to end at its ``--quick`` size and records a traceable result.

Each script of `experiments.catalog` runs in this process (one torch thread) into a temporary
results folder, never ``experiments/results``. The JSON must carry the command relative to the
repository, the config, version, commit, machine and date; headline experiments must carry the
evaluation protocol (training seeds, disjoint tuning and evaluation seeds).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

from experiments.catalog import EXPERIMENTS
from experiments.protocol import Protocol

#: headline experiments that train several seeds in one command (>= 3 by default, also in --quick)
MULTI_SEED = {"kvae_imputation", "kvae_pendulum_elbo", "pendulum_swingup", "sb3_in_model", "gtmsm_navigation",
              "navigation_goal", "navigation_actor"}
#: scripts whose --quick run (command included) another test already runs; not run twice
COVERED_ELSEWHERE = {"gpu_check": "tests/test_gpu_check.py"}


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=lambda e: e.name)
def test_quick_run_writes_a_traceable_result(exp, tmp_path, one_thread):
    if exp.name in COVERED_ELSEWHERE:
        pytest.skip(f"--quick runs in {COVERED_ELSEWHERE[exp.name]}")
    module = importlib.import_module(f"experiments.{exp.name}")
    out = tmp_path / "results"
    argv = ["--quick", *exp.quick_args, "--out-dir", str(out)]
    if exp.run_dir:
        argv += ["--run-dir", str(tmp_path / "run")]
    committed = Path("experiments/results")
    before = {p: p.stat().st_mtime_ns for p in committed.glob(f"{exp.name}*")}
    rc = module.main(argv)
    assert rc in (0, None)
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert records, f"{exp.name} --quick wrote no JSON to --out-dir"
    for rec in records:
        assert rec["command"].startswith(f"python -m experiments.{exp.name} --quick"), rec["command"]
        repo = str(Path.cwd())
        assert repo not in rec["command"] and not os.path.isabs(rec["command"].split()[0])
        for key in ("config", "package_version", "git_commit", "machine", "date", "results"):
            assert key in rec, f"{exp.name}: {key} missing"
        if exp.kind == "headline":
            proto = Protocol.from_json(rec["protocol"])  # re-checks disjointness of tuning and evaluation
            assert proto.evaluation.seeds
            if exp.name in MULTI_SEED:
                assert len(proto.training_seeds) >= 3
                head = rec["results"]["headline"]["per_method"]
                assert head and all(len(s["values"]) == len(proto.training_seeds) for s in head.values())
    # a smoke run never touches the committed results
    assert {p: p.stat().st_mtime_ns for p in committed.glob(f"{exp.name}*")} == before
