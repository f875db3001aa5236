"""``impute(..., observed="copy")``: observed frames as given, the same estimates at missing frames,
and the decoder run on the missing frames only."""

from __future__ import annotations

import pytest
import torch

from worldmodels.base import fill_missing
from worldmodels.baselines import DKF, CodeRNN, CodeRNNConfig, DKFConfig
from worldmodels.kvae import KVAE, KVAEConfig
from worldmodels.vae_rnn import VAERNN, VAERNNConfig

OBS = (1, 8, 8)


def _code_rnn():
    kvae = KVAE(KVAEConfig(obs_shape=OBS, action_dim=2, a_dim=3, z_dim=4, num_modes=2))
    return CodeRNN(CodeRNNConfig(code_dim=3, action_dim=2, obs_shape=OBS),
                   encode=lambda x: kvae.encode(x)[0], decode=kvae.decode)


MODELS = {
    "kvae": (lambda: KVAE(KVAEConfig(obs_shape=OBS, action_dim=2, a_dim=3, z_dim=4, num_modes=2)), "smooth"),
    "vae_rnn": (lambda: VAERNN(VAERNNConfig(obs_shape=OBS, action_dim=2, latent_dim=3, hidden_dim=16)), "filter"),
    "dkf": (lambda: DKF(DKFConfig(obs_shape=OBS, action_dim=2, z_dim=3, encoder="mlp", mlp_hidden=(32,))), "smooth"),
    "code_rnn": (_code_rnn, "filter"),
}


@pytest.mark.parametrize("name", MODELS)
def test_copy_keeps_observed_frames_and_matches_the_estimates_elsewhere(name, one_thread):
    make, method = MODELS[name]
    torch.manual_seed(0)
    model = make().eval()
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(3, 6, *OBS, generator=g)
    actions = torch.randn(3, 6, 2, generator=g)
    mask = torch.ones(3, 6)
    mask[0, 2:4] = 0
    mask[2, 1:] = 0
    with torch.no_grad():
        full = model.impute(obs, actions, mask, method=method)
        copied = model.impute(obs, actions, mask, method=method, observed="copy")
    seen = mask.bool()
    assert torch.equal(copied[seen], obs[seen])
    torch.testing.assert_close(copied[~seen], full[~seen], rtol=1e-5, atol=1e-5)
    assert not torch.equal(full[seen], obs[seen])  # the default still returns the model's estimates


def test_fill_missing_decodes_only_the_missing_frames():
    calls = []

    def decode(z):
        calls.append(z.shape[0])
        return z[..., :1, None, None].expand(*z.shape[:-1], 1, 2, 2) + 10

    lat = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    obs = torch.zeros(2, 4, 1, 2, 2)
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float32)
    out = fill_missing(decode, lat, obs, mask, "copy")
    assert calls == [3]
    assert torch.equal(out[mask.bool()], obs[mask.bool()])
    assert torch.equal(out[0, 1], torch.full((1, 2, 2), lat[0, 1, 0].item() + 10))
    assert fill_missing(decode, lat, obs, torch.ones(2, 4), "copy") is not obs  # nothing to decode
    assert calls == [3]
    with pytest.raises(ValueError, match="observed"):
        fill_missing(decode, lat, obs, mask, "keep")  # type: ignore[arg-type]
