"""DVBF (locally linear, fusion inference): the fusion step, config errors, and that training raises
the ELBO and uses the controls (shared protocol/masking checks: test_gaussian_state_models.py)."""

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import DVBF, DVBFConfig
from worldmodels.baselines.dvbf import fuse


def _batch(B=4, T=6, A=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(B, T, 1, 8, 8, generator=g), torch.randn(B, T, A, generator=g),
                 torch.ones(B, T))


def test_fuse_is_the_normalised_product_of_the_two_gaussians():
    g = torch.Generator().manual_seed(0)
    mp, lp, me, le = (torch.randn(5, 3, generator=g) for _ in range(4))
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    mean, logvar = fuse(mp, lp, me, le, mask)
    # brute force on a grid per dimension: the product's mean and variance
    x = torch.linspace(-15, 15, 30001)
    logp = lambda m, lv: -0.5 * (x - m[..., None]) ** 2 / torch.exp(lv[..., None])  # noqa: E731
    w = torch.softmax(logp(mp, lp) + mask[:, None, None] * logp(me, le), -1)
    bm = (w * x).sum(-1)
    bv = (w * (x - bm[..., None]) ** 2).sum(-1)
    torch.testing.assert_close(mean, bm, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(torch.exp(logvar), bv, atol=1e-3, rtol=1e-3)
    # unobserved rows return the prior exactly
    torch.testing.assert_close(mean[mask == 0], mp[mask == 0])
    torch.testing.assert_close(logvar[mask == 0], lp[mask == 0])


def test_config_errors():
    with pytest.raises(ValueError, match="encoder"):
        DVBFConfig(encoder="rnn")


def test_training_raises_the_elbo_and_the_prediction_uses_the_controls():
    """A dot pushed along a row by the action: after training, predicted frames follow the
    actions (open loop, beyond the context) far better than the untrained model's."""
    g = torch.Generator().manual_seed(0)
    B, T, W = 32, 8, 8
    u = torch.randint(0, 2, (B, T, 1), generator=g).float() * 2 - 1  # +-1 px per step
    pos = torch.randint(2, 6, (B,), generator=g).float()
    xs = [pos]
    for t in range(1, T):
        xs.append((xs[-1] + u[:, t - 1, 0]).clamp(0, W - 1))
    px = torch.stack(xs, 1).long()  # [B, T]
    obs = torch.zeros(B, T, 1, 1, W)
    obs.scatter_(-1, px[:, :, None, None, None], 1.0)
    b = Batch(obs, u, torch.ones(B, T))
    torch.manual_seed(0)
    m = DVBF(DVBFConfig(obs_shape=(1, 1, W), z_dim=2, num_modes=4, mlp_hidden=(32,),
                        likelihood="bernoulli", init_frames=1))
    ge = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    before = m.elbo(b, generator=ge())["elbo"].mean()
    err_before = ((m.predict(b.obs, b.actions, context=2) - obs[:, 2:]) ** 2).mean()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        m.loss(b).loss.backward()
        opt.step()
    after = m.elbo(b, generator=ge())["elbo"].mean()
    err_after = ((m.predict(b.obs, b.actions, context=2) - obs[:, 2:]) ** 2).mean()
    err_blind = ((m.predict(b.obs, torch.zeros_like(u), context=2) - obs[:, 2:]) ** 2).mean()
    # seeds 0-2: ELBO -45 -> -6, error 0.25 -> 0.006-0.017, 0.17-0.19 with the actions zeroed
    assert after > before + 20.0
    assert err_after < 0.2 * err_before
    assert err_after < 0.25 * err_blind
