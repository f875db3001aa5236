"""Categorical CEM for discrete actions: independent categorical distributions per step over
one-hot actions, refitted to the elites' action frequencies."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worldmodels.checks import check_shape

from .base import BestTracker, Objective, Planner, PlanResult
from .cem import CEMConfig


@dataclass
class CategoricalCEMConfig(CEMConfig):
    """Categorical CEM settings.

    Attributes:
        momentum: weight of the old probabilities in the refit.
        min_prob: floor on every probability (keeps exploring).
    """

    population: int = 500
    num_elites: int = 50
    iterations: int = 5
    momentum: float = 0.1
    return_best: bool = True
    min_prob: float = 0.01


class CategoricalCEM(Planner):
    """Batched categorical CEM; plans are one-hot ``[B, H, A]`` over ``num_actions`` choices."""

    discrete = True

    config: CategoricalCEMConfig  # the settings this planner is built with (narrows Planner.config)

    def __init__(self, config: CategoricalCEMConfig, num_actions: int):
        if num_actions < 2:
            raise ValueError(f"num_actions: expected >= 2, got {num_actions}")
        super().__init__(config, torch.zeros(num_actions), torch.ones(num_actions))

    @classmethod
    def from_space(cls, config: CategoricalCEMConfig, space) -> CategoricalCEM:
        """Build from a Gymnasium ``Discrete`` action space."""
        return cls(config, int(space.n))

    def to_env(self, u: torch.Tensor) -> torch.Tensor:  # candidates are already one-hot
        return u

    def _init_probs(self, B: int, warm_start: PlanResult | None, device, dtype) -> torch.Tensor:
        H, A = self.config.horizon, self.action_dim
        if warm_start is None:
            return torch.full((B, H, A), 1.0 / A, device=device, dtype=dtype)
        check_shape("warm_start.mean", warm_start.mean, (B, H, A))
        return warm_start.mean.to(device=device, dtype=dtype)

    def optimize(self, objective: Objective, batch_size: int, *, warm_start: PlanResult | None = None,
                 generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> PlanResult:
        cfg = self.config
        device = torch.device(device) if device is not None else self.action_low.device
        B, N, H, A = batch_size, cfg.population, cfg.horizon, self.action_dim
        probs = self._init_probs(B, warm_start, device, dtype)
        best = BestTracker()
        with torch.no_grad():
            for _ in range(cfg.iterations):
                idx = torch.multinomial(probs.reshape(B * H, A), N, replacement=True,
                                        generator=generator)  # [B*H, N]
                idx = idx.reshape(B, H, N).transpose(1, 2)  # [B, N, H]
                u = F.one_hot(idx, A).to(dtype)
                returns = self._evaluate(objective, u)
                best.update(u, returns)
                elites = self._gather(u, returns.topk(cfg.num_elites, dim=1).indices)
                freq = elites.mean(1)
                probs = cfg.momentum * probs + (1 - cfg.momentum) * freq
                probs = probs.clamp_min(cfg.min_prob)
                probs = probs / probs.sum(-1, keepdim=True)
        best_u, best_value = best.result()
        if cfg.return_best:
            plan = best_u
        else:
            plan = F.one_hot(probs.argmax(-1), A).to(dtype)
        return PlanResult(actions=plan, mean=probs, std=torch.zeros_like(probs), value=best_value,
                          discrete=True)
