"""VAE-RNN: a VAE per frame and an LSTM prior over its codes and the actions.

The AE-RNN baseline of the KVAE experiments, the no-memory baseline option for GTM-SM and the
first demo model. Generative model (``u_t = actions[:, t - 1]``, the action leading to frame t)::

    z_0 ~ N(0, I);   (h_t, c_t) = LSTM([z_t, actions_t], (h_{t-1}, c_{t-1}))
    z_{t+1} ~ N(m(h_t), diag exp(s(h_t)));   x_t ~ p(x_t | z_t)  (Bernoulli or Gaussian pixels)

Inference is per frame, ``q(z_t | x_t)`` (conv or MLP encoder from `worldmodels.nets`), and the
loss is the negative ELBO per observed frame,
``-E_q[log p(x_t | z_t)] + beta * KL(q(z_t | x_t) || p(z_t | z_{<t}, u_{<=t}))``, with the LSTM
run on samples of q (``free_nats`` > 0 leaves the KL of each frame unpenalised below that
level, a standard guard against posterior collapse). Missing frames (``mask = 0``) take their code
from the LSTM prior instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import Batch, Belief, LatentState, LossOutput, Observed, WorldModel, fill_missing
from .checks import check_batch_frames, check_frames, check_sequences, check_shape, frame_shape, model_dtype
from .nets import (
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    SubPixelDecoder,
    decoder_log_prob,
    decoder_mean,
    gaussian_kl,
    init_xavier_,
)


@dataclass
class VAERNNConfig:
    """Sizes and choices of a `VAERNN`. Frames ``obs_shape = (C, H, W)``, codes in R^latent_dim."""

    obs_shape: tuple[int, int, int] = (1, 32, 32)
    action_dim: int = 1
    latent_dim: int = 8
    hidden_dim: int = 64  # LSTM units
    encoder: str = "conv"  # conv | mlp (the decoder follows: sub-pixel conv | mlp)
    channels: int = 32
    num_layers: int = 3
    mlp_hidden: tuple[int, ...] = (256, 256)
    likelihood: str = "bernoulli"  # bernoulli | gaussian (learned per-pixel log-variance)
    init_pixel_var: float = 0.1
    beta: float = 1.0  # weight of the KL term
    free_nats: float = 0.0  # KL per frame below this many nats is not penalised (against posterior collapse)
    min_logvar: float = -8.0  # floor of the prior's log-variance
    init: str = "torch"  # torch (PyTorch's defaults) | xavier (Glorot weights, zero biases: `nets.init_xavier_`)

    def __post_init__(self) -> None:
        self.obs_shape = frame_shape(self.obs_shape)
        self.mlp_hidden = tuple(int(h) for h in self.mlp_hidden)
        if self.init not in ("torch", "xavier"):
            raise ValueError(f"init: expected 'torch' or 'xavier', got {self.init!r}")
        if self.encoder not in ("conv", "mlp"):
            raise ValueError(f"encoder: expected 'conv' or 'mlp', got {self.encoder!r}")
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood: expected 'bernoulli' or 'gaussian', got {self.likelihood!r}")
        for name in ("latent_dim", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.action_dim < 0:
            raise ValueError(f"action_dim: expected >= 0, got {self.action_dim}")


class VAERNNBelief(Belief):
    """Filtered state at the last context frame: code ``z [B, D]`` and the LSTM state *before*
    consuming it, ``h, c [B, hidden]`` (the next action is needed to advance it)."""

    def __init__(self, z: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> None:
        self.z, self.h, self.c = z, h, c

    def features(self) -> torch.Tensor:
        return self.z

    @property
    def batch_size(self) -> int:
        return self.z.shape[0]



@dataclass(frozen=True)
class VAERNNState(LatentState):
    """Stepwise state of the VAE-RNN: the current code ``z [B, D]`` and the LSTM state before
    consuming it, ``h, c [B, hidden]`` (as in `VAERNNBelief`)."""

    z: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor

class VAERNN(WorldModel):
    """A VAE per frame plus an LSTM prior over codes and actions (see the module docstring)."""

    config_class = VAERNNConfig

    def __init__(self, config: VAERNNConfig | None = None) -> None:
        super().__init__()
        config = config or VAERNNConfig()
        self.config = config
        C, H, W = config.obs_shape
        D, A = config.latent_dim, config.action_dim
        self.latent_dim, self.action_dim = D, A
        if config.encoder == "conv":
            self.encoder = ConvEncoder(C, (H, W), D, config.channels, config.num_layers)
            self.decoder = SubPixelDecoder(D, C, (H, W), config.channels, config.num_layers)
        else:
            self.encoder = MLPEncoder(config.obs_shape, D, config.mlp_hidden)
            self.decoder = MLPDecoder(D, config.obs_shape, tuple(reversed(config.mlp_hidden)))
        if config.likelihood == "gaussian":
            self.pixel_logvar = nn.Parameter(torch.full(config.obs_shape, math.log(config.init_pixel_var)))
        else:
            self.register_parameter("pixel_logvar", None)
        if config.init == "xavier":  # at lr 0.007 PyTorch's init can kill the encoder's ReLUs
            init_xavier_(self.encoder)
            init_xavier_(self.decoder)
        self.rnn = nn.LSTMCell(D + A, config.hidden_dim)
        self.prior_head = nn.Linear(config.hidden_dim, 2 * D)

    # ------------------------------------------------------------------ pieces
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``vae`` (encoder, decoder, pixel variance) and ``dynamics`` (LSTM prior)."""
        vae = [*self.encoder.parameters(), *self.decoder.parameters()]
        if self.pixel_logvar is not None:
            vae.append(self.pixel_logvar)
        return {"vae": vae, "dynamics": [*self.rnn.parameters(), *self.prior_head.parameters()]}

    def _prior(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.prior_head(h).chunk(2, dim=-1)
        return mean, logvar.clamp(min=self.config.min_logvar)

    def _init_state(self, lead: tuple[int, ...], ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = ref.new_zeros(*lead, self.config.hidden_dim)
        return z, z.clone()

    def _lstm(self, z: torch.Tensor, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """One LSTM step on ``z [..., D]``, ``a [..., A]`` with arbitrary leading dims."""
        lead = z.shape[:-1]
        h, c = self.rnn(torch.cat([z, a], -1).reshape(-1, z.shape[-1] + a.shape[-1]),
                        (state[0].reshape(-1, state[0].shape[-1]), state[1].reshape(-1, state[1].shape[-1])))
        return h.reshape(*lead, -1), c.reshape(*lead, -1)

    def _check_inputs(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None) -> None:
        check_sequences(obs, actions, mask, self.config.obs_shape, self.action_dim)

    def log_likelihood(self, frames_pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | decoder output)`` summed over pixels, ``[...]`` (`nets.decoder_log_prob`)."""
        return decoder_log_prob(frames_pre, x, self.pixel_logvar)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Mean frames ``[..., C, H, W]`` in [0, 1] for codes ``[..., D]``."""
        if latents.dim() < 1 or latents.shape[-1] != self.latent_dim:
            raise ValueError(f"latents: expected shape [..., {self.latent_dim}], got {list(latents.shape)}")
        return decoder_mean(self.decoder(latents), self.pixel_logvar)

    # ------------------------------------------------------------------ filtering
    def _filter(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None, sample: bool):
        """Run encoder and LSTM over a sequence.

        Returns ``q_mean, q_logvar, p_mean, p_logvar, z`` each ``[B, T, D]`` (prior of z_0 is
        N(0, I)) and the LSTM state before the last step, ``(h, c)``.
        """
        B, T = obs.shape[:2]
        q_mean, q_logvar = self.encoder(obs)
        m = torch.ones(B, T, 1, dtype=obs.dtype, device=obs.device) if mask is None else mask[..., None].to(obs.dtype)
        state = self._init_state((B,), obs)
        p_mean, p_logvar = torch.zeros_like(q_mean[:, 0]), torch.zeros_like(q_mean[:, 0])
        zs, pms, pls = [], [], []
        eps_q = torch.randn_like(q_mean) if sample else None
        for t in range(T):
            zq = q_mean[:, t] + (eps_q[:, t] * torch.exp(0.5 * q_logvar[:, t]) if eps_q is not None else 0.0)
            zp = p_mean + (torch.randn_like(p_mean) * torch.exp(0.5 * p_logvar) if sample else 0.0)
            z = m[:, t] * zq + (1 - m[:, t]) * zp
            zs.append(z)
            pms.append(p_mean)
            pls.append(p_logvar)
            if t < T - 1:
                state = self._lstm(z, actions[:, t], state)
                p_mean, p_logvar = self._prior(state[0])
        # `state` has consumed z_0 .. z_{T-2}: the LSTM state before the last code
        return q_mean, q_logvar, torch.stack(pms, 1), torch.stack(pls, 1), torch.stack(zs, 1), state

    def loss(self, batch: Batch) -> LossOutput:
        """Negative ELBO per observed frame (nats), with its reconstruction and KL terms."""
        self._check_inputs(batch.obs, batch.actions, batch.mask)
        batch = check_batch_frames(batch, model_dtype(self))
        q_mean, q_logvar, p_mean, p_logvar, z, _ = self._filter(batch.obs, batch.actions, batch.mask, sample=True)
        mask = batch.mask.to(batch.obs.dtype)
        n = mask.sum().clamp(min=1.0)
        recon = -(self.log_likelihood(self.decoder(z), batch.obs) * mask).sum() / n
        kl_t = gaussian_kl(q_mean, q_logvar, p_mean, p_logvar)  # [B, T]
        kl = (kl_t * mask).sum() / n
        kl_pen = (kl_t.clamp(min=self.config.free_nats) * mask).sum() / n if self.config.free_nats > 0 else kl
        loss = recon + self.config.beta * kl_pen
        terms = {
            "neg_elbo": (recon + kl).detach(), "recon": recon.detach(), "kl": kl.detach(),
            "q_std": torch.exp(0.5 * q_logvar).mean().detach(),
            "prior_std": torch.exp(0.5 * p_logvar[:, 1:]).mean().detach() if z.shape[1] > 1 else torch.ones(()),
        }
        if self.pixel_logvar is not None:
            terms["pixel_std"] = torch.exp(0.5 * self.pixel_logvar).mean().detach()
        return LossOutput(loss, terms)

    # ------------------------------------------------------------------ planner protocol
    def observe(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> VAERNNBelief:
        """Filter the context with posterior means; belief at the last frame ``T - 1``."""
        self._check_inputs(obs, actions, mask)
        obs = check_frames(obs, mask, model_dtype(self))
        _, _, _, _, z, (h, c) = self._filter(obs, actions, mask, sample=False)
        return VAERNNBelief(z[:, -1], h, c)

    def imagine(self, belief: Belief, actions: torch.Tensor, *, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Roll the LSTM prior over ``actions [B, N, H, A]``; returns codes ``[B, N, H, D]``."""
        belief = self._check_belief(belief)
        B = belief.batch_size
        check_shape("actions", actions, (B, "N", "H", self.action_dim))
        N, Hn = actions.shape[1], actions.shape[2]
        z = belief.z[:, None].expand(B, N, -1)
        state = (belief.h[:, None].expand(B, N, -1), belief.c[:, None].expand(B, N, -1))
        out = []
        for k in range(Hn):
            z, state = self._advance(z, actions[:, :, k], state, sample, generator)
            out.append(z)
        return torch.stack(out, 2)

    def _check_belief(self, belief: Belief) -> VAERNNBelief:
        """``belief`` itself; a ``TypeError`` unless it is this model's belief."""
        if not isinstance(belief, VAERNNBelief):
            raise TypeError(f"belief: expected a VAERNNBelief, got {type(belief).__name__}")
        return belief

    def _advance(self, z: torch.Tensor, a: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                 sample: bool, generator: torch.Generator | None):
        """One prior step shared by ``imagine`` and ``step``: ``z [..., D]``, ``a [..., A]`` ->
        ``(next code [..., D], (h, c) [..., hidden])``; the prior's mean, or a draw of it."""
        state = self._lstm(z, a, state)
        mean, logvar = self._prior(state[0])
        if not sample:
            return mean, state
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + eps * torch.exp(0.5 * logvar), state

    # ------------------------------------------------------------------ stepwise protocol
    def initial_state(self, belief: VAERNNBelief, *, sample: bool = False,
                      generator: torch.Generator | None = None) -> VAERNNState:
        """The belief's code and LSTM state. ``imagine`` draws nothing from the belief, so
        ``sample`` and ``generator`` change nothing here."""
        belief = self._check_belief(belief)
        return VAERNNState(z=belief.z, h=belief.h, c=belief.c)

    def step(self, state: VAERNNState, actions: torch.Tensor, *, sample: bool = False,
             generator: torch.Generator | None = None) -> tuple[VAERNNState, torch.Tensor]:
        """One LSTM prior step under ``actions [B, A]``: ``(next state, features = code [B, D])``."""
        if not isinstance(state, VAERNNState):
            raise TypeError(f"state must be a VAERNNState, got {type(state).__name__}")
        check_shape("actions", actions, (state.batch_size, self.action_dim))
        z, (h, c) = self._advance(state.z, actions, (state.h, state.c), sample, generator)
        return VAERNNState(z=z, h=h, c=c), z

    @torch.no_grad()
    def impute(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
               method: str = "smooth", observed: Observed = "estimate") -> torch.Tensor:
        """Estimates ``[B, T, C, H, W]`` of every frame; missing ones come from the LSTM prior.

        The VAE-RNN has no backward pass: ``method`` "filter" and "smooth" both filter forward.
        """
        if method not in ("filter", "smooth"):
            raise ValueError(f"method: expected 'filter' or 'smooth', got {method!r}")
        self._check_inputs(obs, actions, mask)
        obs = check_frames(obs, mask, model_dtype(self))
        _, _, _, _, z, _ = self._filter(obs, actions, mask, sample=False)
        return fill_missing(self.decode, z, obs, mask, observed)
