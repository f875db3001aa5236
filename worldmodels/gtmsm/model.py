"""Generative Temporal Model with Spatial Memory (GTM-SM, thesis chapter 7).

Per frame a VAE code ``z_t``; an agent state ``s_t`` (position, optionally angle) follows a
state-space model driven by the actions. Memorisation phase (frames ``0 .. tau-1``): the past
encoder writes (state mean, code statistics) into one DND per sequence. Prediction phase
(frames ``tau .. T-1``): states are rolled forward from the actions, the DND returns the K
memorised codes nearest to ``s_t`` and the VAE prior is their mixture with weights
``1 / (d^2 + delta)`` (7.4.1). The loss is the negative ELBO of 7.3.4 per predicted frame.

By default the states' approximate posterior is their prior, ``q(s | a) = p(s | a)`` (eq. 7.2):
states come from the actions only, and the wall gate of eq. 7.3 is learned through the ELBO.
Landmark inference (7.10) and ``state_inference="frames_posterior"`` replace it by a posterior
that sees frames; the ELBO then gains their state KL against the action-driven prior.

Stepwise protocol: ``initial_state(belief)`` is a :class:`GTMSMState` (the agent state, its last
displacement and the belief's memory, held by reference); ``step`` applies one action with the
same transition and memory read as ``imagine``, and a loop of it reproduces ``imagine``.

Index convention (package-wide): ``actions[:, t]`` is taken after ``obs[:, t]`` and leads to
``obs[:, t + 1]``; so ``s_{t+1} = f(s_t, actions[:, t])`` and ``s_0 = 0``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from worldmodels.base import Batch, Belief, LossOutput, WorldModel
from worldmodels.checks import check_frames, check_sequences, check_shape, model_dtype
from worldmodels.dnd import DNDMemory, DNDRead, dnd_empty, dnd_read, dnd_write, knn_select
from worldmodels.gtmsm.config import GTMSMConfig
from worldmodels.gtmsm.landmark import LandmarkInference
from worldmodels.gtmsm.state import GTMSMState
from worldmodels.gtmsm.transition import StateTransition
from worldmodels.nets import (
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    SubPixelDecoder,
    bernoulli_log_prob,
    gaussian_kl,
    gaussian_log_prob,
)

_LOG_2PI = math.log(2 * math.pi)


def diag_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(x; mean, diag(exp(logvar)))`` summed over the last dim."""
    return -0.5 * (_LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)


