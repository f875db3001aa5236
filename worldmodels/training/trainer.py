"""One trainer for every world model: optimiser, schedule, freezing warm-up, clipping,
accumulation, AMP, non-finite guard, validation with early stopping, checkpoints, logging, DDP.

Models only need ``loss(batch) -> LossOutput`` (and optionally ``parameter_groups()``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.dataloader import default_collate
from torch.utils.data.distributed import DistributedSampler

from worldmodels import __version__
from worldmodels.atomic_io import atomic_write_text, remove_stale_temps
from worldmodels.base import Batch
from worldmodels.checks import model_method
from worldmodels.registry import model_name_of

from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    capture_rng_state,
    class_path,
    load_model_state,
    model_config_dict,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainConfig, config_to_dict
from .distributed import DistInfo, all_true, barrier, mean_over_ranks, setup_distributed
from .metrics_log import MetricsLogger
from .run_dir import RunExistsError, clear_run, run_state
from .schedules import LRMultiplier, make_scheduler


class TrainingDiverged(RuntimeError):
    """Raised after ``max_bad_steps`` consecutive non-finite steps; names the offending term."""


class _LossModule(nn.Module):
    """Exposes ``model.loss`` as ``forward`` so DDP's gradient hooks see it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, obs, actions, mask, rewards=None, states=None):
        batch = Batch(obs=obs, actions=actions, mask=mask, rewards=rewards, states=states)
        out = model_method(self.model, "loss")(batch)
        return out.loss, out.terms


def to_batch(x: Any) -> Batch:
    """A collated batch (``Batch`` or dict of stacked tensors) as a `Batch`."""
    if isinstance(x, Batch):
        return x
    if isinstance(x, dict):
        obs = x["obs"]
        mask = x.get("mask")
        if mask is None:
            mask = torch.ones(obs.shape[:2], dtype=obs.dtype)
        return Batch(obs=obs, actions=x["actions"], mask=mask, rewards=x.get("rewards"), states=x.get("states"))
    raise TypeError(f"batch: expected a Batch or a dict of tensors, got {type(x).__name__}")


def _collate(items: list) -> Batch:
    return to_batch(default_collate(items))


def as_dataset(data: Any, split: str) -> tuple[Dataset, Any]:
    """``(dataset, collate_fn)`` from a dataset folder, a map-style Dataset or a DataLoader."""
    if isinstance(data, (str, os.PathLike)):
        from worldmodels.data import SequenceDataset  # the envs engineer's loader

        return SequenceDataset(data, split=split), _collate
    if isinstance(data, DataLoader):
        fn = data.collate_fn
        return data.dataset, (lambda items: to_batch(fn(items)))
    if isinstance(data, IterableDataset):
        raise TypeError("data: iterable-style datasets cannot be resumed exactly; pass a map-style Dataset")
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return data, _collate
    raise TypeError(f"data: expected a dataset folder, a Dataset or a DataLoader, got {type(data).__name__}")


def dataset_size(dataset: Dataset) -> int:
    """Number of items of a map-style ``dataset``; a ``TypeError`` if it has no ``__len__``."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"data: a map-style dataset with __len__ is needed, got {type(dataset).__name__}")
    return len(dataset)


class _DeferredInterrupt:
    """Defers the first SIGINT (Ctrl-C) or SIGTERM to the end of the current step, where the
    trainer checkpoints and stops; a second one interrupts at once.

    Only in the main thread of a single-process run: under DDP a rank-local flag would desynchronise
    the collective checkpoint, so the default handlers stay.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _DeferredInterrupt:
        if self.enabled:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous = {}


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; under DDP each rank takes ``cuda:LOCAL_RANK``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and info.enabled:
        device = f"cuda:{info.local_rank}"
    return torch.device(device)


