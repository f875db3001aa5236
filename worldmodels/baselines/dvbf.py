"""Deep variational Bayes filter, locally linear with fusion inference (Karl et al. 2017).

The DVBF-LL baseline of thesis table 6.1, in the "fusion" form of its follow-ups: the filtering
posterior over the state is the product of the transition prior and a Gaussian from the frame
encoder, so the transition is always in the loop and the latent space is forced to follow the
(locally linear) dynamics. For t = 0 .. T-1 with ``u_t = actions[t - 1]``::

    z_0 ~ N(0, I),             q(z_0 | x_{0:k-1}) = N(initial MLP of the first k frames)
    alpha_t = softmax(MLP(z_{t-1}, u_t))                       (M modes, 16 in the paper)
    z_t ~ N(A_t z_{t-1} + B_t u_t, diag sigma^2)              A_t, B_t = sum_k alpha_t^(k) (A, B)^(k)
    x_t ~ p(x_t | z_t)                                         (conv/MLP decoder)
    q(z_t | z_{t-1}, u_t, x_t) ∝ p(z_t | z_{t-1}, u_t) N(z_t; e(x_t), diag s^2(x_t))   (fusion)

ELBO per sequence: ``sum_t m_t log p(x_t | z_t) - KL(q_0 || N(0, I)) - sum_{t>=1} KL(q_t || p_t)``
with ``z_{t-1}`` sampled from q (single sample, analytic KLs). A missing frame (``m_t = 0``)
contributes no encoder factor, so there ``q_t = p_t`` (KL 0) and the state is predicted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from worldmodels.baselines.gaussian_state import GaussianStateBelief, GaussianStateModel
from worldmodels.checks import frame_shape
from worldmodels.nets import ConvEncoder, MLPDecoder, MLPEncoder, SubPixelDecoder, init_xavier_


@dataclass
class DVBFConfig:
    """Sizes and choices of a `DVBF`; shapes as in `worldmodels.base`."""

    obs_shape: tuple[int, int, int] = (1, 16, 16)
    action_dim: int = 1
    z_dim: int = 3
    num_modes: int = 16  # M base matrices (Karl et al. 2017 use 16 for the pendulum)
    alpha_hidden: int = 16
    init_frames: int = 3  # frames seen by the initial-state network
    encoder: str = "mlp"  # conv | mlp (the decoder follows)
    channels: int = 32
    num_layers: int = 3
    mlp_hidden: tuple[int, ...] = (128, 128)
    likelihood: str = "gaussian"  # bernoulli | gaussian (learned per-pixel variance)
    init_pixel_var: float = 0.1
    init_transition_var: float = 0.08  # diag sigma^2 of the transition noise (learned)
    init_b_scale: float = 0.05  # B^(k) ~ scale * N(0, 1); A^(k) = I

    def __post_init__(self) -> None:
        self.obs_shape = frame_shape(self.obs_shape)
        self.mlp_hidden = tuple(int(h) for h in self.mlp_hidden)
        for name, value, allowed in (("encoder", self.encoder, ("conv", "mlp")),
                                     ("likelihood", self.likelihood, ("bernoulli", "gaussian"))):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
        for name in ("z_dim", "num_modes", "init_frames", "alpha_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.action_dim < 0:
            raise ValueError(f"action_dim: expected >= 0, got {self.action_dim}")


class DVBFBelief(GaussianStateBelief):
    """Filtered posterior at the last context frame: ``mean, logvar [B, z_dim]``."""


def fuse(mean_p: torch.Tensor, logvar_p: torch.Tensor, mean_e: torch.Tensor,
         logvar_e: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of ``N(mean_p, exp(logvar_p))`` and, where ``mask [...]`` is 1, ``N(mean_e,
    exp(logvar_e))`` (diagonal, all ``[..., n]``): returns ``(mean, logvar)`` of the normalised
    product; where ``mask`` is 0 the first factor is returned."""
    m = mask.unsqueeze(-1)
    prec_p, prec_e = torch.exp(-logvar_p), m * torch.exp(-logvar_e)
    prec = prec_p + prec_e
    mean = (prec_p * mean_p + prec_e * mean_e) / prec
    return mean, -torch.log(prec)


