"""Generative Temporal Model with Spatial Memory (GTM-SM, thesis chapter 7).

Per frame a VAE code ``z_t``; an agent state ``s_t`` (position, optionally angle) follows a
state-space model driven by the actions. Memorisation phase (frames ``0 .. tau-1``): the past
encoder writes (state mean, code statistics) into one DND per sequence. Prediction phase
(frames ``tau .. T-1``): states are rolled forward from the actions, the DND returns the K
memorised codes nearest to ``s_t`` and the VAE prior is their mixture with weights
``1 / (d^2 + delta)`` (7.4.1). The loss is the negative ELBO of 7.3.4 per predicted frame
(+ the state KL of 7.10 with landmark inference, + the gate's auxiliary loss).

Index convention (package-wide): ``actions[:, t]`` is taken after ``obs[:, t]`` and leads to
``obs[:, t + 1]``; so ``s_{t+1} = f(s_t, actions[:, t])`` and ``s_0 = 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from worldmodels.base import Batch, Belief, LossOutput, WorldModel
from worldmodels.checks import check_frames, check_sequences, check_shape, model_dtype
from worldmodels.dnd import DNDMemory, DNDRead, dnd_empty, dnd_read, dnd_write, knn_select
from worldmodels.gtmsm.config import GTMSMConfig
from worldmodels.gtmsm.landmark import LandmarkInference
from worldmodels.gtmsm.transition import StateTransition
from worldmodels.nets import (ConvEncoder, MLPDecoder, MLPEncoder, SubPixelDecoder,
                              bernoulli_log_prob, gaussian_kl, gaussian_log_prob)

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


@dataclass
class StatePath:
    """Inferred states over a sequence: sample ``[B, T, S]``, mean/logvar ``[B, T, S]``,
    displacements ``[B, T, S]``, state KL per step ``[B, T]`` (0 without landmark inference)."""

    sample: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    disp: torch.Tensor
    kl: torch.Tensor


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

    def infer_states(self, actions: torch.Tensor, moved: torch.Tensor | None = None,
                     known: torch.Tensor | None = None, codes: torch.Tensor | None = None,
                     num_memorised: int | None = None, sample: bool = True,
                     generator: torch.Generator | None = None,
                     landmark_loop: bool = False) -> StatePath:
        """States ``s_0 .. s_{T-1}`` (``s_0 = 0``) from ``actions [B, T, A]``.

        ``moved/known [B, T-1]`` (from frames) replace the wall gate where known, if
        ``blocked_from_frames``. ``codes [B, T, z_dim]`` (code means) enable landmark inference
        against the first ``num_memorised`` steps (causal: step t sees steps < t).

        Landmark inference is solved for all steps at once when every step's move factor is
        known in advance (no gate, or all moves known from frames; no rotation/momentum): see
        ``_landmark_parallel``. Otherwise, or with ``landmark_loop=True`` (the reference), it
        loops over time.
        """
        cfg = self.config
        B, T, _ = actions.shape
        S = cfg.state_dim
        dev, dt = actions.device, actions.dtype
        eps = torch.randn(B, T, S, generator=generator, device=dev, dtype=dt) if sample else None
        r = cfg.transition_std
        move = None
        if moved is not None and cfg.blocked_from_frames:
            move = moved.unsqueeze(-1)
            known_m = known.unsqueeze(-1) if known is not None else torch.ones_like(move, dtype=torch.bool)
        use_landmark = self.landmark is not None and codes is not None
        factor_known = self.transition.linear and (
            not cfg.gate or (move is not None and bool(known_m.all())))
        logvar = torch.full((B, T, S), self.log_r2, device=dev, dtype=dt)
        if factor_known and not use_landmark:  # s_t = sum_{i<t} (M a_i * factor_i + r eps_i): one cumsum
            d = self.transition.displacement(actions[:, :-1])  # [B, T-1, S]
            step = d * move if move is not None else d
            mean_inc = torch.cat([step.new_zeros(B, 1, S), step], 1)
            noise = torch.zeros_like(mean_inc) if eps is None else r * eps
            noise = torch.cat([noise.new_zeros(B, 1, S), noise[:, 1:]], 1)
            sample_path = torch.cumsum(mean_inc + noise, 1)
            mean = sample_path - noise  # mean of s_t given the sampled s_{t-1}
            disp = torch.cat([d.new_zeros(B, 1, S), d], 1)
            return StatePath(sample_path, mean, logvar, disp, actions.new_zeros(B, T))

        if use_landmark:
            idx, ok, sq = self.landmark_lookup(codes, num_memorised)
            tau = min(num_memorised if num_memorised is not None else T, T)
            if factor_known and not landmark_loop:
                return self._landmark_parallel(actions, move, idx, ok, sq, eps, logvar)
        means = [actions.new_zeros(B, S)]
        samples = [actions.new_zeros(B, S)]
        logvars = [logvar[:, 0]]
        disps = [actions.new_zeros(B, S)]
        kls = [actions.new_zeros(B)]
        stored_mean = stored_lv = None
        for t in range(1, T):
            m = None
            if move is not None:
                gate = self.transition.gate(samples[-1] + self.transition.to_state_space(
                    samples[-1], self.transition.displacement(actions[:, t - 1], disps[-1])))
                m = torch.where(known_m[:, t - 1], move[:, t - 1], gate)
            mu_p, d = self.transition.step(samples[-1], actions[:, t - 1], disps[-1], move=m)
            lv_p = logvar[:, t]
            if use_landmark:
                if stored_mean is None or t <= tau:  # entries of steps < min(t, tau)
                    stored_mean = torch.stack(means, 1)
                    stored_lv = torch.stack(logvars, 1)
                gi = idx[:, t].clamp(max=stored_mean.shape[1] - 1).unsqueeze(-1).expand(-1, -1, S)
                mu_q, lv_q = self.landmark(mu_p, lv_p, sq[:, t], ok[:, t],
                                           stored_mean.gather(1, gi), stored_lv.gather(1, gi))
                kls.append(gaussian_kl(mu_q, lv_q, mu_p, lv_p))
            else:
                mu_q, lv_q = mu_p, lv_p
                kls.append(actions.new_zeros(B))
            s = mu_q if eps is None else mu_q + torch.exp(0.5 * lv_q) * eps[:, t]
            means.append(mu_q)
            logvars.append(lv_q)
            samples.append(s)
            disps.append(d)
        return StatePath(torch.stack(samples, 1), torch.stack(means, 1), torch.stack(logvars, 1),
                         torch.stack(disps, 1), torch.stack(kls, 1))

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
        """
        B, T, K = idx.shape
        S = logvar_p.shape[-1]
        d = self.transition.displacement(actions[:, :-1])  # [B, T-1, S]
        step = d * move if move is not None else d
        beta, feat = self.landmark.weights(sq, ok)  # [B, T, K]
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
            new = self.landmark.logvar(feat_f[nodes], ok_f[nodes], lvp_f[nodes], lv[rows[nodes]])
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
        mu_p = torch.cat([step.new_zeros(B, 1, S), sample[:, :-1] + step], 1)
        kl = gaussian_kl(mean, lv, mu_p, logvar_p)
        kl = torch.cat([kl.new_zeros(B, 1), kl[:, 1:]], 1)
        disp = torch.cat([d.new_zeros(B, 1, S), d], 1)
        return StatePath(sample, mean, lv, disp, kl)

    def transition_aux_loss(self, path: StatePath, actions: torch.Tensor, moved: torch.Tensor,
                            known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-supervised losses that let the prior transition predict without frames.

        With ``blocked_from_frames`` the inferred states use "the frame changed" instead of the
        gate, so the ELBO alone teaches neither the gate nor the displacement of actions that
        never move (e.g. "stay"). Two terms, from frames and actions only:

        * ``gate_bce``: BCE teaching the gate ``sigma_d(s_{t-1} + M a_t)`` whether a move
          succeeds (target: the next frame differs), on steps whose action is a moving one;
        * ``still``: squared displacement ``|M a_t|^2`` of non-moving actions.

        An action index counts as moving when more than 10 % of its steps in the batch change
        the frame ("stay", which never does, is found without being named). Gate inputs are
        detached: the gate learns the map, it does not bend the states. Returns both scalars.
        """
        a = actions[:, :-1]
        w_known = known.to(a.dtype).unsqueeze(-1)
        frac = (a * moved.unsqueeze(-1) * w_known).sum((0, 1)) / (a * w_known).sum((0, 1)).clamp(min=1e-6)
        used = (a * w_known).sum((0, 1)) > 0
        moving = (frac > 0.1).to(a.dtype)  # [A]
        weight = (a * moving).sum(-1) * known.to(a.dtype)  # [B, T-1]
        if self.config.gate:
            prev = path.sample[:, :-1].detach()
            disp = self.transition.to_state_space(prev, path.disp[:, 1:].detach())
            if self.training:
                self.transition.update_gate_stats(prev + disp)
            logit = self.transition.gate_logit(prev + disp).squeeze(-1)
            bce = F.binary_cross_entropy_with_logits(logit, moved, reduction="none")
            gate = (bce * weight).sum() / weight.sum().clamp(min=1.0)
        else:
            gate = a.new_zeros(())
        still_actions = (1.0 - moving) * used.to(a.dtype)  # [A]
        M = self.transition.M.weight  # [S, A]
        still = ((M ** 2).sum(0) * still_actions).sum() / still_actions.sum().clamp(min=1.0)
        return gate, still

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

    def _split_values(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Dz = self.config.z_dim
        return values[..., :Dz], values[..., Dz:2 * Dz]

    def prior_code(self, read: DNDRead, sample: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Code from the mixture prior: its mean, or a sample (component by weight, then z)."""
        mu_k, lv_k = self._split_values(read.values)
        if not sample:
            return (read.weights.unsqueeze(-1) * mu_k).sum(-2)
        w = read.weights.clamp(min=0) + (read.weights.sum(-1, keepdim=True) == 0).to(read.weights.dtype)
        flat = w.reshape(-1, w.shape[-1])
        comp = torch.multinomial(flat, 1, generator=generator).reshape(*w.shape[:-1], 1, 1)
        mu = mu_k.gather(-2, comp.expand(*comp.shape[:-1], mu_k.shape[-1])).squeeze(-2)
        lv = lv_k.gather(-2, comp.expand(*comp.shape[:-1], lv_k.shape[-1])).squeeze(-2)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * lv) * eps

    # ----------------------------------------------------------------- training
    def loss(self, batch: Batch) -> LossOutput:
        """Negative ELBO (7.3.4) per predicted frame: frames ``[0, tau)`` are memorised,
        ``[tau, tau + predict_steps)`` (or ``[tau, T)``) predicted. Plus the state KL (landmark inference) and the gate BCE."""
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
        moved, known = self.frame_moved(obs, mask)
        path = self.infer_states(actions, moved, known, codes=mu_z if self.landmark else None,
                                 num_memorised=tau)
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
        else:
            kl_z = gaussian_kl(mu_p, lv_p)
        kl_s = path.kl[:, 1:].sum() / n_frames
        recon = (ll * pm).sum() / n_frames
        kl = (kl_z * pm).sum() / n_frames
        loss = -(recon - kl) + kl_s
        terms = {"recon": recon.detach(), "kl_z": kl.detach(), "kl_s": kl_s.detach(),
                 "elbo": (recon - kl - kl_s).detach()}
        if cfg.blocked_from_frames and cfg.gate_loss_weight > 0:
            gate, still = self.transition_aux_loss(path, actions, moved, known)
            loss = loss + cfg.gate_loss_weight * (gate + still)
            terms["gate_bce"] = gate.detach()
            terms["still_disp"] = still.detach()
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
        return {k: [p for p in v if p.requires_grad] for k, v in groups.items()}

    # ----------------------------------------------------------------- planner protocol
    def observe(self, obs: torch.Tensor, actions: torch.Tensor,
                mask: torch.Tensor | None = None) -> GTMSMBelief:
        """Memorise a context ``obs [B, T, C, H, W]``, ``actions [B, T, A]``, ``mask [B, T]``.

        States are inferred from the actions (and the frames: blocked moves, landmarks); the
        memory holds every observed frame (capacity ``max(config.capacity or tau, T)``).
        """
        cfg = self.config
        mask = check_sequences(obs, actions, mask, cfg.obs_shape, cfg.action_dim)
        obs = check_frames(obs, mask, model_dtype(self), min_observed="sequence")
        B, T = obs.shape[:2]
        mu_z, lv_z = self.encode(obs)
        moved, known = self.frame_moved(obs, mask) if T > 1 else (None, None)
        path = self.infer_states(actions, moved, known, codes=mu_z if self.landmark else None,
                                 num_memorised=T, sample=False)
        memory = self.memorise(path, mu_z, lv_z, mask > 0, capacity=max(cfg.capacity or cfg.tau, T))
        return GTMSMBelief(path.mean[:, -1], path.disp[:, -1], mu_z[:, -1], memory)

    def rollout_states(self, state: torch.Tensor, disp: torch.Tensor, actions: torch.Tensor,
                       sample: bool = False, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """Prior rollout (gate, no frames): ``state [M, S]``, ``actions [M, H, A]`` -> ``[M, H, S]``."""
        out = []
        s, d = state, disp
        for h in range(actions.shape[1]):
            s, d = self.transition.step(s, actions[:, h], d)
            if sample:
                s = s + self.config.transition_std * torch.randn(
                    s.shape, generator=generator, device=s.device, dtype=s.dtype)
            out.append(s)
        return torch.stack(out, 1)

    def imagine(self, belief: GTMSMBelief, actions: torch.Tensor, *, sample: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Roll ``actions [B, N, H, A]`` from the belief; latents ``[B, N, H, state_dim + z_dim]``
        = (state, code of the memory's mixture prior: its mean, or a sample)."""
        B = belief.batch_size
        check_shape("actions", actions, (B, "N", "H", self.action_dim))
        N, H = actions.shape[1:3]
        rep = torch.arange(B, device=actions.device).repeat_interleave(N)
        states = self.rollout_states(belief.state[rep], belief.disp[rep],
                                     actions.reshape(B * N, H, -1), sample, generator)
        if self.config.memory:
            read = self.read_prior(belief.memory.index_batch(rep), states)
            codes = self.prior_code(read, sample, generator)
        elif sample:
            codes = torch.randn(*states.shape[:-1], self.config.z_dim, generator=generator,
                                device=states.device, dtype=states.dtype)
        else:
            codes = states.new_zeros(*states.shape[:-1], self.config.z_dim)
        return torch.cat([states, codes], -1).reshape(B, N, H, self.latent_dim)
