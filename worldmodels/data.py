"""Loading the sharded sequence datasets that ``worldmodels.envs.generate`` and
``worldmodels.envs.write_dataset`` write into torch batches.

A dataset folder holds ``manifest.json`` and ``<split>/shard_NNNNN.npz`` files with ``obs``
uint8 ``[N, T, H, W, C]``, ``actions`` float32 ``[N, T, A]``, ``rewards`` float32 ``[N, T]``,
``states`` float32 ``[N, T, S]`` and optionally ``mask`` ``[N, T]`` (the format:
``worldmodels.dataset_format``). Items and batches follow ``worldmodels.base``: obs
``[T, C, H, W]`` float in [0, 1], actions ``[T, A]``, mask ``[T]`` (ones unless the shard holds
a ``mask``), rewards ``[T]``, states ``[T, S]``. This module imports only torch and numpy
(never ``envs``).

Both files are checked when read (``worldmodels.dataset_format``), with a ``ValueError`` naming
the file and the key: the manifest's schema (``seq_len``, ``obs_shape``, ``action_dim``,
``state_dim``, ``splits`` and each shard entry's ``file`` inside the folder and
``num_sequences``), and each shard's arrays: present, shaped as the manifest says, ``obs``
uint8 (or floating in [0, 1]), ``actions``, ``rewards`` and ``states`` floating (integer
actions are refused, not cast), ``actions`` and ``rewards`` finite, ``mask`` only 0 and 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from worldmodels.base import Batch
from worldmodels.dataset_format import FLOAT_KEYS as _FLOAT_KEYS
from worldmodels.dataset_format import KEYS as _KEYS
from worldmodels.dataset_format import OPTIONAL_KEYS as _OPTIONAL_KEYS
from worldmodels.dataset_format import check_manifest as _check_manifest
from worldmodels.dataset_format import check_shard as _check_shard


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a dataset folder; clear errors for missing/incomplete ones."""
    root = Path(root).expanduser()
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(root)!r} is not a dataset folder: {path.name} is missing "
                                "(make one with `worldmodels generate PRESET --out DIR`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt manifest ({e})") from e
    _check_manifest(path, manifest)
    if not manifest.get("complete", False):
        raise ValueError(f"{str(root)!r}: the dataset is incomplete (generation was interrupted); "
                         "run the same generate command again to resume it")
    return manifest


def _load_shard(root: Path, entry: dict, manifest: dict, verify: bool) -> dict[str, np.ndarray]:
    path = root / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"shard {entry['file']!r} of {str(root)!r} is missing")
    if "bytes" in entry and path.stat().st_size != entry["bytes"]:
        raise ValueError(f"shard {entry['file']!r} is truncated or corrupt: {path.stat().st_size} bytes, "
                         f"manifest says {entry['bytes']}")
    if verify and "sha256" in entry:
        h = hashlib.sha256(path.read_bytes()).hexdigest()
        if h != entry["sha256"]:
            raise ValueError(f"shard {entry['file']!r} is corrupt: sha256 differs from the manifest")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (*_KEYS, *_OPTIONAL_KEYS) if k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, TypeError) as e:  # pickled, not npz
        raise ValueError(f"shard {entry['file']!r} is truncated or corrupt: {e}") from e
    _check_shard(entry["file"], arrays, entry["num_sequences"], manifest)
    return arrays


def _stored_obs(parts: list[np.ndarray]) -> np.ndarray:
    """The shards' frames concatenated: uint8 if every shard is uint8, else float32 in [0, 1]."""
    if all(p.dtype == np.uint8 for p in parts):
        return np.concatenate(parts)
    return np.concatenate([p.astype(np.float32) / 255.0 if p.dtype == np.uint8 else p.astype(np.float32)
                           for p in parts])


