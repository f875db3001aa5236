"""``ActorCritic``: the actor, the critic, its slow target copy and the return scale, with
saving and loading as data."""

from __future__ import annotations

import copy
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from worldmodels.atomic_io import atomic_write

from .config import ActorCriticConfig
from .networks import Actor, Critic
from .returns import ReturnScale

#: format tag written into saved files
FORMAT = "worldmodels.actor_critic/1"


class ActorCriticFileError(ValueError):
    """A file that is not an actor-critic saved by `ActorCritic.save` (or is damaged)."""


class ActorCritic(nn.Module):
    """Actor ``pi(a | z)``, critic ``V(z)`` and target critic on a world model's latent features.

    ``config.latent_dim`` and ``config.action_dim`` must be set (``ActorCriticConfig.for_model``).
    The network weights follow ``config.seed``, not the caller's random state.
    """

    def __init__(self, config: ActorCriticConfig):
        super().__init__()
        if config.latent_dim is None or config.action_dim is None:
            raise ValueError("config: latent_dim and action_dim must be set (ActorCriticConfig.for_model)")
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.actor = Actor(config)
            self.critic = Critic(config)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_scale = ReturnScale(config.return_scale_decay, config.return_percentiles)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        """The critic's value ``[...]`` of latent features ``[..., D]`` (a ``value_fn`` for MPC)."""
        return self.critic(features)

    @torch.no_grad()
    def update_target(self, tau: float | None = None) -> None:
        """Move the target critic's weights ``tau`` (default ``config.target_tau``) towards the critic's."""
        tau = self.config.target_tau if tau is None else tau
        for t, p in zip(self.target_critic.parameters(), self.critic.parameters()):
            t.lerp_(p, tau)

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Atomic ``torch.save`` of the plain config dict and the weights; an existing file is
        replaced only with ``overwrite=True`` (else ``FileExistsError``)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        payload = {"format": FORMAT, "config": asdict(self.config), "state_dict": self.state_dict()}
        return atomic_write(path, lambda f: torch.save(payload, f))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> ActorCritic:
        """An actor-critic saved by `save`, read as data only (``weights_only=True``); anything else
        (pickled code, a wrong schema, mis-shaped weights) raises `ActorCriticFileError`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"actor-critic not found: {path}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling refused, truncated zip, not a torch file ...
            first = str(e).splitlines()[0] if str(e) else ""
            raise ActorCriticFileError(f"actor-critic {path} cannot be read as data: {type(e).__name__}: "
                                       f"{first[:200]}") from e
        if (not isinstance(blob, dict) or blob.get("format") != FORMAT
                or not isinstance(blob.get("config"), dict) or not isinstance(blob.get("state_dict"), dict)
                or not all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values())):
            raise ActorCriticFileError(f"actor-critic {path}: expected {{'format': {FORMAT!r}, "
                                       "'config': mapping, 'state_dict': tensors}")
        try:
            ac = cls(ActorCriticConfig.from_dict(blob["config"]))
            ac.load_state_dict(blob["state_dict"])
        except (TypeError, ValueError, RuntimeError) as e:
            raise ActorCriticFileError(f"actor-critic {path}: config or weights do not fit: "
                                       f"{str(e).splitlines()[0][:200]}") from e
        return ac.to(device).eval()
