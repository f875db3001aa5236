"""What the DKF and DVBF baselines share: a diagonal-Gaussian latent state ``z [.., z_dim]``
inferred per frame, a conv/MLP decoder ``p(x_t | z_t)``, the per-sequence ELBO with analytic
KLs, and the planner protocol (``observe`` / ``imagine`` / ``decode`` / ``impute``).

A subclass builds ``encoder``, ``decoder`` and ``pixel_logvar`` (:meth:`_init_likelihood`) and
provides ``transition(z [N, n], u [N, p]) -> (mean, logvar) [N, n]`` and
``_posterior(obs, actions, mask, sample, generator) -> (z, q mean, q logvar, prior mean,
prior logvar)``, each ``[B, T, n]``.

The stepwise state (``initial_state`` / ``step``) is the state ``z`` itself (`GaussianStepState`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from worldmodels.base import Batch, Belief, LatentState, LossOutput, Observed, WorldModel, fill_missing
from worldmodels.checks import check_batch_frames, check_frames, check_sequences, check_shape, model_dtype
from worldmodels.nets import decoder_log_prob, decoder_mean, gaussian_kl


class GaussianStateBelief(Belief):
    """Posterior over the state at the last context frame: ``mean, logvar [B, z_dim]``."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean, self.logvar = mean, logvar

    def features(self) -> torch.Tensor:
        return self.mean

    @property
    def batch_size(self) -> int:
        return self.mean.shape[0]


@dataclass(frozen=True)
class GaussianStepState(LatentState):
    """Stepwise state of the Gaussian-state baselines: the state ``z [B, z_dim]`` (mean or sample)."""

    z: torch.Tensor

