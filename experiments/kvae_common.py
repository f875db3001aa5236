"""Helpers shared by the KVAE experiments: datasets in memory, training through the package's
`Trainer`, test ELBOs, imputation masks and the wrong-pixel score of figure 6.3."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from worldmodels.base import Batch

DATA_ROOT = Path("runs/data")


def ensure_dataset(preset: str, root: str | Path = DATA_ROOT) -> Path:
    """Dataset folder of an `worldmodels.envs.generate` preset, generated (resumably) if missing."""
    out = Path(root) / preset
    manifest = out / "manifest.json"
    if not manifest.is_file() or not json.loads(manifest.read_text()).get("complete", False):
        from worldmodels.envs.generate import generate_dataset

        generate_dataset(preset, out, num_workers=1)
    return out


class SequenceTensors(Dataset):
    """A split held in memory: ``obs [N, T, C, H, W]`` float in [0, 1] (stored uint8),
    ``actions [N, T, A]``, ``states [N, T, S]``; items are dicts as in contract 1."""

    def __init__(self, root: str | Path, split: str, limit: int | None = None,
                 binarize: bool = False) -> None:
        root = Path(root)
        man = json.loads((root / "manifest.json").read_text())
        obs, actions, states = [], [], []
        n = 0
        for shard in man["splits"][split]["shards"]:
            d = np.load(root / shard["file"])
            obs.append(d["obs"])
            actions.append(d["actions"])
            states.append(d["states"])
            n += len(d["obs"])
            if limit is not None and n >= limit:
                break
        o = np.concatenate(obs)[:limit]
        self.obs_u8 = torch.from_numpy(np.ascontiguousarray(o.transpose(0, 1, 4, 2, 3)))
        if binarize:
            self.obs_u8 = (self.obs_u8 > 127).to(torch.uint8) * 255
        self.actions = torch.from_numpy(np.concatenate(actions)[:limit]).float()
        self.states = torch.from_numpy(np.concatenate(states)[:limit]).float()
        self.manifest = man

    def __len__(self) -> int:
        return self.obs_u8.shape[0]

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return tuple(self.obs_u8.shape[2:])

    @property
    def action_dim(self) -> int:
        return self.actions.shape[-1]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        obs = self.obs_u8[i].float() / 255.0
        return {"obs": obs, "actions": self.actions[i], "mask": torch.ones(obs.shape[0]),
                "states": self.states[i]}

    def batch(self, idx: slice | torch.Tensor) -> Batch:
        obs = self.obs_u8[idx].float() / 255.0
        return Batch(obs, self.actions[idx], torch.ones(obs.shape[:2]), states=self.states[idx])


def train(model: torch.nn.Module, train_set: Dataset, run_dir: Path, *, steps: int,
          batch_size: int = 32, lr: float = 0.007, decay_every_steps: int | None = None,
          freeze_epochs: dict[str, int] | None = None, val_set: Dataset | None = None,
          seed: int = 0, grad_clip: float = 150.0, resume: bool = False,
          checkpoint_every: int = 250) -> dict[str, Any]:
    """Train with `worldmodels.training.Trainer` (Adam, staircase decay x0.85, clipping).

    ``resume=True`` continues from ``run_dir/checkpoints/last.pt`` when it exists (up to ``steps``
    updates in all; a finished run is just loaded), so a run can be extended or restarted after a kill.
    """
    from worldmodels.training import TrainConfig, Trainer

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer="adam",
                      schedule="staircase" if decay_every_steps else "constant", decay_rate=0.85,
                      decay_every=decay_every_steps or 20, decay_unit="steps",
                      freeze=dict(freeze_epochs or {}), grad_clip=grad_clip, seed=seed,
                      device="cpu", log_every=10, checkpoint_every=checkpoint_every, tensorboard=False,
                      val_every=None if val_set is not None else None, val_batches=4)
    t0 = time.time()
    summary = Trainer(model, cfg, run_dir, train_set, val_set, resume="auto" if resume else False).fit()
    summary["wall_s"] = time.time() - t0
    return summary


@torch.no_grad()
def evaluate_elbo(model, data: SequenceTensors, batch_size: int = 50, estimators=("exact",),
              num_samples: int = 1, seed: int = 0) -> dict[str, float]:
    """Mean per-sequence test ELBO (reconstruction weight 1) for each estimator."""
    model.eval()
    out: dict[str, float] = {}
    for est in estimators:
        g = torch.Generator().manual_seed(seed)
        tot, n = 0.0, 0
        for s in range(0, len(data), batch_size):
            b = data.batch(slice(s, s + batch_size))
            if est == "model":  # models with their own elbo(batch) (e.g. the DMM baseline)
                e = model.elbo(b, generator=g)["elbo"]
            else:
                e = model.elbo(b, estimator=est, num_samples=num_samples, generator=g)["elbo"]
            tot += float(e.sum())
            n += e.shape[0]
        out[est] = tot / n
    return out


def random_mask(B: int, T: int, p: float, first: int = 4, generator=None) -> torch.Tensor:
    """Figure 6.3a: the first ``first`` frames observed, later ones dropped with prob. ``p``."""
    mask = (torch.rand(B, T, generator=generator) >= p).float()
    mask[:, :first] = 1.0
    return mask


def gap_mask(B: int, T: int, n: int, first: int = 4) -> torch.Tensor:
    """Figure 6.3b: frames ``first .. first + n - 1`` missing, the rest observed."""
    mask = torch.ones(B, T)
    mask[:, first:first + n] = 0.0
    return mask


def wrong_pixels_per_frame(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Fraction of wrongly guessed pixels of each frame (both binarised at 0.5): ``[B, T]``."""
    return ((pred > 0.5) != (truth > 0.5)).float().flatten(2).mean(-1)


def wrong_pixel_fraction(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of wrongly guessed pixels (both binarised at 0.5) over the unobserved frames."""
    wrong = wrong_pixels_per_frame(pred, truth)  # [B, T]
    miss = 1.0 - mask
    return float((wrong * miss).sum() / miss.sum().clamp(min=1.0))
