"""The dataset folder format, checked the same way by its writers and its reader (numpy only).

A dataset folder holds ``manifest.json`` and ``<split>/shard_NNNNN.npz`` files. A shard of
``N`` sequences of ``T`` frames holds ``obs`` uint8 ``[N, T, H, W, C]`` (or floating in
[0, 1]), ``actions`` float ``[N, T, A]`` (discrete actions one-hot), ``rewards`` float
``[N, T]``, ``states`` float ``[N, T, S]`` (``S`` may be 0) and optionally ``mask`` float
``[N, T]`` (1 = observed, 0 = missing; all ones when absent). The manifest records
``seq_len`` (T), ``obs_shape`` ([H, W, C]), ``action_dim`` (A), ``state_dim`` (S) and
``splits``: split name -> ``{"num_sequences", "shards": [{"file", "num_sequences", ...}]}``.

This module imports only numpy, so that writers outside the torch side of the package
(``worldmodels.envs``) check what they write with the reader's own rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: arrays every shard holds
KEYS = ("obs", "actions", "rewards", "states")
#: arrays a shard may hold
OPTIONAL_KEYS = ("mask",)
FLOAT_KEYS = ("actions", "rewards", "states")
FINITE_KEYS = ("actions", "rewards")


def _manifest_error(path: Path, key: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"{path}: {key} is {value!r}, expected {expected}")


def _is_int(x: Any, low: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


def check_manifest(path: Path, manifest: Any) -> None:
    """Raise ``ValueError`` naming ``path`` and the key unless ``manifest`` has the schema of the
    module docstring."""
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    missing = [k for k in ("seq_len", "obs_shape", "action_dim", "state_dim", "splits") if k not in manifest]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing} (not a dataset manifest, or a damaged one)")
    for key, low in (("seq_len", 1), ("action_dim", 1), ("state_dim", 0)):
        if not _is_int(manifest[key], low):
            raise _manifest_error(path, key, manifest[key], f"an integer >= {low}")
    shape = manifest["obs_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(d, 1) for d in shape)):
        raise _manifest_error(path, "obs_shape", shape, "[H, W, C] positive integers")
    splits = manifest["splits"]
    if not isinstance(splits, dict):
        raise _manifest_error(path, "splits", splits, "an object: split name -> {'shards': [...]}")
    for split, info in splits.items():
        shards = info.get("shards") if isinstance(info, dict) else None
        if not isinstance(shards, list):
            raise _manifest_error(path, f"splits[{split!r}].shards", shards, "a list of shard entries")
        for i, entry in enumerate(shards):
            key = f"splits[{split!r}].shards[{i}]"
            if not isinstance(entry, dict):
                raise _manifest_error(path, key, entry, "an object with 'file' and 'num_sequences'")
            file = entry.get("file")
            if not isinstance(file, str) or Path(file).is_absolute() or ".." in Path(file).parts:
                raise _manifest_error(path, f"{key}.file", file, "a path inside the dataset folder")
            if not _is_int(entry.get("num_sequences"), 0):
                raise _manifest_error(path, f"{key}.num_sequences", entry.get("num_sequences"),
                                      "an integer >= 0")


def check_shard(file: str, arrays: dict[str, np.ndarray], num_sequences: int, manifest: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming ``file`` and the key unless ``arrays`` are a shard of
    ``num_sequences`` sequences of the dataset that ``manifest`` describes (module docstring):
    every array present and shaped as the manifest says, then dtypes and values."""
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise ValueError(f"shard {file!r} lacks arrays {missing}")
    n, T = num_sequences, manifest["seq_len"]
    want = {
        "obs": (n, T, *manifest["obs_shape"]),
        "actions": (n, T, manifest["action_dim"]),
        "rewards": (n, T),
        "states": (n, T, manifest["state_dim"]),
        "mask": (n, T),
    }
    for k, shape in want.items():
        if k in arrays and arrays[k].shape != tuple(shape):
            raise ValueError(f"shard {file!r}: {k} has shape {list(arrays[k].shape)}, expected {list(shape)}")
    check_shard_values(file, arrays)


def check_shard_values(file: str, arrays: dict[str, np.ndarray]) -> None:
    """Dtypes and values of a shard's arrays (the module docstring); ``ValueError`` naming
    ``file`` and the key."""
    obs = arrays["obs"]
    if obs.dtype != np.uint8:
        if not np.issubdtype(obs.dtype, np.floating):
            raise ValueError(f"shard {file!r}: obs has dtype {obs.dtype}, expected uint8 (or floating in [0, 1])")
        if obs.size and not (np.nanmin(obs) >= 0.0 and np.nanmax(obs) <= 1.0 and np.isfinite(obs).all()):
            raise ValueError(f"shard {file!r}: obs is floating but not within [0, 1] (NaN, inf or values "
                             "outside); store frames as uint8 0-255 or floats in [0, 1]")
    for k in FLOAT_KEYS:
        if not np.issubdtype(arrays[k].dtype, np.floating):
            hint = " (discrete actions are stored one-hot as float32)" if k == "actions" else ""
            raise ValueError(f"shard {file!r}: {k} has dtype {arrays[k].dtype}, expected a floating dtype{hint}")
    for k in FINITE_KEYS:
        if not np.isfinite(arrays[k]).all():
            raise ValueError(f"shard {file!r}: {k} holds NaN or inf")
    if "mask" in arrays:
        m = arrays["mask"]
        if not (np.issubdtype(m.dtype, np.floating) or m.dtype == np.bool_) or not np.isin(m, (0, 1)).all():
            raise ValueError(f"shard {file!r}: mask must hold only 0 and 1 (floating or bool), got dtype {m.dtype}")
