"""Writing experiment results with the metadata that makes every number traceable."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.protocol import Protocol
from worldmodels.atomic_io import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = RESULTS_DIR.parent.parent
QUICK_RESULTS_DIR = REPO_ROOT / "runs" / "quick_results"


def output_dir(out_dir: str | os.PathLike | None, quick: bool = False) -> Path:
    """Where a run writes its JSON and plots: ``out_dir`` if given, else ``experiments/results``
    (committed results), or ``runs/quick_results`` for a ``--quick`` smoke run, which must never
    replace a committed result. The folder is created."""
    out = Path(out_dir) if out_dir is not None else (QUICK_RESULTS_DIR if quick else RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    return out


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


#: tracked paths that do not change what a run executes (results, their figures, prose)
NOT_CODE_PATHSPECS = (":(exclude)experiments/results", ":(exclude)docs", ":(exclude)*.md")


def _git_dirty() -> bool | None:
    """Whether tracked files other than results and prose (``NOT_CODE_PATHSPECS``) differ from
    the commit (None without git): a benchmark run right after another one, which rewrote its
    committed JSON, still runs the committed code."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                              *NOT_CODE_PATHSPECS], capture_output=True, text=True,
                             cwd=REPO_ROOT, timeout=5)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


#: the code a run executes is the checkout at its start (a long run may outlive later commits)
START_COMMIT, START_DIRTY = _git_commit(), _git_dirty()


def _inside_repo(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (as written or resolved), else as is."""
    for p, root in ((Path(os.path.normpath(path)), REPO_ROOT), (Path(path).resolve(), REPO_ROOT.resolve())):
        if p.is_relative_to(root):
            return str(p.relative_to(root)) or "."
    return path


def portable_paths(obj: Any) -> Any:
    """``obj`` (JSON-like) with every absolute path inside the repository made relative to it
    (`_inside_repo`), so that a result names no folder of the machine that made it."""
    if isinstance(obj, dict):
        return {k: portable_paths(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [portable_paths(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        return _inside_repo(obj)
    return obj


def relative_command(module: str, args: Sequence[str] | None = None) -> str:
    """``python -m experiments.<module> <args>``: the command as run from the repository root.

    ``module`` is the script's module name (``"kvae_imputation"`` or ``"experiments.kvae_imputation"``);
    ``args`` its arguments (default: ``sys.argv[1:]``). Arguments that are absolute paths inside the
    repository are rewritten relative to it; no other path of the machine is recorded.
    """
    mod = module if module.startswith("experiments.") else f"experiments.{module}"
    parts = []
    for a in (sys.argv[1:] if args is None else args):
        a = str(a)
        if os.path.isabs(a):
            a = _inside_repo(a)
        parts.append(shlex.quote(a))
    return " ".join(["python", "-m", mod, *parts])


def save_results(name: str, config: dict, results: dict, *, module: str,
                 args: Sequence[str] | None = None, protocol: Protocol | None = None,
                 seed: int | None = None, out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` atomically with the relative command, config, seeds
    (the `Protocol`'s training, tuning and evaluation sets), package version, machine, date, and the
    commit checked out when the run started (``git_commit``; ``git_dirty_at_start`` if tracked files
    differed from it, ``git_commit_at_save`` if the checkout moved on while the run went).

    ``module``/``args`` give the command (see `relative_command`); ``out_dir`` defaults to
    ``experiments/results``. Returns the path written.
    """
    from worldmodels import __version__

    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment": name,
        "command": relative_command(module, args),
        "config": config,
        "protocol": None if protocol is None else protocol.to_json(),
        "seed": seed,
        "package_version": __version__,
        "git_commit": START_COMMIT,
        "git_dirty_at_start": START_DIRTY,
        "machine": machine_info(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "results": results,
    }
    at_save = _git_commit()
    if at_save != START_COMMIT:
        record["git_commit_at_save"] = at_save
    path = out / f"{name}.json"
    return atomic_write_json(path, portable_paths(record))
