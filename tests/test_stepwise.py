"""The stepwise latent-state protocol: a loop of ``step`` reproduces ``imagine`` for every model
(means and seeded samples), is differentiable, runs in float64, and its states can be selected
and merged row-wise (what vector environments need to reset single sub-environments)."""

from __future__ import annotations

import pytest
import torch

from worldmodels.base import LatentState, TensorBelief, WorldModel, supports_step
from worldmodels.baselines import DKF, DVBF, DKFConfig, DVBFConfig
from worldmodels.gtmsm import GTMSM, GTMSMConfig
from worldmodels.kvae import KVAE, KVAEConfig, KVAEState
from worldmodels.vae_rnn import VAERNN, VAERNNConfig

OBS = (1, 8, 8)


def _kvae(dynamics: str = "lstm", use_controls: bool = True, num_modes: int = 3) -> KVAE:
    cfg = KVAEConfig(obs_shape=OBS, action_dim=2, a_dim=3, z_dim=4, num_modes=num_modes,
                     encoder="mlp", decoder="mlp", mlp_hidden=(32,), dynamics=dynamics,
                     dynamics_hidden=16, use_controls=use_controls)
    model = KVAE(cfg)
    with torch.no_grad():  # non-trivial modes, so a wrong mixing or a stale state would show
        model.A_modes.add_(0.2 * torch.randn_like(model.A_modes))
        model.C_modes.mul_(10.0)
        if model.B_modes is not None:
            model.B_modes.mul_(5.0)
    return model


MODELS = {
    "kvae_lstm": lambda: _kvae("lstm"),
    "kvae_mlp": lambda: _kvae("mlp"),
    "kvae_no_controls": lambda: _kvae("lstm", use_controls=False),
    "dkf": lambda: DKF(DKFConfig(obs_shape=OBS, action_dim=2, z_dim=3, encoder="mlp", mlp_hidden=(32,))),
    "dvbf": lambda: DVBF(DVBFConfig(obs_shape=OBS, action_dim=2, z_dim=3, num_modes=4, mlp_hidden=(32,))),
    "vae_rnn": lambda: VAERNN(VAERNNConfig(obs_shape=OBS, action_dim=2, latent_dim=3, hidden_dim=16,
                                           encoder="mlp", mlp_hidden=(32,))),
    # GTM-SM: gated state transition plus the DND memory read at each predicted state
    "gtmsm": lambda: GTMSM(GTMSMConfig(obs_shape=OBS, action_dim=2, z_dim=3, hidden=(32,), tau=4)),
    "gtmsm_rotation_momentum": lambda: GTMSM(GTMSMConfig(obs_shape=OBS, action_dim=2, state_dim=3, z_dim=3,
                                                         hidden=(32,), tau=4, rotation=True,
                                                         momentum=True)),
    "gtmsm_no_memory": lambda: GTMSM(GTMSMConfig(obs_shape=OBS, action_dim=2, z_dim=3, hidden=(32,), tau=4,
                                                 memory=False)),
}


def _make(name: str, dtype: torch.dtype = torch.float32) -> WorldModel:
    torch.manual_seed(0)
    return MODELS[name]().to(dtype).eval()


