"""Planners behind one interface: ``planner.optimize(objective, batch_size) -> PlanResult``.

``objective(actions [B, N, H, A]) -> returns [B, N]`` is evaluated for all environments and
candidates at once. See ``base.py`` for the conventions and ``presets.py`` for named presets.
"""

from .base import Objective, Planner, PlannerConfig, PlanResult
from .categorical import CategoricalCEM, CategoricalCEMConfig
from .cem import CEM, CEMConfig
from .gradient import GradCEM, GradCEMConfig
from .icem import ICEM, ICEMConfig
from .mppi import MPPI, MPPIConfig
from .noise import colored_noise
from .presets import PLANNERS, PRESETS, make_planner
from .random_shooting import RandomShooting, RandomShootingConfig

__all__ = [
    "Objective", "Planner", "PlannerConfig", "PlanResult",
    "CEM", "CEMConfig", "ICEM", "ICEMConfig", "MPPI", "MPPIConfig",
    "RandomShooting", "RandomShootingConfig", "GradCEM", "GradCEMConfig",
    "CategoricalCEM", "CategoricalCEMConfig", "colored_noise",
    "PLANNERS", "PRESETS", "make_planner",
]
