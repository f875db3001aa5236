"""Deep Kalman filter / deep Markov model baseline (Krishnan et al. 2015, 2017).

Non-linear state-space model with an amortised (approximate) posterior, the KVAE's comparison
in the pendulum experiment (thesis table 6.1). For t = 0 .. T-1, ``u_t = actions[t - 1]``::

    z_0 ~ N(0, I);  z_t ~ N(mu(z_{t-1}, u_t), diag sigma^2(z_{t-1}, u_t))   (gated transition)
    x_t ~ p(x_t | z_t)                                                     (conv/MLP decoder)
    q(z_t | z_{t-1}, x) = N(combiner(z_{t-1}, h_t))  with h_t from a GRU over frame features,
    run backwards (``inference="backward"``, the DMM's structured ``st-R`` posterior) or
    forwards (``"forward"``, a filtering posterior).

ELBO per sequence: ``sum_t m_t log p(x_t | z_t) - KL(q(z_t | .) || p(z_t | z_{t-1}, u_t))`` with
``z_{t-1}`` sampled from q (single-sample, analytic KL). Missing frames (``m_t = 0``) enter the
GRU as zero features with a 0 flag and drop out of the reconstruction term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.baselines.gaussian_state import GaussianStateBelief, GaussianStateModel
from worldmodels.checks import frame_shape
from worldmodels.nets import ConvEncoder, MLPDecoder, MLPEncoder, SubPixelDecoder


@dataclass
class DKFConfig:
    """Sizes and choices of a `DKF` (deep Markov model); shapes as in `worldmodels.base`."""

    obs_shape: tuple[int, int, int] = (1, 16, 16)
    action_dim: int = 1
    z_dim: int = 3
    feature_dim: int = 32  # frame feature fed to the inference GRU
    rnn_hidden: int = 64
    transition_hidden: int = 64
    encoder: str = "conv"  # conv | mlp (the decoder follows)
    channels: int = 32
    num_layers: int = 3
    mlp_hidden: tuple[int, ...] = (128, 128)
    likelihood: str = "gaussian"  # bernoulli | gaussian (learned per-pixel variance)
    init_pixel_var: float = 0.1
    inference: str = "backward"  # backward (st-R) | forward (filtering)
    kl_weight: float = 1.0

    def __post_init__(self) -> None:
        self.obs_shape = frame_shape(self.obs_shape)
        self.mlp_hidden = tuple(int(h) for h in self.mlp_hidden)
        for name, value, allowed in (("encoder", self.encoder, ("conv", "mlp")),
                                     ("likelihood", self.likelihood, ("bernoulli", "gaussian")),
                                     ("inference", self.inference, ("backward", "forward"))):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
        if self.z_dim < 1 or self.action_dim < 0:
            raise ValueError(f"z_dim/action_dim: expected >= 1 / >= 0, got {self.z_dim}/{self.action_dim}")


class GatedTransition(nn.Module):
    """DMM transition: ``mean = (1 - g) * (W z + V u) + g * h(z, u)``, ``var = softplus(.)``."""

    def __init__(self, z_dim: int, u_dim: int, hidden: int) -> None:
        super().__init__()
        inp = z_dim + u_dim
        self.gate = nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.proposal = nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.linear = nn.Linear(inp, z_dim)
        with torch.no_grad():  # start close to the identity map on z
            self.linear.weight.zero_()
            self.linear.weight[:, :z_dim] = torch.eye(z_dim)
            self.linear.bias.zero_()
        self.scale = nn.Linear(z_dim, z_dim)

    def forward(self, z: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [..., n]``, ``u [..., p]`` -> ``(mean, logvar)`` each ``[..., n]``."""
        zu = torch.cat([z, u], -1)
        g = torch.sigmoid(self.gate(zu))
        prop = self.proposal(zu)
        mean = (1 - g) * self.linear(zu) + g * prop
        var = F.softplus(self.scale(F.relu(prop))) + 1e-4
        return mean, torch.log(var)


class DKFBelief(GaussianStateBelief):
    """Posterior over the last context state: ``mean, logvar [B, z_dim]``."""


class DKF(GaussianStateModel):
    """Deep Kalman filter / deep Markov model with the package's planner protocol."""

    config_class = DKFConfig
    belief_class = DKFBelief

    def __init__(self, config: DKFConfig) -> None:
        super().__init__()
        self.config = c = config
        C, H, W = c.obs_shape
        self.obs_shape = c.obs_shape
        self.latent_dim, self.action_dim = c.z_dim, c.action_dim
        if c.encoder == "conv":
            self.encoder = ConvEncoder(C, (H, W), c.feature_dim, c.channels, c.num_layers, with_logvar=False)
            self.decoder = SubPixelDecoder(c.z_dim, C, (H, W), c.channels, c.num_layers)
        else:
            self.encoder = MLPEncoder(c.obs_shape, c.feature_dim, c.mlp_hidden, with_logvar=False)
            self.decoder = MLPDecoder(c.z_dim, c.obs_shape, tuple(reversed(c.mlp_hidden)))
        self._init_likelihood(c.likelihood, c.obs_shape, c.init_pixel_var)
        self.rnn = nn.GRU(c.feature_dim + 1, c.rnn_hidden, batch_first=True)
        self.z_init = nn.Parameter(torch.zeros(c.z_dim))
        self.comb_z = nn.Linear(c.z_dim, c.rnn_hidden)
        self.comb_out = nn.Linear(c.rnn_hidden, 2 * c.z_dim)
        self.transition = GatedTransition(c.z_dim, c.action_dim, c.transition_hidden)

    # ------------------------------------------------------------------ pieces

    def _hidden(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """GRU summaries ``h [B, T, rnn_hidden]`` of the (masked) frames."""
        feat = self.encoder(obs)[0] * mask.unsqueeze(-1)
        inp = torch.cat([feat, mask.unsqueeze(-1)], -1)
        if self.config.inference == "backward":
            h, _ = self.rnn(inp.flip(1))
            return h.flip(1)
        h, _ = self.rnn(inp)
        return h

    def _combine(self, z_prev: torch.Tensor, h: torch.Tensor):
        hc = 0.5 * (torch.tanh(self.comb_z(z_prev)) + h)
        mean, logvar = self.comb_out(hc).chunk(2, -1)
        return mean, logvar.clamp(-10.0, 5.0)

    def _prior(self, z_prev: torch.Tensor | None, u: torch.Tensor, like: torch.Tensor):
        if z_prev is None:
            zeros = like.new_zeros(like.shape[0], self.config.z_dim)
            return zeros, zeros
        return self.transition(z_prev, u)

    def _posterior(self, obs, actions, mask, sample: bool, generator=None):
        """Ancestral pass through q: per-step ``(z, q mean, q logvar, prior mean, prior logvar)``."""
        h = self._hidden(obs, mask)
        T = obs.shape[1]
        z_prev = self.z_init.expand(obs.shape[0], -1)
        zs, qm, qv, pm, pv = [], [], [], [], []
        for t in range(T):
            m, lv = self._combine(z_prev, h[:, t])
            p_m, p_lv = self._prior(None if t == 0 else z_prev, actions[:, t - 1], h[:, t])
            if sample:
                eps = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
                z = m + torch.exp(0.5 * lv) * eps
            else:
                z = m
            zs.append(z); qm.append(m); qv.append(lv); pm.append(p_m); pv.append(p_lv)  # noqa: E702
            z_prev = z
        st = lambda xs: torch.stack(xs, 1)  # noqa: E731
        return st(zs), st(qm), st(qv), st(pm), st(pv)
