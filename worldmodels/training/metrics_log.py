"""Run-folder logging: JSONL metrics (one object per line), TensorBoard when installed."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_io import atomic_write_text


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records of a ``metrics.jsonl`` file (a torn last line is skipped)."""
    rows = []
    p = Path(path)
    if not p.is_file():
        return rows
    with open(p) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class MetricsLogger:
    """Appends records ``{"split": ..., "step": ..., **scalars}`` to ``<run_dir>/metrics.jsonl``.

    On resume, `truncate_after(step)` drops records a killed run wrote after its last checkpoint,
    so the resumed log reads as if the run had never stopped.
    """

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tensorboard = tensorboard
        self.tb = None

    def start(self) -> None:
        """Open the TensorBoard writer (when installed); nothing is written before this call."""
        if self.enabled and self.tensorboard and self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except (ImportError, ModuleNotFoundError):
                self.tb = None

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step`` (rewritten atomically)."""
        if not self.enabled or not self.path.is_file():
            return
        rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def log(self, split: str, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        rec: dict[str, Any] = {"split": split, "step": int(step)}
        for k, v in scalars.items():
            v = float(v)
            rec[k] = v if math.isfinite(v) else str(v)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
        if self.tb is not None:
            for k, v in scalars.items():
                if k not in ("epoch",) and math.isfinite(float(v)):
                    self.tb.add_scalar(f"{split}/{k}", float(v), step)

    def log_images(self, tag: str, step: int, images: np.ndarray) -> None:
        """Images ``[N, H, W, 3]`` uint8 to TensorBoard (no-op without it)."""
        if self.enabled and self.tb is not None:
            self.tb.add_images(tag, images, step, dataformats="NHWC")

    def log_video(self, tag: str, step: int, video: np.ndarray, fps: int = 10) -> None:
        """Clip ``[T, H, W, 3]`` uint8 to TensorBoard (no-op without it)."""
        if self.enabled and self.tb is not None:
            import torch

            v = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2)[None]
            self.tb.add_video(tag, v, step, fps=fps)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
