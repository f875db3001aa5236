"""Cross-entropy method (CEM), PlaNet style: Gaussian over action sequences, refit to the elites."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BestTracker, Objective, Planner, PlannerConfig, PlanResult


@dataclass
class CEMConfig(PlannerConfig):
    """CEM settings (PlaNet defaults: H=12, population 1000, 100 elites, 10 iterations).

    Attributes:
        num_elites: K best candidates the Gaussian is refitted to.
        momentum: alpha in ``new = alpha * old + (1 - alpha) * elite_stat`` (0 = PlaNet).
        min_std: floor of the sampling std (normalised units).
    """

    num_elites: int = 100
    momentum: float = 0.0
    min_std: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.num_elites <= self.population:
            raise ValueError(f"num_elites: expected 1 <= K <= population={self.population}, "
                             f"got {self.num_elites}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum: expected in [0, 1), got {self.momentum}")


def refit_gaussian(mean: torch.Tensor, std: torch.Tensor, elites: torch.Tensor,
                   momentum: float, min_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Refit ``mean, std [B, H, A]`` to ``elites [B, K, H, A]`` with momentum and a std floor."""
    e_mean, e_std = elites.mean(1), elites.std(1, unbiased=False)
    mean = momentum * mean + (1 - momentum) * e_mean
    std = (momentum * std + (1 - momentum) * e_std).clamp_min(min_std)
    return mean, std


class CEM(Planner):
    """Batched CEM: one objective call per iteration on ``[B, N, H, A]`` candidates.

    Subclasses change one iteration through two hooks: ``refine(objective, u)`` (GradCEM takes
    gradient steps on the candidates) and ``warm_mean_candidate`` (add the warm-start mean as
    a candidate in the first iteration).
    """

    #: add the warm-start mean to the first iteration's candidates
    warm_mean_candidate: bool = False

    config: CEMConfig  # the settings this planner is built with (narrows Planner.config)

    def __init__(self, config: CEMConfig, action_low, action_high, action_dim: int | None = None):
        super().__init__(config, action_low, action_high, action_dim)

    def refine(self, objective: Objective, u: torch.Tensor) -> torch.Tensor:
        """Hook: improve candidates ``u [B, N, H, A]`` (normalised) before they are scored."""
        return u

    def optimize(self, objective: Objective, batch_size: int, *, warm_start: PlanResult | None = None,
                 generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> PlanResult:
        cfg = self.config
        device = torch.device(device) if device is not None else self.action_low.device
        B, N, H, A = batch_size, cfg.population, cfg.horizon, self.action_dim
        mean = self._init_mean(B, warm_start, device, dtype)
        std = torch.full_like(mean, cfg.init_std)
        best = BestTracker()
        elites = None
        with torch.no_grad():
            for i in range(cfg.iterations):
                eps = torch.randn(B, N, H, A, device=device, dtype=dtype, generator=generator)
                u = (mean[:, None] + std[:, None] * eps).clamp(-1.0, 1.0)
                if i == 0 and warm_start is not None and self.warm_mean_candidate:
                    u = torch.cat([u, mean[:, None]], dim=1)
                u = self.refine(objective, u)
                returns = self._evaluate(objective, u)
                best.update(u, returns)
                elites = self._gather(u, returns.topk(cfg.num_elites, dim=1).indices)  # [B, K, H, A]
                mean, std = refit_gaussian(mean, std, elites, cfg.momentum, cfg.min_std)
        best_u, best_value = best.result()
        plan_u = best_u if cfg.return_best else mean
        return PlanResult(actions=self.to_env(plan_u), mean=mean, std=std, value=best_value,
                          elites=elites)
