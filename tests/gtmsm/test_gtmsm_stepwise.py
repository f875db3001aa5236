"""GTM-SM's stepwise state: a loop of ``step`` is ``imagine`` (means, seeded samples, several
candidates, float64), reads the belief's memory without copying it, merges row-wise with other
memories, is differentiable, and drives the model environment without re-imagining."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.nn import functional as F

from worldmodels.agents.costs import QuadraticCost
from worldmodels.agents.model_env import ModelVectorEnv, contexts_from_batch
from worldmodels.base import supports_step
from worldmodels.gtmsm import GTMSM, GTMSMBelief, GTMSMConfig, GTMSMState

from .crop_world import crop_world_batch

T_CTX, H = 12, 8


def small(dtype: torch.dtype = torch.float32, **kw) -> GTMSM:
    torch.manual_seed(0)
    return GTMSM(GTMSMConfig(**{"tau": T_CTX, "z_dim": 6, "hidden": (32,), **kw})).to(dtype).eval()


def context(m: GTMSM, B: int = 3, seed: int = 3, dtype: torch.dtype = torch.float32
            ) -> tuple[GTMSMBelief, torch.Tensor]:
    """Belief after ``T_CTX`` frames of a crop world and the ``H`` actions that follow."""
    obs, a, _ = crop_world_batch(B, T_CTX + H, seed=seed, dtype=dtype)
    with torch.no_grad():
        belief = m.observe(obs[:, :T_CTX], a[:, :T_CTX])
    return belief, a[:, T_CTX - 1:T_CTX - 1 + H]


def roll(m: GTMSM, state: GTMSMState, actions: torch.Tensor, sample: bool = False,
         generator: torch.Generator | None = None) -> tuple[GTMSMState, torch.Tensor]:
    """``(last state, features [B, H, D])`` of a loop of ``step`` over ``actions [B, H, A]``."""
    out = []
    for h in range(actions.shape[1]):
        state, f = m.step(state, actions[:, h], sample=sample, generator=generator)
        out.append(f)
    return state, torch.stack(out, 1)


@pytest.mark.parametrize("sample", [False, True])
def test_float64_step_loop_is_imagine(sample):
    m = small(torch.float64)
    belief, future = context(m, dtype=torch.float64)
    state = m.initial_state(belief)
    floats = [f for f in GTMSMState.__dataclass_fields__ if getattr(state, f).is_floating_point()]
    assert floats == ["state", "disp", "keys", "values"]
    assert all(getattr(state, f).dtype == torch.float64 for f in floats)
    with torch.no_grad():
        ref = m.imagine(belief, future[:, None], sample=sample,
                        generator=torch.Generator().manual_seed(2))[:, 0]
        _, got = roll(m, state, future, sample, torch.Generator().manual_seed(2))
    assert got.dtype == torch.float64 and got.shape == (3, H, m.latent_dim)
    assert (got[:, 1:, :2] - got[:, :-1, :2]).abs().max() > 1e-2  # the states move
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_sampled_candidates_follow_the_step_loop_of_their_rows():
    """With N > 1 candidates, ``imagine`` draws as a loop of ``step`` over the B * N rows."""
    m = small()
    belief, future = context(m, B=2)
    g = torch.Generator().manual_seed(4)
    cands = F.one_hot(torch.randint(0, 5, (2, 3, H), generator=g), 5).float()
    with torch.no_grad():
        ref = m.imagine(belief, cands, sample=True, generator=torch.Generator().manual_seed(9))
        rows = m.initial_state(belief).index(torch.tensor([0, 0, 0, 1, 1, 1]))
        _, got = roll(m, rows, cands.reshape(6, H, 5), True, torch.Generator().manual_seed(9))
    torch.testing.assert_close(got.reshape(2, 3, H, -1), ref, rtol=1e-6, atol=1e-6)
    assert (ref[:, 0] - ref[:, 1]).abs().max() > 1e-3


def test_step_reads_the_belief_memory_without_copying_it():
    m = small()
    belief, future = context(m)
    other, _ = context(m, seed=11)  # other worlds, same actions
    state = m.initial_state(belief)
    assert state.keys is belief.memory.keys and state.values is belief.memory.values
    with torch.no_grad():
        last, feats = roll(m, state, future)
        swapped = GTMSMState.from_memory(state.state, state.disp, other.memory)
        _, feats_other = roll(m, swapped, future)
    # the memory travels by reference: no per-step copy, nothing written into it
    for f in ("keys", "values", "stamps", "count"):
        assert getattr(last, f) is getattr(state, f)
    # same states, codes read from the memory the state carries
    torch.testing.assert_close(feats_other[..., :2], feats[..., :2])
    assert (feats_other[..., 2:] - feats[..., 2:]).abs().max() > 1e-3


def test_rows_with_different_memories_merge_and_step_alone():
    m = small()
    belief, future = context(m, B=4)
    other, _ = context(m, B=4, seed=11)
    with torch.no_grad():
        s, o = m.initial_state(belief), m.initial_state(other)
        mask = torch.tensor([True, False, True, False])
        merged = s.where(mask, o)
        replaced = s.replace(torch.tensor([0, 2]), o.index(mask))
        _, f_merged = roll(m, merged, future)
        _, f_s = roll(m, s, future)
        _, f_o = roll(m, o, future)
        _, f_sub = roll(m, s.index(~mask), future[~mask])
    for f in GTMSMState.__dataclass_fields__:
        torch.testing.assert_close(getattr(replaced, f), getattr(merged, f))
    torch.testing.assert_close(f_merged[mask], f_o[mask])
    torch.testing.assert_close(f_merged[~mask], f_s[~mask])
    torch.testing.assert_close(f_sub, f_s[~mask])
    assert (f_s - f_o).abs().max() > 1e-3


def test_step_is_differentiable_in_actions_and_the_memorised_codes():
    m = small()
    obs, a, _ = crop_world_batch(3, T_CTX + H, seed=3)
    belief = m.observe(obs[:, :T_CTX], a[:, :T_CTX])  # with gradients to the encoder
    actions = a[:, T_CTX - 1:T_CTX - 1 + H].clone().requires_grad_(True)
    _, feats = roll(m, m.initial_state(belief), actions)
    code = feats[:, -1, 2:]
    code.sum().backward()
    # the last code depends on the first action through the state and the kernel weights
    assert actions.grad is not None and actions.grad[:, 0].abs().sum() > 0
    assert torch.isfinite(actions.grad).all()
    # and on the frames memorised by the past encoder
    assert m.encoder.mean.weight.grad.abs().sum() > 0


def test_step_checks_its_inputs():
    m = small()
    belief, future = context(m)
    state = m.initial_state(belief)
    with pytest.raises(ValueError, match="actions"):
        m.step(state, future[:2, 0])
    with pytest.raises(TypeError, match="GTMSMState"):
        m.step(state.state, future[:, 0])
    with pytest.raises(TypeError, match="GTMSMBelief"):
        m.initial_state(state)


def test_gate_basis_with_fewer_action_than_state_dims():
    """Rotation driven by (forward, turn) actions: ``A = 2 < S = 3``. The gate sees a move in
    units of the learned displacements, ``|features(M a)| = |a|``, in all S dimensions."""
    m = small(action_dim=2, state_dim=3, rotation=True)
    with torch.no_grad():
        m.transition.M.weight.copy_(torch.tensor([[3.0, 0.0], [1.0, 0.5], [0.0, 2.0]]))
    a = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    feats = m.transition.gate_features(m.transition.M(a))
    assert feats.shape == (7, 3)
    torch.testing.assert_close(feats.norm(dim=-1), a.norm(dim=-1))
    assert torch.isfinite(m.transition.gate(torch.randn(7, 3))).all()


def _env_parts(M: int = 6):
    m = small()
    obs, a, _ = crop_world_batch(M, T_CTX, seed=7)
    return (m, QuadraticCost(torch.zeros(m.latent_dim)), contexts_from_batch(obs, a, T_CTX),
            spaces.Discrete(5))


def test_model_env_steps_gtmsm_without_reimagining():
    from experiments.bench_model_env import ImagineOnly

    m, reward, ctx, space = _env_parts()
    ref = ModelVectorEnv(ImagineOnly(copy.deepcopy(m)), reward, ctx, space, num_envs=3, episode_length=4)
    calls = {"step": [], "imagine": 0}
    step, imagine = m.step, m.imagine

    def counting_step(state, actions, **kw):
        calls["step"].append(tuple(actions.shape))
        return step(state, actions, **kw)

    def counting_imagine(*args, **kw):
        calls["imagine"] += 1
        return imagine(*args, **kw)

    env = ModelVectorEnv(m, reward, ctx, space, num_envs=3, episode_length=4)
    assert env.stepwise and not ref.stepwise and supports_step(m)
    m.step, m.imagine = counting_step, counting_imagine
    np.testing.assert_allclose(env.reset(seed=0)[0], ref.reset(seed=0)[0], atol=1e-5)
    acts = np.random.default_rng(0).integers(0, 5, (10, 3))
    for t, a in enumerate(acts):  # crosses two autoresets
        out, out_ref = env.step(a), ref.step(a)
        for x, y in zip(out[:4], out_ref[:4]):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
        assert out[3].all() == ((t + 1) % 4 == 0)
    assert calls["step"] == [(3, 5)] * 10 and calls["imagine"] == 0
    assert np.abs(out[0][:, :2]).max() > 0.1  # the agent states moved


def test_model_env_partial_reset_swaps_memories_of_those_rows_only():
    m, reward, ctx, space = _env_parts()
    env = ModelVectorEnv(m, reward, ctx, space, num_envs=4, episode_length=50, obs_mode="pixels")
    ref = ModelVectorEnv(m, reward, ctx, space, num_envs=4, episode_length=50, obs_mode="pixels")
    env.reset(seed=0)
    ref.reset(seed=0)
    acts = np.random.default_rng(1).integers(0, 5, (5, 4))
    for a in acts[:2]:
        env.step(a)
        ref.step(a)
    mask = np.array([True, False, False, True])
    kept = env._dynamics.state.index(torch.as_tensor(~mask))
    env.reset(options={"reset_mask": mask})
    state = env._dynamics.state
    for f in GTMSMState.__dataclass_fields__:
        torch.testing.assert_close(getattr(state.index(torch.as_tensor(~mask)), f), getattr(kept, f))
    for a in acts[2:]:
        obs, *_ = env.step(a)
        r_obs, *_ = ref.step(a)
        assert obs.dtype == np.uint8 and obs.shape == (4, 8, 8, 3)
        np.testing.assert_array_equal(obs[~mask], r_obs[~mask])


def test_prior_sample_picks_components_by_weight():
    """The mixture sample's component follows the kernel weights (never a zero-weight one;
    uniform for a memory without valid entries) and adds the component's own noise."""
    from worldmodels.dnd import DNDRead
    from worldmodels.gtmsm.model import PriorNoise

    m = small(z_dim=1)
    n, K = 40000, 5
    weights = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0] * K]).repeat_interleave(n // 2, 0)
    mu = torch.arange(K, dtype=torch.float32).view(1, K, 1).expand(n, K, 1)
    lv = torch.full((n, K, 1), -12.0)
    read = DNDRead(torch.zeros(n, K, dtype=torch.long), torch.zeros(n, K), weights,
                   torch.zeros(n, K, 2), torch.cat([mu, lv], -1), weights > 0)
    g = torch.Generator().manual_seed(0)
    noise = PriorNoise(torch.zeros(n, 2), torch.rand(n, generator=g), torch.randn(n, 1, generator=g))
    z = m.prior_code(read, noise)[:, 0]
    comp = z.round().long()
    torch.testing.assert_close(z, comp.float() + torch.exp(torch.tensor(-6.0)) * noise.code[:, 0])
    freq = torch.bincount(comp[: n // 2], minlength=K).float() / (n // 2)
    torch.testing.assert_close(freq, weights[0], atol=0.015, rtol=0)
    freq_empty = torch.bincount(comp[n // 2:], minlength=K).float() / (n // 2)
    torch.testing.assert_close(freq_empty, torch.full((K,), 0.2), atol=0.015, rtol=0)
    assert torch.equal(m.prior_code(read), (weights.unsqueeze(-1) * mu).sum(-2))
