"""Named planner presets and a factory: ``make_planner("planet", low, high)``."""

from __future__ import annotations

from dataclasses import fields, replace

from .base import Planner, PlannerConfig
from .categorical import CategoricalCEM, CategoricalCEMConfig
from .cem import CEM, CEMConfig
from .gradient import GradCEM, GradCEMConfig
from .icem import ICEM, ICEMConfig
from .mppi import MPPI, MPPIConfig
from .random_shooting import RandomShooting, RandomShootingConfig

#: planner name -> (class, config class)
PLANNERS: dict[str, tuple[type[Planner], type[PlannerConfig]]] = {
    "cem": (CEM, CEMConfig),
    "icem": (ICEM, ICEMConfig),
    "mppi": (MPPI, MPPIConfig),
    "random": (RandomShooting, RandomShootingConfig),
    "gradcem": (GradCEM, GradCEMConfig),
    "categorical_cem": (CategoricalCEM, CategoricalCEMConfig),
}

#: preset name -> (planner name, config)
PRESETS: dict[str, tuple[str, PlannerConfig]] = {
    # PlaNet (Hafner et al. 2019): H=12, J=1000 candidates, K=100 elites, I=10 iterations.
    "planet": ("cem", CEMConfig(horizon=12, population=1000, num_elites=100, iterations=10)),
    # A cheaper CEM for CPU experiments.
    "cem_fast": ("cem", CEMConfig(horizon=12, population=200, num_elites=20, iterations=5)),
    # iCEM with PlaNet's horizon (mbrl-lib / iCEM "blitz"-like settings).
    "icem": ("icem", ICEMConfig(horizon=12, population=300, num_elites=30, iterations=4)),
    "mppi": ("mppi", MPPIConfig(horizon=12, population=1000, iterations=5)),
    "random": ("random", RandomShootingConfig(horizon=12, population=1000)),
    "gradcem": ("gradcem", GradCEMConfig(horizon=12, population=100, num_elites=10, iterations=5)),
    "categorical": ("categorical_cem", CategoricalCEMConfig(horizon=12, population=500,
                                                            num_elites=50, iterations=5)),
}


def make_planner(name: str, action_low=None, action_high=None, *, action_dim: int | None = None,
                 num_actions: int | None = None, action_space=None, **overrides) -> Planner:
    """Build a planner from a preset or planner name with config overrides.

    Args:
        name: a key of ``PRESETS`` (e.g. "planet") or of ``PLANNERS`` (defaults of that config).
        action_low, action_high: continuous action box (arrays, or floats with ``action_dim``).
        action_dim: number of action dimensions when the bounds are scalars (default 1).
        num_actions: number of discrete actions (categorical planner).
        action_space: alternatively a Gymnasium ``Box`` or ``Discrete`` space.
        **overrides: config fields to replace, e.g. ``horizon=20``.
    """
    if name in PRESETS:
        planner_name, config = PRESETS[name]
    elif name in PLANNERS:
        planner_name, config = name, PLANNERS[name][1]()
    else:
        raise ValueError(f"name: expected one of {sorted(PRESETS) + sorted(PLANNERS)}, got {name!r}")
    cls, cfg_cls = PLANNERS[planner_name]
    known = {f.name for f in fields(cfg_cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"overrides: unknown {cfg_cls.__name__} fields {sorted(unknown)}")
    config = replace(config, **overrides)
    if cls is CategoricalCEM:
        if not isinstance(config, CategoricalCEMConfig):  # a preset that pairs it with another config
            raise TypeError(f"{name}: the categorical planner needs a CategoricalCEMConfig, "
                            f"got {type(config).__name__}")
        if action_space is not None:
            return CategoricalCEM.from_space(config, action_space)
        if num_actions is None:
            raise ValueError("num_actions: required for the categorical planner")
        return CategoricalCEM(config, num_actions)
    if action_space is not None:
        return cls.from_space(config, action_space)
    if action_low is None or action_high is None:
        raise ValueError("action_low/action_high: required for continuous planners")
    return cls(config, action_low, action_high, action_dim)
