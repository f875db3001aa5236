"""The Kalman variational auto-encoder (Fraccaro et al. 2017; thesis chapter 6).

Generative model for one sequence (contract 2 indexing, t = 0 .. T-1):
``z_0 ~ N(mu0, P0)``; ``z_t = A_t z_{t-1} + B_t u_t + eps_t`` (t >= 1, ``u_t = actions[t-1]``);
``a_t = C_t z_t + delta_t``; ``x_t ~ p(x_t | a_t)`` (decoder). ``A_t, B_t, C_t`` mix K learned
modes with weights ``alpha_t(a_{<t})`` from the dynamics parameter network (eq. 6.10).
Inference: ``q(a_t | x_t)`` (encoder) times the exact ``p(z | a, u)`` (Kalman smoother).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from worldmodels import kalman
from worldmodels.base import Batch, Belief, LatentState, LossOutput, Observed, WorldModel, fill_missing
from worldmodels.checks import check_finite, check_frames, check_sequences, check_shape, model_dtype
from worldmodels.kvae.config import KVAEConfig
from worldmodels.kvae.dynamics import DynamicsNetwork
from worldmodels.kvae.gaussian import lgssm_log_joint, mvn_log_prob, smoothed_joint_log_prob
from worldmodels.nets import (
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    SubPixelDecoder,
    decoder_log_prob,
    decoder_mean,
    init_xavier_,
)

if TYPE_CHECKING:  # mean_imagine imports this module
    from worldmodels.kvae.mean_imagine import KVAEMeanImagine

_LOG_2PI = math.log(2.0 * math.pi)


class KVAEBelief(Belief):
    """Filtered belief at the last context frame.

    ``z_mean [B, n]``, ``z_cov [B, n, n]``: p(z_{T-1} | a_{0:T-1}, u); ``a_mean [B, m]`` =
    ``C_{T-1} z_mean``; ``a_prev [B, m]`` and ``rnn_state`` feed the dynamics network's next step.
    """

    def __init__(self, z_mean: torch.Tensor, z_cov: torch.Tensor, a_mean: torch.Tensor,
                 a_prev: torch.Tensor, rnn_state) -> None:
        self.z_mean, self.z_cov, self.a_mean = z_mean, z_cov, a_mean
        self.a_prev, self.rnn_state = a_prev, rnn_state

    def features(self) -> torch.Tensor:
        """``[B, z_dim + a_dim]``: (z mean, a mean), the same space as ``KVAE.imagine``."""
        return torch.cat([self.z_mean, self.a_mean], dim=-1)

    @property
    def batch_size(self) -> int:
        return self.z_mean.shape[0]


def _mv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (M @ v.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class KVAEState(LatentState):
    """Stepwise state of the KVAE (``KVAE.initial_state`` / ``KVAE.step``), batch first.

    ``z [B, n]``: the LGSSM state (mean, or a sample); ``z_cov [B, n, n]``: the uncertainty of
    ``z`` that sampling has not drawn (the belief's filtered covariance propagated by
    ``A P A^T``, plus ``Q`` at each mean step; zero after ``initial_state(sample=True)`` with
    sampled steps); ``a_prev [B, m]``: the last code, input of the dynamics network;
    ``h, c [B, hidden]``: its LSTM state (``[B, 0]`` for the MLP dynamics network).
    """

    z: torch.Tensor
    z_cov: torch.Tensor
    a_prev: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor


class KVAE(WorldModel):
    """Kalman VAE world model: a per-frame VAE whose prior over codes ``a`` is an LGSSM.

    Latents of the planner protocol are ``[z, a]`` (``latent_dim = z_dim + a_dim``).
    With ``config.prior == "gaussian"`` the same VAE has a fixed N(0, I) prior per frame (the
    baseline of the tests and the benchmark); the planner protocol then is unavailable.
    """

    config_class = KVAEConfig
    # buffers (registered in __init__): initial mean [n] and covariance [n, n], training updates []
    mu0: torch.Tensor
    P0: torch.Tensor
    num_updates: torch.Tensor

    def __init__(self, config: KVAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        C, H, W = c.obs_shape
        self.obs_shape = c.obs_shape
        self.a_dim, self.z_dim, self.num_modes = c.a_dim, c.z_dim, c.num_modes
        self.action_dim = c.action_dim
        self.latent_dim = c.z_dim + c.a_dim
        self.control_dim = c.action_dim if c.use_controls else 0

        if c.encoder == "conv":
            self.encoder = ConvEncoder(C, (H, W), c.a_dim, c.channels, c.num_layers)
        else:
            self.encoder = MLPEncoder(c.obs_shape, c.a_dim, c.mlp_hidden)
        if c.decoder == "conv":
            self.decoder = SubPixelDecoder(c.a_dim, C, (H, W), c.channels, c.num_layers)
        else:
            self.decoder = MLPDecoder(c.a_dim, c.obs_shape, c.mlp_hidden)
        if c.init == "xavier":
            init_xavier_(self.encoder)
            init_xavier_(self.decoder)
        if c.likelihood == "gaussian":
            self.pixel_logvar = nn.Parameter(torch.full(c.obs_shape, math.log(c.init_pixel_var)))
        else:
            self.register_parameter("pixel_logvar", None)

        K, n, m, p = c.num_modes, c.z_dim, c.a_dim, self.control_dim
        self.A_modes = nn.Parameter(torch.eye(n).repeat(K, 1, 1))
        self.C_modes = nn.Parameter(c.init_bc_scale * torch.randn(K, m, n))
        if p > 0:
            self.B_modes = nn.Parameter(c.init_bc_scale * torch.randn(K, n, p))
        else:
            self.register_parameter("B_modes", None)
        log_q = torch.tensor(math.log(c.init_transition_noise))
        log_r = torch.tensor(math.log(c.init_emission_noise))
        if c.learn_noise:
            self.log_q = nn.Parameter(log_q)
            self.log_r = nn.Parameter(log_r)
        else:
            self.register_buffer("log_q", log_q)
            self.register_buffer("log_r", log_r)
        self.register_buffer("mu0", torch.zeros(n))
        self.register_buffer("P0", c.init_cov * torch.eye(n))
        self.dynamics = DynamicsNetwork(m, K, c.dynamics, c.dynamics_hidden, c.concrete,
                                        c.concrete_temperature)
        # training updates seen (loss calls in training mode), for the VAE warm-up phase
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ parameter groups
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``vae`` (encoder, decoder, pixel variance), ``lgssm`` (A, B, C modes, a_init, noise),
        ``dynamics`` (the alpha network). Freeze ``dynamics`` for the warm-up epochs (6.8)."""
        vae = list(self.encoder.parameters()) + list(self.decoder.parameters())
        if self.pixel_logvar is not None:
            vae.append(self.pixel_logvar)
        lgssm = [self.A_modes, self.C_modes, self.dynamics.a_init]
        if self.B_modes is not None:
            lgssm.append(self.B_modes)
        if self.config.learn_noise:
            lgssm += [self.log_q, self.log_r]
        return {"vae": vae, "lgssm": lgssm, "dynamics": self.dynamics.network_parameters()}

    # ------------------------------------------------------------------ input checks
    def _check_inputs(self, obs: torch.Tensor, actions: torch.Tensor,
                      mask: torch.Tensor | None) -> torch.Tensor:
        return check_sequences(obs, actions, mask, self.obs_shape, self.action_dim)

    # ------------------------------------------------------------------ VAE pieces
    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(a | x)``: ``obs [..., C, H, W] -> (mean, var)`` each ``[..., a_dim]``."""
        mean, raw = self.encoder(obs)
        cap = self.config.encoder_var_cap
        var = cap * torch.sigmoid(raw) + 1e-6 if cap is not None else torch.exp(raw.clamp(-12, 8))
        return mean, var

    def frame_log_prob(self, a: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``log p(x_t | a_t)``: ``a [..., a_dim]``, ``obs [..., C, H, W]`` -> ``[...]``."""
        return decoder_log_prob(self.decoder(a), obs, self.pixel_logvar)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Mean frames ``[..., C, H, W]`` in [0, 1] from latents ``[..., D]`` (``D = z+a`` dims;
        the last ``a_dim`` entries are the code ``a`` that is decoded). ``[..., a_dim]`` works too."""
        if latents.shape[-1] not in (self.latent_dim, self.a_dim):
            raise ValueError(f"latents: expected shape [..., {self.latent_dim}] or "
                             f"[..., {self.a_dim}], got {list(latents.shape)}")
        return decoder_mean(self.decoder(latents[..., -self.a_dim:]), self.pixel_logvar)

    # ------------------------------------------------------------------ LGSSM pieces
    def noise(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q [n, n], R [m, m])`` isotropic covariances."""
        eye_n = torch.eye(self.z_dim, dtype=self.A_modes.dtype, device=self.A_modes.device)
        eye_m = torch.eye(self.a_dim, dtype=self.A_modes.dtype, device=self.A_modes.device)
        return torch.exp(self.log_q) * eye_n, torch.exp(self.log_r) * eye_m

    def mix(self, alpha: torch.Tensor):
        """Eq. 6.10: ``alpha [..., K] -> (A [..., n, n], B [..., n, p] or None, C [..., m, n])``."""
        A = torch.einsum("...k,kij->...ij", alpha, self.A_modes)
        C = torch.einsum("...k,kij->...ij", alpha, self.C_modes)
        B = None if self.B_modes is None else torch.einsum("...k,kij->...ij", alpha, self.B_modes)
        return A, B, C

    def controls(self, actions: torch.Tensor) -> torch.Tensor | None:
        """``u [B, T, p]`` with ``u_t = actions[t - 1]`` (``u_0 = 0``, ignored by the filter)."""
        if self.control_dim == 0:
            return None
        return torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)

    def _kalman_args(self, alpha: torch.Tensor, actions: torch.Tensor,
                     mask: torch.Tensor | None) -> dict:
        A, B, C = self.mix(alpha)
        Q, R = self.noise()
        args = dict(A=A, C=C, Q=Q, R=R, mu0=self.mu0, P0=self.P0, mask=mask,
                    method=self.config.kalman_method)
        u = self.controls(actions)
        if u is not None:
            args.update(B=B, controls=u)
        return args

    def _filter_online(self, a: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
        """Recursive filtering with the online alpha estimate of section 6.4.

        Missing ``a_t`` (``mask = 0``) are replaced by the prediction ``C_t m_{t|t-1}`` before
        they feed the dynamics network. Returns ``(alpha [B, T, K], a_filled [B, T, m],
        last filtered mean [B, n], cov [B, n, n], a_prev [B, m], rnn_state)``.
        """
        Bsz, T, _ = a.shape
        Q, R = self.noise()
        u = self.controls(actions)
        mean = self.mu0.expand(Bsz, self.z_dim)
        cov = self.P0.expand(Bsz, self.z_dim, self.z_dim)
        a_prev, state = self.dynamics.initial_state((Bsz,), a)
        alphas, filled = [], []
        for t in range(T):
            alpha, state = self.dynamics.step(a_prev, state)
            A_t, B_t, C_t = self.mix(alpha)
            if t > 0:
                if u is None:
                    mean, cov = kalman.predict_step(mean, cov, A_t, Q)
                else:
                    mean, cov = kalman.predict_step(mean, cov, A_t, Q, B_t, u[:, t])
            a_pred = _mv(C_t, mean)
            mean, cov, _ = kalman.update_step(mean, cov, a[:, t], C_t, R, mask=mask[:, t])
            m_t = mask[:, t].unsqueeze(-1)
            a_prev = m_t * a[:, t] + (1 - m_t) * a_pred
            alphas.append(alpha)
            filled.append(a_prev)
        return torch.stack(alphas, 1), torch.stack(filled, 1), mean, cov, a_prev, state

    def alpha(self, a: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mixture weights ``[B, T, K]``: one pass when all frames are observed, else recursive."""
        if bool((mask > 0).all()):
            return self.dynamics.sequence(a)
        return self._filter_online(a, actions, mask)[0]

    # ------------------------------------------------------------------ objective
    def elbo(self, batch: Batch, *, estimator: str | None = None, recon_weight: float = 1.0,
             num_samples: int = 1, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        """Per-sequence ELBO terms ``[B]`` (eqs. 6.7-6.8, masked as in 6.10).

        ``estimator``: ``exact`` uses the exact ``log p(a|u)`` from the filter innovations;
        ``sampled`` is eq. 6.8 with ``z`` drawn from the exact joint smoothed posterior and its
        exact density (equal to ``exact`` up to round-off, a check of both); ``marginal`` draws
        each ``z_t`` from its smoothed marginal with the marginal entropy (the reference code's
        looser bound). Returns ``elbo`` (with ``recon_weight`` on the reconstruction),
        ``recon``, ``log_prior`` (log p(a|u)), ``entropy`` (-log q(a|x)), ``frames``.
        """
        estimator = estimator or self.config.estimator
        obs, actions = batch.obs, batch.actions
        mask = self._check_inputs(obs, actions, batch.mask)
        obs = check_frames(obs, mask, model_dtype(self), "batch.obs", min_observed="batch")
        mean, var = self.encode(obs)
        S = num_samples
        eps = torch.randn((S, *mean.shape), generator=generator, dtype=mean.dtype,
                          device=mean.device)
        a = mean + var.sqrt() * eps  # [S, B, T, m]
        log_q = (-0.5 * (_LOG_2PI + torch.log(var) + eps ** 2)).sum(-1)  # [S, B, T]
        recon = self.frame_log_prob(a, obs)  # [S, B, T]
        recon = (recon * mask).sum(-1)
        entropy = -(log_q * mask).sum(-1)
        warming_up = self.training and int(self.num_updates) < self.config.vae_warmup_updates
        if self.config.prior == "gaussian" or warming_up:
            log_prior = ((-0.5 * (_LOG_2PI + a ** 2)).sum(-1) * mask).sum(-1)
        else:
            Bsz, T = mask.shape
            a_flat = a.reshape(S * Bsz, T, self.a_dim)
            rep = lambda x: x.repeat(S, *([1] * (x.dim() - 1)))  # noqa: E731
            act, msk = rep(actions), rep(mask)
            alpha = self.alpha(a_flat, act, msk)
            args = self._kalman_args(alpha, act, msk)
            if estimator == "exact":
                log_prior = kalman.kalman_filter(a_flat, **args).log_likelihood
            else:
                log_prior = self._sampled_log_prior(a_flat, args, estimator, generator)
            log_prior = log_prior.reshape(S, Bsz)
        elbo = recon_weight * recon + log_prior + entropy
        out = dict(elbo=elbo, recon=recon, log_prior=log_prior, entropy=entropy)
        out = {k: v.mean(0) for k, v in out.items()}
        out["frames"] = mask.sum(-1)
        return out

    def _sampled_log_prior(self, a: torch.Tensor, args: dict, estimator: str,
                           generator: torch.Generator | None) -> torch.Tensor:
        """``log p(a, z|u) - log r(z)`` with one z sample; ``[B]``."""
        sm = kalman.kalman_smoother(a, **args)
        f = sm.filter
        A = args["A"]
        if estimator == "sampled":
            z = kalman.sample_posterior(a, **args, num_samples=1, generator=generator)
            log_r = smoothed_joint_log_prob(z, filt_mean=f.filt_mean, filt_cov=f.filt_cov,
                                            pred_mean=f.pred_mean, pred_cov=f.pred_cov, A=A)
        else:  # marginal
            n = self.z_dim
            cov = sm.cov + 1e-6 * torch.eye(n, dtype=a.dtype, device=a.device)
            L = torch.linalg.cholesky(0.5 * (cov + cov.transpose(-1, -2)))
            eps = torch.randn(sm.mean.shape, generator=generator, dtype=a.dtype, device=a.device)
            z = (sm.mean + _mv(L, eps)).unsqueeze(0)
            log_r = mvn_log_prob(z, sm.mean, cov).sum(-1)
        log_joint = lgssm_log_joint(a.unsqueeze(0), z, A=A, C=args["C"], Q=args["Q"],
                                    R=args["R"], mu0=args["mu0"], P0=args["P0"],
                                    B=args.get("B"), controls=args.get("controls"),
                                    mask=args["mask"])
        return (log_joint - log_r)[0]

    def loss(self, batch: Batch) -> LossOutput:
        """Negative training ELBO per observed frame (reconstruction weighted by
        ``config.recon_weight``, 0.3 in the paper); logs the unweighted ELBO per frame too.

        During the first ``config.vae_warmup_updates`` calls in training mode the prior over the
        codes is N(0, I) (a plain VAE), so the codes spread out before the LGSSM fits them."""
        terms = self.elbo(batch, recon_weight=self.config.recon_weight)
        if self.training:
            self.num_updates += 1
        frames = terms["frames"].sum().clamp(min=1.0)
        loss = -terms["elbo"].sum() / frames
        elbo_1 = (terms["recon"] + terms["log_prior"] + terms["entropy"]).sum() / frames
        logged = {
            "elbo_per_frame": elbo_1.detach(),
            "elbo_per_seq": (terms["recon"] + terms["log_prior"] + terms["entropy"]).mean().detach(),
            "recon_per_frame": (terms["recon"].sum() / frames).detach(),
            "log_prior_per_frame": (terms["log_prior"].sum() / frames).detach(),
            "entropy_per_frame": (terms["entropy"].sum() / frames).detach(),
        }
        return LossOutput(loss=loss, terms=logged)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer_latents(self, obs: torch.Tensor, actions: torch.Tensor,
                      mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Encodings and LGSSM estimates of ``a`` for every frame (figure 6.3c), all ``[B, T, m]``:
        ``encoded`` (encoder means), ``filtered`` (``C_t m_{t|t}``), ``smoothed``
        (``C_t m_{t|T}``); ``alpha [B, T, K]`` from the recursive estimate of section 6.4."""
        self._require_lgssm()
        mask = self._check_inputs(obs, actions, mask)
        obs = check_frames(obs, mask, model_dtype(self))
        a, _ = self.encode(obs)
        alpha = self._filter_online(a, actions, mask)[0]
        args = self._kalman_args(alpha, actions, mask)
        sm = kalman.kalman_smoother(a, **args)
        C = args["C"]
        return dict(encoded=a, filtered=_mv(C, sm.filter.filt_mean), smoothed=_mv(C, sm.mean),
                    alpha=alpha, z_smoothed=sm.mean, z_filtered=sm.filter.filt_mean)

    @torch.no_grad()
    def impute(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
               method: str = "smooth", observed: Observed = "estimate") -> torch.Tensor:
        """Estimates ``[B, T, C, H, W]`` of every frame given the observed ones (section 6.4).

        ``method``: ``smooth`` decodes ``C_t E[z_t | a_obs]``, ``filter`` decodes
        ``C_t E[z_t | a_obs up to t]`` (pure generation after the last observed frame).
        ``observed="copy"``: observed frames as given, only the missing ones decoded.
        """
        if method not in ("smooth", "filter"):
            raise ValueError(f"method: expected 'smooth' or 'filter', got {method!r}")
        lat = self.infer_latents(obs, actions, mask)
        return fill_missing(self.decode, lat["smoothed"] if method == "smooth" else lat["filtered"], obs, mask,
                            observed)

    def _require_lgssm(self) -> None:
        if self.config.prior != "lgssm":
            raise NotImplementedError("KVAE with prior='gaussian' has no dynamics to filter")

    def observe(self, obs: torch.Tensor, actions: torch.Tensor,
                mask: torch.Tensor | None = None) -> KVAEBelief:
        """Filter a context (encoder means as pseudo-observations, recursive alpha)."""
        self._require_lgssm()
        mask = self._check_inputs(obs, actions, mask)
        obs = check_frames(obs, mask, model_dtype(self))
        a, _ = self.encode(obs)
        alpha, _, mean, cov, a_prev, state = self._filter_online(a, actions, mask)
        C_last = self.mix(alpha[:, -1])[2]
        return KVAEBelief(mean, cov, _mv(C_last, mean), a_prev, state)

    def imagine(self, belief: KVAEBelief, actions: torch.Tensor, *, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Roll ``actions [B, N, H, A]`` out from ``belief``: latents ``[B, N, H, z_dim + a_dim]``.

        Step h: ``alpha = net(a_prev)``, ``z = A z + B u_h`` (+ noise if ``sample``),
        ``a = C z`` (+ noise), then ``a`` feeds the next alpha. Batched over B*N.
        """
        self._check_belief(belief)
        Bsz = belief.batch_size
        check_shape("actions", actions, (Bsz, "N", "H", self.action_dim))
        N, H = actions.shape[1], actions.shape[2]
        z = belief.z_mean.repeat_interleave(N, 0)
        a_prev = belief.a_prev.repeat_interleave(N, 0)
        state = belief.rnn_state
        if state is not None:
            state = tuple(s.repeat_interleave(N, 1) for s in state)
        if sample:
            z = z + self._draw(belief.z_cov.repeat_interleave(N, 0), z, generator)
        acts = actions.reshape(Bsz * N, H, self.action_dim)
        out = []
        for h in range(H):
            z, a_prev, state, _ = self._transition(z, a_prev, state, acts[:, h], sample, generator)
            out.append(torch.cat([z, a_prev], -1))
        return torch.stack(out, 1).reshape(Bsz, N, H, self.latent_dim)

    def _check_belief(self, belief: Belief) -> None:
        self._require_lgssm()
        if not isinstance(belief, KVAEBelief):
            raise TypeError(f"belief must be a KVAEBelief, got {type(belief).__name__}")

    def _draw(self, cov: torch.Tensor, like: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        """A draw of ``N(0, cov)`` for ``cov [R, n, n]``: ``L eps`` with ``L L^T = cov``."""
        L = torch.linalg.cholesky(0.5 * (cov + cov.transpose(-1, -2)))
        return _mv(L, self._randn(like, generator))

    def _transition(self, z: torch.Tensor, a_prev: torch.Tensor, rnn_state, u: torch.Tensor,
                    sample: bool, generator: torch.Generator | None):
        """One generative step shared by ``imagine`` and ``step``.

        ``z [R, n]``, ``a_prev [R, m]``, ``rnn_state`` (nn.LSTM layout ``(h, c) [1, R, hidden]``
        or None), ``u [R, A]`` -> ``(z, a, rnn_state, A_t [R, n, n])``; with ``sample`` the
        transition and emission noise are drawn (in that order).
        """
        alpha, rnn_state = self.dynamics.step(a_prev, rnn_state)
        A_t, B_t, C_t = self.mix(alpha)
        z = _mv(A_t, z)
        if B_t is not None:
            z = z + _mv(B_t, u)
        if sample:
            z = z + torch.exp(0.5 * self.log_q) * self._randn(z, generator)
        a = _mv(C_t, z)
        if sample:
            a = a + torch.exp(0.5 * self.log_r) * self._randn(a, generator)
        return z, a, rnn_state, A_t

    def fast_mean_imagine(self) -> KVAEMeanImagine | None:
        """The fused means-only rollout (``worldmodels.kvae.mean_imagine``), or None where it does
        not apply (Gaussian prior, multi-layer LSTM)."""
        from worldmodels.kvae.mean_imagine import KVAEMeanImagine

        try:
            return KVAEMeanImagine(self)
        except TypeError:
            return None

    # ------------------------------------------------------------------ stepwise protocol
    def initial_state(self, belief: KVAEBelief, *, sample: bool = False,
                      generator: torch.Generator | None = None) -> KVAEState:
        """The LGSSM and dynamics-network state at the belief's time (see ``KVAEState``).

        ``sample=True`` draws ``z`` from the belief (``z_cov`` is then zero), as ``imagine`` does.
        """
        self._check_belief(belief)
        z, cov = belief.z_mean, belief.z_cov
        if sample:
            z = z + self._draw(cov, z, generator)
            cov = torch.zeros_like(cov)
        if belief.rnn_state is None:
            h = c = z.new_zeros(z.shape[0], 0)
        else:
            h, c = belief.rnn_state[0][0], belief.rnn_state[1][0]
        return KVAEState(z=z, z_cov=cov, a_prev=belief.a_prev, h=h, c=c)

    def step(self, state: KVAEState, actions: torch.Tensor, *, sample: bool = False,
             generator: torch.Generator | None = None) -> tuple[KVAEState, torch.Tensor]:
        """One action ``actions [B, A]``: ``(next state, features [B, z_dim + a_dim])``.

        The same computation as one step of ``imagine``; the covariance is propagated as
        ``A P A^T`` plus ``Q`` when ``sample=False`` (with ``sample=True`` the noise is drawn
        into ``z`` instead).
        """
        if not isinstance(state, KVAEState):
            raise TypeError(f"state must be a KVAEState, got {type(state).__name__}")
        check_shape("actions", actions, (state.batch_size, self.action_dim))
        rnn = None if state.h.shape[-1] == 0 else (state.h.unsqueeze(0), state.c.unsqueeze(0))
        z, a, rnn, A_t = self._transition(state.z, state.a_prev, rnn, actions, sample, generator)
        cov = A_t @ state.z_cov @ A_t.transpose(-1, -2)
        if not sample:
            cov = cov + self.noise()[0]
        h, c = (state.h, state.c) if rnn is None else (rnn[0][0], rnn[1][0])
        return KVAEState(z=z, z_cov=cov, a_prev=a, h=h, c=c), torch.cat([z, a], -1)

    @staticmethod
    def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)

    @torch.no_grad()
    def generate(self, obs: torch.Tensor, actions: torch.Tensor, horizon: int,
                 sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Frames ``[B, horizon, C, H, W]`` after the context ``obs [B, T0, ...]``, driven by
        ``actions [B, T0 - 1 + horizon, A]`` (``actions[:, T0-1:]`` are the future ones)."""
        T0 = obs.shape[1]
        check_shape("actions", actions, (obs.shape[0], T0 - 1 + horizon, self.action_dim))
        belief = self.observe(obs, actions[:, :T0])
        lat = self.imagine(belief, actions[:, T0 - 1:].unsqueeze(1), sample=sample,
                           generator=generator)
        return self.decode(lat[:, 0])

    def check_finite_parameters(self) -> None:
        """Raise ``ValueError`` naming the first non-finite parameter."""
        for name, p in self.named_parameters():
            check_finite(name, p)
