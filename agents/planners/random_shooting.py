"""Random shooting: evaluate uniformly sampled sequences (plus the warm-start plan), keep the best."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BestTracker, Objective, Planner, PlannerConfig, PlanResult


@dataclass
class RandomShootingConfig(PlannerConfig):
    """``iterations`` rounds of ``population`` uniform samples each; the best sample is executed."""

    iterations: int = 1
    return_best: bool = True


class RandomShooting(Planner):
    """Batched random shooting."""

    config: RandomShootingConfig  # the settings this planner is built with (narrows Planner.config)

    def __init__(self, config: RandomShootingConfig, action_low, action_high,
                 action_dim: int | None = None):
        super().__init__(config, action_low, action_high, action_dim)

    def optimize(self, objective: Objective, batch_size: int, *, warm_start: PlanResult | None = None,
                 generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> PlanResult:
        cfg = self.config
        device = torch.device(device) if device is not None else self.action_low.device
        B, N, H, A = batch_size, cfg.population, cfg.horizon, self.action_dim
        best = BestTracker()
        with torch.no_grad():
            for i in range(cfg.iterations):
                u = torch.rand(B, N, H, A, device=device, dtype=dtype, generator=generator) * 2 - 1
                if i == 0 and warm_start is not None:
                    u = torch.cat([u, self._init_mean(B, warm_start, device, dtype)[:, None]], dim=1)
                best.update(u, self._evaluate(objective, u))
        best_u, best_value = best.result()
        return PlanResult(actions=self.to_env(best_u), mean=best_u, std=torch.ones_like(best_u), value=best_value)