class SequenceDataset(Dataset):
    """One split of a dataset folder, held in memory as uint8 frames.

    Args:
        root: the dataset folder (with ``manifest.json``).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        verify: check each shard's sha256 against the manifest (catches corrupt files).

    Attributes:
        manifest: the parsed manifest. obs_shape: ``(C, H, W)``. action_dim: A.
        seq_len: T. state_dim: S. action_type: ``"discrete"`` (one-hot) or ``"continuous"``.

    Items are dicts of tensors: ``obs [T, C, H, W]`` float32 in [0, 1], ``actions [T, A]``,
    ``mask [T]`` (the shard's ``mask``, ones where it has none), ``rewards [T]``, ``states [T, S]``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", verify: bool = True):
        self.root = Path(root).expanduser()
        self.manifest = read_manifest(self.root)
        splits = self.manifest.get("splits", {})
        if split not in splits:
            raise ValueError(f"split: expected one of {sorted(splits)} for {str(self.root)!r}, got {split!r}")
        self.split = split
        shards = [_load_shard(self.root, e, self.manifest, verify) for e in splits[split]["shards"]]
        cat = {k: np.concatenate([s[k] for s in shards]) for k in _FLOAT_KEYS}
        # [N, T, H, W, C]: uint8 (as written by the generator) or float32 in [0, 1] (float shards)
        self._obs = torch.from_numpy(np.ascontiguousarray(_stored_obs([s["obs"] for s in shards])))
        self._actions = torch.from_numpy(cat["actions"].astype(np.float32, copy=False))
        self._rewards = torch.from_numpy(cat["rewards"].astype(np.float32, copy=False))
        self._states = torch.from_numpy(cat["states"].astype(np.float32, copy=False))
        # [N, T] 1 = observed; shards without a mask are fully observed
        self._mask = torch.from_numpy(np.concatenate([
            s["mask"].astype(np.float32) if "mask" in s else np.ones(s["rewards"].shape, np.float32)
            for s in shards]))
        H, W, C = self.manifest["obs_shape"]
        self.obs_shape = (int(C), int(H), int(W))
        self.action_dim = int(self.manifest["action_dim"])
        self.seq_len = int(self.manifest["seq_len"])
        self.state_dim = int(self.manifest["state_dim"])
        self.action_type = self.manifest.get("action_type", "continuous")

    def __len__(self) -> int:
        return self._obs.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} sequences")
        obs = self._obs[i].permute(0, 3, 1, 2)
        obs = obs.float().div_(255.0) if obs.dtype == torch.uint8 else obs.clone()
        return {
            "obs": obs,
            "actions": self._actions[i],
            "mask": self._mask[i],
            "rewards": self._rewards[i],
            "states": self._states[i],
        }

    def frames_uint8(self, i: int) -> np.ndarray:
        """Sequence ``i`` as ``uint8 [T, H, W, C]`` (for videos); float frames are rounded."""
        x = self._obs[i]
        return x.numpy() if x.dtype == torch.uint8 else (x * 255.0 + 0.5).to(torch.uint8).numpy()


def collate_batch(items: Sequence[dict[str, torch.Tensor]]) -> Batch:
    """Stack items of ``SequenceDataset`` into a ``worldmodels.base.Batch`` (``[B, T, ...]``)."""
    if len(items) == 0:
        raise ValueError("items: expected at least one item, got an empty list")
    obs, actions, mask = (torch.stack([it[k] for it in items]) for k in ("obs", "actions", "mask"))
    extra = {k: torch.stack([it[k] for it in items]) if all(k in it and it[k] is not None for it in items) else None
             for k in ("rewards", "states")}
    return Batch(obs, actions, mask, **extra)


def make_dataloader(
    root_or_dataset: str | os.PathLike | SequenceDataset,
    split: str = "train",
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    distributed: bool = False,
) -> DataLoader:
    """A ``DataLoader`` yielding ``Batch`` objects.

    Shuffling is seeded (``seed``); with ``distributed=True`` a ``DistributedSampler`` (rank and
    world size from the initialised process group) splits the data; call
    ``loader.sampler.set_epoch(epoch)`` each epoch to reshuffle.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    ds = root_or_dataset if isinstance(root_or_dataset, SequenceDataset) else SequenceDataset(root_or_dataset, split)
    if distributed:
        sampler = DistributedSampler(ds, shuffle=shuffle, seed=seed, drop_last=drop_last)
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=num_workers, collate_fn=collate_batch)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen if shuffle else None,
                      drop_last=drop_last, num_workers=num_workers, collate_fn=collate_batch)
