"""DKF/DMM baseline: protocol shapes, bad input, masking, and that training raises the ELBO."""

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import DKF, DKFBelief, DKFConfig


def _batch(B=4, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(B, T, 1, 8, 8, generator=g), torch.randn(B, T, 1, generator=g),
                 torch.ones(B, T))


@pytest.mark.parametrize("kw", [dict(), dict(encoder="mlp", likelihood="bernoulli", inference="forward")])
def test_protocol_shapes(kw):
    torch.manual_seed(0)
    m = DKF(DKFConfig(obs_shape=(1, 8, 8), num_layers=2, channels=8, **kw))
    b = _batch()
    out = m.loss(b)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    belief = m.observe(b.obs, b.actions)
    assert isinstance(belief, DKFBelief) and belief.features().shape == (4, 3)
    lat = m.imagine(belief, torch.randn(4, 5, 3, 1))
    assert lat.shape == (4, 5, 3, 3)
    frames = m.decode(lat)
    assert frames.shape == (4, 5, 3, 1, 8, 8) and 0 <= frames.min() and frames.max() <= 1
    assert m.imagine(belief, torch.randn(4, 2, 3, 1), sample=True,
                     generator=torch.Generator().manual_seed(0)).shape == (4, 2, 3, 3)
    assert m.impute(b.obs, b.actions, b.mask).shape == b.obs.shape
    assert m.predict(b.obs, b.actions, context=2).shape == (4, 4, 1, 8, 8)


def test_bad_input_and_masking():
    m = DKF(DKFConfig(obs_shape=(1, 8, 8), num_layers=2, channels=8, inference="forward"))
    b = _batch()
    with pytest.raises(ValueError, match="obs"):
        m.observe(b.obs[:, :, :, :4], b.actions)
    with pytest.raises(ValueError, match="actions"):
        m.observe(b.obs, torch.zeros(4, 6, 2))
    with pytest.raises(ValueError, match="latents"):
        m.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="inference"):
        DKFConfig(inference="sideways")
    mask = b.mask.clone()
    mask[:, 4] = 0
    obs2 = b.obs.clone()
    obs2[:, 4] = 1 - obs2[:, 4]
    e1 = m.elbo(Batch(b.obs, b.actions, mask), generator=torch.Generator().manual_seed(0))
    e2 = m.elbo(Batch(obs2, b.actions, mask), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(e1["elbo"], e2["elbo"])


def test_training_raises_the_elbo():
    torch.manual_seed(0)
    m = DKF(DKFConfig(obs_shape=(1, 8, 8), encoder="mlp", mlp_hidden=(32,), likelihood="bernoulli"))
    b = _batch()
    b = Batch((b.obs > 0.5).float(), b.actions, b.mask)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    before = m.elbo(b, generator=g())["elbo"].mean()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        m.loss(b).loss.backward()
        opt.step()
    after = m.elbo(b, generator=g())["elbo"].mean()
    assert after > before + 10.0