class GaussianStateModel(WorldModel):
    """Base of the sequential-VAE baselines (see the module docstring for the subclass contract)."""

    belief_class: type[GaussianStateBelief] = GaussianStateBelief
    # built by each subclass (see the module docstring)
    obs_shape: tuple[int, int, int]
    encoder: nn.Module
    decoder: nn.Module
    pixel_logvar: nn.Parameter | None
    #: ``p(z_t | z_{t-1}, u_t)``: ``z [N, n]``, ``u [N, p]`` -> ``(mean, logvar)`` ``[N, n]``
    transition: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

    @abstractmethod
    def _posterior(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor, sample: bool,
                   generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, q mean, q logvar, prior mean, prior logvar)``, each ``[B, T, n]``."""

    def _init_likelihood(self, likelihood: str, obs_shape: tuple[int, ...], init_pixel_var: float) -> None:
        """Bernoulli pixels, or Gaussian ones with a learned per-pixel log-variance."""
        if likelihood == "gaussian":
            self.pixel_logvar = nn.Parameter(torch.full(obs_shape, math.log(init_pixel_var)))
        else:
            self.register_parameter("pixel_logvar", None)

    def _check(self, obs, actions, mask) -> torch.Tensor:
        """Validate ``obs [B, T, C, H, W]``, ``actions [B, T, A]``, ``mask [B, T]``; the mask as float."""
        return check_sequences(obs, actions, mask, self.obs_shape, self.action_dim)

    def frame_log_prob(self, z: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` summed over pixels: ``z [B, T, n]``, ``obs [B, T, C, H, W]`` -> ``[B, T]``."""
        return decoder_log_prob(self.decoder(z), obs, self.pixel_logvar)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.shape[-1] != self.latent_dim:
            raise ValueError(f"latents: expected shape [..., {self.latent_dim}], got {list(latents.shape)}")
        return decoder_mean(self.decoder(latents), self.pixel_logvar)

    # ------------------------------------------------------------------ objective
    def elbo(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-sequence ``elbo``, ``recon``, ``kl`` ``[B]`` and ``frames`` (observed counts)."""
        mask = self._check(batch.obs, batch.actions, batch.mask)
        batch = check_batch_frames(batch, model_dtype(self))
        z, qm, qv, pm, pv = self._posterior(batch.obs, batch.actions, mask, True, generator)
        recon = (self.frame_log_prob(z, batch.obs) * mask).sum(-1)
        kl = gaussian_kl(qm, qv, pm, pv).sum(-1)
        return dict(elbo=recon - kl, recon=recon, kl=kl, frames=mask.sum(-1))

    def loss(self, batch: Batch) -> LossOutput:
        """Negative ELBO per observed frame (KL scaled by ``config.kl_weight`` where it exists)."""
        e = self.elbo(batch)
        frames = e["frames"].sum().clamp(min=1.0)
        kl_weight = getattr(self.config, "kl_weight", 1.0)
        loss = -(e["recon"] - kl_weight * e["kl"]).sum() / frames
        return LossOutput(loss, {"elbo_per_frame": (e["elbo"].sum() / frames).detach(),
                                 "elbo_per_seq": e["elbo"].mean().detach(),
                                 "recon_per_frame": (e["recon"].sum() / frames).detach(),
                                 "kl_per_frame": (e["kl"].sum() / frames).detach()})

    # ------------------------------------------------------------------ planner protocol
    def observe(self, obs, actions, mask=None) -> GaussianStateBelief:
        mask = self._check(obs, actions, mask)
        obs = check_frames(obs, mask, model_dtype(self))
        _, qm, qv, _, _ = self._posterior(obs, actions, mask, sample=False)
        return self.belief_class(qm[:, -1], qv[:, -1])

    def imagine(self, belief: GaussianStateBelief, actions: torch.Tensor, *, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Roll ``actions [B, N, H, A]`` through the transition: latents ``[B, N, H, z_dim]``."""
        self._check_belief(belief)
        Bsz = belief.batch_size
        check_shape("actions", actions, (Bsz, "N", "H", self.action_dim))
        N, H = actions.shape[1:3]
        z = belief.mean.repeat_interleave(N, 0)
        if sample:
            z = z + torch.exp(0.5 * belief.logvar).repeat_interleave(N, 0) * _randn(z, generator)
        acts = actions.reshape(Bsz * N, H, self.action_dim)
        out = []
        for h in range(H):
            z = self._advance(z, acts[:, h], sample, generator)
            out.append(z)
        return torch.stack(out, 1).reshape(Bsz, N, H, self.latent_dim)

    def _check_belief(self, belief: Belief) -> None:
        if not isinstance(belief, self.belief_class):
            raise TypeError(f"belief must be a {self.belief_class.__name__}, got {type(belief).__name__}")

    def _advance(self, z: torch.Tensor, u: torch.Tensor, sample: bool,
                 generator: torch.Generator | None) -> torch.Tensor:
        """One transition ``z [R, n]``, ``u [R, A]`` -> ``[R, n]``: its mean, or a draw."""
        m, lv = self.transition(z, u)
        return m + torch.exp(0.5 * lv) * _randn(m, generator) if sample else m

    # ------------------------------------------------------------------ stepwise protocol
    def initial_state(self, belief: GaussianStateBelief, *, sample: bool = False,
                      generator: torch.Generator | None = None) -> GaussianStepState:
        """``z`` = the belief's mean, or (``sample=True``) a draw from it as ``imagine`` makes."""
        self._check_belief(belief)
        z = belief.mean
        if sample:
            z = z + torch.exp(0.5 * belief.logvar) * _randn(z, generator)
        return GaussianStepState(z=z)

    def step(self, state: GaussianStepState, actions: torch.Tensor, *, sample: bool = False,
             generator: torch.Generator | None = None) -> tuple[GaussianStepState, torch.Tensor]:
        """One transition under ``actions [B, A]``: ``(next state, features = z [B, z_dim])``."""
        if not isinstance(state, GaussianStepState):
            raise TypeError(f"state must be a GaussianStepState, got {type(state).__name__}")
        check_shape("actions", actions, (state.batch_size, self.action_dim))
        z = self._advance(state.z, actions, sample, generator)
        return GaussianStepState(z=z), z

    @torch.no_grad()
    def impute(self, obs, actions, mask, method: str = "smooth", observed: Observed = "estimate") -> torch.Tensor:
        """Decoded posterior means of every frame (missing ones inferred); ``method`` is accepted
        for API parity: the inference direction is fixed by the model."""
        if method not in ("smooth", "filter"):
            raise ValueError(f"method: expected 'smooth' or 'filter', got {method!r}")
        mask = self._check(obs, actions, mask)
        obs = check_frames(obs, mask, model_dtype(self))
        _, qm, _, _, _ = self._posterior(obs, actions, mask, sample=False)
        return fill_missing(self.decode, qm, obs, mask, observed)


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
