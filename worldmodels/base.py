"""The contracts every world model in the package honours.

Data conventions (batch-first):

* ``obs``      ``[B, T, C, H, W]`` float in [0, 1]; ``obs[:, t]`` is the frame at time t.
* ``actions``  ``[B, T, A]`` float (one-hot for discrete actions); ``actions[:, t]`` is the
  action taken *after* seeing ``obs[:, t]``, which leads to ``obs[:, t + 1]``.
* ``rewards``  ``[B, T]``; ``rewards[:, t]`` is the reward returned by ``env.step(actions[:, t])``.
* ``mask``     ``[B, T]``; 1 = frame observed, 0 = frame missing (to be imputed).
* ``states``   ``[B, T, S]``; the simulator's true low-dimensional state at ``obs[:, t]``
  (evaluation only, never used for training).

Planner protocol (what `agents` may rely on):

* ``observe(obs, actions, mask) -> Belief`` filters a context and returns the belief over the
  latent state at the time of the last frame ``T - 1`` (``actions[:, T - 1]`` is ignored).
* ``imagine(belief, actions) -> latents``: ``actions`` is ``[B, N, H, A]`` (N candidate
  sequences per batch element); ``latents[:, n, h]`` ``[B, N, H, D]`` is the latent state
  reached after applying ``actions[:, n, h]``, i.e. at time ``T - 1 + h + 1``.
* ``decode(latents) -> frames``: ``[..., D] -> [..., C, H, W]`` in [0, 1].
* ``belief.features()`` ``[B, D]``: the latent (mean) at the current time, same space as
  ``imagine``'s output, so reward heads and goal costs apply to both.

Stepwise protocol (for RL loops and model environments; models without it raise
``NotImplementedError``, see :func:`supports_step`):

* ``initial_state(belief) -> LatentState``: the model's recurrent state at the belief's time.
* ``step(state, actions [B, A]) -> (state, features [B, D])``: one action; ``features`` are in
  the space of ``imagine``'s latents. A loop of ``step`` reproduces ``imagine`` with ``N = 1``
  (with ``sample=True`` and equal generators too), at a cost per step independent of the number
  of steps taken, and is differentiable with respect to the actions and the start belief.

Construction (so checkpoints can rebuild any model): every model takes one config dataclass,
``Model(config)``, declares it as the class attribute ``config_class`` and keeps it as
``self.config``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Literal, Protocol, TypeVar

import torch
from torch import nn

_S = TypeVar("_S", bound="LatentState")


@dataclass
class Batch:
    """A batch of sequences. See the module docstring for shapes and conventions."""

    obs: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor | None = None
    states: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """Move every tensor to ``device``; floating tensors are cast to ``dtype`` if given."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                out[f.name] = None
            elif dtype is not None and v.is_floating_point():
                out[f.name] = v.to(device=device, dtype=dtype, non_blocking=True)
            else:
                out[f.name] = v.to(device=device, non_blocking=True)
        return Batch(**out)

    @property
    def batch_size(self) -> int:
        return self.obs.shape[0]

    @property
    def seq_len(self) -> int:
        return self.obs.shape[1]

    def num_frames(self) -> int:
        return self.obs.shape[0] * self.obs.shape[1]


@dataclass
class LossOutput:
    """What a model's ``loss`` returns: the scalar to minimise and named scalar terms to log.

    ``terms`` holds detached or non-detached 0-dim tensors (ELBO parts, KL, reconstruction,
    variances ...). The trainer logs them and names the non-finite one when a step fails.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class Belief:
    """A model's posterior summary after ``observe``; models subclass it with their state.

    Subclasses must implement ``features`` and ``batch_size``.
    """

    def features(self) -> torch.Tensor:
        """Current latent state (mean), ``[B, D]``."""
        raise NotImplementedError

    @property
    def batch_size(self) -> int:
        raise NotImplementedError


class TensorBelief(Belief):
    """A belief that is one latent tensor ``z [B, D]`` (oracles, toy and test models)."""

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z

    def features(self) -> torch.Tensor:
        return self.z

    @property
    def batch_size(self) -> int:
        return self.z.shape[0]


class FastMeanImagine(Protocol):
    """A model's fused means-only rollout for planning without gradients (``fast_mean_imagine``)."""

    def __call__(self, belief: Belief, actions: torch.Tensor) -> torch.Tensor:
        """``actions [B, N, H, A]`` -> mean latents ``[B, N, H, D]``, as ``imagine(belief, actions)``."""
        ...

    def imagine_features_first(self, belief: Belief, actions: torch.Tensor) -> torch.Tensor:
        """``actions [B, N, H, A]`` -> mean latents ``[H, D, B*N]`` (candidate index ``b * N + j`` last)."""
        ...


