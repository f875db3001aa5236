"""DKF/DMM baseline: config errors and that training raises the ELBO (the protocol, bad input and
masking checks it shares with the DVBF are in test_gaussian_state_models.py)."""

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import DKF, DKFConfig


def _batch(B=4, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(B, T, 1, 8, 8, generator=g), torch.randn(B, T, 1, generator=g),
                 torch.ones(B, T))


def test_config_errors():
    with pytest.raises(ValueError, match="inference"):
        DKFConfig(inference="sideways")


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
