"""Model predictive path integral control (MPPI): exponentially weighted average of noisy
perturbations of the nominal plan (Williams et al. 2017; mbrl-lib's ``MPPIOptimizer``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BestTracker, Objective, Planner, PlannerConfig, PlanResult


@dataclass
class MPPIConfig(PlannerConfig):
    """MPPI settings.

    Attributes:
        temperature: lambda in the weights ``softmax(returns / lambda)``; smaller = greedier.
        smoothing: beta in ``noise_t = beta * noise_t + (1 - beta) * noise_{t-1}`` (1 = none).
        normalise_returns: divide returns by their std over the population before weighting,
            so ``temperature`` does not depend on the reward scale.
    """

    population: int = 1000
    iterations: int = 5
    init_std: float = 0.5
    temperature: float = 0.1
    smoothing: float = 0.9
    normalise_returns: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError(f"temperature: expected > 0, got {self.temperature}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"smoothing: expected in (0, 1], got {self.smoothing}")


class MPPI(Planner):
    """Batched MPPI; the executed plan is the weighted mean (or the best sample)."""

    config: MPPIConfig  # the settings this planner is built with (narrows Planner.config)

    def __init__(self, config: MPPIConfig, action_low, action_high, action_dim: int | None = None):
        super().__init__(config, action_low, action_high, action_dim)

    def optimize(self, objective: Objective, batch_size: int, *, warm_start: PlanResult | None = None,
                 generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> PlanResult:
        cfg = self.config
        device = torch.device(device) if device is not None else self.action_low.device
        B, N, H, A = batch_size, cfg.population, cfg.horizon, self.action_dim
        mean = self._init_mean(B, warm_start, device, dtype)
        std = torch.full_like(mean, cfg.init_std)
        best = BestTracker()
        with torch.no_grad():
            for _ in range(cfg.iterations):
                eps = torch.randn(B, N, H, A, device=device, dtype=dtype, generator=generator)
                if cfg.smoothing < 1.0:
                    eps = torch.cat([eps[:, :, :1], cfg.smoothing * eps[:, :, 1:]
                                     + (1 - cfg.smoothing) * eps[:, :, :-1]], dim=2)
                u = (mean[:, None] + std[:, None] * eps).clamp(-1.0, 1.0)
                returns = self._evaluate(objective, u)
                best.update(u, returns)
                r = returns - returns.max(dim=1, keepdim=True).values
                if cfg.normalise_returns:
                    finite = torch.isfinite(r)
                    scale = torch.where(finite, r, torch.zeros_like(r)).std(1, keepdim=True)
                    r = r / scale.clamp_min(1e-8)
                w = torch.softmax(r / cfg.temperature, dim=1)  # [B, N]; -inf -> weight 0
                mean = (w[:, :, None, None] * u).sum(1)
        best_u, best_value = best.result()
        plan_u = best_u if cfg.return_best else mean
        return PlanResult(actions=self.to_env(plan_u), mean=mean, std=std, value=best_value)
