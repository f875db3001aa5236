"""The planner interface: search action sequences ``[B, H, A]`` that maximise an objective.

An *objective* maps candidate action sequences ``[B, N, H, A]`` (B environments, N candidates,
H steps, A action dims, in environment units) to returns ``[B, N]`` (higher is better). Every
planner evaluates a whole population for all environments in one objective call per iteration.

Continuous planners search in a normalised space ``u in [-1, 1]`` and map it to the action box
``low + (u + 1) / 2 * (high - low)``; candidates are clipped to the box, so actions never leave
the bounds. Warm start: pass the previous ``PlanResult.shifted(n)`` as ``warm_start``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from worldmodels.checks import check_shape

#: ``actions [B, N, H, A] -> returns [B, N]``
Objective = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PlannerConfig:
    """Settings shared by every planner.

    Attributes:
        horizon: planning horizon H (steps).
        population: candidate sequences N per environment and iteration.
        iterations: optimisation iterations I.
        init_std: initial sampling std in normalised units (the box is [-1, 1]).
        return_best: execute the best sample seen (True) or the final mean (False, PlaNet).
    """

    horizon: int = 12
    population: int = 1000
    iterations: int = 10
    init_std: float = 1.0
    return_best: bool = False

    def __post_init__(self) -> None:
        for name in ("horizon", "population", "iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.init_std <= 0:
            raise ValueError(f"init_std: expected > 0, got {self.init_std}")


@dataclass
class PlanResult:
    """What ``Planner.optimize`` returns.

    Attributes:
        actions: ``[B, H, A]`` the plan to execute, in environment units (one-hot if discrete).
        mean: ``[B, H, A]`` final sampling mean in normalised units (probabilities if discrete).
        std: ``[B, H, A]`` final sampling std in normalised units (zeros if discrete).
        value: ``[B]`` objective value of the best candidate seen.
        elites: ``[B, K, H, A]`` final elites in normalised units (iCEM reuses them) or None.
        num_padded: trailing steps of ``mean``/``elites`` that were padded by ``shifted``.
        discrete: True for categorical plans (``mean`` holds probabilities).
    """

    actions: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    value: torch.Tensor
    elites: torch.Tensor | None = None
    num_padded: int = 0
    discrete: bool = False

    @property
    def horizon(self) -> int:
        return self.mean.shape[1]

    def shifted(self, steps: int = 1, fill: float | None = None) -> PlanResult:
        """The plan advanced by ``steps`` executed steps: drop the first ``steps`` entries and
        pad the tail with ``fill`` (default: mid-range 0 for continuous, uniform for discrete)."""
        if not 0 <= steps <= self.horizon:
            raise ValueError(f"steps: expected 0 <= steps <= {self.horizon}, got {steps}")
        if steps == 0:
            return self
        if fill is None:
            fill = 1.0 / self.mean.shape[-1] if self.discrete else 0.0

        def shift(x: torch.Tensor, dim: int) -> torch.Tensor:
            kept = x.narrow(dim, steps, x.shape[dim] - steps)
            pad_shape = list(x.shape)
            pad_shape[dim] = steps
            return torch.cat([kept, x.new_full(pad_shape, fill)], dim=dim)

        return replace(
            self,
            actions=shift(self.actions, 1),
            mean=shift(self.mean, 1),
            std=self.std,
            elites=None if self.elites is None else shift(self.elites, 2),
            num_padded=min(self.horizon, self.num_padded + steps),
        )


def _as_bound(name: str, x, action_dim: int | None) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32).reshape(-1)
    if action_dim is not None and t.numel() == 1:
        t = t.expand(action_dim).clone()
    if action_dim is not None and t.numel() != action_dim:
        raise ValueError(f"{name}: expected {action_dim} values, got {t.numel()}")
    return t


class Planner(ABC):
    """Base class: holds the config and the action box, maps normalised <-> env units."""

    #: True for planners over one-hot discrete actions.
    discrete: bool = False

    def __init__(self, config: PlannerConfig, action_low, action_high, action_dim: int | None = None):
        self.config = config
        low = _as_bound("action_low", action_low, action_dim)
        high = _as_bound("action_high", action_high, low.numel())
        if not torch.isfinite(low).all() or not torch.isfinite(high).all():
            raise ValueError("action_low/action_high: bounds must be finite")
        if (high <= low).any():
            raise ValueError(f"action_high must exceed action_low, got {low.tolist()} / {high.tolist()}")
        self.action_low = low
        self.action_high = high
        self.action_dim = low.numel()

    @classmethod
    def from_space(cls, config: PlannerConfig, space) -> Planner:
        """Build from a Gymnasium ``Box`` action space."""
        return cls(config, space.low, space.high)

    # --- units -----------------------------------------------------------------------------
    def _bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.action_low.to(device=like.device, dtype=like.dtype),
                self.action_high.to(device=like.device, dtype=like.dtype))

    def to_env(self, u: torch.Tensor) -> torch.Tensor:
        """Normalised ``[..., A]`` in [-1, 1] -> environment units in [low, high]."""
        low, high = self._bounds(u)
        return low + (u.clamp(-1.0, 1.0) + 1.0) * 0.5 * (high - low)

    def to_normalised(self, a: torch.Tensor) -> torch.Tensor:
        """Environment units -> normalised [-1, 1]."""
        low, high = self._bounds(a)
        return (2.0 * (a - low) / (high - low) - 1.0).clamp(-1.0, 1.0)

    # --- helpers ---------------------------------------------------------------------------
    def _init_mean(self, batch_size: int, warm_start: PlanResult | None, device, dtype) -> torch.Tensor:
        H, A = self.config.horizon, self.action_dim
        if warm_start is None:
            return torch.zeros(batch_size, H, A, device=device, dtype=dtype)
        check_shape("warm_start.mean", warm_start.mean, (batch_size, H, A))
        return warm_start.mean.to(device=device, dtype=dtype)

    def _evaluate(self, objective: Objective, u: torch.Tensor) -> torch.Tensor:
        """Returns ``[B, N]`` of candidates ``u [B, N, H, A]``; NaN counts as -inf."""
        returns = objective(self.to_env(u))
        check_shape("objective(actions)", returns, tuple(u.shape[:2]))
        return torch.nan_to_num(returns, nan=-math.inf, posinf=math.inf, neginf=-math.inf)

    @staticmethod
    def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``x [B, N, ...]``, ``idx [B, K]`` -> ``[B, K, ...]``."""
        view = idx.reshape(*idx.shape, *([1] * (x.dim() - 2))).expand(*idx.shape, *x.shape[2:])
        return torch.gather(x, 1, view)

    @abstractmethod
    def optimize(
        self,
        objective: Objective,
        batch_size: int,
        *,
        warm_start: PlanResult | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> PlanResult:
        """Search ``[batch_size, H, A]`` plans maximising ``objective``."""


class BestTracker:
    """Keeps the best candidate (normalised units) and its value per environment."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None
        self.u: torch.Tensor | None = None

    def update(self, u: torch.Tensor, returns: torch.Tensor) -> None:
        val, idx = returns.max(dim=1)  # [B]
        cand = Planner._gather(u, idx[:, None])[:, 0]
        if self.value is None or self.u is None:
            self.value, self.u = val, cand
            return
        better = val > self.value
        self.value = torch.where(better, val, self.value)
        self.u = torch.where(better[:, None, None], cand, self.u)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u [B, H, A], value [B])`` of the best candidate seen; an error before any update."""
        if self.u is None or self.value is None:
            raise RuntimeError("no candidate was scored (iterations must be >= 1)")
        return self.u, self.value