class DVBF(GaussianStateModel):
    """Locally linear deep variational Bayes filter (fusion inference) with the planner protocol."""

    config_class = DVBFConfig
    belief_class = DVBFBelief

    def __init__(self, config: DVBFConfig) -> None:
        super().__init__()
        self.config = c = config
        C, H, W = c.obs_shape
        self.obs_shape = c.obs_shape
        self.latent_dim, self.action_dim = c.z_dim, c.action_dim
        n, p, K = c.z_dim, c.action_dim, c.num_modes
        if c.encoder == "conv":
            self.encoder = ConvEncoder(C, (H, W), n, c.channels, c.num_layers)
            self.decoder = SubPixelDecoder(n, C, (H, W), c.channels, c.num_layers)
        else:
            self.encoder = MLPEncoder(c.obs_shape, n, c.mlp_hidden)
            self.decoder = MLPDecoder(n, c.obs_shape, tuple(reversed(c.mlp_hidden)))
        self.initial = MLPEncoder((c.init_frames * C, H, W), n, c.mlp_hidden)
        for net in (self.encoder, self.decoder, self.initial):
            init_xavier_(net)
        self._init_likelihood(c.likelihood, c.obs_shape, c.init_pixel_var)
        self.alpha_net = nn.Sequential(nn.Linear(n + p, c.alpha_hidden), nn.ReLU(),
                                       nn.Linear(c.alpha_hidden, K))
        self.A_modes = nn.Parameter(torch.eye(n).repeat(K, 1, 1))
        self.B_modes = nn.Parameter(c.init_b_scale * torch.randn(K, n, p))
        self.trans_logvar = nn.Parameter(torch.full((n,), math.log(c.init_transition_var)))

    # ------------------------------------------------------------------ pieces

    def transition(self, z: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``p(z_t | z_{t-1}, u_t)``: ``z [N, n]``, ``u [N, p]`` -> ``(mean, logvar)`` ``[N, n]``."""
        alpha = torch.softmax(self.alpha_net(torch.cat([z, u], -1)), -1)  # [N, K]
        A = torch.einsum("nk,kij->nij", alpha, self.A_modes)
        B = torch.einsum("nk,kij->nij", alpha, self.B_modes)
        mean = (A @ z.unsqueeze(-1) + B @ u.unsqueeze(-1)).squeeze(-1)
        return mean, self.trans_logvar.expand_as(mean)

    def _initial(self, obs: torch.Tensor, mask: torch.Tensor):
        """``q(z_0 | first k frames)``; unobserved ones are zeroed. ``(mean, logvar) [B, n]``."""
        k = self.config.init_frames
        first = obs[:, :k] * mask[:, :k, None, None, None]
        if first.shape[1] < k:  # short sequences: pad with empty frames
            pad = first.new_zeros(first.shape[0], k - first.shape[1], *first.shape[2:])
            first = torch.cat([first, pad], 1)
        mean, logvar = self.initial(first.flatten(1, 2))
        return mean, logvar.clamp(-10.0, 5.0)

    def _posterior(self, obs, actions, mask, sample: bool, generator=None):
        """Forward pass through q: ``z, q mean, q logvar, prior mean, prior logvar`` ``[B, T, n]``
        (the prior at t = 0 is N(0, I))."""
        enc_mean, enc_logvar = self.encoder(obs)
        enc_logvar = enc_logvar.clamp(-10.0, 5.0)
        qm0, qv0 = self._initial(obs, mask)
        zeros = torch.zeros_like(qm0)
        zs, qm, qv, pm, pv = [], [qm0], [qv0], [zeros], [zeros]
        m, lv = qm0, qv0
        z = m  # replaced by the t = 0 draw below before any transition reads it
        T = obs.shape[1]
        for t in range(T):
            if t > 0:
                p_m, p_lv = self.transition(z, actions[:, t - 1])
                m, lv = fuse(p_m, p_lv, enc_mean[:, t], enc_logvar[:, t], mask[:, t])
                qm.append(m); qv.append(lv); pm.append(p_m); pv.append(p_lv)  # noqa: E702
            if sample:
                eps = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
                z = m + torch.exp(0.5 * lv) * eps
            else:
                z = m
            zs.append(z)
        st = lambda xs: torch.stack(xs, 1)  # noqa: E731
        return st(zs), st(qm), st(qv), st(pm), st(pv)
