"""Reward head: learns a known reward from filtered latents, held-out error, persistence."""

from __future__ import annotations

import pytest
import torch
from agents_toy_models import LinearBelief, LinearWorldModel

from worldmodels.agents.costs import rollout_objective
from worldmodels.agents.reward import (
    RewardHead,
    RewardHeadConfig,
    filtered_latents,
    train_reward_head,
    transitions_from_batches,
)
from worldmodels.base import Batch

GOAL = torch.tensor([1.0, 0.0])


def make_batches(model, n_batches, B=16, T=12, seed=0):
    """Sequences of the linear system with reward -|z_{t+1} - goal|^2 - 0.1 a_t^2."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        z = torch.rand(B, 2, generator=g) * 2 - 1
        a = torch.rand(B, T, 1, generator=g) * 2 - 1
        zs, rs = [], []
        for t in range(T):
            zs.append(z)
            z = z @ model.A.detach().T + a[:, t] @ model.B.detach().T
            rs.append(-((z - GOAL) ** 2).sum(-1) - 0.1 * a[:, t, 0] ** 2)
        obs = torch.stack(zs, 1)[:, :, None, None, :]
        out.append(Batch(obs=obs, actions=a, mask=torch.ones(B, T), rewards=torch.stack(rs, 1)))
    return out


def test_filtered_latents_are_prefix_beliefs():
    model = LinearWorldModel()
    b = make_batches(model, 1, B=3, T=5)[0]
    z = filtered_latents(model, b.obs, b.actions)
    assert z.shape == (3, 5, 2) and torch.allclose(z, b.obs[:, :, 0, 0])
    tr = transitions_from_batches(model, [b], skip_first=1)
    assert tr["before"].shape == (3 * 3, 2) and torch.allclose(tr["after"], b.obs[:, 2:, 0, 0].flatten(0, 1))


def test_reward_head_fits_known_reward_with_small_heldout_error(tmp_path):
    torch.manual_seed(0)
    model = LinearWorldModel()
    cfg = RewardHeadConfig(latent_dim=2, action_dim=1, hidden=(64, 64), steps=1500, skip_first=0)
    head, metrics = train_reward_head(model, make_batches(model, 4), make_batches(model, 2, seed=1),
                                      cfg, progress=False)
    assert metrics["valid_r2"] > 0.97 and metrics["valid_mse"] < 0.03 * metrics["valid_target_var"]
    # an untrained head (standardised output, random weights) is far worse
    raw = RewardHead(cfg)
    valid = transitions_from_batches(model, make_batches(model, 2, seed=1))
    with torch.no_grad():
        raw_mse = ((raw(valid["before"], valid["actions"], valid["after"]) - valid["rewards"]) ** 2).mean()
    assert metrics["valid_mse"] < 0.1 * float(raw_mse)
    # save / load round trip
    head.save(tmp_path / "reward.pt")
    again = RewardHead.load(tmp_path / "reward.pt")
    x = valid["before"][:5], valid["actions"][:5], valid["after"][:5]
    assert torch.allclose(head(*x), again(*x))
    # the head plugs into the planning objective: [B, N, H] rewards summed over H
    obj = rollout_objective(model, LinearBelief(torch.zeros(2, 2)), head)
    assert obj(torch.zeros(2, 7, 4, 1)).shape == (2, 7)


def test_reward_head_clamps_inputs_to_training_range():
    torch.manual_seed(0)
    model = LinearWorldModel()
    cfg = RewardHeadConfig(latent_dim=2, action_dim=1, hidden=(16,), steps=50, skip_first=0)
    head, _ = train_reward_head(model, make_batches(model, 1), None, cfg, progress=False)
    tr = transitions_from_batches(model, make_batches(model, 1))
    far = torch.tensor([[50.0, -50.0]])
    edge_before = torch.stack([tr["before"][:, 0].max(), tr["before"][:, 1].min()])[None]
    edge_after = torch.stack([tr["after"][:, 0].max(), tr["after"][:, 1].min()])[None]
    a = torch.tensor([[3.0]])
    with torch.no_grad():
        assert torch.allclose(head(far, a, far), head(edge_before, tr["actions"].max()[None, None], edge_after),
                              atol=1e-5)
        unclipped = RewardHead(RewardHeadConfig(**{**cfg.__dict__, "clip_inputs": False}))
        assert torch.isinf(unclipped.in_high).all()  # untrained heads do not clamp


def test_reward_head_fit_follows_its_seed_not_the_callers_rng():
    """Same model, data and config.seed -> the same head, whatever the global RNG was before
    (the demo and the experiments reach the fit along different paths); another seed differs."""
    model = LinearWorldModel()
    batches = make_batches(model, 1)

    def fit(global_seed: int, head_seed: int = 0) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)
        cfg = RewardHeadConfig(latent_dim=2, action_dim=1, hidden=(16,), steps=20, skip_first=0, seed=head_seed)
        head, _ = train_reward_head(model, batches, None, cfg, progress=False)
        return head.state_dict()

    a, b, c = fit(1), fit(2), fit(1, head_seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # the fit leaves the caller's RNG where it was, apart from what the caller itself draws
    torch.manual_seed(3)
    fit_state = torch.get_rng_state()
    train_reward_head(model, batches, None, RewardHeadConfig(latent_dim=2, action_dim=1, hidden=(16,), steps=5,
                                                            skip_first=0), progress=False)
    assert torch.equal(torch.get_rng_state(), fit_state)


@pytest.mark.parametrize("hidden", [(), (16,), (16, 8)])
def test_rollout_rewards_equal_forward_with_clamping_and_a_near_constant_feature(hidden):
    """The planning path (features-first, biases and input scale folded into the weights) gives
    the rewards of ``forward``, with inputs clamped on both sides and a feature whose training
    std is tiny next to its mean (where folding the mean into the bias would lose precision)."""
    D, A, H, R = 3, 1, 4, 50
    g = torch.Generator().manual_seed(0)
    head = RewardHead(RewardHeadConfig(latent_dim=D, action_dim=A, hidden=hidden)).eval()
    d_in = 2 * D + A
    with torch.no_grad():
        head.in_mean.copy_(torch.randn(d_in, generator=g))
        head.in_std.copy_(torch.rand(d_in, generator=g) + 0.5)
        head.in_mean[1], head.in_std[1] = 1000.0, 1e-3  # feature 1 (and D + A + 1): near constant
        head.in_mean[D + A + 1], head.in_std[D + A + 1] = 1000.0, 1e-3
        head.in_low.fill_(-1.5), head.in_high.fill_(1.5)
        head.out_mean.fill_(0.3), head.out_std.fill_(2.0)
    start = torch.randn(D, R, generator=g) * 2
    latents = torch.randn(H, D, R, generator=g) * 2
    latents[:, 1] = start[1] = 1000.0 + 1e-3 * torch.randn(R, generator=g)
    actions = torch.randn(H, A, R, generator=g) * 2
    with torch.no_grad():
        got = head.rollout_rewards(start, latents, actions)
        before = torch.cat([start[None], latents[:-1]]).permute(2, 0, 1)  # [R, H, D]
        want = head(before, actions.permute(2, 0, 1), latents.permute(2, 0, 1)).t()  # [H, R]
        x = (torch.cat([before, actions.permute(2, 0, 1), latents.permute(2, 0, 1)], -1) - head.in_mean) / head.in_std
    assert (x > 1.5).any() and (x < -1.5).any() and ((x > -1.5) & (x < 1.5)).any()  # both clamps act
    assert want.std() > 0.01
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
