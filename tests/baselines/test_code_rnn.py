"""AE-RNN over frozen codes: the recursion, what it trains, and that it learns dynamics."""

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import CodeRNN, CodeRNNConfig

OBS = (1, 1, 2)  # a "frame" is the 2-d code itself: identity auto-encoder


def _identity_model(**kw) -> CodeRNN:
    cfg = CodeRNNConfig(code_dim=2, action_dim=1, obs_shape=OBS, **kw)
    return CodeRNN(cfg, encode=lambda x: x.flatten(2), decode=lambda c: c.reshape(*c.shape[:-1], *OBS))


def _constant_velocity(B: int, T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(B, 1, 2, generator=g) * 2 - 1
    v = (torch.rand(B, 1, 2, generator=g) * 2 - 1) * 0.2
    return (x0 + v * torch.arange(T).view(1, T, 1)).reshape(B, T, *OBS)


def test_observed_frames_pass_through_and_only_the_lstm_is_trained():
    torch.manual_seed(0)
    model = _identity_model()
    obs = _constant_velocity(3, 6, seed=1)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0]] * 3, dtype=torch.float32)
    out = model.impute(obs, torch.zeros(3, 6, 1), mask)
    assert out.shape == obs.shape
    assert torch.equal(out[:, mask[0].bool()], obs[:, mask[0].bool()])
    # untrained head is zero: a missing frame repeats the last filled code
    assert torch.allclose(out[:, 2], obs[:, 1]) and torch.allclose(out[:, 5], obs[:, 3])
    names = {n for n, _ in model.named_parameters()}
    assert names == {"rnn.weight_ih", "rnn.weight_hh", "rnn.bias_ih", "rnn.bias_hh", "head.weight", "head.bias"}


def test_learns_constant_velocity_and_beats_repeating_the_last_frame():
    torch.manual_seed(0)
    model = _identity_model(hidden_dim=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(300):
        obs = _constant_velocity(64, 12, seed=step)
        loss = model.loss(Batch(obs, torch.zeros(64, 12, 1), torch.ones(64, 12))).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    obs = _constant_velocity(200, 12, seed=10_000)
    mask = torch.ones(200, 12)
    mask[:, 4:] = 0.0  # generation after 4 frames
    pred = model.impute(obs, torch.zeros(200, 12, 1), mask)
    err = ((pred - obs) ** 2)[:, 4:].mean()
    copy_last = ((obs[:, 3:4] - obs) ** 2)[:, 4:].mean()
    assert err < 0.25 * copy_last, (float(err), float(copy_last))  # measured: 0.08x


def test_bad_input_raises():
    with pytest.raises(ValueError, match="train_drop"):
        CodeRNNConfig(code_dim=2, action_dim=1, obs_shape=OBS, train_drop=(0.5, 0.2))
    model = _identity_model()
    obs = _constant_velocity(2, 5, seed=0)
    with pytest.raises(ValueError, match="only filters forward"):
        model.impute(obs, torch.zeros(2, 5, 1), torch.ones(2, 5), method="smooth")
    with pytest.raises(ValueError, match="actions"):
        model.impute(obs, torch.zeros(2, 5, 3), torch.ones(2, 5))
    bad = CodeRNN(model.config, encode=lambda x: x.flatten(2)[..., :1], decode=lambda c: c)
    with pytest.raises(ValueError, match="encode: expected codes"):
        bad.impute(obs, torch.zeros(2, 5, 1), torch.ones(2, 5))
