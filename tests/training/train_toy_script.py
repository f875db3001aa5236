"""Script run in subprocesses by the resume and DDP tests (not a test module).

usage: python train_toy_script.py RUN_DIR STEPS BATCH [--resume] [--noise X] [--params-out DIR]
Set ``WM_TOY_KILL_AT`` to make the process SIGKILL itself at that loss call.
"""

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from toy_models import ToyConfig, ToyDataset, ToyModel  # noqa: E402

from worldmodels.training import TrainConfig, Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("steps", type=int)
    p.add_argument("batch", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--params-out", default=None)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model = ToyModel(ToyConfig(noise=a.noise))
    cfg = TrainConfig(steps=a.steps, batch_size=a.batch, lr=1e-2, log_every=1, checkpoint_every=4,
                      val_every=6, deterministic=True, progress=False, tensorboard=False)
    Trainer(model, cfg, a.run_dir, ToyDataset(24), ToyDataset(8, seed=5), resume=a.resume).fit()
    if a.params_out:
        rank = int(os.environ.get("RANK", "0"))
        Path(a.params_out).mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), Path(a.params_out) / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
