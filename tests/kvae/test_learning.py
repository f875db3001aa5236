"""KVAE behaviour that needs fitting or hand-set dynamics: smoothing vs filtering imputation on a
linear system, and a tiny KVAE beating a fixed-prior VAE's ELBO on a few bouncing-dot videos."""

import torch

from worldmodels.base import Batch
from worldmodels.kvae import KVAE, KVAEConfig


def _linear_kvae() -> KVAE:
    """KVAE whose encoder/decoder are the identity on 2-pixel frames and whose two modes both
    are the constant-velocity model ``z = (pos, vel)``, ``a = pos``."""
    cfg = KVAEConfig(obs_shape=(1, 1, 2), action_dim=0, use_controls=False, a_dim=2, z_dim=4,
                     num_modes=2, encoder="mlp", decoder="mlp", mlp_hidden=(),
                     likelihood="gaussian", init_transition_noise=1e-3, init_emission_noise=1e-3,
                     init_cov=10.0)
    m = KVAE(cfg)
    with torch.no_grad():
        A = torch.eye(4)
        A[:2, 2:] = torch.eye(2)
        m.A_modes.copy_(A.expand(2, 4, 4))
        m.C_modes.copy_(torch.cat([torch.eye(2), torch.zeros(2, 2)], 1).expand(2, 2, 4))
        for lin in (m.encoder.mean, m.decoder.out):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    return m.eval()


def test_smoothing_beats_filtering_for_imputation_on_linear_system():
    g = torch.Generator().manual_seed(0)
    B, T = 64, 20
    pos0 = 0.25 + 0.5 * torch.rand(B, 2, generator=g)  # frames stay in [0, 1]
    vel = 0.0125 * (2 * torch.rand(B, 2, generator=g) - 1)
    t = torch.arange(T, dtype=torch.float32)[None, :, None]
    a_true = pos0[:, None] + vel[:, None] * t  # [B, T, 2]
    obs = a_true.reshape(B, T, 1, 1, 2)
    mask = (torch.rand(B, T, generator=g) > 0.6).float()
    mask[:, :4] = 1.0
    mask[:, -1] = 1.0
    m = _linear_kvae()
    lat = m.infer_latents(obs, torch.zeros(B, T, 0), mask)
    missing = mask == 0
    err_s = (lat["smoothed"] - a_true).norm(dim=-1)[missing].mean()
    err_f = (lat["filtered"] - a_true).norm(dim=-1)[missing].mean()
    assert err_s < 0.5 * err_f
    assert err_s < 0.02
    # observed frames are reproduced by both
    assert (lat["smoothed"] - a_true).norm(dim=-1)[~missing].max() < 0.05
    # impute decodes the same estimates (identity decoder, clamped to [0, 1])
    frames = m.impute(obs, torch.zeros(B, T, 0), mask, method="smooth")
    torch.testing.assert_close(frames.reshape(B, T, 2), lat["smoothed"].clamp(0, 1))


def _fit(model: KVAE, batch: Batch, steps: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 150.0)
        opt.step()
    model.eval()


def test_tiny_kvae_beats_fixed_prior_vae_elbo(dots):
    obs, _ = dots(8, 10, size=8, seed=0)
    batch = Batch(obs, torch.zeros(8, 10, 0), torch.ones(8, 10))
    common = dict(obs_shape=(1, 8, 8), action_dim=0, use_controls=False, a_dim=2, z_dim=4,
                  num_modes=3, encoder="mlp", decoder="mlp", mlp_hidden=(64,),
                  dynamics_hidden=16, recon_weight=1.0)
    # recon_weight=1 and a 50-update VAE warm-up: with the paper's 0.3 and no warm-up this tiny
    # model needs far more updates before its codes leave the prior's mean (the collapse of 4.8).
    # 300 updates: at 150 the KVAE's reconstruction still lags and the margin depends on the seed
    # (seeds 0-2 at 300: +20 to +30 nats per sequence)
    torch.manual_seed(0)
    kvae = KVAE(KVAEConfig(**common, vae_warmup_updates=50))
    torch.manual_seed(0)
    vae = KVAE(KVAEConfig(**common, prior="gaussian"))
    _fit(kvae, batch, 300)
    _fit(vae, batch, 300)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    with torch.no_grad():
        e_kvae = kvae.elbo(batch, num_samples=4, generator=g())
        e_vae = vae.elbo(batch, num_samples=4, generator=g())
    assert e_kvae["elbo"].mean() > e_vae["elbo"].mean() + 5.0
    # the gain comes from the prior over the codes, not from a worse reconstruction trade-off
    assert e_kvae["log_prior"].mean() > e_vae["log_prior"].mean()
