"""Goal-conditioned imagination: any world model whose stepwise state also carries a goal vector.

`GoalConditioned` wraps a `WorldModel` with the stepwise protocol. Its features are
``cat(model features [D], goal [G])`` and its state is the model's state plus the goal, which no
step changes, so an actor-critic trained on it (``train_actor_critic`` unchanged) sees the goal
at every imagined step and learns a policy ``pi(a | z, goal)``. `GoalDistanceReward` scores an
imagined transition by minus the squared distance between a slice of the model's features (e.g.
an imagined frame code) and a slice of the goal (e.g. the code of the goal view), the cost a
goal-reaching planner minimises. `goal_start_states` pairs filtered beliefs with goals into the
start pool that ``train_actor_critic`` takes as ``data_or_starts``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from worldmodels.base import Batch, Belief, LatentState, LossOutput, WorldModel, supports_step
from worldmodels.checks import check_shape

from .starts import StartStates


@dataclass(frozen=True)
class GoalState(LatentState):
    """A wrapped model's stepwise ``inner`` state (batch ``B``) and the goal ``[B, G]`` it carries.

    Selecting and merging rows (``index``, ``where``, ``replace``, ``detach``, ``to``) acts on
    both, so pools and vectorised resets work as for any `LatentState`.
    """

    goal: torch.Tensor
    inner: LatentState

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> GoalState:
        return GoalState(fn(self.goal), self.inner._map(fn))

    def where(self, mask: torch.Tensor, other: GoalState) -> GoalState:
        """Rows of ``other`` where ``mask [B]`` (bool) is True, of ``self`` elsewhere."""
        if not isinstance(other, GoalState):
            raise TypeError(f"states: expected two GoalState, got {type(other).__name__}")
        check_shape("other.goal", other.goal, tuple(self.goal.shape))
        inner = self.inner.where(mask, other.inner)  # checks the mask
        m = mask.to(device=self.goal.device, dtype=torch.bool).view(-1, 1)
        return GoalState(torch.where(m, other.goal, self.goal), inner)

    def replace(self, idx: torch.Tensor, rows: GoalState) -> GoalState:
        """A copy whose rows ``idx [K]`` (integer indices) are the ``K`` rows of ``rows``."""
        if not isinstance(rows, GoalState):
            raise TypeError(f"rows: expected a GoalState, got {type(rows).__name__}")
        check_shape("rows.goal", rows.goal, (idx.numel(), self.goal.shape[1]))
        return GoalState(self.goal.index_copy(0, idx, rows.goal), self.inner.replace(idx, rows.inner))


class GoalBelief(Belief):
    """A wrapped model's belief and the goal ``[B, G]``; ``features() = cat(inner features, goal)``."""

    def __init__(self, inner: Belief, goal: torch.Tensor) -> None:
        self.inner = inner
        self.goal = goal

    def features(self) -> torch.Tensor:
        return torch.cat([self.inner.features(), self.goal.to(self.inner.features())], -1)

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size


