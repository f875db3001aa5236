"""Settings of the latent actor-critic: its networks, the action space and training in imagination."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

ActorGrad = Literal["auto", "dynamics", "reinforce"]
CriticSpace = Literal["symlog", "linear"]

#: the fields that fix the networks' shapes (the rest only shape training)
ARCHITECTURE_FIELDS = ("latent_dim", "action_dim", "discrete", "action_low", "action_high", "hidden",
                       "layer_norm", "min_std", "max_std", "unimix", "critic_space")


@dataclass
class ActorCriticConfig:
    """Actor, critic and their training on imagined rollouts (Dreamer-style).

    Networks and action space:
        latent_dim, action_dim: sizes D and A (None: taken from the world model).
        discrete: one-hot categorical actions (A choices) instead of a box.
        action_low, action_high: the box bounds, one per action dimension (or one for all).
        hidden: MLP hidden sizes of actor and critic.  layer_norm: LayerNorm after each hidden layer.
        min_std, max_std: range of the actor's Gaussian std before the tanh squashing.
        unimix: the discrete actor mixes this much of the uniform distribution into its policy.
        critic_space: the critic predicts and regresses ``symlog(V)`` ("symlog", DreamerV3) or ``V``.

    Imagination and returns:
        horizon: imagined steps H per start state (DreamerV3: 15).
        discount, return_lambda: gamma and lambda of the lambda-returns.
        sample_dynamics: roll out sampled (True) or mean (False) latent transitions.

    Training (``updates`` Adam steps on ``batch_size`` start states each):
        actor_lr, critic_lr, grad_clip: optimisers and gradient-norm clipping.
        entropy_coef: weight of the actor's entropy bonus (returns are normalised, see below).
        target_tau: the target critic moves this fraction towards the critic after each update.
        return_scale_decay, return_percentiles: returns are divided by ``max(1, S)`` where S is an
            exponential moving average of the spread between these percentiles (DreamerV3).
        actor_grad: "dynamics" backpropagates the returns through the model (continuous),
            "reinforce" uses the score function with the critic as baseline (discrete);
            "auto" picks by the action space.

    Start states (filtered beliefs from real sequences):
        context: frames filtered into each start belief.
        start_stride: one start window every this many frames of each dataset sequence.
        max_starts: at most this many start states are kept.
        log_every: metrics are averaged and logged every this many updates.
        seed: network initialisation, start sampling and the actor's noise.
    """

    latent_dim: int | None = None
    action_dim: int | None = None
    discrete: bool = False
    action_low: tuple[float, ...] = (-1.0,)
    action_high: tuple[float, ...] = (1.0,)
    hidden: tuple[int, ...] = (128, 128)
    layer_norm: bool = True
    min_std: float = 0.1
    max_std: float = 1.0
    unimix: float = 0.01
    critic_space: CriticSpace = "symlog"

    horizon: int = 15
    discount: float = 0.99
    return_lambda: float = 0.95
    sample_dynamics: bool = False

    updates: int = 1000
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    grad_clip: float = 100.0
    entropy_coef: float = 3e-4
    target_tau: float = 0.02
    return_scale_decay: float = 0.99
    return_percentiles: tuple[float, float] = (0.05, 0.95)
    actor_grad: ActorGrad = "auto"

    context: int = 8
    start_stride: int = 4
    max_starts: int = 4096
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        self.action_low = tuple(float(x) for x in _as_tuple(self.action_low))
        self.action_high = tuple(float(x) for x in _as_tuple(self.action_high))
        self.hidden = tuple(int(h) for h in _as_tuple(self.hidden))
        percentiles = tuple(float(q) for q in _as_tuple(self.return_percentiles))
        if len(percentiles) != 2 or not 0.0 <= percentiles[0] < percentiles[1] <= 1.0:
            raise ValueError(f"return_percentiles: expected (low, high) with 0 <= low < high <= 1, "
                             f"got {percentiles}")
        self.return_percentiles = (percentiles[0], percentiles[1])
        for name in ("horizon", "updates", "batch_size", "context", "start_stride", "max_starts", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("latent_dim", "action_dim"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name}: expected >= 1 or None, got {v}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount: expected in (0, 1], got {self.discount}")
        if not 0.0 <= self.return_lambda <= 1.0:
            raise ValueError(f"return_lambda: expected in [0, 1], got {self.return_lambda}")
        if not 0.0 < self.target_tau <= 1.0:
            raise ValueError(f"target_tau: expected in (0, 1], got {self.target_tau}")
        if not 0.0 <= self.return_scale_decay < 1.0:
            raise ValueError(f"return_scale_decay: expected in [0, 1), got {self.return_scale_decay}")
        if not 0.0 < self.min_std <= self.max_std:
            raise ValueError(f"min_std, max_std: expected 0 < min_std <= max_std, got {self.min_std}, {self.max_std}")
        if not 0.0 <= self.unimix < 1.0:
            raise ValueError(f"unimix: expected in [0, 1), got {self.unimix}")
        if self.critic_space not in ("symlog", "linear"):
            raise ValueError(f"critic_space: expected 'symlog' or 'linear', got {self.critic_space!r}")
        if self.actor_grad not in ("auto", "dynamics", "reinforce"):
            raise ValueError(f"actor_grad: expected 'auto', 'dynamics' or 'reinforce', got {self.actor_grad!r}")
        if self.discrete and self.actor_grad == "dynamics":
            raise ValueError("actor_grad: 'dynamics' needs continuous actions (discrete=False)")
        if any(h <= l for l, h in zip(self.action_low, self.action_high)):
            raise ValueError(f"action_low, action_high: expected low < high, got {self.action_low}, {self.action_high}")

    @property
    def gradient(self) -> Literal["dynamics", "reinforce"]:
        """The actor's gradient estimator (``actor_grad`` with "auto" resolved)."""
        if self.actor_grad == "auto":
            return "reinforce" if self.discrete else "dynamics"
        return self.actor_grad

    def dims(self) -> tuple[int, int]:
        """``(latent_dim, action_dim)``; an error while either is unset (``for_model`` sets both)."""
        if self.latent_dim is None or self.action_dim is None:
            raise ValueError("latent_dim, action_dim: required (ActorCriticConfig.for_model(model) sets them)")
        return int(self.latent_dim), int(self.action_dim)

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(low, high)``, each of length ``action_dim`` (one value given = one for all)."""
        A = int(self.action_dim or 1)
        lo, hi = self.action_low, self.action_high
        lo, hi = (lo * A if len(lo) == 1 else lo), (hi * A if len(hi) == 1 else hi)
        if len(lo) != A or len(hi) != A:
            raise ValueError(f"action_low, action_high: expected 1 or {A} values, got {len(lo)} and {len(hi)}")
        return lo, hi

    def for_model(self, model: Any) -> ActorCriticConfig:
        """A copy with ``latent_dim``/``action_dim`` from ``model`` (a ``WorldModel``); values already
        set must agree with the model's."""
        out = {}
        for name in ("latent_dim", "action_dim"):
            have, want = getattr(self, name), int(getattr(model, name))
            if have is not None and int(have) != want:
                raise ValueError(f"{name}: the config says {have}, the model has {want}")
            out[name] = want
        return replace(self, **out)

    def for_action_space(self, space: Any) -> ActorCriticConfig:
        """A copy whose action space is a Gymnasium ``Box`` (bounds) or ``Discrete`` (one-hot) space."""
        import numpy as np
        from gymnasium import spaces

        if isinstance(space, spaces.Discrete):
            return replace(self, discrete=True, action_dim=int(space.n), action_low=(0.0,), action_high=(1.0,))
        if isinstance(space, spaces.Box) and len(space.shape) == 1:
            low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ValueError("space: the actor needs finite action bounds")
            return replace(self, discrete=False, action_dim=int(space.shape[0]),
                           action_low=tuple(low.tolist()), action_high=tuple(high.tolist()))
        raise ValueError(f"space: expected a Discrete or a 1-D Box action space, got {space}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ActorCriticConfig:
        """A config from plain values (a YAML mapping or a saved file); unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"actor-critic config: unknown keys {unknown}")
        return cls(**values)


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)
