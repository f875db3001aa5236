"""``worldmodels train``: train a world model from a YAML config or preset (+ ``--set`` overrides).

Multi-GPU / multi-node: launch the same command with ``torchrun --nproc_per_node=N -m worldmodels.agents.cli
train ...`` (generate the dataset first); rank 0 writes the run folder.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from worldmodels.training.run_dir import run_state

from . import (
    add_config_args,
    apply_overrides,
    build_model,
    dataclass_from,
    default_run_dir,
    ensure_dataset,
    load_config,
    save_yaml,
)
from .config_check import check_run_config, check_run_dir
from .validation import DEVICE_CHOICES, MAX_TRAIN_STEPS, UsageError, check_device, check_int, resolve_device

HELP = "train a world model (YAML config or preset + --set overrides)"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--run-dir", default=None, help="run folder (default: runs/<config name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a run folder that holds a trained run (its checkpoints and logs are deleted)")
    p.add_argument("--device", default=None, help=f"{DEVICE_CHOICES} (overrides train.device)")
    p.add_argument("--steps", type=int, default=None, help="overrides train.steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = apply_overrides(load_config(args.config), args.overrides)
    for key in ("data", "model", "train", "eval"):
        cfg.setdefault(key, {})
    if getattr(args, "run_dir", None):
        cfg["run_dir"] = args.run_dir
    if getattr(args, "device", None):
        cfg["train"]["device"] = args.device
    if getattr(args, "steps", None) is not None:
        cfg["train"]["steps"] = args.steps
    if getattr(args, "no_progress", False):
        cfg["train"]["progress"] = False
    return cfg


def train_from_config(cfg: dict[str, Any], run_dir: Path, resume: bool | str = False,
                      overwrite: bool = False) -> tuple[Any, dict]:
    """Dataset (generated if needed), model, `Trainer.fit`; returns ``(model, summary)``.

    A run folder that holds a trained run needs ``resume`` or ``overwrite``; the run folder is
    written (``run_config.yaml`` included) only once the trainer has accepted it.
    """
    from worldmodels.data import SequenceDataset
    from worldmodels.training import TrainConfig, Trainer

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank0 = int(os.environ.get("RANK", "0")) == 0
    data_cfg = cfg["data"]
    if distributed:
        root = Path(data_cfg.get("root") or f"runs/data/{data_cfg.get('preset')}")
        if not (root / "manifest.json").is_file():
            raise FileNotFoundError(f"{root}: under torchrun generate the dataset first (worldmodels generate)")
    else:
        root = ensure_dataset(data_cfg, progress=cfg["train"].get("progress", True))
    cfg["data"]["root"] = str(root)
    train_set = SequenceDataset(root, split="train")
    try:
        val_set = SequenceDataset(root, split="valid")
        if len(val_set) == 0:
            val_set = None
    except (FileNotFoundError, ValueError, KeyError):
        val_set = None
    tcfg = dataclass_from(TrainConfig, cfg["train"], "train")
    torch.manual_seed(tcfg.seed)  # the initial weights follow the run's seed (torch's own seed is random)
    model = build_model(cfg["model"], tuple(train_set.obs_shape), int(train_set.action_dim))
    trainer = Trainer(model, tcfg, run_dir, train_set, val_set, resume=resume, overwrite=overwrite)
    if rank0:
        save_yaml(cfg, Path(run_dir) / "run_config.yaml")
    summary = trainer.fit()
    return model, summary


def check_args(args: argparse.Namespace) -> None:
    """The options that are not config entries, and those that override one (under their flag name)."""
    if args.device is not None:
        check_device("--device", args.device)
    if args.steps is not None:
        check_int("--steps", args.steps, 0, MAX_TRAIN_STEPS)
    if args.run_dir is not None:
        check_run_dir("--run-dir", args.run_dir)


def run(args: argparse.Namespace) -> int:
    check_args(args)
    cfg = check_run_config(resolve_config(args), "train")
    if args.resume and not (args.run_dir or cfg.get("run_dir")):
        raise UsageError("--resume: expected --run-dir too (the folder of the run to continue)")
    if args.resume and args.overwrite:
        raise UsageError("--overwrite: expected either --resume or --overwrite, not both")
    run_dir = default_run_dir(cfg, "train")
    if run_state(run_dir) == "trained" and not (args.resume or args.overwrite):
        raise UsageError(f"--run-dir {run_dir}: holds a trained run; pass --resume to continue it or "
                         "--overwrite to start it again")
    resolve_device("train.device", cfg["train"].get("device", "auto"))  # the notice when auto means the CPU
    _, summary = train_from_config(cfg, run_dir, resume=args.resume, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        val = {k: round(v, 4) for k, v in (summary.get("val") or {}).items()}
        print(json.dumps({"steps": summary["steps"], "val": val, "best_step": summary["best_step"],
                          "bad_steps": summary["bad_steps"], "time_s": round(summary["time_s"], 1)}))
        print(f"run folder:  {run_dir}")
        print(f"checkpoints: {summary['best_checkpoint'] or summary['checkpoint']}")
        print(f"evaluate:    worldmodels evaluate {run_dir}")
    return 0