@dataclass(frozen=True)
class LatentState:
    """A model's stepwise latent state: a dataclass whose fields are tensors, batch dim first.

    Models subclass it with their own fields (e.g. the LGSSM mean and covariance and the
    LSTM state of the KVAE). Every field is a tensor ``[B, ...]`` (size-0 trailing dims are
    allowed), so RL code can detach, select and merge states without knowing the model.
    """

    def _map(self: _S, fn: Callable[[torch.Tensor], torch.Tensor]) -> _S:
        return type(self)(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        return getattr(self, fields(self)[0].name).shape[0]

    def detach(self: _S) -> _S:
        """The same state cut from the autograd graph."""
        return self._map(torch.Tensor.detach)

    def to(self: _S, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> _S:
        """Move every tensor to ``device``; floating tensors are cast to ``dtype`` if given."""
        return self._map(lambda x: x.to(device=device, dtype=dtype if x.is_floating_point() else None))

    def index(self: _S, idx: torch.Tensor | slice) -> _S:
        """Rows ``idx`` of every field: a bool mask ``[B]``, integer indices ``[K]`` or a slice."""
        return self._map(lambda x: x[idx])

    def where(self: _S, mask: torch.Tensor, other: _S) -> _S:
        """Rows of ``other`` where ``mask [B]`` (bool) is True, of ``self`` elsewhere."""
        check_state_pair(self, other)
        mask = mask.to(device=getattr(self, fields(self)[0].name).device, dtype=torch.bool)
        if mask.shape != (self.batch_size,):
            raise ValueError(f"mask: expected shape [{self.batch_size}], got {list(mask.shape)}")

        def pick(name: str) -> torch.Tensor:
            x, y = getattr(self, name), getattr(other, name)
            return torch.where(mask.view(-1, *([1] * (x.dim() - 1))), y, x)

        return type(self)(**{f.name: pick(f.name) for f in fields(self)})

    def replace(self: _S, idx: torch.Tensor, rows: _S) -> _S:
        """A copy whose rows ``idx [K]`` (integer indices) are the ``K`` rows of ``rows``."""
        check_state_pair(self, rows, same_batch=False)
        if rows.batch_size != idx.numel():
            raise ValueError(f"rows: expected batch size {idx.numel()} (len(idx)), got {rows.batch_size}")
        return type(self)(**{f.name: getattr(self, f.name).index_copy(0, idx, getattr(rows, f.name))
                             for f in fields(self)})


def check_state_pair(a: LatentState, b: LatentState, same_batch: bool = True) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``a`` and ``b`` are states of one kind that can be
    merged row-wise (same per-row shapes; the same batch size if ``same_batch``)."""
    if type(a) is not type(b):
        raise TypeError(f"states: expected two {type(a).__name__}, got {type(b).__name__}")
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x.shape[1:] != y.shape[1:] or (same_batch and x.shape[0] != y.shape[0]):
            raise ValueError(f"state field {f.name}: shapes {list(x.shape)} and {list(y.shape)} differ")


#: what ``impute`` returns at observed frames: the model's estimate, or the frame as given
Observed = Literal["estimate", "copy"]


def fill_missing(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor, obs: torch.Tensor,
                 mask: torch.Tensor, observed: Observed) -> torch.Tensor:
    """Frames ``[B, T, C, H, W]`` from per-frame ``latents [B, T, D]``: all decoded
    (``observed="estimate"``), or ``obs`` where ``mask [B, T]`` is set and decoded only where it
    is not (``"copy"``; the decoder then runs on the missing frames alone)."""
    if observed == "estimate":
        return decode(latents)
    if observed != "copy":
        raise ValueError(f"observed: expected 'estimate' or 'copy', got {observed!r}")
    out = obs.clone()
    missing = mask < 0.5
    if bool(missing.any()):
        out[missing] = decode(latents[missing]).to(out.dtype)
    return out



class WorldModel(nn.Module, ABC):
    """Base class of the package's world models (KVAE, GTM-SM, the plain VAE baseline ...)."""

    #: the config dataclass the constructor takes: ``Model(config)``.
    config_class: type

    #: dimension D of the latents returned by ``imagine`` and ``Belief.features``.
    latent_dim: int
    #: dimension A of the action vectors the model is conditioned on.
    action_dim: int

    @abstractmethod
    def loss(self, batch: Batch) -> LossOutput:
        """Training objective on a batch (e.g. the negative ELBO per frame)."""

    @abstractmethod
    def observe(
        self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> Belief:
        """Filter a context ``obs [B, T, C, H, W]``, ``actions [B, T, A]``, ``mask [B, T]``."""

    @abstractmethod
    def imagine(
        self,
        belief: Belief,
        actions: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Roll out ``actions [B, N, H, A]`` from ``belief``; returns latents ``[B, N, H, D]``.

        ``sample=False`` propagates means; ``sample=True`` draws one trajectory per candidate.
        """

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Mean frames ``[..., C, H, W]`` in [0, 1] for latents ``[..., D]``."""

    # ------------------------------------------------------------------ stepwise protocol
    def initial_state(self, belief: Belief, *, sample: bool = False,
                      generator: torch.Generator | None = None) -> LatentState:
        """The stepwise state at the belief's time (see the module docstring).

        ``sample=True`` draws the state from the belief where the model's ``imagine`` does so
        (same random draws, in the same order, as ``imagine`` with ``N = 1``).
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no stepwise latent state (initial_state/step); "
            "roll it out with imagine instead")

    def step(self, state: LatentState, actions: torch.Tensor, *, sample: bool = False,
             generator: torch.Generator | None = None) -> tuple[LatentState, torch.Tensor]:
        """Advance ``state`` by ``actions [B, A]``: ``(next state, features [B, D])``.

        ``sample=False`` propagates means, ``sample=True`` draws the model's noise. Batched,
        differentiable, and its cost does not depend on how many steps came before.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no stepwise latent state (initial_state/step); "
            "roll it out with imagine instead")

    def fast_mean_imagine(self) -> FastMeanImagine | None:
        """A faster means-only ``imagine`` for planning without gradients, or None (default).

        Models that offer one return an object with ``__call__(belief, actions)`` (the same as
        ``imagine(belief, actions)``) and ``imagine_features_first(belief, actions) -> [H, D, B*N]``.
        """
        return None

    def impute(
        self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor, method: str = "smooth",
        observed: Observed = "estimate",
    ) -> torch.Tensor:
        """Fill in missing frames: returns ``[B, T, C, H, W]`` estimates of every frame.

        ``mask [B, T]`` marks observed frames. Models without imputation raise
        ``NotImplementedError``; ``method`` selects e.g. "smooth" or "filter" where supported.
        ``observed="copy"`` returns the observed frames as given and decodes only the missing
        ones (`fill_missing`; faster when few frames are missing).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement imputation")

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, so the trainer can freeze some during warm-up phases."""
        return {"all": [p for p in self.parameters() if p.requires_grad]}

    @torch.no_grad()
    def predict(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        context: int,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Open-loop prediction of frames ``context .. T-1`` from the first ``context`` frames.

        Args:
            obs: ``[B, T, C, H, W]``; only ``obs[:, :context]`` is shown to the model.
            actions: ``[B, T, A]``; ``actions[:, context-1 : T-1]`` drive the prediction.
            context: number of observed frames k >= 1.
            mask: optional ``[B, context]`` mask over the context frames.

        Returns:
            ``[B, T - context, C, H, W]`` predicted frames.
        """
        T = obs.shape[1]
        if not 1 <= context < T:
            raise ValueError(f"context: expected 1 <= context < T={T}, got {context}")
        belief = self.observe(obs[:, :context], actions[:, :context], mask)
        future = actions[:, context - 1 : T - 1].unsqueeze(1)  # [B, 1, H, A]
        latents = self.imagine(belief, future)[:, 0]  # [B, H, D]
        return self.decode(latents)


def as_world_model(model: nn.Module, source: str = "model") -> WorldModel:
    """``model`` itself; a ``TypeError`` naming ``source`` (e.g. a checkpoint path) unless it is a
    `WorldModel` (planners, model environments and RL loops need its protocol)."""
    if not isinstance(model, WorldModel):
        raise TypeError(f"{source}: holds a {type(model).__name__}, not a WorldModel (observe/imagine/decode)")
    return model


def supports_step(model: nn.Module) -> bool:
    """Whether ``model`` implements the stepwise protocol (``initial_state`` and ``step``)."""
    if not isinstance(model, WorldModel):
        return False
    cls = type(model)
    return cls.step is not WorldModel.step and cls.initial_state is not WorldModel.initial_state
