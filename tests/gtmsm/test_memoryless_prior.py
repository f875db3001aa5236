"""GTM-SM without memory and with a learned prior p(z | s): the trained memoryless baseline.

Its ELBO's code KL is taken against the learned prior at the inferred states (so the prior and
the state-space model are trained), its predictions decode the prior at the imagined states (not
a constant frame), and a loop of ``step`` reproduces ``imagine``.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from worldmodels.base import Batch
from worldmodels.gtmsm import GTMSM, GTMSMConfig
from worldmodels.nets import gaussian_kl

from .crop_world import crop_world_batch

TAU, T = 12, 18


def small(**kw) -> GTMSM:
    torch.manual_seed(0)
    return GTMSM(GTMSMConfig(tau=TAU, z_dim=6, hidden=(32,), memory=False, **kw))


def test_learned_prior_and_the_state_model_get_gradients():
    obs, a, _ = crop_world_batch(3, T, seed=3)
    learned = small(memoryless_prior="learned")
    learned.loss(Batch(obs, a, torch.ones(3, T))).loss.backward()
    assert learned.code_prior is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learned.code_prior.parameters())
    m_grad = learned.transition.M.weight.grad
    assert m_grad is not None and m_grad.abs().sum() > 0  # the ELBO reaches M through p(z | s)
    assert "prior" in learned.parameter_groups()
    fixed = small()  # standard-normal prior: nothing depends on the states
    assert fixed.code_prior is None
    fixed.loss(Batch(obs, a, torch.ones(3, T))).loss.backward()
    g = fixed.transition.M.weight.grad
    assert g is None or g.abs().sum() == 0


def test_code_kl_is_taken_against_the_learned_prior_at_the_predicted_states():
    m = small(memoryless_prior="learned", gate=False, transition_std=1e-7)
    obs, a, _ = crop_world_batch(2, T, seed=4)
    with torch.no_grad():
        m.code_prior[-1].bias.normal_()  # a prior far from N(0, I)
        out = m.loss(Batch(obs, a, torch.ones(2, T)))
        mu, lv = m.encode(obs)
        states = m.posterior_states(obs, a, sample=False).mean
        want = gaussian_kl(mu[:, TAU:], lv[:, TAU:], *m.learned_prior(states[:, TAU:])).mean()
        standard = gaussian_kl(mu[:, TAU:], lv[:, TAU:]).mean()
    assert torch.allclose(out.terms["kl_z"], want, rtol=1e-4)
    assert not torch.allclose(want, standard, rtol=1e-2)


def test_predictions_follow_the_imagined_states_and_step_reproduces_imagine():
    obs, a, _ = crop_world_batch(2, T, seed=5)
    cands = F.one_hot(torch.tensor([[0] * 5, [3] * 5]), 5).float()  # up, then right, 5 times
    cands = cands.unsqueeze(0).expand(2, -1, -1, -1)  # [B, 2 candidates, 5, A]
    learned = small(memoryless_prior="learned", gate=False).eval()
    with torch.no_grad():
        learned.transition.M.weight.copy_(torch.tensor([[-1.0, 1, 0, 0, 0], [0, 0, -1, 1, 0]]))
        belief = learned.observe(obs[:, :TAU], a[:, :TAU])
        lat = learned.imagine(belief, cands)
        S = learned.config.state_dim
        assert torch.allclose(lat[..., S:], learned.learned_prior(lat[..., :S])[0])
        assert not torch.allclose(learned.decode(lat[:, 0]), learned.decode(lat[:, 1]), atol=1e-4)
        fixed = small()
        const = fixed.decode(fixed.imagine(fixed.observe(obs[:, :TAU], a[:, :TAU]), cands))
        assert torch.allclose(const, const[:1, :1, :1].expand_as(const))  # z = 0 everywhere
        g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        ref = learned.imagine(belief, cands[:, :1], sample=True, generator=g1)[:, 0]
        state, feats = learned.initial_state(belief), []
        for h in range(cands.shape[2]):
            state, f = learned.step(state, cands[:, 0, h], sample=True, generator=g2)
            feats.append(f)
    assert torch.allclose(torch.stack(feats, 1), ref, atol=1e-6)


def test_learned_prior_needs_a_memoryless_model():
    with pytest.raises(ValueError, match="memoryless_prior"):
        GTMSMConfig(memory=True, memoryless_prior="learned")
    with pytest.raises(ValueError, match="memoryless_prior"):
        GTMSMConfig(memory=False, memoryless_prior="gaussian")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="learned memoryless prior"):
        small().learned_prior(torch.zeros(1, 2))
