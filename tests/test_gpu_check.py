"""`experiments.gpu_check`: its CPU mode runs every stage and records it; on a GPU, the GPU mode."""

from __future__ import annotations

import json

import pytest
import torch

from experiments import gpu_check

STAGES = ("train_amp", "evaluate", "plan", "ddp", "kalman")


def run_check(tmp_path, device: str) -> dict:
    rc = gpu_check.main(["--quick", "--device", device, "--train-steps", "8", "--out-dir", str(tmp_path),
                         "--work-dir", str(tmp_path / "work")])
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rc == 0, record["results"]["failed_stages"]
    return record


def test_cpu_mode_runs_every_stage(tmp_path):
    record = run_check(tmp_path, "cpu")
    res = record["results"]
    assert all(res[s]["ok"] for s in STAGES)
    assert res["mode"] == "cpu" and res["ddp"]["world_size"] == 2 and res["ddp"]["backend"] == "gloo"
    assert [r["num_envs"] for r in res["plan"]["rows"]] == [1, 4]
    assert res["plan"]["rows"][0]["population"] == 1000 and res["plan"]["rows"][0]["horizon"] == 12
    assert res["kalman"]["max_abs_diff_means"] < 1e-3
    assert record["command"].startswith("python -m experiments.gpu_check --quick")


def test_cuda_request_without_cuda_is_one_line_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    assert gpu_check.main(["--device", "cuda", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0]
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_mode_runs_every_stage(tmp_path):
    res = run_check(tmp_path, "cuda")["results"]
    assert res["mode"] == "gpu" and res["train_amp"]["amp"] and all(res[s]["ok"] for s in STAGES)