class Trainer:
    """Trains ``model`` with ``config``; writes everything into ``run_dir``.

    Args:
        model: a `WorldModel` (anything with ``loss(batch) -> LossOutput``).
        config: `TrainConfig`.
        run_dir: run folder (created): ``config.json``, ``metrics.jsonl``, ``checkpoints/``
            (``last.pt``, ``best.pt``), ``tensorboard/``.
        train_data, val_data: a dataset folder (contract 1), a map-style Dataset whose items
            are dicts of tensors (``obs [T, C, H, W]``, ``actions [T, A]``, ``mask [T]`` ...) or
            a DataLoader (its dataset and collate_fn are used; the trainer batches itself so that
            runs are exactly resumable and shard correctly under DDP).
        resume: False, True (``run_dir/checkpoints/last.pt``), ``"auto"`` (resume if it exists)
            or a checkpoint path. A run folder whose run was stopped before its first checkpoint
            restarts from step 0 under True or ``"auto"``. The checkpoint is read and checked
            against this run's model and config here, so a refused resume changes no file.
        overwrite: start afresh in a folder that holds a run, deleting that run's checkpoints, logs
            and summary. Without it (and without ``resume``) such a folder is refused with
            `RunExistsError`.

    Under ``torchrun`` the process group is joined automatically (gloo on CPU, NCCL on GPU);
    rank 0 alone writes logs and checkpoints.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, run_dir: str | os.PathLike,
                 train_data: Any, val_data: Any = None, *, resume: bool | str | os.PathLike = False,
                 overwrite: bool = False) -> None:
        if not hasattr(model, "loss"):
            raise TypeError(f"model: expected a WorldModel with loss(batch), got {type(model).__name__}")
        if overwrite and resume not in (False, None):
            raise ValueError("resume and overwrite: pass one of them, not both")
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.overwrite = overwrite
        state = run_state(self.run_dir)
        if state == "trained" and resume in (False, None) and not overwrite:
            raise RunExistsError(f"run folder {self.run_dir} already holds a trained run; resume it "
                                 "(--resume / resume=True) or start it again (--overwrite / overwrite=True)")
        self.dist = setup_distributed("cuda" if config.device.startswith("cuda") or
                                      (config.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(config.device, self.dist)
        self.is_main = self.dist.is_main

        self.model = model.to(self.device)
        self.train_set, self.collate = as_dataset(train_data, "train")
        self.val_set, self.val_collate = (None, None) if val_data is None else as_dataset(val_data, "valid")

        W, accum = self.dist.world_size, config.grad_accum
        if config.batch_size % (W * accum):
            raise ValueError(f"batch_size: expected a multiple of world_size * grad_accum = {W * accum}, "
                             f"got {config.batch_size}")
        self.micro_batch = config.batch_size // (W * accum)
        n = dataset_size(self.train_set)
        self.steps_per_epoch = (n // W) // (self.micro_batch * accum)
        if self.steps_per_epoch < 1:
            raise ValueError(f"train_data: {n} sequences are fewer than one batch of {config.batch_size}")
        if config.steps is not None:
            self.total_steps = config.steps
        elif config.epochs is not None:
            self.total_steps = config.epochs * self.steps_per_epoch
        else:
            raise ValueError("TrainConfig: give steps or epochs")

        self._build_optimizer()
        self.scheduler = make_scheduler(self.optimizer, config, self.steps_per_epoch, self.total_steps)
        self.amp = bool(config.amp and self.device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

        self.loss_module: nn.Module = _LossModule(self.model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DDP(self.loss_module, device_ids=ids,
                                   find_unused_parameters=config.ddp_find_unused_parameters)

        # everything above only checks; from here on the run folder is written
        self._resume_ckpt = self._read_resume_checkpoint(state)
        if self.is_main:
            if overwrite and state != "none":
                clear_run(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.run_dir)
            remove_stale_temps(self.run_dir / "checkpoints")
        barrier(self.dist)
        self.logger = MetricsLogger(self.run_dir, tensorboard=config.tensorboard, enabled=self.is_main)
        if self.is_main and state == "started" and self._resume_ckpt is None:
            self.logger.truncate_after(-1)  # a run stopped before its first checkpoint restarts cleanly
        # trainer state (checkpointed)
        self.step = 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.evals_without_improvement = 0
        self.bad_steps_total = 0
        self.consecutive_bad = 0
        self.last_val: dict[str, float] = {}
        self.last_val_step: int | None = None
        self.stopped_early = False
        self._best_state: dict[str, torch.Tensor] | None = None
        self._last_train: dict[str, float] = {}

    # ------------------------------------------------------------------ setup
    def _build_optimizer(self) -> None:
        cfg = self.config
        parameter_groups: Callable[[], dict[str, list[nn.Parameter]]] | None = getattr(
            self.model, "parameter_groups", None)
        groups = parameter_groups() if parameter_groups is not None else {
            "all": [p for p in self.model.parameters() if p.requires_grad]}
        seen: dict[int, str] = {}
        param_groups = []
        self.group_params: dict[str, list[nn.Parameter]] = {}
        for name, params in groups.items():
            params = [p for p in params if p.requires_grad]
            for p in params:
                if id(p) in seen:
                    raise ValueError(f"parameter_groups: a parameter is in both {seen[id(p)]!r} and {name!r}")
                seen[id(p)] = name
            if params:
                param_groups.append({"params": params, "name": name})
                self.group_params[name] = params
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in seen]
        if rest:
            param_groups.append({"params": rest, "name": "other"})
            self.group_params["other"] = rest
        if not param_groups:
            raise ValueError("model: has no trainable parameters")
        unknown = sorted(set(cfg.freeze) - set(self.group_params))
        if unknown:
            raise ValueError(f"freeze: unknown parameter group(s) {unknown}; the model has {sorted(self.group_params)}")
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(param_groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
        self.trainable = [p for g in param_groups for p in g["params"]]

    def frozen_groups(self, step: int) -> list[str]:
        """Names of the parameter groups frozen at update ``step`` (frozen for whole epochs)."""
        epoch = step // self.steps_per_epoch
        return [name for name, epochs in self.config.freeze.items() if epoch < epochs]

    def _seed(self) -> None:
        s = self.config.seed + self.dist.rank
        random.seed(s)
        np.random.seed(s % (2 ** 32))  # noqa: NPY002  (seeds user code that draws from numpy's global RNG)
        torch.manual_seed(s)

    # ------------------------------------------------------------------ data
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """Index lists of this rank's micro-batches for ``epoch`` (same order on resume)."""
        sampler = DistributedSampler(self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                     shuffle=True, seed=self.config.seed, drop_last=True)
        sampler.set_epoch(epoch)
        idx = list(sampler)
        m = self.micro_batch
        n_micro = self.steps_per_epoch * self.config.grad_accum
        return [idx[i * m:(i + 1) * m] for i in range(n_micro)]

    def _loader(self, batches: list[list[int]], dataset: Dataset, collate, seed: int = 0) -> DataLoader:
        # a private generator: creating an iterator must not draw from the global RNG (exact resume)
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=self.config.num_workers,
                          pin_memory=self.device.type == "cuda", generator=gen)

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ one update
    def _group_grad_norms(self) -> dict[str, float]:
        out = {}
        for name, params in self.group_params.items():
            grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
            if grads:
                out[name] = float(torch.linalg.vector_norm(torch.stack(grads)))
        return out

    def _train_step(self, micro: list[Any]) -> tuple[dict[str, float] | None, str | None]:
        """One update from ``grad_accum`` micro-batches; returns (scalars, None) or (None, bad term)."""
        frozen = self.frozen_groups(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        n = len(micro)
        sums: dict[str, float] = {}
        frames = 0
        for i, mb in enumerate(micro):
            batch = to_batch(mb).to(self.device)
            frames += batch.num_frames()
            sync = (not self.dist.enabled) or i == n - 1
            ddp = self.loss_module if isinstance(self.loss_module, DistributedDataParallel) else None
            ctx = contextlib.nullcontext() if sync or ddp is None else ddp.no_sync()
            with ctx:
                with self._autocast():
                    loss, terms = self.loss_module(batch.obs, batch.actions, batch.mask, batch.rewards, batch.states)
                names = ["loss", *terms]
                vals = torch.stack([loss.detach().float().reshape(())] +
                                   [torch.as_tensor(v).detach().float().reshape(()).to(loss.device)
                                    for v in terms.values()])
                floats = vals.tolist()
                nonfinite = [nm for nm, v in zip(names, floats) if not math.isfinite(v)]
                # name the terms that went bad (the total is bad whenever one of them is)
                bad_local = ", ".join([nm for nm in nonfinite if nm != "loss"] or nonfinite) or None
                if not all_true(bad_local is None, self.dist, self.device):
                    self.optimizer.zero_grad(set_to_none=True)
                    return None, bad_local or "a loss term on another rank"
                self.scaler.scale(loss / n).backward()
            for nm, v in zip(names, floats):
                sums[nm] = sums.get(nm, 0.0) + v / n
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        frozen_ids = {id(p) for g in frozen for p in self.group_params[g]}
        for p in self.trainable:
            if id(p) in frozen_ids:
                p.grad = None
        active = [p for p in self.trainable if p.grad is not None]
        if (self.step + 1) % self.config.log_every == 0 or self.step + 1 == self.total_steps:
            sums.update({f"grad_norm/{g}": v for g, v in self._group_grad_norms().items()})
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(active, max_norm) if active else torch.zeros(())
        gn = float(grad_norm)
        if not math.isfinite(gn):
            bad_groups = [k for k, v in self._group_grad_norms().items() if not math.isfinite(v)]
            if self.scaler.is_enabled():  # fp16 overflow: the scaler skips the step and lowers its scale
                self.scaler.step(self.optimizer)
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return None, f"grad_norm (non-finite gradients in group(s) {bad_groups})"
        self.scaler.step(self.optimizer)
        self.scaler.update()
        sums["grad_norm"] = gn
        sums["_frames"] = float(frames * self.dist.world_size)
        return sums, None

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss and terms over the validation split (seeded). Under DDP the batches are
        split over ranks and the sums all-reduced, so every rank returns the same numbers."""
        if self.val_set is None:
            return {}
        cfg = self.config
        bs = cfg.val_batch_size or self.micro_batch
        idx = list(range(dataset_size(self.val_set)))
        batches = [idx[i:i + bs] for i in range(0, len(idx), bs)]
        if cfg.val_batches is not None:
            batches = batches[:cfg.val_batches]
        W = self.dist.world_size
        shard = self.dist.enabled and len(batches) >= W
        if shard:
            batches = batches[self.dist.rank::W]
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed + 1_000_003)
            for mb in self._loader(batches, self.val_set, self.val_collate):
                batch = to_batch(mb).to(self.device)
                with self._autocast():
                    out = model_method(self.model, "loss")(batch)
                w = batch.batch_size
                vals = {"loss": out.loss, **out.terms}
                for k, v in vals.items():
                    sums[k] = sums.get(k, 0.0) + float(torch.as_tensor(v).float()) * w
                count += w
        if was_training:
            self.model.train()
        if shard:
            import torch.distributed as dist

            keys = sorted(sums)
            t = torch.tensor([float(count)] + [sums[k] for k in keys], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            count, sums = t[0].item(), dict(zip(keys, t[1:].tolist()))
        return {k: v / max(count, 1) for k, v in sums.items()}

    @torch.no_grad()
    def _log_media(self, max_sequences: int = 4) -> None:
        """TensorBoard only: a truth | open-loop prediction video of a few validation sequences."""
        if self.logger.tb is None or self.val_set is None or self.val_collate is None \
                or not hasattr(self.model, "predict"):
            return
        items = [self.val_set[i] for i in range(min(max_sequences, dataset_size(self.val_set)))]
        batch = to_batch(self.val_collate(items)).to(self.device)
        T = batch.seq_len
        if T < 2:
            return
        context = max(1, min(5, T // 3))
        was_training = self.model.training
        self.model.eval()
        try:
            pred = model_method(self.model, "predict")(batch.obs, batch.actions, context)
        except NotImplementedError:
            return
        finally:
            if was_training:
                self.model.train()
        from worldmodels.video import tile_clips

        full = torch.cat([batch.obs[:, :context], pred], 1).float().cpu().numpy()
        truth = batch.obs.float().cpu().numpy()
        grid = tile_clips([[t, p] for t, p in zip(truth, full)])
        self.logger.log_video("val/prediction", self.step, grid)
        self.logger.log_images("val/last_frame", self.step, grid[-1:])

    def _after_validation(self, val: dict[str, float]) -> None:
        cfg = self.config
        self.last_val, self.last_val_step = val, self.step
        self.logger.log("val", self.step, val)
        if self.is_main:
            try:
                self._log_media()
            except Exception as e:  # pictures are a convenience: never let them stop training
                self._warn(f"TensorBoard prediction video skipped: {type(e).__name__}: {e}")
        key = cfg.early_stopping_metric.removeprefix("val/")
        if key not in val:
            raise ValueError(f"early_stopping_metric: {cfg.early_stopping_metric!r} is not among the "
                             f"validation metrics {sorted('val/' + k for k in val)}")
        value = val[key]
        better = math.isfinite(value) and (
            self.best_metric is None
            or (value < self.best_metric if cfg.early_stopping_mode == "min" else value > self.best_metric))
        if better:
            self.best_metric, self.best_step = value, self.step
            self.evals_without_improvement = 0
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self._save("best.pt")
        else:
            self.evals_without_improvement += 1
            patience = cfg.early_stopping_patience
            if patience is not None and self.evals_without_improvement >= patience:
                self.stopped_early = True

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, name: str = "last.pt") -> Path:
        return self.run_dir / "checkpoints" / name

    def _trainer_state(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_step": self.best_step,
                "evals_without_improvement": self.evals_without_improvement,
                "bad_steps_total": self.bad_steps_total, "consecutive_bad": self.consecutive_bad,
                "last_val": self.last_val, "last_val_step": self.last_val_step,
                "stopped_early": self.stopped_early, "world_size": self.dist.world_size,
                "steps_per_epoch": self.steps_per_epoch}

    def _save(self, name: str) -> Path | None:
        """Checkpoint (collective under DDP: RNG states of every rank; rank 0 writes)."""
        rng = capture_rng_state()
        if self.dist.enabled:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(gathered, rng)
            rng_all = gathered
        else:
            rng_all = [rng]
        if not self.is_main:
            return None
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            self._warn(f"step {self.step}: parameters are not finite; {name} not written (previous kept)")
            return None
        payload = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "model_name": model_name_of(self.model),
            "model_class": class_path(self.model),
            "model_config": model_config_dict(self.model),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_all,
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "train_config": config_to_dict(self.config),
            "trainer": self._trainer_state(),
        }
        return save_checkpoint(payload, self.checkpoint_path(name))

    def _read_resume_checkpoint(self, state: str) -> dict[str, Any] | None:
        """The checkpoint to resume from, checked against this run (None: start at step 0)."""
        if self.resume is False or self.resume is None:
            return None
        if self.resume in (True, "auto"):
            path = self.checkpoint_path("last.pt")
            if not path.is_file():
                if self.resume == "auto" or state == "started":
                    return None
                raise FileNotFoundError(f"--resume: no checkpoint to resume from at {path}")
        else:
            path = Path(self.resume)
        ckpt = read_checkpoint(path, map_location="cpu")
        self._check_resumable(ckpt, path)
        return ckpt

    def _check_resumable(self, ckpt: dict[str, Any], path: Path) -> None:
        if ckpt["model_class"] != class_path(self.model):
            raise CheckpointError(f"checkpoint {path} holds a {ckpt['model_class']}, not a {class_path(self.model)}")
        own_cfg = model_config_dict(self.model)
        if ckpt["model_config"] != own_cfg:
            diff = sorted(k for k in set(own_cfg) | set(ckpt["model_config"])
                          if own_cfg.get(k) != ckpt["model_config"].get(k))
            raise CheckpointError(f"checkpoint {path}: model config differs from this run's in {diff}")
        tstate = ckpt.get("trainer", {})
        old_cfg = ckpt.get("train_config", {})
        for key in ("batch_size", "grad_accum", "seed"):
            if key in old_cfg and old_cfg[key] != getattr(self.config, key):
                raise CheckpointError(f"checkpoint {path}: cannot resume exactly with "
                                      f"{key}={getattr(self.config, key)} (checkpoint has {old_cfg[key]})")
        if tstate.get("world_size", 1) != self.dist.world_size:
            raise CheckpointError(f"checkpoint {path} was written with world_size={tstate.get('world_size')}, "
                                  f"this run has {self.dist.world_size}")

    def _resume(self) -> None:
        """Apply the checkpoint read by `_read_resume_checkpoint` (model, optimiser, RNG, counters)."""
        ckpt = self._resume_ckpt
        if ckpt is None:
            return
        self._resume_ckpt = None
        cfg = self.config
        path = ckpt["path"]
        tstate = ckpt.get("trainer", {})
        load_model_state(self.model, ckpt["model"], source=f"checkpoint {path}")
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path}: optimiser/scheduler state incompatible: {e}") from e
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        # keep the configured schedule (lets a resumed run change steps); state holds last_epoch
        fresh = LRMultiplier(cfg.schedule, cfg.lr, self.steps_per_epoch, self.total_steps, cfg.decay_rate,
                             cfg.decay_every, cfg.decay_unit, cfg.final_lr, cfg.anneal_steps)
        for lam in self.scheduler.lr_lambdas:
            lam.__dict__.update(fresh.__dict__)
        rng = ckpt["rng"]
        restore_rng_state(rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0])
        self.step = int(ckpt["step"])
        for k in ("best_metric", "best_step", "evals_without_improvement", "bad_steps_total", "consecutive_bad",
                  "last_val", "last_val_step", "stopped_early"):
            if k in tstate:
                setattr(self, k, tstate[k])
        best = self.checkpoint_path("best.pt")
        if self.best_step is not None and best.is_file():
            self._best_state = read_checkpoint(best)["model"]
        self.logger.truncate_after(self.step)
        self._info(f"resumed from {path} at step {self.step}")
        self._resumed = True

    # ------------------------------------------------------------------ messages
    def _info(self, msg: str) -> None:
        if self.is_main and self.config.progress:
            from tqdm.auto import tqdm

            tqdm.write(msg)

    def _warn(self, msg: str) -> None:
        if self.is_main:
            from tqdm.auto import tqdm

            tqdm.write(f"warning: {msg}")

    def _write_run_config(self) -> None:
        if not self.is_main:
            return
        info = {"package_version": __version__, "model_class": class_path(self.model),
                "model": model_config_dict(self.model), "train": config_to_dict(self.config),
                "world_size": self.dist.world_size, "device": str(self.device),
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                "parameter_groups": {k: sum(p.numel() for p in v) for k, v in self.group_params.items()}}
        atomic_write_text(self.run_dir / "config.json", json.dumps(info, indent=2))

    # ------------------------------------------------------------------ main loop
    def _stop_for_interrupt(self) -> None:
        """Checkpoint at a step boundary after Ctrl-C or SIGTERM, then raise KeyboardInterrupt
        (resume with ``resume=True``)."""
        self._save("last.pt")
        self._warn(f"interrupted at step {self.step}; checkpoint written to {self.checkpoint_path()} "
                   "(resume to continue; a second Ctrl-C stops without saving)")
        raise KeyboardInterrupt

    def fit(self) -> dict[str, Any]:
        """Train to ``total_steps`` (or early stop); returns a summary dict (also ``summary.json``)."""
        from tqdm.auto import tqdm

        cfg = self.config
        prev_det = (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled())
        if cfg.deterministic:  # restored when fit returns
            torch.use_deterministic_algorithms(True, warn_only=True)
        if cfg.flush_denormal:  # left on: torch offers no getter to restore the previous mode
            torch.set_flush_denormal(True)
        self._resumed = False
        self._seed()
        self._resume()
        self.logger.start()
        self._write_run_config()
        self.model.train()
        t_start = time.time()
        start_step = self.step
        pbar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.is_main and cfg.progress),
                    unit="step", dynamic_ncols=True, desc="train")
        window_frames, window_t = 0.0, time.time()
        ema = None
        interrupt = _DeferredInterrupt(enabled=not self.dist.enabled)
        try:
            interrupt.__enter__()
            while self.step < self.total_steps and not self.stopped_early:
                epoch, pos = divmod(self.step, self.steps_per_epoch)
                accum = cfg.grad_accum
                batches = self._epoch_batches(epoch)[pos * accum:]
                it = iter(self._loader(batches, self.train_set, self.collate,
                                        seed=(cfg.seed + 7919 * epoch + self.dist.rank) % (2 ** 62)))
                for _ in range(self.steps_per_epoch - pos):
                    if self.step >= self.total_steps or self.stopped_early:
                        break
                    micro = [next(it) for _ in range(accum)]
                    scalars, bad = self._train_step(micro)
                    self.scheduler.step()
                    self.step += 1
                    pbar.update(1)
                    if scalars is None:  # a skipped update: (None, offending term)
                        self.bad_steps_total += 1
                        self.consecutive_bad += 1
                        self.logger.log("bad", self.step, {"consecutive": self.consecutive_bad})
                        self._warn(f"step {self.step}: non-finite {bad}; update skipped "
                                   f"({self.consecutive_bad}/{cfg.max_bad_steps} in a row)")
                        if self.consecutive_bad >= cfg.max_bad_steps:
                            raise TrainingDiverged(
                                f"training stopped at step {self.step} after {self.consecutive_bad} consecutive "
                                f"non-finite steps; offending term: {bad}. The last good checkpoint "
                                f"({self.checkpoint_path()}) was not overwritten.")
                    else:
                        self.consecutive_bad = 0
                        window_frames += scalars.pop("_frames")
                        ema = scalars["loss"] if ema is None else 0.9 * ema + 0.1 * scalars["loss"]
                        self._last_train = scalars
                        if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                            now = time.time()
                            rec = mean_over_ranks(dict(scalars), self.dist, self.device)
                            rec.update(lr=self.optimizer.param_groups[0]["lr"], epoch=self.step / self.steps_per_epoch,
                                       frames_per_s=window_frames / max(now - window_t, 1e-9))
                            self.logger.log("train", self.step, rec)
                            pbar.set_postfix({"loss": f"{ema:.4g}", "frames/s": f"{rec['frames_per_s']:.0f}"})
                            window_frames, window_t = 0.0, now
                    val_due = self.val_set is not None and (
                        (cfg.val_every is not None and self.step % cfg.val_every == 0)
                        or (cfg.val_every is None and self.step % self.steps_per_epoch == 0))
                    if val_due:
                        self._after_validation(self.validate())
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self._save("last.pt")
                    if interrupt.requested:
                        self._stop_for_interrupt()
            if self.val_set is not None and self.last_val_step != self.step and self.step > 0:
                self._after_validation(self.validate())
            if self.step > start_step or not self.checkpoint_path().is_file():
                self._save("last.pt")
        finally:
            interrupt.__exit__()
            pbar.close()
            self.logger.close()
            torch.use_deterministic_algorithms(prev_det[0], warn_only=prev_det[1])
            if self.dist.initialized_here:
                import torch.distributed as dist

                # every rank must be past its last collective before any rank tears gloo down, or a
                # peer still reading from the closed socket aborts ("terminate called ...")
                dist.barrier()
                dist.destroy_process_group()
                self.dist.initialized_here = False
        elapsed = time.time() - t_start
        if cfg.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        summary = {
            "steps": self.step, "epochs": self.step / self.steps_per_epoch, "steps_per_epoch": self.steps_per_epoch,
            "final_train": self._last_train, "val": self.last_val,
            "best_metric": self.best_metric, "best_step": self.best_step,
            "early_stopping_metric": cfg.early_stopping_metric, "stopped_early": self.stopped_early,
            "bad_steps": self.bad_steps_total, "time_s": elapsed,
            "resumed": self._resumed, "world_size": self.dist.world_size,
            "checkpoint": str(self.checkpoint_path("last.pt")),
            "best_checkpoint": str(self.checkpoint_path("best.pt")) if self.best_step is not None else None,
            "run_dir": str(self.run_dir),
        }
        if self.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary
