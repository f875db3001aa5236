"""Atomic, resumable checkpoints and the one-call `load` that rebuilds any world model.

A checkpoint is a ``torch.save`` dict of plain values and tensors (loadable with
``weights_only=True``)::

    format_version, package_version, model_name (registered name), model_class ("module:QualName",
    recorded for information and matched against the registry, never imported), model_config (dict),
    model (state_dict), optimizer, scheduler, scaler, rng (per rank), step, epoch,
    train_config (dict), trainer (early-stopping and guard state)
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_io import atomic_write
from ..registry import UnknownModelError, class_path, resolve_checkpoint_class
from .config import config_from_dict, config_to_dict

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: truncated, corrupt or incompatible."""


# ----------------------------------------------------------------------------- RNG states

def capture_rng_state() -> dict[str, Any]:
    """Python, numpy (global), torch CPU and CUDA RNG states as tensors / plain values."""
    np_state = np.random.get_state(legacy=True)  # noqa: NPY002  (user code may draw from the global RNG: resume restores it)
    if not isinstance(np_state, tuple):  # a dict only if the global generator is not MT19937
        raise CheckpointError(f"numpy's global RNG state is not an MT19937 tuple: {type(np_state).__name__}")
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    py = state["python"]
    random.setstate((py[-1], tuple(int(v) for v in py[:-1]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],  # noqa: NPY002
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------- files

def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same dir, fsync, rename)."""
    return atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by `save_checkpoint`.

    Raises ``FileNotFoundError`` if missing and `CheckpointError` if truncated, corrupt or of an
    unknown format.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            for cand in (path / "checkpoints" / name, path / name):
                if cand.is_file():
                    path = cand
                    break
            else:
                continue
            break
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (truncated write?)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip reader errors, unpickling errors, EOF ...
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt and cannot be read: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"{path} is not a worldmodels checkpoint (no format_version)")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt['format_version']}, newer than "
                              f"this package supports ({FORMAT_VERSION}); upgrade worldmodels")
    for key in ("model_class", "model_config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
    if not isinstance(ckpt["model_class"], str) or not isinstance(ckpt.get("model_name") or "", str):
        raise CheckpointError(f"checkpoint {path}: model_class and model_name must be strings")
    if not isinstance(ckpt["model_config"], dict):
        raise CheckpointError(f"checkpoint {path}: model_config must be a mapping")
    if not isinstance(ckpt["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise CheckpointError(f"checkpoint {path}: model must be a mapping of tensors")
    ckpt["path"] = str(path)
    return ckpt


def model_config_dict(model: torch.nn.Module) -> dict[str, Any]:
    """The model's ``self.config`` as a plain dict (empty if the model has none)."""
    cfg = getattr(model, "config", None)
    return config_to_dict(cfg) if dataclasses.is_dataclass(cfg) else {}


def build_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Construct an untrained model of the checkpoint's class from its stored config.

    The class comes from the model registry (`worldmodels.registry`), never from an import of the
    name the file records; an unregistered class is a `CheckpointError`.
    """
    try:
        cls = resolve_checkpoint_class(ckpt.get("model_name"), ckpt["model_class"])
    except UnknownModelError as e:
        raise CheckpointError(f"checkpoint {ckpt.get('path', '')}: {e}") from e
    config_cls = getattr(cls, "config_class", None)
    try:
        if config_cls is None:
            return cls()
        return cls(config_from_dict(config_cls, ckpt["model_config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint config is incompatible with {ckpt['model_class']}: {e}") from e


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict`` with an error that lists missing, unexpected and mis-shaped entries."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:8]}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:8]))
        raise CheckpointError(f"{source} is incompatible with {class_path(model)}: " + ", ".join(parts))
    model.load_state_dict(state)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the trained model stored in a checkpoint (or a run folder: best, else last).

    Returns the model on ``device`` in eval mode, ready for inference.
    """
    ckpt = read_checkpoint(path, map_location="cpu")
    model = build_model(ckpt)
    load_model_state(model, ckpt["model"], source=f"checkpoint {ckpt['path']}")
    return model.to(device).eval()