def mixture_kl(mean_q: torch.Tensor, logvar_q: torch.Tensor, weights: torch.Tensor,
               mean_k: torch.Tensor, logvar_k: torch.Tensor, *, estimator: str = "mc",
               num_samples: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """``KL(q || sum_k w_k N(mean_k, var_k))`` for a diagonal Gaussian ``q``.

    Args:
        mean_q, logvar_q: ``[..., D]``.
        weights: ``[..., K]`` mixture weights (0 for absent components; each row sums to 1).
        mean_k, logvar_k: ``[..., K, D]``.
        estimator: ``"mc"``: reparameterised Monte Carlo with ``num_samples`` samples and a
            log-sum-exp over components (unbiased for the KL; differentiable); ``"bound"``:
            ``sum_k w_k KL(q || N_k)``, the convexity upper bound of the KL (so the ELBO stays a
            lower bound), deterministic and exact when one component carries all the weight.

    Returns ``[...]``.
    """
    if estimator == "bound":
        kl_k = gaussian_kl(mean_q.unsqueeze(-2).expand_as(mean_k),
                           logvar_q.unsqueeze(-2).expand_as(logvar_k), mean_k, logvar_k)
        return (weights * kl_k).sum(-1)
    if estimator != "mc":
        raise ValueError(f"estimator: expected 'mc' or 'bound', got {estimator!r}")
    eps = torch.randn((num_samples, *mean_q.shape), generator=generator,
                      device=mean_q.device, dtype=mean_q.dtype)
    z = mean_q + torch.exp(0.5 * logvar_q) * eps  # [L, ..., D]
    log_q = diag_gaussian_log_prob(z, mean_q, logvar_q)  # [L, ...]
    log_pk = diag_gaussian_log_prob(z.unsqueeze(-2), mean_k, logvar_k)  # [L, ..., K]
    log_w = torch.where(weights > 0, torch.log(weights.clamp(min=1e-38)),
                        torch.full_like(weights, -float("inf")))
    log_p = torch.logsumexp(log_w + log_pk, dim=-1)
    return (log_q - log_p).mean(0)


@dataclass
class GTMSMBelief(Belief):
    """State after ``observe``: current state ``[B, S]``, displacement ``[B, S]`` (momentum),
    code mean ``[B, Dz]`` of the last frame, and the filled memories."""

    state: torch.Tensor
    disp: torch.Tensor
    code: torch.Tensor
    memory: DNDMemory

    def features(self) -> torch.Tensor:
        return torch.cat([self.state, self.code], -1)

    @property
    def batch_size(self) -> int:
        return self.state.shape[0]


class PriorNoise(NamedTuple):
    """Standard noise of the prior (see ``GTMSM.draw_noise``): ``state [M, ..., S]`` normal,
    ``component [M, ...]`` uniform in [0, 1) (None without memory), ``code [M, ..., z_dim]``
    normal."""

    state: torch.Tensor
    component: torch.Tensor | None
    code: torch.Tensor

    @staticmethod
    def stack(steps: list[PriorNoise]) -> PriorNoise:
        """Per-step noise ``[M, ...]`` stacked along a new step axis 1."""
        comps = [n.component for n in steps if n.component is not None]
        comp = torch.stack(comps, 1) if len(comps) == len(steps) else None
        return PriorNoise(torch.stack([n.state for n in steps], 1), comp,
                          torch.stack([n.code for n in steps], 1))

    def unsqueeze(self, dim: int) -> PriorNoise:
        """Every field with a new axis ``dim`` (e.g. one query per row)."""
        comp = None if self.component is None else self.component.unsqueeze(dim)
        return PriorNoise(self.state.unsqueeze(dim), comp, self.code.unsqueeze(dim))


@dataclass
class StatePath:
    """Inferred states over a sequence: sample ``[B, T, S]``, mean/logvar ``[B, T, S]`` (of
    ``q(s_t | s_{t-1} = sample_{t-1}, .)``), displacements ``[B, T, S]``, state KL per step
    ``[B, T]`` (0 where ``q = p``)."""

    sample: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    disp: torch.Tensor
    kl: torch.Tensor


def _code_prior_net(n_in: int, hidden: tuple[int, ...], z_dim: int) -> nn.Sequential:
    """MLP ``[..., n_in] -> [..., 2 * z_dim]`` (mean, logvar) of a learned memoryless code prior."""
    sizes = [n_in, *hidden, 2 * z_dim]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class GTMSM(WorldModel):
    """GTM-SM world model; see the module docstring. ``GTMSM(GTMSMConfig(...))``.

    Latents of ``imagine``/``features``: ``[..., state_dim + z_dim]`` = (state, prior code mean);
    ``decode`` uses the code part.
    """

    config_class = GTMSMConfig

    def __init__(self, config: GTMSMConfig | None = None) -> None:
        super().__init__()
        config = config or GTMSMConfig()
        self.config = config
        C, H, W = config.obs_shape
        if config.encoder == "conv":
            self.encoder = ConvEncoder(C, (H, W), config.z_dim, channels=config.channels)
            self.decoder = SubPixelDecoder(config.z_dim, C, (H, W), channels=config.channels)
        else:
            self.encoder = MLPEncoder(config.obs_shape, config.z_dim, hidden=config.hidden)
            self.decoder = MLPDecoder(config.z_dim, config.obs_shape, hidden=config.hidden[::-1])
        self.transition = StateTransition(config)
        self.landmark = (LandmarkInference(config.state_dim, config.landmark_k,
                                           config.landmark_hidden) if config.landmark else None)
        self.code_prior = (_code_prior_net(config.key_dim, config.memoryless_prior_hidden, config.z_dim)
                           if not config.memory and config.memoryless_prior == "learned" else None)
        self.latent_dim = config.state_dim + config.z_dim
        self.action_dim = config.action_dim
        self.log_r2 = 2.0 * math.log(config.transition_std)

    # ----------------------------------------------------------------- VAE pieces
    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z | x)``: ``obs [..., C, H, W]`` -> ``(mean, logvar) [..., z_dim]``."""
        mean, logvar = self.encoder(obs)
        return mean, logvar.clamp(-12.0, 6.0)

    def decode_code(self, z: torch.Tensor) -> torch.Tensor:
        """Mean frames ``[..., C, H, W]`` in [0, 1] for codes ``z [..., z_dim]``."""
        return torch.sigmoid(self.decoder(z))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.shape[-1] != self.latent_dim:
            raise ValueError(f"latents: expected last dim {self.latent_dim}, "
                             f"got shape {list(latents.shape)}")
        return self.decode_code(latents[..., self.config.state_dim:])

    def log_likelihood(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` summed over pixels, ``[...]``."""
        out = self.decoder(z)
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_prob(out, obs)
        logvar = torch.tensor(2.0 * math.log(self.config.obs_std), dtype=out.dtype, device=out.device)
        return gaussian_log_prob(torch.sigmoid(out), logvar, obs)

    @torch.no_grad()
    def reconstruct(self, obs: torch.Tensor) -> torch.Tensor:
        """VAE reconstruction of each frame from its own code mean (the prediction floor)."""
        return self.decode_code(self.encode(obs)[0])

    # ----------------------------------------------------------------- states
    def key_map(self, state: torch.Tensor) -> torch.Tensor:
        """DND key of a state: the state, with the angle as (cos, sin) under rotation."""
        if not self.config.rotation:
            return state
        return torch.cat([state[..., :2], torch.cos(state[..., 2:3]), torch.sin(state[..., 2:3])], -1)

    def frame_moved(self, obs: torch.Tensor, mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(moved, known) [B, T-1]``: whether frame ``t+1`` differs from frame ``t``, and
        whether both frames are observed (only then is ``moved`` meaningful)."""
        diff = (obs[:, 1:] - obs[:, :-1]).abs().flatten(2).amax(-1)
        moved = (diff > self.config.same_frame_tol).to(obs.dtype)
        known = torch.ones_like(moved, dtype=torch.bool)
        if mask is not None:
            known = (mask[:, 1:] > 0) & (mask[:, :-1] > 0)
        return moved, known

    def posterior_states(self, obs: torch.Tensor, actions: torch.Tensor,
                         mask: torch.Tensor | None = None, codes: torch.Tensor | None = None,
                         num_memorised: int | None = None, sample: bool = True,
                         generator: torch.Generator | None = None) -> StatePath:
        """States ``s_0 .. s_{T-1}`` drawn from the configured ``q(s | .)``, as ``loss`` and
        ``observe`` use them: ``obs [B, T, C, H, W]``, ``actions [B, T, A]``, ``mask [B, T]``,
        ``codes [B, T, z_dim]`` (code means; needed only with landmark inference).

        Under ``state_inference="prior"`` without landmark inference (the thesis model) the
        states are a function of the actions (and the noise) only; ``obs`` is not read.
        """
        moved = known = None
        if self.config.state_inference == "frames_posterior" and obs.shape[1] > 1:
            moved, known = self.frame_moved(obs, mask)
        return self.infer_states(actions, moved, known,
                                 codes=codes if self.landmark is not None else None,
                                 num_memorised=num_memorised, sample=sample, generator=generator)

    def infer_states(self, actions: torch.Tensor, moved: torch.Tensor | None = None,
                     known: torch.Tensor | None = None, codes: torch.Tensor | None = None,
                     num_memorised: int | None = None, sample: bool = True,
                     generator: torch.Generator | None = None,
                     landmark_loop: bool = False) -> StatePath:
        """States ``s_0 .. s_{T-1}`` (``s_0 = 0``) from ``actions [B, T, A]``.

        Prior (eqs. 7.2-7.3): ``p(s_t | s_{t-1}, a) = N(s_{t-1} + R d_t sigma_d(s_{t-1} + R d_t),
        r^2 I)``. The approximate posterior ``q`` is

        * ``state_inference="prior"``: ``q = p`` (state KL 0);
        * ``"frames_posterior"``: ``q(s_t | s_{t-1}, a, x) = N(s_{t-1} + R d_t c_t, r^2 I)`` with
          ``c_t = moved_t`` (1 if frame ``t`` differs from frame ``t-1``, else 0) where
          ``known_t``, and ``c_t = sigma_d`` (so ``q = p`` at that step) elsewhere. Its state KL
          is ``|R d_t|^2 (c_t - sigma_d)^2 / (2 r^2)`` per step (``transition_kl``);
          ``moved/known [B, T-1]`` come from ``frame_moved`` and are ignored otherwise;
        * with ``codes [B, T, z_dim]`` (code means) and landmark inference: the posterior of
          7.10 built on the mean above, against the first ``num_memorised`` steps (causal: step
          t sees steps < t).

        ``StatePath.kl [B, T]`` is ``KL(q(s_t | s_{t-1}) || p(s_t | s_{t-1}, a_t))`` at the sampled
        ``s_{t-1}`` (0 at t = 0 and wherever ``q = p``); its sum over t is the state KL of the
        ELBO, a single-sample estimate of ``KL(q(s_{1:T}) || p(s_{1:T} | a))``.

        The states are solved for all steps at once when every step's mean factor is known in
        advance (no gate, or all moves known from frames; no rotation/momentum): one cumsum, or
        ``_landmark_parallel`` with landmarks. Otherwise, or with ``landmark_loop=True`` (the
        reference), it loops over time.
        """
        cfg = self.config
        B, T, _ = actions.shape
        S = cfg.state_dim
        dev, dt = actions.device, actions.dtype
        eps = torch.randn(B, T, S, generator=generator, device=dev, dtype=dt) if sample else None
        r = cfg.transition_std
        move = None
        if moved is not None and cfg.state_inference == "frames_posterior":
            move = moved.unsqueeze(-1)
            known_m = known.unsqueeze(-1) if known is not None else torch.ones_like(move, dtype=torch.bool)
        landmark_codes = codes if self.landmark is not None else None  # None: no landmark inference
        factor_known = self.transition.linear and (
            not cfg.gate or (move is not None and bool(known_m.all())))
        logvar = torch.full((B, T, S), self.log_r2, device=dev, dtype=dt)
        if factor_known and landmark_codes is None:  # s_t = sum_{i<t} (M a_i * factor_i + r eps_i): one cumsum
            d = self.transition.displacement(actions[:, :-1])  # [B, T-1, S]
            step = d * move if move is not None else d
            mean_inc = torch.cat([step.new_zeros(B, 1, S), step], 1)
            noise = torch.zeros_like(mean_inc) if eps is None else r * eps
            noise = torch.cat([noise.new_zeros(B, 1, S), noise[:, 1:]], 1)
            sample_path = torch.cumsum(mean_inc + noise, 1)
            mean = sample_path - noise  # mean of s_t given the sampled s_{t-1}
            disp = torch.cat([d.new_zeros(B, 1, S), d], 1)
            path = StatePath(sample_path, mean, logvar, disp, actions.new_zeros(B, T))
        elif landmark_codes is not None and factor_known and not landmark_loop:
            idx, ok, sq = self.landmark_lookup(landmark_codes, num_memorised)
            path = self._landmark_parallel(actions, move, idx, ok, sq, eps, logvar)
        else:
            path = self._states_loop(actions, move, known_m if move is not None else None,
                                     landmark_codes, num_memorised, eps, logvar)
        if move is not None or landmark_codes is not None:
            path.kl = self.transition_kl(path, actions)
        return path

    def _landmarks(self) -> LandmarkInference:
        """The landmark-inference network; an error for a model built without landmarks."""
        if self.landmark is None:
            raise RuntimeError("landmark inference: this model was built with config.landmark=False")
        return self.landmark

    def _states_loop(self, actions: torch.Tensor, move: torch.Tensor | None,
                     known: torch.Tensor | None, codes: torch.Tensor | None,
                     num_memorised: int | None, eps: torch.Tensor | None,
                     logvar: torch.Tensor) -> StatePath:
        """``infer_states`` one step at a time (any transition). ``move/known [B, T-1, 1]``
        (frames posterior) or None; ``codes`` enable landmark inference; ``eps [B, T, S]`` or
        None (means); ``logvar [B, T, S]`` the prior's. ``kl`` is left at 0."""
        B, T, _ = actions.shape
        S = self.config.state_dim
        if codes is not None:
            idx, ok, sq = self.landmark_lookup(codes, num_memorised)
            tau = min(num_memorised if num_memorised is not None else T, T)
        if (move is None) != (known is None):
            raise ValueError("move and known: give both or neither")
        zero = actions.new_zeros(B, S)
        means, samples, logvars, disps = [zero], [zero], [logvar[:, 0]], [zero]
        tr = self.transition
        basis = tr.gate_basis()  # once per sequence, not per step
        d_all = None if self.config.momentum else tr.displacement(actions[:, :-1])  # [B, T-1, S]
        stored_mean = stored_lv = None
        for t in range(1, T):
            d = d_all[:, t - 1] if d_all is not None else tr.displacement(actions[:, t - 1], disps[-1])
            m = None
            if move is not None and known is not None:  # given together (checked above)
                gate = tr.gate(samples[-1] + tr.to_state_space(samples[-1], d), basis)
                m = torch.where(known[:, t - 1], move[:, t - 1], gate)
            mu_b = tr.step_displaced(samples[-1], d, m, basis)
            lv_b = logvar[:, t]
            if codes is not None:
                if stored_mean is None or stored_lv is None or t <= tau:  # entries of steps < min(t, tau)
                    stored_mean = torch.stack(means, 1)
                    stored_lv = torch.stack(logvars, 1)
                gi = idx[:, t].clamp(max=stored_mean.shape[1] - 1).unsqueeze(-1).expand(-1, -1, S)
                mu_q, lv_q = self._landmarks()(mu_b, lv_b, sq[:, t], ok[:, t],
                                           stored_mean.gather(1, gi), stored_lv.gather(1, gi))
            else:
                mu_q, lv_q = mu_b, lv_b
            s = mu_q if eps is None else mu_q + torch.exp(0.5 * lv_q) * eps[:, t]
            means.append(mu_q)
            logvars.append(lv_q)
            samples.append(s)
            disps.append(d)
        return StatePath(torch.stack(samples, 1), torch.stack(means, 1), torch.stack(logvars, 1),
                         torch.stack(disps, 1), actions.new_zeros(B, T))

    def transition_kl(self, path: StatePath, actions: torch.Tensor) -> torch.Tensor:
        """``KL(q(s_t | s_{t-1}) || p(s_t | s_{t-1}, a_t))`` per step at the sampled ``s_{t-1}``,
        ``[B, T]`` (0 at t = 0): ``q = N(path.mean, exp(path.logvar))``, ``p`` the gated prior
        ``N(s_{t-1} + R d_t sigma_d(s_{t-1} + R d_t), r^2 I)`` evaluated for all steps at once.
        ``actions [B, T, A]``."""
        prev = path.sample[:, :-1]
        mu_p, _ = self.transition.step(prev, actions[:, :-1], path.disp[:, :-1])
        lv_p = torch.full_like(mu_p, self.log_r2)
        kl = gaussian_kl(path.mean[:, 1:], path.logvar[:, 1:], mu_p, lv_p)
        return torch.cat([kl.new_zeros(kl.shape[0], 1), kl], 1)

    def landmark_lookup(self, codes: torch.Tensor, num_memorised: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reverse DND read (frame code -> memorised step), causal: step ``t`` sees the steps
        ``< min(t, num_memorised)``. ``codes [B, T, z_dim]`` (code means).

        Returns ``(idx, ok, sq) [B, T, landmark_k]``: step indices of the nearest codes (long),
        whether each is visible, and the differentiable squared code distances. Selection runs
        once for all steps (``knn_select`` with ``visible_before``)."""
        cfg = self.config
        B, T, _ = codes.shape
        dev = codes.device
        tau = min(num_memorised if num_memorised is not None else T, T)
        zk = codes[:, :tau]
        valid = torch.ones(B, tau, dtype=torch.bool, device=dev)
        stamps = torch.arange(tau, device=dev).expand(B, tau)
        vis = torch.arange(T, device=dev).clamp(max=tau).expand(B, T)
        kk = min(cfg.landmark_k, tau)
        idx = knn_select(zk.detach(), valid, codes.detach(), kk, visible_before=vis,
                         stamps=stamps)  # [B, T, kk]
        ok = idx < vis.unsqueeze(-1)
        zsel = zk.gather(1, idx.reshape(B, -1, 1).expand(-1, -1, zk.shape[-1])).reshape(B, T, kk, -1)
        sq = ((codes.unsqueeze(2) - zsel) ** 2).sum(-1)  # differentiable code distance
        if kk < cfg.landmark_k:  # fewer memorised steps than K': pad with invisible entries
            pad = cfg.landmark_k - kk
            idx = torch.cat([idx, idx.new_zeros(B, T, pad)], -1)
            ok = torch.cat([ok, ok.new_zeros(B, T, pad)], -1)
            sq = torch.cat([sq, sq.new_ones(B, T, pad)], -1)
        return idx, ok, sq

    def _landmark_parallel(self, actions: torch.Tensor, move: torch.Tensor | None,
                           idx: torch.Tensor, ok: torch.Tensor, sq: torch.Tensor,
                           eps: torch.Tensor | None, logvar_p: torch.Tensor) -> StatePath:
        """Landmark inference for all steps at once (same values and gradients as the loop).

        With move factors known in advance, ``mu_q(t) = (1 - sum_k beta_tk) (s_{t-1} + step_t)
        + sum_k beta_tk mu_q(idx_tk)`` with ``s_t = mu_q(t) + sigma_q(t) eps_t`` and
        ``idx_tk < t``: a unit lower-triangular linear system in the means, solved with one
        batched ``solve_triangular`` (``[B, T, T]``). ``beta`` depends on codes only. The
        variances ``lv_q(t) = lv_p + NN(delta_t, lv_q(idx_t), lv_p)`` form a recursion along the
        look-up graph: steps are grouped by their depth in it (longest chain of look-ups,
        computed first on integers) and each level is one batched pass.

        Shapes: ``idx/ok/sq [B, T, K]``, ``move [B, T-1, 1]`` or None, ``logvar_p [B, T, S]``.
        ``kl`` is left at 0 (``infer_states`` fills it with ``transition_kl``).
        """
        B, T, K = idx.shape
        S = logvar_p.shape[-1]
        d = self.transition.displacement(actions[:, :-1])  # [B, T-1, S]
        step = d * move if move is not None else d
        landmarks = self._landmarks()
        beta, feat = landmarks.weights(sq, ok)  # [B, T, K]
        gi = idx.clamp(max=T - 1)
        flat = gi.reshape(B, T * K)

        # depth of the look-up graph: depth_t = 1 + max_k depth(idx_tk) over visible entries
        with torch.no_grad():
            depth = torch.zeros(B, T, dtype=torch.long, device=idx.device)
            for _ in range(T):
                nd = torch.where(ok, depth.gather(1, flat).reshape(B, T, K) + 1,
                                 torch.zeros_like(gi)).amax(-1).clamp(min=1)
                nd[:, 0] = 0
                if torch.equal(nd, depth):
                    break
                depth = nd
            # nodes grouped by depth: level j only reads levels < j, so one batched pass each
            order = torch.argsort(depth.reshape(-1), stable=True)
            sizes = torch.bincount(depth.reshape(-1)).tolist()
        lv = logvar_p.reshape(B * T, S)
        start = sizes[0]  # depth 0: t = 0 keeps the prior variance
        base = (torch.arange(B, device=idx.device) * T).view(B, 1, 1)
        rows = (gi + base).reshape(B * T, K)  # flat [B*T] index of each look-up
        feat_f, ok_f, lvp_f = feat.reshape(B * T, K), ok.reshape(B * T, K), logvar_p.reshape(B * T, S)
        for n in sizes[1:]:
            nodes = order[start:start + n]
            start += n
            new = landmarks.logvar(feat_f[nodes], ok_f[nodes], lvp_f[nodes], lv[rows[nodes]])
            lv = lv.index_put((nodes,), new)
        lv = lv.reshape(B, T, S)

        noise = torch.zeros_like(lv) if eps is None else torch.exp(0.5 * lv) * eps
        noise = torch.cat([noise.new_zeros(B, 1, S), noise[:, 1:]], 1)
        keep = 1.0 - beta.sum(-1)  # [B, T]
        rhs = torch.cat([step.new_zeros(B, 1, S), keep[:, 1:, None] * (noise[:, :-1] + step)], 1)
        A = beta.new_zeros(B, T, T).scatter_add(2, gi, beta) + torch.diag_embed(keep[:, 1:], offset=-1)
        eye = torch.eye(T, device=A.device, dtype=A.dtype)
        mean = torch.linalg.solve_triangular(eye - A, rhs, upper=False, unitriangular=True)
        sample = mean + noise
        disp = torch.cat([d.new_zeros(B, 1, S), d], 1)
        return StatePath(sample, mean, lv, disp, actions.new_zeros(B, T))

    def isotropy(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over sequences of ``S log(tr C / S) - log det C`` for the covariance ``C`` of
        ``states [B, T, S]`` (positions only under rotation); scale-free, 0 iff isotropic."""
        x = states[..., :2] if self.config.rotation else states
        w = torch.ones(x.shape[:2], device=x.device, dtype=x.dtype) if mask is None else mask.to(x.dtype)
        n = w.sum(1, keepdim=True).clamp(min=2.0)  # [B, 1]
        mean = (x * w.unsqueeze(-1)).sum(1, keepdim=True) / n.unsqueeze(-1)
        xc = (x - mean) * w.unsqueeze(-1).sqrt()
        S = x.shape[-1]
        cov = xc.transpose(1, 2) @ xc / (n.unsqueeze(-1) - 1)
        cov = cov + 1e-8 * torch.eye(S, device=x.device, dtype=x.dtype)
        tr = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
        return (S * torch.log(tr / S) - torch.logdet(cov)).mean()

    # ----------------------------------------------------------------- memory
    def memorise(self, path: StatePath, code_mean: torch.Tensor, code_logvar: torch.Tensor,
                 mask: torch.Tensor | None = None, capacity: int | None = None) -> DNDMemory:
        """Past encoder (7.3.3): write (key(state mean), [code mean, code logvar, state mean,
        state logvar]) of the first ``T = code_mean.shape[1]`` steps (where ``mask [B, T]``)
        into a fresh memory per sequence."""
        B, T, _ = code_mean.shape
        cfg = self.config
        cap = capacity or cfg.capacity or T
        s_mean, s_lv = path.mean[:, :T], path.logvar[:, :T]
        values = torch.cat([code_mean, code_logvar, s_mean, s_lv], -1)
        mem = dnd_empty(B, cap, cfg.key_dim, values.shape[-1], device=values.device,
                        dtype=values.dtype)
        return dnd_write(mem, self.key_map(s_mean), values, mask)

    def read_prior(self, memory: DNDMemory, states: torch.Tensor) -> DNDRead:
        """The K memorised entries nearest to ``states [B, P, S]`` (forward direction)."""
        return dnd_read(memory, self.key_map(states), self.config.k, delta=self.config.delta,
                        backend=self.config.dnd_backend)

    def locate_codes(self, memory: DNDMemory, codes: torch.Tensor) -> torch.Tensor:
        """Where codes were memorised: the memorised state mean whose code mean is nearest to each of
        ``codes [B, Q, z_dim]`` (or ``[B, z_dim]``), one memory per row, read in reverse (code ->
        state): ``[B, Q, state_dim]`` (or ``[B, state_dim]``)."""
        z, S = self.config.z_dim, self.config.state_dim
        if codes.shape[-1] != z:
            raise ValueError(f"codes: expected last dim {z} (z_dim), got shape {list(codes.shape)}")
        # memorised values are [code mean, code logvar, state mean, state logvar] (see memorise)
        reverse = memory.reversed(key_slice=slice(0, z), value_slice=slice(2 * z, 2 * z + S))
        return dnd_read(reverse, codes, 1).values[..., 0, :]

    def learned_prior(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``p(z | s)`` of a memoryless model with ``memoryless_prior="learned"``: ``states
        [..., S]`` -> ``(mean, logvar) [..., z_dim]``."""
        if self.code_prior is None:
            raise RuntimeError("learned_prior: this model was built without a learned memoryless prior")
        mean, logvar = self.code_prior(self.key_map(states)).chunk(2, -1)
        return mean, logvar.clamp(-12.0, 6.0)

    def _split_values(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Dz = self.config.z_dim
        return values[..., :Dz], values[..., Dz:2 * Dz]

    def prior_code(self, read: DNDRead, noise: PriorNoise | None = None) -> torch.Tensor:
        """Code ``[..., z_dim]`` from the mixture prior of ``read`` (weights ``[..., K]``): its
        mean, or with ``noise`` a sample: the component whose cumulative weight first exceeds
        ``noise.component [...]`` (inverse CDF; a memory with no valid entry picks uniformly),
        then its mean plus its standard deviation times ``noise.code [..., z_dim]``."""
        mu_k, lv_k = self._split_values(read.values)
        if noise is None:
            return (read.weights.unsqueeze(-1) * mu_k).sum(-2)
        if noise.component is None:
            raise ValueError("noise.component: a mixture sample needs the component draw")
        w = read.weights.clamp(min=0) + (read.weights.sum(-1, keepdim=True) == 0).to(read.weights.dtype)
        cdf = torch.cumsum(w, -1)
        cdf = cdf / cdf[..., -1:]  # exactly 1 at the end
        comp = (cdf <= noise.component.unsqueeze(-1)).sum(-1).clamp(max=w.shape[-1] - 1)
        comp = comp[..., None, None]
        mu = mu_k.gather(-2, comp.expand(*comp.shape[:-1], mu_k.shape[-1])).squeeze(-2)
        lv = lv_k.gather(-2, comp.expand(*comp.shape[:-1], lv_k.shape[-1])).squeeze(-2)
        return mu + torch.exp(0.5 * lv) * noise.code

    # ----------------------------------------------------------------- training
    def loss(self, batch: Batch) -> LossOutput:
        """Negative ELBO (7.3.4) per predicted frame: frames ``[0, tau)`` are memorised,
        ``[tau, tau + predict_steps)`` (or ``[tau, T)``) predicted.

        ``-F = -sum_t (E_q[log p(x_t | z_t)] - KL(q(z_t | x_t) || p(z_t | s_t, m))) + KL_s``, per
        predicted frame, where ``KL_s = sum_t KL(q(s_t | s_{t-1}, .) || p(s_t | s_{t-1}, a_t))``
        is the state KL of the configured posterior (0 for the thesis' ``q = p``; landmark
        inference, 7.10; ``"frames_posterior"``). ``terms["elbo"]`` is ``F``; the loss adds
        only the optional isotropy term to ``-F``.
        """
        cfg = self.config
        obs, actions, mask = batch.obs, batch.actions, batch.mask
        B, T = obs.shape[:2]
        check_shape("batch.obs", obs, (B, T, *cfg.obs_shape))
        check_shape("batch.actions", actions, (B, T, cfg.action_dim))
        check_shape("batch.mask", mask, (B, T))
        obs = check_frames(obs, mask, model_dtype(self), "batch.obs", min_observed="sequence", observed_before=cfg.tau)
        tau = cfg.tau
        if T <= tau:
            raise ValueError(f"batch.obs: expected T > tau={tau} (memorise tau, predict the rest), got T={T}")
        if cfg.predict_steps is not None and T > tau + cfg.predict_steps:
            T = tau + cfg.predict_steps
            obs, actions, mask = obs[:, :T], actions[:, :T], mask[:, :T]
        mu_z, lv_z = self.encode(obs)
        path = self.posterior_states(obs, actions, mask, codes=mu_z, num_memorised=tau)
        if self.training and cfg.gate and cfg.gate_input == "whitened":
            prev = path.sample[:, :-1].detach()
            self.transition.update_gate_stats(
                prev + self.transition.to_state_space(prev, path.disp[:, 1:].detach()))
        pm = mask[:, tau:].to(obs.dtype)
        n_frames = pm.sum().clamp(min=1.0)
        mu_p, lv_p = mu_z[:, tau:], lv_z[:, tau:]
        z = mu_p + torch.exp(0.5 * lv_p) * torch.randn_like(mu_p)
        ll = self.log_likelihood(obs[:, tau:], z)  # [B, P]
        if cfg.memory:
            memory = self.memorise(path, mu_z[:, :tau], lv_z[:, :tau], mask[:, :tau] > 0, capacity=tau)
            read = self.read_prior(memory, path.sample[:, tau:])
            mu_k, lv_k = self._split_values(read.values)
            kl_z = mixture_kl(mu_p, lv_p, read.weights, mu_k, lv_k, estimator=cfg.kl_estimator,
                              num_samples=cfg.kl_samples)
        elif self.code_prior is not None:
            kl_z = gaussian_kl(mu_p, lv_p, *self.learned_prior(path.sample[:, tau:]))
        else:
            kl_z = gaussian_kl(mu_p, lv_p)
        kl_s = path.kl[:, 1:].sum() / n_frames
        recon = (ll * pm).sum() / n_frames
        kl = (kl_z * pm).sum() / n_frames
        loss = -(recon - kl) + kl_s
        terms = {"recon": recon.detach(), "kl_z": kl.detach(), "kl_s": kl_s.detach(),
                 "elbo": (recon - kl - kl_s).detach()}
        if cfg.isotropy_weight > 0:
            iso = self.isotropy(path.mean[:, :tau], mask[:, :tau])
            loss = loss + cfg.isotropy_weight * iso
            terms["isotropy"] = iso.detach()
        with torch.no_grad():
            terms["recon_mse"] = ((self.decode_code(mu_p) - obs[:, tau:]) ** 2).mean()
        return LossOutput(loss, terms)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"vae": [*self.encoder.parameters(), *self.decoder.parameters()],
                  "ssm": list(self.transition.parameters())}
        if self.landmark is not None:
            groups["landmark"] = list(self.landmark.parameters())
        if self.code_prior is not None:
            groups["prior"] = list(self.code_prior.parameters())
        return {k: [p for p in v if p.requires_grad] for k, v in groups.items()}

    # ----------------------------------------------------------------- planner protocol
    def observe(self, obs: torch.Tensor, actions: torch.Tensor,
                mask: torch.Tensor | None = None) -> GTMSMBelief:
        """Memorise a context ``obs [B, T, C, H, W]``, ``actions [B, T, A]``, ``mask [B, T]``.

        States are the means of the configured posterior (``posterior_states``): from the
        actions only in the thesis model; with landmark inference or ``"frames_posterior"``
        the frames correct them. The memory holds every observed frame (capacity
        ``max(config.capacity or tau, T)``).
        """
        cfg = self.config
        mask = check_sequences(obs, actions, mask, cfg.obs_shape, cfg.action_dim)
        obs = check_frames(obs, mask, model_dtype(self), min_observed="sequence")
        T = obs.shape[1]
        mu_z, lv_z = self.encode(obs)
        path = self.posterior_states(obs, actions, mask, codes=mu_z, num_memorised=T, sample=False)
        memory = self.memorise(path, mu_z, lv_z, mask > 0, capacity=max(cfg.capacity or cfg.tau, T))
        return GTMSMBelief(path.mean[:, -1], path.disp[:, -1], mu_z[:, -1], memory)

    def rollout_states(self, state: torch.Tensor, disp: torch.Tensor, actions: torch.Tensor,
                       noise: torch.Tensor | None = None) -> torch.Tensor:
        """Prior rollout (gate, no frames): ``state/disp [M, S]``, ``actions [M, H, A]`` ->
        states ``[M, H, S]``: means, or samples with standard-normal ``noise [M, H, S]``."""
        out = []
        s, d = state, disp
        basis = self.transition.gate_basis()  # once per rollout, not per step
        for h in range(actions.shape[1]):
            s, d = self.advance_state(s, d, actions[:, h], basis,
                                      None if noise is None else noise[:, h])
            out.append(s)
        return torch.stack(out, 1)

    def advance_state(self, state: torch.Tensor, disp: torch.Tensor, actions: torch.Tensor,
                      basis: torch.Tensor | None, noise: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the state prior ``p(s_t | s_{t-1}, a)`` (eqs. 7.2-7.3), as ``imagine`` and
        ``step`` take it: ``state/disp [M, S]`` (``s_{t-1}``, ``d_{t-1}``), ``actions [M, A]``,
        ``basis`` from ``transition.gate_basis()``. Returns ``(s_t, d_t)``: ``s_t`` is the mean,
        or the mean plus ``r * noise`` for standard-normal ``noise [M, S]``."""
        d = self.transition.displacement(actions, disp)
        s = self.transition.step_displaced(state, d, basis=basis)
        if noise is not None:
            s = s + self.config.transition_std * noise
        return s, d

    def draw_noise(self, rows: int, like: torch.Tensor,
                   generator: torch.Generator | None = None) -> PriorNoise:
        """One step's noise for ``rows`` rows (dtype and device of ``like``), drawn in a fixed
        order that does not depend on the data: state ``[rows, S]`` (normal), component
        ``[rows]`` (uniform in [0, 1); only with memory), code ``[rows, z_dim]`` (normal).
        ``imagine`` and ``step`` draw it step by step, so both consume ``generator`` alike."""
        dev, dt = like.device, like.dtype
        state = torch.randn(rows, self.config.state_dim, generator=generator, device=dev, dtype=dt)
        comp = (torch.rand(rows, generator=generator, device=dev, dtype=dt)
                if self.config.memory else None)
        code = torch.randn(rows, self.config.z_dim, generator=generator, device=dev, dtype=dt)
        return PriorNoise(state, comp, code)

    def prior_codes(self, memory: DNDMemory, states: torch.Tensor,
                    noise: PriorNoise | None = None) -> torch.Tensor:
        """Codes ``[M, Q, z_dim]`` of the prior at ``states [M, Q, S]`` (``memory`` holds ``M``
        memories): the memory's mixture, or without memory the learned ``p(z | s)`` or N(0, I);
        its mean, or a sample with ``noise`` (fields ``[M, Q, ...]``, see ``draw_noise``)."""
        if self.config.memory:
            return self.prior_code(self.read_prior(memory, states), noise)
        if self.code_prior is not None:
            mean, logvar = self.learned_prior(states)
            return mean if noise is None else mean + torch.exp(0.5 * logvar) * noise.code
        if noise is not None:
            return noise.code
        return states.new_zeros(*states.shape[:-1], self.config.z_dim)

    def imagine(self, belief: GTMSMBelief, actions: torch.Tensor, *, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Roll ``actions [B, N, H, A]`` from the belief; latents ``[B, N, H, state_dim + z_dim]``
        = (state, code of the memory's mixture prior: its mean, or a sample).

        The memory is read, never written: the states are rolled out, then the memory is read
        once for all steps. Samples use the noise of ``draw_noise`` drawn step by step, so a loop
        of ``step`` with the same generator draws the same numbers.
        """
        B = belief.batch_size
        check_shape("actions", actions, (B, "N", "H", self.action_dim))
        N, H = actions.shape[1:3]
        flat = actions.reshape(B * N, H, -1)
        start = self.initial_state(belief)
        if N > 1:  # one copy of each memory per candidate
            start = start.index(torch.arange(B, device=actions.device).repeat_interleave(N))
        noise = None
        if sample:
            noise = PriorNoise.stack([self.draw_noise(B * N, start.state, generator) for _ in range(H)])
        states = self.rollout_states(start.state, start.disp, flat,
                                     None if noise is None else noise.state)
        latents = torch.cat([states, self.prior_codes(start.memory, states, noise)], -1)
        return latents.reshape(B, N, H, self.latent_dim)

    # ----------------------------------------------------------------- stepwise protocol
    def initial_state(self, belief: GTMSMBelief, *, sample: bool = False,
                      generator: torch.Generator | None = None) -> GTMSMState:
        """The belief's state mean, last displacement and memory (see ``GTMSMState``).

        ``imagine`` starts from the state mean, so ``sample`` draws nothing here.
        """
        if not isinstance(belief, GTMSMBelief):
            raise TypeError(f"belief must be a GTMSMBelief, got {type(belief).__name__}")
        return GTMSMState.from_memory(belief.state, belief.disp, belief.memory)

    def step(self, state: GTMSMState, actions: torch.Tensor, *, sample: bool = False,
             generator: torch.Generator | None = None) -> tuple[GTMSMState, torch.Tensor]:
        """One action ``actions [B, A]``: ``(next state, features [B, state_dim + z_dim])``.

        Features are (``s_t``, prior code at ``s_t``) as in ``imagine``; the memory is read at
        ``s_t`` and carried over unchanged (the same tensors).
        """
        if not isinstance(state, GTMSMState):
            raise TypeError(f"state must be a GTMSMState, got {type(state).__name__}")
        check_shape("actions", actions, (state.batch_size, self.action_dim))
        noise = self.draw_noise(state.batch_size, state.state, generator) if sample else None
        s, d = self.advance_state(state.state, state.disp, actions, self.transition.gate_basis(),
                                  None if noise is None else noise.state)
        code = self.prior_codes(state.memory, s.unsqueeze(1),
                                None if noise is None else noise.unsqueeze(1)).squeeze(1)
        return dataclasses.replace(state, state=s, disp=d), torch.cat([s, code], -1)
