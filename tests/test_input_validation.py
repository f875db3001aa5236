"""Bad inputs at the package's boundaries give one clear error naming the argument, file or key.

Three tables: environment options (constructors and ``reset`` options), dataset shards and
manifests, and the frames/masks given to the models' ``loss`` and ``observe``.
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import DKF, DKFConfig, DVBF, DVBFConfig
from worldmodels.checks import check_frames, frames_to_float
from worldmodels.gtmsm import GTMSM, GTMSMConfig
from worldmodels.kvae import KVAE, KVAEConfig
from worldmodels.vae_rnn import VAERNN, VAERNNConfig


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------- models
T = 6
MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "kvae": lambda: KVAE(KVAEConfig(obs_shape=(1, 16, 16), action_dim=2, a_dim=2, z_dim=3, num_modes=2,
                                    channels=8, dynamics_hidden=16, vae_warmup_updates=0)),
    "vaernn": lambda: VAERNN(VAERNNConfig(obs_shape=(1, 8, 8), action_dim=2, latent_dim=3, hidden_dim=12,
                                          encoder="mlp", mlp_hidden=(32,))),
    "gtmsm": lambda: GTMSM(GTMSMConfig(tau=3, z_dim=6, hidden=(32,), channels=8)),
    "dkf": lambda: DKF(DKFConfig(obs_shape=(1, 8, 8), num_layers=2, channels=8)),
    "dvbf": lambda: DVBF(DVBFConfig(obs_shape=(1, 8, 8), mlp_hidden=(32,))),
}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS[name]()


def _inputs(model: torch.nn.Module, B: int = 2, seed: int = 1):
    """Valid ``obs [B, T, C, H, W]`` in [0, 1], actions ``[B, T, A]`` and a mask with gaps."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(B, T, *cfg.obs_shape, generator=g)
    A = cfg.action_dim
    actions = torch.nn.functional.one_hot(torch.randint(0, A, (B, T), generator=g), A).float()
    mask = torch.ones(B, T)
    mask[:, 4] = 0.0  # a missing frame after GTM-SM's memorised steps (tau = 3)
    mask[1, 1] = 0.0
    return obs, actions, mask


def _call(model, entry: str, obs, actions, mask):
    if entry == "loss":
        torch.manual_seed(3)  # the losses sample; the same draws for comparable results
        return model.loss(Batch(obs, actions, mask)).loss
    return model.observe(obs, actions, mask).features()


def _with(x: torch.Tensor, idx, value: float) -> torch.Tensor:
    x = x.clone()
    x[idx] = value
    return x


# name -> (transform of (obs, actions, mask), error type, pattern the message must match)
BAD_MODEL_INPUTS = {
    "uint8 frames": (lambda o, a, m: ((o * 255).to(torch.uint8), a, m), TypeError,
                     r"obs: .*torch\.uint8.*divide by 255"),
    "float frames in 0-255": (lambda o, a, m: (o * 255, a, m), ValueError,
                              r"obs: values must lie in \[0, 1\].*divide|obs: values must lie in \[0, 1\].*255"),
    "negative frame values": (lambda o, a, m: (o - 0.5, a, m), ValueError, r"obs: values must lie in \[0, 1\]"),
    "float64 frames": (lambda o, a, m: (o.double(), a, m), TypeError, r"obs: expected dtype torch\.float32"),
    "int64 frames": (lambda o, a, m: (o.long(), a, m), TypeError, r"obs: expected .*torch\.int64"),
    "NaN at an observed step": (lambda o, a, m: (_with(o, (0, 2), math.nan), a, m), ValueError,
                                r"obs: frame \(batch 0, step 2\) is observed .*NaN"),
    "inf at an observed step": (lambda o, a, m: (_with(o, (1, 0, 0, 0, 0), math.inf), a, m), ValueError,
                                r"obs: frame \(batch 1, step 0\) is observed .*inf"),
    "mask above 1": (lambda o, a, m: (o, a, _with(m, (0, 0), 2.0)), ValueError, r"mask: expected values in \[0, 1\]"),
    "NaN mask": (lambda o, a, m: (o, a, _with(m, (0, 0), math.nan)), ValueError, r"mask: expected values in \[0, 1\]"),
    "mask of the wrong shape": (lambda o, a, m: (o, a, m[:, :-1]), ValueError, r"mask: expected shape"),
    "frames of the wrong size": (lambda o, a, m: (o[..., :-1], a, m), ValueError, r"obs: expected shape"),
    "actions of the wrong length": (lambda o, a, m: (o, a[:, :-1], m), ValueError, r"actions: expected shape"),
}


