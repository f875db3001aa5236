"""Improved CEM (iCEM, Pinneri et al. 2020): coloured noise, elite keeping and shifting,
population decay, the mean added as a candidate in the last iteration, best sample executed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BestTracker, Objective, Planner, PlanResult
from .cem import CEMConfig, refit_gaussian
from .noise import colored_noise


@dataclass
class ICEMConfig(CEMConfig):
    """iCEM settings (defaults after mbrl-lib's iCEM and the official "blitz" settings).

    Attributes:
        noise_beta: colour exponent of the sampling noise along the horizon (0 = white).
        population_decay: population at iteration i is ``population * decay**-i``
            (never below ``2 * num_elites``).
        keep_elites: fraction of the elites carried to the next iteration, and (shifted by the
            executed steps) to the next planning call.
    """

    population: int = 300
    num_elites: int = 30
    iterations: int = 4
    momentum: float = 0.1
    init_std: float = 0.5
    return_best: bool = True
    noise_beta: float = 2.0
    population_decay: float = 1.25
    keep_elites: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.population_decay < 1.0:
            raise ValueError(f"population_decay: expected >= 1, got {self.population_decay}")
        if not 0.0 <= self.keep_elites <= 1.0:
            raise ValueError(f"keep_elites: expected in [0, 1], got {self.keep_elites}")


class ICEM(Planner):
    """Batched iCEM over ``[B, N_i, H, A]`` candidates."""

    config: ICEMConfig  # the settings this planner is built with (narrows Planner.config)

    def __init__(self, config: ICEMConfig, action_low, action_high, action_dim: int | None = None):
        super().__init__(config, action_low, action_high, action_dim)

    def population_sizes(self) -> list[int]:
        cfg = self.config
        return [max(int(cfg.population * cfg.population_decay ** (-i)), 2 * cfg.num_elites)
                for i in range(cfg.iterations)]

    def optimize(self, objective: Objective, batch_size: int, *, warm_start: PlanResult | None = None,
                 generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> PlanResult:
        cfg = self.config
        device = torch.device(device) if device is not None else self.action_low.device
        B, H, A, K = batch_size, cfg.horizon, self.action_dim, cfg.num_elites
        n_keep = int(round(cfg.keep_elites * K))
        mean = self._init_mean(B, warm_start, device, dtype)
        std = torch.full_like(mean, cfg.init_std)
        best = BestTracker()
        elites = None
        if warm_start is not None and warm_start.elites is not None and n_keep > 0:
            elites = warm_start.elites[:, :n_keep].to(device=device, dtype=dtype)
            pad = warm_start.num_padded
            if pad > 0:  # the shifted-in tail gets fresh noise around the mean
                tail = colored_noise(cfg.noise_beta, (B, elites.shape[1], H, A), generator=generator,
                                     device=device, dtype=dtype)[:, :, H - pad:]
                tail = (mean[:, None, H - pad:] + std[:, None, H - pad:] * tail).clamp(-1, 1)
                elites = torch.cat([elites[:, :, : H - pad], tail], dim=2)
        with torch.no_grad():
            for i, n in enumerate(self.population_sizes()):
                noise = colored_noise(cfg.noise_beta, (B, n, H, A), generator=generator,
                                      device=device, dtype=dtype)
                parts = [(mean[:, None] + std[:, None] * noise).clamp(-1.0, 1.0)]
                if elites is not None and n_keep > 0:
                    parts.append(elites[:, :n_keep])
                if i == cfg.iterations - 1:
                    parts.append(mean[:, None])
                u = torch.cat(parts, dim=1)
                returns = self._evaluate(objective, u)
                best.update(u, returns)
                order = returns.topk(K, dim=1).indices  # sorted, best first
                elites = self._gather(u, order)
                mean, std = refit_gaussian(mean, std, elites, cfg.momentum, cfg.min_std)
        best_u, best_value = best.result()
        plan_u = best_u if cfg.return_best else mean
        return PlanResult(actions=self.to_env(plan_u), mean=mean, std=std, value=best_value,
                          elites=elites)