class GoalConditioned(WorldModel):
    """``model`` seen with a goal vector of ``goal_dim`` numbers appended to its features.

    Latent features are ``[..., model.latent_dim + goal_dim]``: the model's, then the goal's.
    ``with_goal(belief, goal)`` (or ``observe(..., goal=goal)``) attaches one goal per row;
    ``imagine`` and ``step`` roll the model and carry the goal unchanged. The wrapped model is a
    sub-module (moved, frozen and put in eval mode with the wrapper) and is trained on its own:
    the wrapper has no loss and no checkpoint of its own.
    """

    def __init__(self, model: WorldModel, goal_dim: int) -> None:
        super().__init__()
        if not supports_step(model):
            raise TypeError(f"model: {type(model).__name__} has no stepwise latent state (initial_state/step)")
        if int(goal_dim) < 1:
            raise ValueError(f"goal_dim: expected >= 1, got {goal_dim}")
        self.model = model
        self.goal_dim = int(goal_dim)
        self.latent_dim = int(model.latent_dim) + self.goal_dim
        self.action_dim = int(model.action_dim)

    @property
    def model_dim(self) -> int:
        """The wrapped model's feature size D (the goal occupies features ``[D, D + G)``)."""
        return self.latent_dim - self.goal_dim

    def check_goal(self, goal: torch.Tensor, batch_size: int) -> torch.Tensor:
        """``goal`` if it is ``[batch_size, goal_dim]`` and finite, else a ``ValueError`` naming it."""
        if not isinstance(goal, torch.Tensor):
            raise TypeError(f"goal: expected a tensor [{batch_size}, {self.goal_dim}], got {type(goal).__name__}")
        check_shape("goal", goal, (batch_size, self.goal_dim))
        if not torch.isfinite(goal).all():
            raise ValueError("goal: expected finite values")
        return goal

    def with_goal(self, belief: Belief, goal: torch.Tensor) -> GoalBelief:
        """The wrapped model's ``belief`` (batch ``B``) with one goal per row, ``goal [B, G]``."""
        return GoalBelief(belief, self.check_goal(goal, belief.batch_size))

    # --- planner protocol ------------------------------------------------------------------
    def loss(self, batch: Batch) -> LossOutput:
        raise NotImplementedError("GoalConditioned has no loss: train the wrapped model itself")

    def observe(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None,
                goal: torch.Tensor | None = None) -> GoalBelief:
        """The wrapped model's ``observe`` with ``goal [B, G]`` attached (required)."""
        if goal is None:
            raise ValueError(f"goal: required, one [{self.goal_dim}] vector per sequence")
        return self.with_goal(self.model.observe(obs, actions, mask), goal)

    def imagine(self, belief: Belief, actions: torch.Tensor, *, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The wrapped model's latents ``[B, N, H, D]`` with the goal appended: ``[B, N, H, D + G]``."""
        gb = self._belief(belief)
        z = self.model.imagine(gb.inner, actions, sample=sample, generator=generator)
        goal = gb.goal.to(z)[:, None, None].expand(*z.shape[:3], self.goal_dim)
        return torch.cat([z, goal], -1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Frames of the wrapped model's part of ``latents [..., D + G]``."""
        if latents.shape[-1] != self.latent_dim:
            raise ValueError(f"latents: expected last dim {self.latent_dim}, got shape {list(latents.shape)}")
        return self.model.decode(latents[..., :self.model_dim])

    # --- stepwise protocol -----------------------------------------------------------------
    def initial_state(self, belief: Belief, *, sample: bool = False,
                      generator: torch.Generator | None = None) -> GoalState:
        gb = self._belief(belief)
        return GoalState(gb.goal, self.model.initial_state(gb.inner, sample=sample, generator=generator))

    def step(self, state: LatentState, actions: torch.Tensor, *, sample: bool = False,
             generator: torch.Generator | None = None) -> tuple[GoalState, torch.Tensor]:
        """One action ``actions [B, A]``: the wrapped model steps, the goal stays;
        features ``[B, D + G]``."""
        if not isinstance(state, GoalState):
            raise TypeError(f"state: expected a GoalState, got {type(state).__name__}")
        inner, f = self.model.step(state.inner, actions, sample=sample, generator=generator)
        return GoalState(state.goal, inner), torch.cat([f, state.goal.to(f)], -1)

    def _belief(self, belief: Belief) -> GoalBelief:
        if not isinstance(belief, GoalBelief):
            raise TypeError(f"belief: expected a GoalBelief (GoalConditioned.with_goal), got {type(belief).__name__}")
        return belief


class GoalDistanceReward:
    """Reward ``-|after[..., code] - after[..., goal]|^2`` of imagined transitions.

    ``code`` and ``goal`` are slices of equal length into the features of a `GoalConditioned`
    model (use `for_model`): the reward is 0 when the imagined code equals the goal's, the same
    cost as a planner's ``QuadraticCost`` with the goal code as target and weight 1 on the code.
    Shapes: ``before, after [..., D + G]``, ``actions [..., A]`` -> ``[...]``.
    """

    def __init__(self, code: slice, goal: slice) -> None:
        for name, s in (("code", code), ("goal", goal)):
            if not isinstance(s, slice) or s.start is None or s.stop is None or s.step not in (None, 1) \
                    or not 0 <= s.start < s.stop:
                raise ValueError(f"{name}: expected a slice(start, stop) with 0 <= start < stop, got {s}")
        if code.stop - code.start != goal.stop - goal.start:
            raise ValueError(f"code, goal: expected slices of equal length, got {code} and {goal}")
        self.code, self.goal = code, goal

    @classmethod
    def for_model(cls, model: GoalConditioned, code: slice, goal: slice | None = None) -> GoalDistanceReward:
        """``code``: the compared slice of the wrapped model's features; ``goal``: the slice of the
        goal vector it is compared with (default: the goal's first ``len(code)`` numbers)."""
        n = code.stop - code.start if code.start is not None and code.stop is not None else 0
        goal = goal if goal is not None else slice(0, n)
        if code.stop is None or code.stop > model.model_dim:
            raise ValueError(f"code: expected a slice inside the model's {model.model_dim} features, got {code}")
        if goal.stop is None or goal.start is None or goal.stop > model.goal_dim:
            raise ValueError(f"goal: expected a slice inside the {model.goal_dim} goal numbers, got {goal}")
        D = model.model_dim
        return cls(code, slice(D + goal.start, D + goal.stop))

    def __call__(self, before: torch.Tensor, actions: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        if after.shape[-1] < self.goal.stop or after.shape[-1] < self.code.stop:
            raise ValueError(f"after: expected at least {max(self.goal.stop, self.code.stop)} features, "
                             f"got shape {list(after.shape)}")
        return -((after[..., self.code] - after[..., self.goal]) ** 2).sum(-1)


@torch.no_grad()
def goal_start_states(model: GoalConditioned, belief: Belief, goals: torch.Tensor) -> StartStates:
    """A start pool of ``B * K`` rows from ``B`` beliefs of the wrapped model and ``goals [B, K, G]``
    (``K`` goals per belief): row ``b * K + k`` is belief ``b`` with goal ``goals[b, k]``."""
    B = belief.batch_size
    if goals.dim() != 3:
        raise ValueError(f"goals: expected shape [{B}, K, {model.goal_dim}], got {list(goals.shape)}")
    check_shape("goals", goals, (B, "K", model.goal_dim))
    K = goals.shape[1]
    inner = model.model.initial_state(belief)
    feats = belief.features()
    rows = torch.arange(B, device=feats.device).repeat_interleave(K)
    flat = model.check_goal(goals.reshape(B * K, model.goal_dim).to(feats), B * K)
    return StartStates(GoalState(flat, inner.index(rows)), torch.cat([feats[rows], flat], -1))