@pytest.mark.parametrize("entry", ["loss", "observe"])
@pytest.mark.parametrize("case", sorted(BAD_MODEL_INPUTS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_bad_model_inputs_raise_a_clear_error(name, case, entry):
    model = _model(name)
    obs, actions, mask = _inputs(model)
    make, error, pattern = BAD_MODEL_INPUTS[case]
    obs, actions, mask = make(obs, actions, mask)
    if entry == "loss":  # the loss names the batch's fields
        pattern = pattern.replace("obs:", r"(batch\.)?obs:").replace("actions:", r"(batch\.)?actions:")
        pattern = pattern.replace("mask: expected shape", r"(batch\.)?mask: expected shape")
    with pytest.raises(error, match=pattern):
        _call(model, entry, obs, actions, mask)


@pytest.mark.parametrize("entry", ["loss", "observe"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_nan_at_masked_steps_is_ignored(name, entry):
    """NaN/inf in missing frames give the same finite loss and belief as zeros there."""
    model = _model(name)
    obs, actions, mask = _inputs(model)
    zeros = obs.clone()
    zeros[mask == 0] = 0.0
    holes = obs.clone()
    holes[mask == 0] = math.nan
    holes[1, 1, 0, 0, 0] = math.inf  # (1, 1) is missing too
    ref = _call(model, entry, zeros, actions, mask)
    got = _call(model, entry, holes, actions, mask)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert torch.isnan(holes).any(), "the caller's tensor is left as it was"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_loss_without_observed_frames_is_refused(name):
    model = _model(name)
    obs, actions, mask = _inputs(model)
    with pytest.raises(ValueError, match=r"mask: .*no (frame|observed frame)"):
        model.loss(Batch(obs, actions, torch.zeros_like(mask)))


@pytest.mark.parametrize("name", ["kvae", "vaernn", "dkf", "dvbf"])
def test_observe_without_observed_frames_is_the_prior(name):
    """Filtering models accept a context with no observed frame: the belief is the prior's
    (finite, and the same whatever the unobserved frames hold)."""
    model = _model(name).eval()
    obs, actions, mask = _inputs(model)
    none = torch.zeros_like(mask)
    a = model.observe(obs, actions, none).features()
    b = model.observe(torch.rand_like(obs), actions, none).features()
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b)


def test_gtmsm_needs_an_observed_frame_in_every_memory():
    model = _model("gtmsm")
    obs, actions, mask = _inputs(model)
    mask[1, :3] = 0.0  # sequence 1 memorises nothing
    with pytest.raises(ValueError, match=r"mask: sequence 1 has no observed frame among the first 3 steps"):
        model.loss(Batch(obs, actions, mask))
    with pytest.raises(ValueError, match=r"mask: sequence 0 has no observed frame"):
        model.observe(obs, actions, _with(mask, 0, 0.0))


def test_check_frames_passes_clean_frames_through_and_converts_uint8():
    obs = torch.rand(2, 3, 1, 4, 4)
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert check_frames(obs, mask, torch.float32) is obs  # no copy when nothing needs cleaning
    assert check_frames(obs, mask.bool()) is obs
    raw = (obs * 255).to(torch.uint8)
    back = frames_to_float(raw)
    assert back.dtype == torch.float32 and check_frames(back, None) is back
    torch.testing.assert_close(back, raw.float() / 255)
    with pytest.raises(TypeError, match="uint8"):
        frames_to_float(back)
    with pytest.raises(ValueError, match=r"obs: expected shape \[B, T, \.\.\.\]"):
        check_frames(obs[:0], None)
    with pytest.raises(ValueError, match="min_observed"):
        check_frames(obs, mask, min_observed="some")  # type: ignore[arg-type]
