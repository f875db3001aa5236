"""Shapes, sizes and likelihoods of the shared frame networks (worldmodels.nets)."""

import pytest
import torch
from torch import distributions as D

from worldmodels.nets import (
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    SubPixelDecoder,
    bernoulli_log_prob,
    gaussian_kl,
    gaussian_log_prob,
    init_xavier_,
)


@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_conv_encoder_and_subpixel_decoder_keep_leading_dims(lead):
    enc = ConvEncoder(1, 32, out_dim=4)
    dec = SubPixelDecoder(4, 1, 32)
    x = torch.rand(*lead, 1, 32, 32)
    mean, logvar = enc(x)
    assert mean.shape == (*lead, 4) and logvar.shape == (*lead, 4)
    y = dec(mean)
    assert y.shape == (*lead, 1, 32, 32)


def test_subpixel_decoder_output_size_and_layers():
    dec = SubPixelDecoder(2, 3, (16, 24), channels=8, num_layers=3)
    assert dec(torch.zeros(7, 2)).shape == (7, 3, 16, 24)
    assert dec.base_shape == (8, 2, 3)
    # three pixel shuffles, as in the KVAE decoder
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in dec.modules()) == 3
    with pytest.raises(ValueError, match="image_size"):
        SubPixelDecoder(2, 1, 20, num_layers=3)


def test_conv_encoder_paper_geometry_and_odd_sizes():
    enc = ConvEncoder(1, 32, 2)
    assert enc.feature_dim == 32 * 4 * 4
    enc = ConvEncoder(3, 15, 2, channels=4)
    assert enc.feature_dim == 4 * 2 * 2
    assert enc(torch.rand(2, 3, 15, 15))[0].shape == (2, 2)


def test_mlp_variants_shapes_and_gradients():
    enc = MLPEncoder((1, 16, 16), 3, hidden=(25, 25))
    dec = MLPDecoder(3, (1, 16, 16), hidden=(25, 25))
    x = torch.rand(4, 6, 1, 16, 16)
    m, lv = enc(x)
    assert m.shape == (4, 6, 3) and lv.shape == (4, 6, 3)
    out = dec(m + lv)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_bad_inputs_raise_value_error_naming_argument():
    enc = ConvEncoder(1, 32, 2)
    with pytest.raises(ValueError, match="x: expected shape"):
        enc(torch.rand(4, 3, 32, 32))
    with pytest.raises(ValueError, match="z: expected shape"):
        SubPixelDecoder(2, 1, 32)(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x: expected shape"):
        MLPEncoder((1, 8, 8), 2)(torch.rand(8, 8))
    with pytest.raises(ValueError, match="logvar_q"):
        gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 3))


def test_bernoulli_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 1, 5, 4, generator=g)
    x = (torch.rand(3, 2, 1, 5, 4, generator=g) > 0.5).float()
    ref = D.Independent(D.Bernoulli(logits=logits), 3).log_prob(x)
    got = bernoulli_log_prob(logits, x)
    assert got.shape == (3, 2)
    torch.testing.assert_close(got, ref)


def test_gaussian_log_prob_matches_torch_distributions_with_per_pixel_logvar():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(4, 2, 6, 6, generator=g)
    logvar = torch.randn(2, 6, 6, generator=g)  # learned per-pixel variance, broadcast
    x = torch.randn(4, 2, 6, 6, generator=g)
    ref = D.Independent(D.Normal(mean, torch.exp(0.5 * logvar)), 3).log_prob(x)
    got = gaussian_log_prob(mean, logvar, x)
    assert got.shape == (4,)
    torch.testing.assert_close(got, ref)
    # a scalar log-variance broadcasts too
    ref0 = D.Independent(D.Normal(mean, torch.ones_like(mean)), 3).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(mean, torch.tensor(0.0), x), ref0)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(2)
    mq, lq, mp, lp = (torch.randn(5, 3, generator=g) for _ in range(4))
    q = D.Normal(mq, torch.exp(0.5 * lq))
    p = D.Normal(mp, torch.exp(0.5 * lp))
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), D.kl_divergence(q, p).sum(-1))
    std = D.Normal(torch.zeros(5, 3), torch.ones(5, 3))
    torch.testing.assert_close(gaussian_kl(mq, lq), D.kl_divergence(q, std).sum(-1))


def test_init_xavier_zeroes_biases_and_uses_glorot_bounds():
    torch.manual_seed(0)
    enc = ConvEncoder(1, 32, 2, channels=32)
    dec = SubPixelDecoder(2, 1, 32, channels=32)
    for net in (enc, dec):
        assert init_xavier_(net) is net
        layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(layers) == 5  # 3 convs + 2 heads; fc + 3 convs + 1x1 out
        for m in layers:
            assert torch.count_nonzero(m.bias) == 0
            w = m.weight
            rf = w[0, 0].numel() if w.dim() == 4 else 1
            bound = (6.0 / (rf * (w.shape[0] + w.shape[1]))) ** 0.5
            assert w.abs().max() <= bound
            assert w.abs().max() > 0.9 * bound  # uniform over the whole range, not a smaller one
    # PyTorch's default conv init (what collapsed the KVAE at lr 0.007) is ~1.7x narrower
    torch.manual_seed(0)
    conv = ConvEncoder(1, 32, 2, channels=32).convs[2]
    assert conv.weight.abs().max() < 0.65 * (6.0 / (9 * 64)) ** 0.5


def test_decoder_likelihood_picks_bernoulli_or_floored_gaussian():
    from worldmodels.nets import decoder_log_prob, decoder_mean, gaussian_log_prob

    torch.manual_seed(0)
    out, x = torch.randn(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    assert torch.equal(decoder_log_prob(out, x, None), bernoulli_log_prob(out, x))
    assert torch.equal(decoder_mean(out, None), torch.sigmoid(out))
    tiny = torch.full((1, 4, 4), -30.0)  # a learned variance collapsing to a point mass is floored
    assert torch.allclose(decoder_log_prob(out, x, tiny), gaussian_log_prob(out, torch.full_like(tiny, -10.0), x))
    assert decoder_mean(out, tiny).min() >= 0 and decoder_mean(out, tiny).max() <= 1
