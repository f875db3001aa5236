"""Writing a dataset folder from arrays: the one writer of shards that are not generated.

``write_dataset`` turns arrays of sequences (rolled out by your own code, from any simulator)
into the folder format that ``worldmodels.data.SequenceDataset`` reads (``manifest.json`` +
``<split>/shard_NNNNN.npz``, see ``worldmodels.dataset_format``); ``append_shard`` adds one
shard to a split of an existing folder (how ``worldmodels.agents.rl_loop`` grows a dataset).
Both check the arrays with the reader's own rules before any file is touched, and write every
file atomically (temp file, fsync, rename), the manifest last.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worldmodels.dataset_format import check_manifest, check_shard
from worldmodels.envs.generate import FORMAT, FORMAT_VERSION, MANIFEST, SPLITS, _write_manifest, _write_shard

ActionType = Literal["continuous", "discrete"]
#: the manifest fields that two parts (splits, shards) of one dataset must share
LAYOUT_KEYS = ("seq_len", "obs_shape", "action_dim", "state_dim", "action_type")


def _array(name: str, x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # a torch tensor on a GPU, ragged lists, ...
            raise ValueError(f"{name}: expected a numpy array, got {type(x).__name__} ({e})") from e
    return x


def sequence_arrays(obs: Any, actions: Any, rewards: Any = None, states: Any = None,
                    mask: Any = None) -> dict[str, np.ndarray]:
    """The shard arrays of ``N`` sequences of ``T`` steps, shapes checked (``ValueError`` naming
    the argument, its expected and its actual shape).

    Args:
        obs: ``[N, T, H, W, C]`` uint8 (0-255) or floating in [0, 1] (kept as float32).
        actions: ``[N, T, A]`` floating; discrete actions one-hot. ``actions[:, t]`` is taken
            after seeing ``obs[:, t]``.
        rewards: ``[N, T]``, what the step with ``actions[:, t]`` returned; zeros if None.
        states: ``[N, T, S]`` true low-dimensional states; ``[N, T, 0]`` if None.
        mask: ``[N, T]`` 1 = observed, 0 = missing frame; not stored if None (all observed).
    """
    out = {"obs": _array("obs", obs), "actions": _array("actions", actions)}
    if out["obs"].ndim != 5:
        raise ValueError(f"obs: expected shape [N, T, H, W, C], got {list(out['obs'].shape)}")
    N, T = out["obs"].shape[:2]
    if out["obs"].dtype != np.uint8 and np.issubdtype(out["obs"].dtype, np.floating):
        out["obs"] = out["obs"].astype(np.float32, copy=False)
    if out["actions"].ndim != 3 or out["actions"].shape[:2] != (N, T):
        raise ValueError(f"actions: expected shape [{N}, {T}, A], got {list(out['actions'].shape)}")
    optional = {"rewards": (rewards, (N, T), np.zeros((N, T), np.float32)),
                "states": (states, None, np.zeros((N, T, 0), np.float32)),
                "mask": (mask, (N, T), None)}
    for name, (x, shape, default) in optional.items():
        if x is None:
            if default is not None:
                out[name] = default
            continue
        x = _array(name, x)
        want = shape if shape is not None else (N, T, x.shape[-1] if x.ndim == 3 else "S")
        if x.shape != want:
            raise ValueError(f"{name}: expected shape {list(want)}, got {list(x.shape)}")
        out[name] = x
    for name in ("actions", "rewards", "states", "mask"):
        if name in out and np.issubdtype(out[name].dtype, np.floating):
            out[name] = out[name].astype(np.float32, copy=False)
    if "mask" in out and out["mask"].dtype == np.bool_:
        out["mask"] = out["mask"].astype(np.float32)
    return out


def layout_of(arrays: dict[str, np.ndarray], action_type: ActionType) -> dict[str, Any]:
    """The manifest's layout fields (``LAYOUT_KEYS``) of ``arrays`` (``sequence_arrays``)."""
    if action_type not in ("continuous", "discrete"):
        raise ValueError(f"action_type: expected 'continuous' or 'discrete', got {action_type!r}")
    obs = arrays["obs"]
    return {"seq_len": int(obs.shape[1]), "obs_shape": [int(d) for d in obs.shape[2:]],
            "action_dim": int(arrays["actions"].shape[2]), "action_type": action_type,
            "state_dim": int(arrays["states"].shape[2])}


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable manifest ({e}); use another folder") from e
    check_manifest(path, manifest)
    if not manifest.get("complete", False):
        raise ValueError(f"{path}: the dataset is incomplete (generation was interrupted or is running); "
                         "finish it first or use another folder")
    return manifest


