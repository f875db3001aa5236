"""Writing experiment results with the metadata that makes every number traceable."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from worldmodels.atomic_io import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """CPU/GPU, core count, Python and torch versions of the machine running the experiment."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def save_results(name: str, config: dict, results: dict, argv: Sequence[str] | None = None,
                 seed: int | None = None, out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` atomically with command, config, seed, version, machine, date.

    ``out_dir`` defaults to ``experiments/results``. Returns the path written.
    """
    from worldmodels import __version__

    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment": name,
        "command": " ".join([Path(sys.executable).name, *(argv if argv is not None else sys.argv)]),
        "config": config,
        "seed": seed,
        "package_version": __version__,
        "git_commit": _git_commit(),
        "machine": machine_info(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results": results,
    }
    path = out / f"{name}.json"
    return atomic_write_json(path, record)
