"""What the DKF/DMM and the DVBF share (`GaussianStateModel`): the planner protocol's shapes,
gradients to every parameter, clear errors on bad input, and masked frames leaving the ELBO."""

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import DKF, DVBF, DKFBelief, DKFConfig, DVBFBelief, DVBFConfig

MODELS = {
    "dkf-conv": lambda: DKF(DKFConfig(obs_shape=(1, 8, 8), num_layers=2, channels=8)),
    "dkf-mlp-forward": lambda: DKF(DKFConfig(obs_shape=(1, 8, 8), num_layers=2, channels=8, encoder="mlp",
                                             likelihood="bernoulli", inference="forward")),
    "dvbf-mlp": lambda: DVBF(DVBFConfig(obs_shape=(1, 8, 8), mlp_hidden=(32,))),
    "dvbf-conv-no-actions": lambda: DVBF(DVBFConfig(obs_shape=(1, 8, 8), mlp_hidden=(32,), encoder="conv",
                                                    num_layers=2, channels=8, likelihood="bernoulli",
                                                    action_dim=0)),
}
BELIEFS = {DKF: DKFBelief, DVBF: DVBFBelief}


def _batch(B=4, T=6, A=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(B, T, 1, 8, 8, generator=g), torch.randn(B, T, A, generator=g),
                 torch.ones(B, T))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_protocol_shapes_and_gradients(name):
    torch.manual_seed(0)
    m = MODELS[name]()
    A = m.action_dim
    b = _batch(A=A)
    out = m.loss(b)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is not None for p in m.parameters())
    belief = m.observe(b.obs, b.actions)
    assert isinstance(belief, BELIEFS[type(m)]) and belief.features().shape == (4, 3)
    lat = m.imagine(belief, torch.randn(4, 5, 3, A))
    assert lat.shape == (4, 5, 3, 3)
    frames = m.decode(lat)
    assert frames.shape == (4, 5, 3, 1, 8, 8) and 0 <= frames.min() and frames.max() <= 1
    assert m.imagine(belief, torch.randn(4, 2, 3, A), sample=True,
                     generator=torch.Generator().manual_seed(0)).shape == (4, 2, 3, 3)
    assert m.impute(b.obs, b.actions, b.mask).shape == b.obs.shape
    assert m.predict(b.obs, b.actions, context=2).shape == (4, 4, 1, 8, 8)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bad_input_raises_and_masked_frames_leave_the_elbo(name):
    torch.manual_seed(0)
    m = MODELS[name]()
    b = _batch(A=m.action_dim)
    with pytest.raises(ValueError, match="obs"):
        m.observe(b.obs[:, :, :, :4], b.actions)
    with pytest.raises(ValueError, match="actions"):
        m.observe(b.obs, torch.zeros(4, 6, m.action_dim + 1))
    with pytest.raises(ValueError, match="latents"):
        m.decode(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="belief"):
        m.imagine(object(), torch.zeros(4, 1, 1, m.action_dim))
    for t in (1, 4):  # t = 1 lies inside the DVBF's initial-state window
        mask = b.mask.clone()
        mask[:, t] = 0
        obs2 = b.obs.clone()
        obs2[:, t] = 1 - obs2[:, t]
        e1 = m.elbo(Batch(b.obs, b.actions, mask), generator=torch.Generator().manual_seed(0))
        e2 = m.elbo(Batch(obs2, b.actions, mask), generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(e1["elbo"], e2["elbo"])
