"""What a run folder holds, and starting one afresh on request.

A run folder is ``config.json``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/`` and
``tensorboard/``, written by `Trainer`. Files a user put there (datasets, notes, a
``run_config.yaml``) are never the trainer's to delete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

#: files and folders the trainer writes into a run folder
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json")
RUN_DIRS = ("checkpoints", "tensorboard")

RunState = Literal["none", "started", "trained"]


class RunExistsError(FileExistsError):
    """A run folder already holds a trained run and neither resume nor overwrite was asked for."""


def run_state(run_dir: str | os.PathLike) -> RunState:
    """``"trained"`` if ``run_dir`` holds a checkpoint or a summary, ``"started"`` if it holds only
    logs of a run stopped before its first checkpoint, ``"none"`` otherwise (absent or no run files)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return "none"
    ckpts = run_dir / "checkpoints"
    if (run_dir / "summary.json").is_file() or (ckpts.is_dir() and any(ckpts.glob("*.pt"))):
        return "trained"
    if any((run_dir / f).exists() for f in RUN_FILES) or any((run_dir / d).exists() for d in RUN_DIRS):
        return "started"
    return "none"


def clear_run(run_dir: str | os.PathLike) -> None:
    """Delete the trainer's own files from ``run_dir`` (for ``overwrite``); other files stay."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
