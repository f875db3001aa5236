"""Gradient-based refinement of sampled plans through the differentiable model (GradCEM,
Bharadhwaj et al. 2020): each CEM iteration takes a few Adam steps on every candidate's actions
by back-propagating the objective, then refits the Gaussian to the refined elites."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BestTracker, Objective, PlanResult, Planner
from .cem import CEMConfig


@dataclass
class GradCEMConfig(CEMConfig):
    """GradCEM settings; the objective must be differentiable in the actions.

    Attributes:
        grad_steps: Adam steps per iteration on every candidate.
        lr: Adam step size (normalised action units).
        grad_clip: max gradient norm per candidate sequence (GradCEM clips at 1.0).
    """

    population: int = 100
    num_elites: int = 10
    iterations: int = 5
    return_best: bool = True
    grad_steps: int = 3
    lr: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grad_steps < 0 or self.lr <= 0:
            raise ValueError(f"grad_steps >= 0 and lr > 0 expected, got {self.grad_steps}, {self.lr}")


class GradCEM(Planner):
    """CEM whose candidates are refined by gradient ascent on the objective."""

    def __init__(self, config: GradCEMConfig, action_low, action_high, action_dim: int | None = None):
        super().__init__(config, action_low, action_high, action_dim)

    def refine(self, objective: Objective, u: torch.Tensor) -> torch.Tensor:
        """``grad_steps`` Adam ascent steps on candidates ``u [B, N, H, A]`` (normalised)."""
        cfg: GradCEMConfig = self.config
        if cfg.grad_steps == 0:
            return u
        u = u.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([u], lr=cfg.lr)
        with torch.enable_grad():
            for _ in range(cfg.grad_steps):
                opt.zero_grad(set_to_none=True)
                returns = objective(self.to_env(u))
                loss = -torch.nan_to_num(returns, nan=0.0).sum()
                loss.backward()
                g = torch.nan_to_num(u.grad, nan=0.0)
                norm = g.flatten(2).norm(dim=-1)[..., None, None]  # [B, N, 1, 1]
                u.grad = g * (cfg.grad_clip / norm.clamp_min(cfg.grad_clip))
                opt.step()
                with torch.no_grad():
                    u.clamp_(-1.0, 1.0)
        return u.detach()

    def optimize(self, objective: Objective, batch_size: int, *, warm_start: PlanResult | None = None,
                 generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> PlanResult:
        cfg: GradCEMConfig = self.config
        device = torch.device(device) if device is not None else self.action_low.device
        B, N, H, A = batch_size, cfg.population, cfg.horizon, self.action_dim
        mean = self._init_mean(B, warm_start, device, dtype)
        std = torch.full_like(mean, cfg.init_std)
        best = BestTracker()
        elites = None
        for _ in range(cfg.iterations):
            eps = torch.randn(B, N, H, A, device=device, dtype=dtype, generator=generator)
            u = (mean[:, None] + std[:, None] * eps).clamp(-1.0, 1.0)
            if warm_start is not None and best.u is None:
                u = torch.cat([u, mean[:, None]], dim=1)
            u = self.refine(objective, u)
            with torch.no_grad():
                returns = self._evaluate(objective, u)
                best.update(u, returns)
                elites = self._gather(u, returns.topk(cfg.num_elites, dim=1).indices)
                mean = cfg.momentum * mean + (1 - cfg.momentum) * elites.mean(1)
                std = (cfg.momentum * std + (1 - cfg.momentum) * elites.std(1, unbiased=False)
                       ).clamp_min(cfg.min_std)
        plan_u = best.u if cfg.return_best else mean
        return PlanResult(actions=self.to_env(plan_u), mean=mean, std=std, value=best.value,
                          elites=elites)
