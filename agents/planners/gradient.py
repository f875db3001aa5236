"""Gradient-based refinement of sampled plans through the differentiable model (GradCEM,
Bharadhwaj et al. 2020): each CEM iteration takes a few Adam steps on every candidate's actions
by back-propagating the objective, then refits the Gaussian to the refined elites."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Objective
from .cem import CEM, CEMConfig


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


class GradCEM(CEM):
    """CEM whose candidates are refined by gradient ascent on the objective (the CEM loop with
    the ``refine`` hook; the warm-start mean joins the first iteration's candidates)."""

    warm_mean_candidate = True

    config: GradCEMConfig  # the settings this planner is built with (narrows Planner.config)

    def __init__(self, config: GradCEMConfig, action_low, action_high, action_dim: int | None = None):
        super().__init__(config, action_low, action_high, action_dim)

    def refine(self, objective: Objective, u: torch.Tensor) -> torch.Tensor:
        """``grad_steps`` Adam ascent steps on candidates ``u [B, N, H, A]`` (normalised)."""
        cfg = self.config
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
                if u.grad is None:
                    raise RuntimeError("objective: the returns do not depend on the actions (no gradient)")
                g = torch.nan_to_num(u.grad, nan=0.0)
                norm = g.flatten(2).norm(dim=-1)[..., None, None]  # [B, N, 1, 1]
                u.grad = g * (cfg.grad_clip / norm.clamp_min(cfg.grad_clip))
                opt.step()
                with torch.no_grad():
                    u.clamp_(-1.0, 1.0)
        return u.detach()
