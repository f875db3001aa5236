"""Learning-rate schedules of the papers as resumable `LambdaLR` multipliers (one per update).

* ``constant``.
* ``staircase``: ``lr * decay_rate ** floor(unit / decay_every)`` (KVAE: 0.007, x0.85 every 20 epochs).
* ``linear``: from ``lr`` to ``final_lr`` over ``anneal_steps`` updates, then constant
  (GTM-SM: 1e-3 -> 5e-5 over the first 50000 updates).
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


class LRMultiplier:
    """Picklable multiplier ``step -> lr(step) / lr`` (its ``__dict__`` is the scheduler state)."""

    def __init__(self, schedule: str, lr: float, steps_per_epoch: int, total_steps: int,
                 decay_rate: float = 0.85, decay_every: int = 20, decay_unit: str = "epochs",
                 final_lr: float = 5e-5, anneal_steps: int | None = None) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch: expected >= 1, got {steps_per_epoch}")
        self.schedule = schedule
        self.lr = float(lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.decay_rate = float(decay_rate)
        self.decay_every = int(decay_every)
        self.decay_unit = decay_unit
        self.final_lr = float(final_lr)
        self.anneal_steps = int(anneal_steps if anneal_steps is not None else max(total_steps, 1))

    def __call__(self, step: int) -> float:
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "staircase":
            unit = step // self.steps_per_epoch if self.decay_unit == "epochs" else step
            return self.decay_rate ** (unit // self.decay_every)
        if self.schedule == "linear":
            frac = min(step / max(self.anneal_steps, 1), 1.0)
            return (self.lr + frac * (self.final_lr - self.lr)) / self.lr if self.lr > 0 else 1.0
        raise ValueError(f"schedule: unknown schedule {self.schedule!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` following ``config.schedule``; call ``.step()`` once per update."""
    mult = LRMultiplier(config.schedule, config.lr, steps_per_epoch, total_steps,
                        config.decay_rate, config.decay_every, config.decay_unit,
                        config.final_lr, config.anneal_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, mult)


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate of update ``step`` (0-based) under ``config`` (for plots and tests)."""
    mult = LRMultiplier(config.schedule, config.lr, steps_per_epoch, total_steps,
                        config.decay_rate, config.decay_every, config.decay_unit,
                        config.final_lr, config.anneal_steps)
    value = config.lr * mult(step)
    if not math.isfinite(value):
        raise ValueError(f"learning rate at step {step} is not finite: {value}")
    return value
