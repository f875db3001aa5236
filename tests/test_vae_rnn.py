"""VAE-RNN: protocol indexing, batching, masking, training and checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.training import TrainConfig, Trainer, load
from worldmodels.vae_rnn import VAERNN, VAERNNConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def small(**kw):
    torch.manual_seed(0)
    cfg = dict(obs_shape=(1, 8, 8), action_dim=2, latent_dim=3, hidden_dim=12, encoder="mlp", mlp_hidden=(32,))
    cfg.update(kw)
    return VAERNN(VAERNNConfig(**cfg))


def data(B=4, T=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, 1, 8, 8, generator=g), torch.randn(B, T, 2, generator=g)


def test_shapes_and_clear_errors():
    m = small()
    obs, act = data()
    assert m.imagine(m.observe(obs, act), torch.randn(4, 5, 3, 2)).shape == (4, 5, 3, 3)
    assert m.decode(torch.zeros(2, 7, 3)).shape == (2, 7, 1, 8, 8)
    with pytest.raises(ValueError, match="obs"):
        m.observe(obs[..., :4], act)
    with pytest.raises(ValueError, match="actions"):
        m.observe(obs, act[..., :1])
    with pytest.raises(ValueError, match="mask"):
        m.loss(Batch(obs, act, torch.ones(4, 5)))
    with pytest.raises(ValueError, match="encoder"):
        VAERNNConfig(encoder="rnn")


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_predict_equals_imputation_of_missing_future(encoder):
    """Open-loop prediction and imputing masked-out future frames use the same actions at the same times."""
    m = small(encoder=encoder).eval()
    obs, act = data()
    k = 2
    mask = torch.zeros(4, 6)
    mask[:, :k] = 1
    pred = m.predict(obs, act, context=k)
    imp = m.impute(obs, act, mask)
    torch.testing.assert_close(pred, imp[:, k:], rtol=1e-5, atol=1e-6)
    # the first predicted frame depends on actions[:, k-1], not on actions[:, k]
    act2 = act.clone()
    act2[:, k] += 1.0
    torch.testing.assert_close(m.predict(obs, act2, context=k)[:, 0], pred[:, 0])
    act3 = act.clone()
    act3[:, k - 1] += 1.0
    assert not torch.allclose(m.predict(obs, act3, context=k)[:, 0], pred[:, 0])


def test_imagine_batches_candidates_independently():
    m = small().eval()
    obs, act = data()
    belief = m.observe(obs, act)
    cand = torch.randn(4, 3, 5, 2)
    joint = m.imagine(belief, cand)
    for n in range(3):
        torch.testing.assert_close(m.imagine(belief, cand[:, n:n + 1])[:, 0], joint[:, n])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = m.imagine(belief, cand, sample=True, generator=g1)
    torch.testing.assert_close(s1, m.imagine(belief, cand, sample=True, generator=g2))
    assert not torch.allclose(s1, joint)


def test_loss_ignores_masked_frames():
    m = small()
    obs, act = data()
    mask = torch.ones(4, 6)
    mask[:, 3] = 0
    obs2 = obs.clone()
    obs2[:, 3] = 1 - obs2[:, 3]
    torch.manual_seed(5)
    a = m.loss(Batch(obs, act, mask))
    torch.manual_seed(5)
    b = m.loss(Batch(obs2, act, mask))
    torch.testing.assert_close(a.loss, b.loss)
    torch.manual_seed(5)
    c = m.loss(Batch(obs2, act, torch.ones(4, 6)))
    assert not torch.allclose(a.loss, c.loss)


class MovingDot(torch.utils.data.Dataset):
    """A dot moving right by one pixel per step (action = +1) on an 8x8 frame."""

    def __init__(self, n=32, T=6, seed=0):
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, 8, (n, 2), generator=g)
        self.obs = torch.zeros(n, T, 1, 8, 8)
        for t in range(T):
            self.obs[torch.arange(n), t, 0, start[:, 0], (start[:, 1] + t) % 8] = 1.0
        self.actions = torch.ones(n, T, 2)

    def __len__(self):
        return len(self.obs)

    def __getitem__(self, i):
        return {"obs": self.obs[i], "actions": self.actions[i], "mask": torch.ones(self.obs.shape[1])}

    def batch(self):
        return Batch(self.obs, self.actions, torch.ones(self.obs.shape[:2]))


def test_training_lowers_neg_elbo_and_checkpoint_round_trips(tmp_run):
    m = small(latent_dim=4, hidden_dim=32, mlp_hidden=(64,))
    before = m.loss(MovingDot(16, seed=1).batch()).terms["neg_elbo"]
    cfg = TrainConfig(steps=150, batch_size=16, lr=3e-3, progress=False, checkpoint_every=None, log_every=50,
                      val_every=75)
    Trainer(m, cfg, tmp_run, MovingDot(), MovingDot(16, seed=1)).fit()
    m.eval()
    after = m.loss(MovingDot(16, seed=1).batch()).terms["neg_elbo"]
    assert after < 0.6 * before
    loaded = load(tmp_run, device="cpu")
    assert isinstance(loaded, VAERNN) and loaded.config == m.config
    obs, act = data()
    torch.testing.assert_close(loaded.predict(obs, act, 2), m.predict(obs, act, 2))


def test_free_nats_floor_the_penalised_kl():
    obs, act = data()
    m = small(free_nats=50.0)
    torch.manual_seed(2)
    out = m.loss(Batch(obs, act, torch.ones(4, 6)))
    assert out.terms["kl"] < 50.0  # the reported KL is the true one ...
    torch.testing.assert_close(out.loss, out.terms["recon"] + 50.0)  # ... the penalty is floored


def test_xavier_init_zeroes_the_auto_encoder_biases_and_keeps_the_default_otherwise():
    conv = dict(encoder="conv", obs_shape=(1, 16, 16))
    default = small(**conv)
    xavier = small(init="xavier", **conv)

    def biases(m):
        return [p for n, p in m.named_parameters() if n.endswith("bias") and n.split(".")[0] in ("encoder", "decoder")]

    assert biases(xavier) and all(bool((b == 0).all()) for b in biases(xavier))
    assert any(bool((b != 0).any()) for b in biases(default))
    with pytest.raises(ValueError, match="init"):
        VAERNNConfig(init="he")
