"""DVBF (locally linear, fusion inference): the fusion step, protocol shapes, bad input, masking,
and that training raises the ELBO and uses the controls."""

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import DVBF, DVBFBelief, DVBFConfig
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


@pytest.mark.parametrize("kw", [dict(), dict(encoder="conv", num_layers=2, channels=8,
                                              likelihood="bernoulli", action_dim=0)])
def test_protocol_shapes(kw):
    torch.manual_seed(0)
    m = DVBF(DVBFConfig(obs_shape=(1, 8, 8), mlp_hidden=(32,), **kw))
    A = m.action_dim
    b = _batch(A=A)
    out = m.loss(b)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is not None for p in m.parameters())
    belief = m.observe(b.obs, b.actions)
    assert isinstance(belief, DVBFBelief) and belief.features().shape == (4, 3)
    lat = m.imagine(belief, torch.randn(4, 5, 3, A))
    assert lat.shape == (4, 5, 3, 3)
    frames = m.decode(lat)
    assert frames.shape == (4, 5, 3, 1, 8, 8) and 0 <= frames.min() and frames.max() <= 1
    assert m.imagine(belief, torch.randn(4, 2, 3, A), sample=True,
                     generator=torch.Generator().manual_seed(0)).shape == (4, 2, 3, 3)
    assert m.impute(b.obs, b.actions, b.mask).shape == b.obs.shape
    assert m.predict(b.obs, b.actions, context=2).shape == (4, 4, 1, 8, 8)


def test_bad_input_and_masking():
    torch.manual_seed(0)
    m = DVBF(DVBFConfig(obs_shape=(1, 8, 8), mlp_hidden=(32,)))
    b = _batch()
    with pytest.raises(ValueError, match="obs"):
        m.observe(b.obs[:, :, :, :4], b.actions)
    with pytest.raises(ValueError, match="actions"):
        m.observe(b.obs, torch.zeros(4, 6, 2))
    with pytest.raises(ValueError, match="latents"):
        m.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="encoder"):
        DVBFConfig(encoder="rnn")
    with pytest.raises(TypeError, match="belief"):
        m.imagine(object(), torch.zeros(4, 1, 1, 1))
    # a missing frame (inside the initial window too) does not enter the ELBO
    for t in (1, 4):
        mask = b.mask.clone()
        mask[:, t] = 0
        obs2 = b.obs.clone()
        obs2[:, t] = 1 - obs2[:, t]
        e1 = m.elbo(Batch(b.obs, b.actions, mask), generator=torch.Generator().manual_seed(0))
        e2 = m.elbo(Batch(obs2, b.actions, mask), generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(e1["elbo"], e2["elbo"])


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
