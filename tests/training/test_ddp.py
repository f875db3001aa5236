"""Two CPU processes (gloo, launched by torchrun) train like one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from toy_models import ToyConfig, ToyDataset, ToyModel

from worldmodels.training import TrainConfig, Trainer, read_checkpoint, read_metrics

SCRIPT = str(Path(__file__).parent / "train_toy_script.py")


def test_two_process_gloo_matches_single_process(tmp_path):
    steps, batch = 7, 8  # 24 sequences -> 3 updates per epoch: crosses epoch boundaries
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WM_TOY_KILL_AT", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           SCRIPT, str(tmp_path / "ddp"), str(steps), str(batch), "--params-out", str(tmp_path / "params")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    p0 = torch.load(tmp_path / "params" / "rank0.pt", weights_only=True)
    p1 = torch.load(tmp_path / "params" / "rank1.pt", weights_only=True)
    assert all(torch.equal(p0[k], p1[k]) for k in p0)  # ranks stay identical

    torch.manual_seed(0)
    single = ToyModel(ToyConfig())
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=1e-2, log_every=1, checkpoint_every=4, val_every=6,
                      deterministic=True, progress=False, tensorboard=False)
    Trainer(single, cfg, tmp_path / "single", ToyDataset(24), ToyDataset(8, seed=5)).fit()
    init = ToyModel(ToyConfig()).state_dict()
    for k, v in single.state_dict().items():
        torch.testing.assert_close(p0[k], v, rtol=1e-5, atol=1e-6)
        assert not torch.equal(v, init[k]) or k.endswith("bias")  # training moved the weights

    # rank 0 alone wrote the log; its losses (averaged over ranks) match the single-process run
    ddp_rows = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    one_rows = read_metrics(tmp_path / "single" / "metrics.jsonl")
    assert [(r["split"], r["step"]) for r in ddp_rows] == [(r["split"], r["step"]) for r in one_rows]
    for a, b in zip(ddp_rows, one_rows):
        assert abs(a["loss"] - b["loss"]) < 1e-5 * max(1.0, abs(b["loss"]))
    assert read_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["trainer"]["world_size"] == 2