def _check_same_layout(root: Path, manifest: dict[str, Any], layout: dict[str, Any]) -> None:
    for k in LAYOUT_KEYS:
        old = manifest.get(k, "continuous" if k == "action_type" else None)
        if old != layout[k]:
            raise ValueError(f"{k}: the dataset in {str(root)!r} has {old!r}, the arrays give {layout[k]!r}; "
                             "every split of a dataset shares one layout (use another folder)")


def write_dataset(root: str | os.PathLike, obs: Any, actions: Any, rewards: Any = None, *,
                  split: str = "train", states: Any = None, mask: Any = None, overwrite: bool = False,
                  action_type: ActionType = "continuous", name: str | None = None, shard_size: int = 250,
                  compress: bool = True) -> Path:
    """Write ``N`` sequences as the split ``split`` of the dataset folder ``root``; returns the
    path of ``manifest.json``.

    Args:
        root: dataset folder; created if missing. A folder that already holds a dataset gets the
            new split added (its layout, ``T``, frame shape, ``A``, ``S``, must match).
        obs, actions, rewards, states, mask: see ``sequence_arrays`` (``obs [N, T, H, W, C]``
            uint8 or float in [0, 1], ``actions [N, T, A]`` float, ``rewards [N, T]``,
            ``states [N, T, S]``, ``mask [N, T]``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        overwrite: replace ``split`` if the folder already has it (else ``ValueError``).
        action_type: ``"discrete"`` when ``actions`` are one-hot (recorded in the manifest so
            that actors map them back to indices), else ``"continuous"``.
        name: dataset name for the manifest (default: the folder's name).
        shard_size: sequences per shard file.
        compress: deflate the shards.

    Everything is checked before any file is written; shards and then the manifest are written
    atomically, so a reader sees the old dataset or the new one.
    """
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ValueError(f"shard_size: expected a positive integer, got {shard_size!r}")
    arrays = sequence_arrays(obs, actions, rewards, states, mask)
    layout = layout_of(arrays, action_type)
    N = arrays["obs"].shape[0]
    if N < 1:
        raise ValueError("obs: expected at least one sequence, got N = 0")
    check_shard(split, arrays, N, layout)
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"root: {str(root)!r} exists and is not a directory")
    manifest = _read_manifest(root) if root.is_dir() else None
    if manifest is not None:
        _check_same_layout(root, manifest, layout)
        if split in manifest["splits"] and not overwrite:
            raise ValueError(f"split: {str(root)!r} already holds a {split!r} split; pass overwrite=True to "
                             "replace it")
    else:
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "name": name or root.name, **layout,
                    "obs_layout": "NTHWC uint8", "discrete_actions": "one-hot float32", "splits": {},
                    "complete": True, "source": "write_dataset",
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (root / split).mkdir(parents=True, exist_ok=True)
    shards = []
    for k, start in enumerate(range(0, N, shard_size)):
        part = {key: a[start: start + shard_size] for key, a in arrays.items()}
        file = f"{split}/shard_{k:05d}.npz"
        shards.append({"file": file, "num_sequences": int(part["obs"].shape[0]), "start": start,
                       **_write_shard(root / file, part, compress), "done": True})
    old_files = {e["file"] for e in manifest["splits"].get(split, {}).get("shards", [])}
    manifest["splits"][split] = {"num_sequences": N, "shards": shards}
    _write_manifest(root, manifest)
    for file in old_files - {e["file"] for e in shards}:
        (root / file).unlink(missing_ok=True)
    return root / MANIFEST


def append_shard(root: str | os.PathLike, arrays: dict[str, np.ndarray], split: str = "train",
                 entry: dict[str, Any] | None = None, compress: bool = True) -> Path:
    """Add ``arrays`` (``sequence_arrays``' dict: ``obs [n, T, H, W, C]`` ...) as a new shard of
    ``split`` to the dataset folder ``root`` (the split is created if missing); ``entry`` holds
    extra fields for the shard's manifest entry (e.g. the round that collected it). Returns the
    shard path. The arrays must match the dataset's layout (``ValueError`` naming the key)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    root = Path(root).expanduser()
    manifest = _read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"{str(root)!r} is not a dataset folder: {MANIFEST} is missing")
    arrays = sequence_arrays(**arrays)
    n = int(arrays["obs"].shape[0])
    info = manifest["splits"].setdefault(split, {"num_sequences": 0, "shards": []})
    shards = info["shards"]
    file = f"{split}/shard_{len(shards):05d}.npz"
    check_shard(file, arrays, n, manifest)
    start = sum(int(s["num_sequences"]) for s in shards)
    (root / split).mkdir(exist_ok=True)
    shards.append({"file": file, "num_sequences": n, "start": start,
                   **_write_shard(root / file, arrays, compress), "done": True, **(entry or {})})
    info["num_sequences"] = start + n
    _write_manifest(root, manifest)
    return root / file
