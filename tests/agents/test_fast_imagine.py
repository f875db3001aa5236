"""The fused means-only planning path equals the reference ``imagine`` + reward head."""

import pytest
import torch

from worldmodels.agents.costs import ObjectiveTimer, rollout_objective
from worldmodels.agents.fast_imagine import KVAEMeanImagine, mean_imagine_fn
from worldmodels.agents.planners import make_planner
from worldmodels.agents.reward import RewardHead, RewardHeadConfig
from worldmodels.kvae import KVAE, KVAEConfig


def _kvae(dynamics: str, use_controls: bool = True, seed: int = 0) -> KVAE:
    torch.manual_seed(seed)
    cfg = KVAEConfig(obs_shape=(1, 8, 8), action_dim=1, a_dim=3, z_dim=5, num_modes=4,
                     encoder="mlp", decoder="mlp", mlp_hidden=(32,), dynamics=dynamics,
                     dynamics_hidden=16, use_controls=use_controls)
    model = KVAE(cfg).eval()
    with torch.no_grad():  # non-trivial modes, so a wrong mixing would show
        model.A_modes.add_(0.1 * torch.randn_like(model.A_modes))
        model.C_modes.mul_(10.0)
        if model.B_modes is not None:
            model.B_modes.mul_(5.0)
    return model


def _belief(model: KVAE, B: int = 2, T: int = 4):
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(B, T, 1, 8, 8, generator=g)
    act = torch.rand(B, T, 1, generator=g) * 4 - 2
    with torch.no_grad():
        return model.observe(obs, act)


def _head(model: KVAE, use_next: bool = True) -> RewardHead:
    torch.manual_seed(2)
    head = RewardHead(RewardHeadConfig(latent_dim=model.latent_dim, action_dim=1, hidden=(16, 8),
                                       use_next=use_next)).eval()
    with torch.no_grad():
        head.in_mean.normal_()
        head.in_std.uniform_(0.5, 2.0)
        head.in_low.fill_(-1.5)  # clamping active for some inputs
        head.in_high.fill_(1.5)
        head.out_mean.fill_(-3.0)
        head.out_std.fill_(2.0)
    return head


@pytest.mark.parametrize("dynamics,controls", [("lstm", True), ("mlp", True), ("lstm", False)])
def test_mean_imagine_equals_model_imagine(dynamics, controls):
    model = _kvae(dynamics, controls)
    belief = _belief(model)
    acts = torch.rand(2, 7, 6, 1, generator=torch.Generator().manual_seed(3)) * 4 - 2
    fast = KVAEMeanImagine(model)
    with torch.no_grad():
        ref = model.imagine(belief, acts)
        got = fast(belief, acts)
        again = fast(belief, acts[:, :3])  # smaller population reuses the workspace
    assert ref.abs().max() > 0.3  # the rollout is not trivially zero
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, ref[:, :3], rtol=1e-4, atol=1e-4)


def test_mean_imagine_sees_weight_updates():
    model = _kvae("mlp")
    belief = _belief(model)
    acts = torch.zeros(2, 3, 4, 1)
    fast = KVAEMeanImagine(model)
    first = fast(belief, acts)
    with torch.no_grad():
        model.A_modes.mul_(0.5)
        torch.testing.assert_close(fast(belief, acts), model.imagine(belief, acts), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(first, fast(belief, acts))


def test_mean_imagine_only_for_lgssm_kvae():
    assert mean_imagine_fn(torch.nn.Linear(2, 2)) is None
    assert isinstance(mean_imagine_fn(_kvae("mlp")), KVAEMeanImagine)


@pytest.mark.parametrize("use_next", [True, False])
@pytest.mark.parametrize("discount,terminal_weight", [(1.0, 0.0), (0.9, 0.0), (1.0, 3.0), (0.9, 3.0)])
def test_fused_objective_equals_reference(use_next, discount, terminal_weight):
    model = _kvae("lstm")
    belief = _belief(model)
    head = _head(model, use_next)
    acts = torch.rand(2, 9, 5, 1, generator=torch.Generator().manual_seed(4)) * 4 - 2
    timer = ObjectiveTimer()
    kw = dict(discount=discount, terminal_weight=terminal_weight)
    fused = rollout_objective(model, belief, head, timer=timer, **kw)
    ref = rollout_objective(model, belief, head, fast=False, **kw)
    with torch.no_grad():
        r_fused, r_ref = fused(acts), ref(acts)
        # by definition: the discounted sum plus terminal_weight x the discounted last reward
        latents = model.imagine(belief, acts)
        before = torch.cat([belief.features()[:, None, None].expand(2, 9, 1, -1), latents[:, :, :-1]], 2)
        r = head(before, acts, latents)
        w = discount ** torch.arange(5.0)
        expected = (r * w).sum(-1) + terminal_weight * w[-1] * r[..., -1]
    assert r_fused.shape == (2, 9)
    assert (r_ref.std(dim=1) > 0.02).all()  # returns differ between candidates
    torch.testing.assert_close(r_fused, r_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(r_ref, expected, rtol=1e-4, atol=1e-4)
    assert timer.calls == 1 and timer.latent_steps == 2 * 9 * 5


def test_fused_objective_keeps_gradients_for_gradcem():
    model = _kvae("mlp")
    belief = _belief(model)
    head = _head(model)
    objective = rollout_objective(model, belief, head)
    acts = torch.zeros(2, 3, 4, 1, requires_grad=True)
    objective(acts).sum().backward()  # falls back to the differentiable reference path
    assert acts.grad is not None and acts.grad.abs().sum() > 0


def test_planner_result_unchanged_by_fused_path():
    model = _kvae("lstm")
    belief = _belief(model)
    head = _head(model)
    plans = []
    for fast in (True, False):
        planner = make_planner("cem", -2.0, 2.0, horizon=5, population=64, num_elites=8, iterations=3)
        objective = rollout_objective(model, belief, head, fast=fast)
        plans.append(planner.optimize(objective, 2, generator=torch.Generator().manual_seed(0)).actions)
    torch.testing.assert_close(plans[0], plans[1], rtol=1e-4, atol=1e-4)