def _context(model: WorldModel, B: int = 3, T: int = 4, H: int = 6, seed: int = 1,
             dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(B, T, *OBS, generator=g, dtype=dtype)
    acts = torch.randn(B, T, model.action_dim, generator=g, dtype=dtype)
    future = torch.randn(B, H, model.action_dim, generator=g, dtype=dtype)
    with torch.no_grad():
        belief = model.observe(obs, acts)
    return belief, future


def _roll(model: WorldModel, belief, actions: torch.Tensor, sample: bool = False, seed: int | None = None):
    """Features ``[B, H, D]`` from a loop of ``step``."""
    g = None if seed is None else torch.Generator().manual_seed(seed)
    state = model.initial_state(belief, sample=sample, generator=g)
    out = []
    for h in range(actions.shape[1]):
        state, f = model.step(state, actions[:, h], sample=sample, generator=g)
        out.append(f)
    return torch.stack(out, 1)


@pytest.mark.parametrize("name", list(MODELS))
def test_step_loop_equals_imagine_means(name):
    model = _make(name)
    assert supports_step(model)
    belief, future = _context(model)
    with torch.no_grad():
        ref = model.imagine(belief, future[:, None])[:, 0]
        got = _roll(model, belief, future)
    assert got.shape == ref.shape == (3, 6, model.latent_dim)
    # the rollout moves: a step that returned a stale state would not match
    assert (ref[:, 1:] - ref[:, :-1]).abs().max() > 1e-2
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_step_loop_equals_imagine_samples_with_the_same_seed(name):
    model = _make(name)
    belief, future = _context(model)
    with torch.no_grad():
        ref = model.imagine(belief, future[:, None], sample=True,
                            generator=torch.Generator().manual_seed(7))[:, 0]
        got = _roll(model, belief, future, sample=True, seed=7)
        other = _roll(model, belief, future, sample=True, seed=8)
        mean = _roll(model, belief, future)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert (got - other).abs().max() > 1e-3  # the samples depend on the generator
    assert (got - mean).abs().max() > 1e-3  # and differ from the means


@pytest.mark.parametrize("name", [n for n in MODELS if n != "kvae_no_controls"])
def test_step_is_differentiable_in_the_actions(name):
    model = _make(name)
    belief, future = _context(model)
    actions = future.clone().requires_grad_(True)
    feats = _roll(model, belief, actions)
    feats[:, -1].sum().backward()
    # the last features depend on the first action through the recurrent state
    assert actions.grad is not None and actions.grad[:, 0].abs().sum() > 0
    assert torch.isfinite(actions.grad).all()


@pytest.mark.parametrize("name", ["kvae_lstm", "dvbf", "vae_rnn"])
def test_float64_model_and_state(name):
    model = _make(name, torch.float64)
    belief, future = _context(model, dtype=torch.float64)
    state = model.initial_state(belief)
    assert all(getattr(state, f).dtype == torch.float64 for f in state.__dataclass_fields__)
    with torch.no_grad():
        got = _roll(model, belief, future)
        ref = model.imagine(belief, future[:, None])[:, 0]
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_kvae_state_covariance_is_the_kalman_prediction():
    """With one mode the KVAE is a linear-Gaussian system: the propagated covariance of the mean
    state equals the empirical covariance of sampled states."""
    torch.manual_seed(0)
    model = _kvae("mlp", num_modes=1).eval()
    belief, future = _context(model, B=1, H=4)
    S = 20000
    rep = lambda x: x.expand(S, *x.shape[1:])  # noqa: E731
    with torch.no_grad():
        state = model.initial_state(belief)
        samples = model.initial_state(type(belief)(rep(belief.z_mean), rep(belief.z_cov),
                                                   rep(belief.a_mean), rep(belief.a_prev), None),
                                      sample=True, generator=torch.Generator().manual_seed(0))
        for h in range(4):
            state, _ = model.step(state, future[:, h])
            samples, _ = model.step(samples, rep(future[:, h]), sample=True)
    z = samples.z
    emp_cov = torch.cov(z.T)
    torch.testing.assert_close(z.mean(0), state.z[0], atol=0.05 * state.z_cov[0].diagonal().sqrt().max(), rtol=0)
    torch.testing.assert_close(emp_cov, state.z_cov[0], atol=0.05 * state.z_cov[0].abs().max(), rtol=0)
    assert torch.allclose(samples.z_cov, torch.zeros_like(samples.z_cov))


def test_state_rows_are_independent_and_can_be_merged():
    model = _make("kvae_lstm")
    belief, future = _context(model, B=4)
    other_belief, _ = _context(model, B=4, seed=5)
    with torch.no_grad():
        s = model.initial_state(belief)
        o = model.initial_state(other_belief)
        mask = torch.tensor([True, False, True, False])
        merged = s.where(mask, o)
        replaced = s.replace(torch.tensor([0, 2]), o.index(mask))
        _, f_merged = model.step(merged, future[:, 0])
        _, f_s = model.step(s, future[:, 0])
        _, f_o = model.step(o, future[:, 0])
        _, f_sub = model.step(s.index(torch.tensor([1, 3])), future[[1, 3], 0])
    for field in ("z", "z_cov", "a_prev", "h", "c"):
        torch.testing.assert_close(getattr(replaced, field), getattr(merged, field))
    # each row steps as it would alone: rows 0, 2 follow the other start, rows 1, 3 their own
    torch.testing.assert_close(f_merged[mask], f_o[mask])
    torch.testing.assert_close(f_merged[~mask], f_s[~mask])
    torch.testing.assert_close(f_sub, f_s[~mask])
    assert not torch.allclose(f_s, f_o)


def test_state_detach_and_checks():
    model = _make("dvbf")
    belief, future = _context(model)
    actions = future.clone().requires_grad_(True)
    state, _ = model.step(model.initial_state(belief), actions[:, 0])
    assert state.z.requires_grad and not state.detach().z.requires_grad
    with pytest.raises(ValueError, match="actions"):
        model.step(state, actions[:2, 0])
    with pytest.raises(ValueError, match="mask"):
        state.where(torch.ones(2, dtype=torch.bool), state)
    with pytest.raises(TypeError, match="state"):
        _make("kvae_lstm").step(state, actions[:, 0])


class _NoStepModel(WorldModel):
    latent_dim, action_dim = 2, 1

    def loss(self, batch):
        raise NotImplementedError

    def observe(self, obs, actions, mask=None):
        return TensorBelief(obs[:, -1, 0, 0])

    def imagine(self, belief, actions, *, sample=False, generator=None):
        return belief.features()[:, None, None].expand(*actions.shape[:3], 2)

    def decode(self, latents):
        return latents[..., None, None, :]


def test_models_without_step_say_so():
    model = _NoStepModel()
    assert not supports_step(model) and not supports_step(torch.nn.Linear(2, 2))
    with pytest.raises(NotImplementedError, match="_NoStepModel has no stepwise latent state"):
        model.initial_state(TensorBelief(torch.zeros(1, 2)))
    with pytest.raises(NotImplementedError, match="imagine"):
        model.step(LatentState(), torch.zeros(1, 1))


def test_kvae_state_type():
    model = _make("kvae_mlp")
    belief, _ = _context(model)
    state = model.initial_state(belief)
    assert isinstance(state, KVAEState) and state.h.shape == (3, 0) and state.batch_size == 3
