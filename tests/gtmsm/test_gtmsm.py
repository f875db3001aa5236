"""GTM-SM: mixture KL, transitions, state inference, planner protocol, memory isolation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from worldmodels.base import Batch
from worldmodels.gtmsm import GTMSM, GTMSMConfig, StatePath, mixture_kl
from worldmodels.nets import gaussian_kl

from .crop_world import crop_world_batch

CONFIGS = {
    "default": {},
    "landmark": dict(landmark=True, transition_std=0.05),
    "rotation_momentum": dict(rotation=True, momentum=True, state_dim=3),
    "no_memory": dict(memory=False),
    "conv_bound": dict(encoder="conv", kl_estimator="bound"),
    "frames_posterior": dict(state_inference="frames_posterior"),
    "frames_posterior_landmark": dict(state_inference="frames_posterior", landmark=True,
                                      transition_std=0.05),
    "whitened_gate": dict(gate_input="whitened"),
}


def small(**kw) -> GTMSM:
    torch.manual_seed(0)
    return GTMSM(GTMSMConfig(tau=12, z_dim=6, hidden=(32,), channels=8, **kw))


def test_mixture_kl_single_component_is_analytic():
    g = torch.Generator().manual_seed(0)
    mq, lq = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) * 0.3
    mk, lk = torch.randn(4, 1, 3, generator=g), torch.randn(4, 1, 3, generator=g) * 0.3
    w = torch.ones(4, 1)
    exact = gaussian_kl(mq, lq, mk[:, 0], lk[:, 0])
    assert torch.allclose(mixture_kl(mq, lq, w, mk, lk, estimator="bound"), exact, atol=1e-6)
    mc = mixture_kl(mq, lq, w, mk, lk, estimator="mc", num_samples=20000, generator=g)
    assert torch.allclose(mc, exact, rtol=0.05, atol=0.05)


def test_mixture_kl_mc_matches_numerical_integral_and_bound():
    # 1-d, two components: integrate KL(q || mixture) on a grid
    mq, lq = torch.tensor([[0.3]]), torch.tensor([[math.log(0.5)]])
    mk = torch.tensor([[[0.0], [2.0]]])
    lk = torch.tensor([[[0.0], [math.log(0.3)]]])
    w = torch.tensor([[0.7, 0.3]])
    x = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    def logn(x, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / math.exp(lv))
    lq_x = logn(x, 0.3, math.log(0.5))
    lp_x = torch.logsumexp(torch.stack([math.log(0.7) + logn(x, 0.0, 0.0),
                                        math.log(0.3) + logn(x, 2.0, math.log(0.3))]), 0)
    exact = torch.trapezoid(lq_x.exp() * (lq_x - lp_x), x).item()
    g = torch.Generator().manual_seed(1)
    mc = mixture_kl(mq, lq, w, mk, lk, estimator="mc", num_samples=50000, generator=g).item()
    bound = mixture_kl(mq, lq, w, mk, lk, estimator="bound").item()
    assert abs(mc - exact) < 0.02
    assert bound >= exact - 1e-6 and bound > exact + 0.1  # a strict, valid upper bound here


def test_absent_components_are_ignored():
    mq, lq = torch.zeros(2, 3), torch.zeros(2, 3)
    mk = torch.stack([torch.zeros(2, 3), torch.full((2, 3), 50.0)], 1)
    lk = torch.zeros(2, 2, 3)
    w = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    for est in ("mc", "bound"):
        kl = mixture_kl(mq, lq, w, mk, lk, estimator=est, num_samples=4)
        assert torch.allclose(kl, torch.zeros(2), atol=1e-5), est


def test_transition_gate_rotation_momentum():
    m = small(rotation=True, momentum=True, state_dim=3, gate=False)
    tr = m.transition
    with torch.no_grad():
        tr.M.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0], [0, 0, 1.0, 0, 0]]))
        tr.c_f.fill_(-100.0)  # no momentum carry-over
        tr.c_s.fill_(1e3)
    a = F.one_hot(torch.tensor([0]), 5).float()
    s = torch.tensor([[0.0, 0.0, math.pi / 2]])
    mean, d = tr.step(s, a * 1e-3)  # forward move of 1e-3 in agent space (tanh ~ linear)
    assert torch.allclose(mean, torch.tensor([[0.0, 1.0, math.pi / 2]]), atol=1e-3)  # rotated to +y
    # momentum: with c_f large the previous displacement carries over
    m2 = small(momentum=True, gate=False)
    with torch.no_grad():
        m2.transition.c_f.fill_(100.0)
        m2.transition.c_s.fill_(1.0)
    d0 = torch.tensor([[0.3, -0.2]])
    d1 = m2.transition.displacement(torch.zeros(1, 5), d0)
    assert torch.allclose(d1, torch.tanh(d0), atol=1e-5)
    # gate closes the displacement
    m3 = small()
    with torch.no_grad():
        m3.transition.gate_net[-1].bias.fill_(-50.0)
    s0 = torch.randn(4, 2)
    mean, _ = m3.transition.step(s0, F.one_hot(torch.arange(4), 5).float())
    assert torch.allclose(mean, s0, atol=1e-6)


def test_fast_and_sequential_state_paths_agree():
    m = small(state_inference="frames_posterior")
    obs, a, _ = crop_world_batch(3, 20, seed=2)
    moved, known = m.frame_moved(obs)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    fast = m.infer_states(a, moved, known, generator=g1)
    known2 = known.clone()
    known2[0, 3] = False  # forces the sequential path; that step falls back to the gate
    slow = m.infer_states(a, moved, known2, generator=g2)
    assert torch.allclose(fast.sample[1:], slow.sample[1:], atol=1e-5)
    assert torch.allclose(fast.sample[0, :4], slow.sample[0, :4], atol=1e-5)
    assert torch.allclose(fast.kl[1:], slow.kl[1:], rtol=1e-4, atol=1e-2)
    assert slow.kl[0, 4].abs() < 1e-6  # the unknown step follows the prior: no state KL
    # blocked (frame unchanged) moves do not change the state mean
    still = moved == 0
    step = fast.mean[:, 1:] - fast.sample[:, :-1]
    assert step[still].abs().max() < 1e-6 and step[~still].abs().sum(-1).min() > 0


@pytest.mark.parametrize("name", list(CONFIGS))
def test_protocol_shapes_and_gradients(name):
    m = small(**CONFIGS[name])
    B, T = 3, 18
    obs, a, _ = crop_world_batch(B, T, seed=3)
    out = m.loss(Batch(obs, a, torch.ones(B, T)))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in m.named_parameters()}
    assert grads["encoder.mean.weight"].abs().sum() > 0
    assert grads["decoder.out.weight"].abs().sum() > 0 or grads["decoder.out.weight"] is None
    if m.config.memory:  # the ELBO reaches M through the memory's kernel weights
        assert grads["transition.M.weight"].abs().sum() > 0
    belief = m.observe(obs[:, :12], a[:, :12])
    assert belief.features().shape == (B, m.latent_dim)
    cand = a[:, 11:17].unsqueeze(1).repeat(1, 4, 1, 1)
    lat = m.imagine(belief, cand)
    assert lat.shape == (B, 4, 6, m.latent_dim)
    assert torch.allclose(lat[:, 0], lat[:, 3])  # identical candidates, deterministic rollout
    g = torch.Generator().manual_seed(0)
    assert m.imagine(belief, cand, sample=True, generator=g).shape == lat.shape
    frames = m.decode(lat)
    assert frames.shape == (B, 4, 6, 3, 8, 8) and frames.min() >= 0 and frames.max() <= 1
    assert m.predict(obs, a, 12).shape == (B, 6, 3, 8, 8)


def test_imagine_candidates_are_batched_consistently():
    m = small()
    obs, a, _ = crop_world_batch(2, 16, seed=4)
    belief = m.observe(obs[:, :12], a[:, :12])
    cands = F.one_hot(torch.randint(0, 5, (2, 3, 5), generator=torch.Generator().manual_seed(1)), 5).float()
    lat = m.imagine(belief, cands)
    for n in range(3):
        single = m.imagine(belief, cands[:, n:n + 1])
        assert torch.allclose(lat[:, n], single[:, 0], atol=1e-6)


def test_memory_isolation_between_sequences():
    m = small()
    obs, a, _ = crop_world_batch(3, 18, seed=5)
    base = m.predict(obs, a, 12)
    obs2 = obs.clone()
    obs2[1, :12] = torch.rand(12, 3, 8, 8)  # a different world for sequence 1 only
    out = m.predict(obs2, a, 12)
    assert torch.allclose(out[[0, 2]], base[[0, 2]])
    assert not torch.allclose(out[1], base[1])


def test_prediction_reads_the_memory_at_revisited_positions():
    # with an exact transition, walking back along the memorised path retrieves its codes; the
    # world is large enough for the walk never to reach a wall, so states from actions alone
    # (the thesis model) are exact
    m = small(gate=False)
    obs, a, pos = crop_world_batch(2, 24, seed=6, grid=25, centre_start=True)
    step_taken = (pos[:, 1:] != pos[:, :-1]).any(-1)
    assert torch.equal(step_taken, a[:, :-1, 4] == 0)  # no blocked move in this data
    with torch.no_grad():
        m.transition.M.weight.copy_(torch.tensor([[-1.0, 1, 0, 0, 0], [0, 0, -1, 1, 0]]))
    belief = m.observe(obs, a)
    codes = m.encode(obs)[0]
    moved, _ = m.frame_moved(obs)
    reverse = torch.tensor([1, 0, 3, 2, 4])
    for b in range(2):
        steps = [t for t in range(22, -1, -1) if moved[b, t] > 0][:6]
        back = F.one_hot(reverse[a[b, steps].argmax(-1)], 5).float()  # undo moves, newest first
        lat = m.imagine(_one(belief, b),
                        back.reshape(1, 1, -1, 5))[0, 0]
        for h, t in enumerate(steps):  # after undoing move t the agent is at pos[t]
            assert torch.allclose(lat[h, :2], pos[b, t] - pos[b, 0], atol=1e-4)
            same = (pos[b] == pos[b, t]).all(-1)
            assert any(torch.allclose(lat[h, 2:], codes[b, i], atol=1e-4)
                       for i in torch.nonzero(same).flatten())


def _one(belief, b):
    from worldmodels.gtmsm import GTMSMBelief

    return GTMSMBelief(belief.state[b:b + 1], belief.disp[b:b + 1], belief.code[b:b + 1],
                       belief.memory.index_batch(torch.tensor([b])))


def test_landmark_inference_snaps_to_memorised_state():
    B, T = 2, 8
    codes = torch.randn(B, T, 6, generator=torch.Generator().manual_seed(0))
    codes[:, 5] = codes[:, 2]  # frame 5 looks exactly like frame 2
    a = F.one_hot(torch.full((B, T), 3), 5).float()
    m = small(landmark=True, transition_std=0.05, landmark_k=1)
    free = m.infer_states(a, codes=codes, num_memorised=T, sample=False)
    assert (free.mean[:, 5] - free.mean[:, 2]).abs().sum() > 0.1  # the prior keeps moving
    with torch.no_grad():
        m.landmark.beta_net[-1].bias.fill_(50.0)  # trust the retrieved landmark fully
        m.landmark.beta_net[-1].weight.zero_()
    path = m.infer_states(a, codes=codes, num_memorised=T, sample=False)
    assert torch.allclose(path.mean[:, 5], path.mean[:, 2], atol=1e-5)
    assert torch.isfinite(path.kl).all() and (path.kl[:, 1:] > 0).all()
    # causal: memorised step t only sees steps < t, so step 1 snaps to step 0 (the origin)
    assert torch.allclose(path.mean[:, 1], torch.zeros(B, 2), atol=1e-5)


@pytest.mark.parametrize("gate,inference", [(False, "prior"), (False, "frames_posterior"),
                                            (True, "frames_posterior")])
def test_parallel_landmark_inference_equals_the_loop(gate, inference):
    """The batched solve (triangular system + depth levels) gives the loop's values and gradients."""
    m = small(landmark=True, transition_std=0.05, gate=gate, state_inference=inference)
    with torch.no_grad():  # non-trivial beta and variance networks
        for p in m.landmark.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    g = torch.Generator().manual_seed(1)
    B, T, tau = 3, 30, 20
    a = F.one_hot(torch.randint(0, 5, (B, T), generator=g), 5).float()
    codes = torch.randn(B, T, 6, generator=g)
    codes[:, 15] = codes[:, 4] + 1e-3  # a revisit
    moved = (torch.rand(B, T - 1, generator=g) > 0.2).float()
    known = torch.ones(B, T - 1, dtype=torch.bool)
    out = []
    for loop in (True, False):
        m.zero_grad()
        c = codes.clone().requires_grad_()
        p = m.infer_states(a, moved, known, codes=c, num_memorised=tau, landmark_loop=loop,
                           generator=torch.Generator().manual_seed(5))
        (p.sample.sin().sum() + p.kl.sum() + p.logvar.sum()).backward()
        grads = {n: q.grad.clone() for n, q in m.named_parameters()
                 if q.grad is not None and q.grad.abs().sum() > 0}
        out.append((p, grads, c.grad.clone()))
    (p1, g1, c1), (p2, g2, c2) = out
    for f in ("sample", "mean", "logvar", "disp", "kl"):
        assert torch.allclose(getattr(p1, f), getattr(p2, f), atol=1e-4, rtol=1e-4), f
    assert sorted(g1) == sorted(g2) and "landmark.var_net.0.weight" in g1 and "transition.M.weight" in g1
    assert ("transition.gate_net.0.weight" in g1) == gate  # the KL is taken against the gated prior
    for n in g1:
        assert torch.allclose(g1[n], g2[n], atol=1e-5, rtol=1e-4), n
    assert torch.allclose(c1, c2, atol=1e-5, rtol=1e-4)


def test_shape_errors():
    m = small()
    with pytest.raises(ValueError, match="batch.obs"):
        m.loss(Batch(torch.rand(2, 10, 3, 8, 8), torch.zeros(2, 10, 5), torch.ones(2, 10)))
    with pytest.raises(ValueError, match="actions"):
        m.observe(torch.rand(2, 5, 3, 8, 8), torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="state_dim"):
        GTMSMConfig(rotation=True, state_dim=2)


def test_frame_moved_marks_blocked_moves():
    m = small()
    obs, a, pos = crop_world_batch(8, 30, seed=7)
    mask = torch.ones(8, 30)
    mask[0, 10] = 0
    moved, known = m.frame_moved(obs, mask)
    true_moved = (pos[:, 1:] != pos[:, :-1]).any(-1).float()
    assert torch.equal(moved, true_moved) and (moved == 0).any() and (moved == 1).any()
    assert not known[0, 9] and not known[0, 10] and known.sum() == known.numel() - 2


def _gate_params(m: GTMSM) -> list[torch.nn.Parameter]:
    return list(m.transition.gate_net.parameters())


@pytest.mark.parametrize("kl_estimator", ["mc", "bound"])
def test_default_elbo_trains_the_gate(kl_estimator):
    """Thesis model (eqs. 7.2-7.3): the loss is the negative ELBO and its gradient reaches the
    wall gate through the states' DND read; without memory the states do not touch the ELBO."""
    m = small(kl_estimator=kl_estimator)
    assert m.config.state_inference == "prior" and m.config.gate
    obs, a, _ = crop_world_batch(4, 20, seed=8, centre_start=True)
    torch.manual_seed(1)
    out = m.loss(Batch(obs, a, torch.ones(4, 20)))
    assert torch.allclose(out.loss, -out.terms["elbo"]) and out.terms["kl_s"] == 0
    grads = torch.autograd.grad(out.loss, _gate_params(m))
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # the path is states -> DND read: a model without memory gives the gate no gradient
    m0 = small(memory=False)
    out0 = m0.loss(Batch(obs, a, torch.ones(4, 20)))
    grads0 = torch.autograd.grad(out0.loss, _gate_params(m0), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads0)


def _spy_states(m: GTMSM) -> list:
    """Record every ``StatePath`` that ``loss``/``observe`` draw."""
    seen = []
    inner = m.posterior_states

    def spy(*args, **kw):
        path = inner(*args, **kw)
        seen.append(path)
        return path

    m.posterior_states = spy
    return seen


def test_default_training_states_depend_on_actions_only():
    m = small()
    seen = _spy_states(m)
    B, T = 3, 20
    obs, a, _ = crop_world_batch(B, T, seed=9)
    other_frames = torch.rand(B, T, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    other_frames[:, 5:9] = other_frames[:, 5:6]  # frames that never change over a few moves
    other_actions = a.roll(1, dims=1)
    assert not torch.equal(other_actions, a)
    for o, act in ((obs, a), (other_frames, a), (obs, other_actions)):
        torch.manual_seed(3)  # the same state noise in each call
        m.loss(Batch(o, act, torch.ones(B, T)))
    same, frames_changed, actions_changed = seen
    for f in ("sample", "mean", "logvar", "kl"):
        assert torch.equal(getattr(same, f), getattr(frames_changed, f)), f
    assert not torch.allclose(same.sample, actions_changed.sample)
    # memorised at test time from actions too: same keys, the values (codes) differ
    b1, b2 = m.observe(obs[:, :12], a[:, :12]), m.observe(other_frames[:, :12], a[:, :12])
    assert torch.equal(b1.state, b2.state) and torch.equal(b1.memory.keys, b2.memory.keys)
    assert not torch.allclose(b1.memory.values, b2.memory.values)


def test_frames_posterior_state_kl():
    """Variant: q(s_t | s_{t-1}, a, x) = N(s_{t-1} + M a_t c_t, r^2 I) with c_t = "the frame
    changed"; its KL to the gated prior is |M a_t|^2 (c_t - sigma_d)^2 / (2 r^2) and enters the loss."""
    m = small(state_inference="frames_posterior")
    r2 = m.config.transition_std ** 2
    B, T = 4, 20
    obs, a, pos = crop_world_batch(B, T, seed=10)  # 3x3 grid: many blocked moves
    moved, known = m.frame_moved(obs)
    assert (moved[a[:, :-1, 4] == 0] == 0).any()  # some moves are blocked
    path = m.infer_states(a, moved, known, generator=torch.Generator().manual_seed(0))
    d = a[:, :-1] @ m.transition.M.weight.T
    sigma = m.transition.gate(path.sample[:, :-1] + d).squeeze(-1)
    expected = (d ** 2).sum(-1) * (moved - sigma) ** 2 / (2 * r2)
    assert torch.allclose(path.kl[:, 1:], expected, rtol=1e-3, atol=1e-3)
    assert (path.kl >= 0).all() and path.kl[:, 0].eq(0).all() and (path.kl > 1.0).any()
    # in the loss: -ELBO = -(recon - kl_z) + kl_s, with kl_s the mean state KL per predicted frame
    torch.manual_seed(4)
    out = m.loss(Batch(obs, a, torch.ones(B, T)))
    torch.manual_seed(4)
    ref = m.infer_states(a, moved, known)
    assert torch.allclose(out.terms["kl_s"], ref.kl.sum() / (B * (T - m.config.tau)), rtol=1e-5)
    t = out.terms
    assert torch.allclose(out.loss, -(t["recon"] - t["kl_z"]) + t["kl_s"], rtol=1e-5)
    assert torch.allclose(t["elbo"], t["recon"] - t["kl_z"] - t["kl_s"])
    grads = torch.autograd.grad(out.loss, _gate_params(m))
    assert sum(g.abs().sum() for g in grads) > 0  # the KL trains the gate


@pytest.mark.parametrize("extra", [{}, dict(rotation=True, momentum=True, state_dim=3)])
def test_frames_posterior_kl_is_zero_only_where_posterior_equals_prior(extra):
    m = small(state_inference="frames_posterior", **extra)
    with torch.no_grad():  # gate fully open, "stay" does not move, no momentum carry-over
        m.transition.gate_net[-1].weight.zero_()
        m.transition.gate_net[-1].bias.fill_(50.0)
        m.transition.M.weight[:, 4] = 0.0
        if m.config.momentum:
            m.transition.c_f.fill_(-100.0)
    B, T = 4, 20
    obs, a, _ = crop_world_batch(B, T, seed=11, grid=25, centre_start=True)  # no wall reached
    moved, known = m.frame_moved(obs)
    assert torch.equal(moved, (a[:, :-1, 4] == 0).float())  # every move succeeds: q == p
    path = m.infer_states(a, moved, known)
    assert path.kl.abs().max() < 1e-6
    # a frame that does not change where the prior moves: q != p there, and only there
    obs[:, 6] = obs[:, 5]
    moved, known = m.frame_moved(obs)
    path = m.infer_states(a, moved, known)
    moving = a[:, 5, 4] == 0
    assert moving.any() and (path.kl[moving, 6] > 1.0).all() and (path.kl[~moving, 6] < 1e-6).all()
    assert path.kl[:, :6].abs().max() < 1e-6


@pytest.mark.parametrize("extra", [{}, dict(rotation=True, momentum=True, state_dim=3)])
def test_transition_kl_of_a_prior_path_is_zero(extra):
    """``transition_kl`` re-evaluates the prior at the sampled states for all steps at once; on
    a path drawn from the prior itself (momentum carried over, gate partly closed) it is 0."""
    m = small(**extra)
    with torch.no_grad():
        m.transition.gate_net[-1].bias.fill_(0.0)
    a = F.one_hot(torch.randint(0, 5, (3, 15), generator=torch.Generator().manual_seed(0)), 5).float()
    path = m.infer_states(a, generator=torch.Generator().manual_seed(1))
    assert path.kl.eq(0).all()  # q = p: nothing to compute
    assert m.transition_kl(path, a).abs().max() < 1e-6
    shifted = StatePath(path.sample, path.mean.roll(1, 1), path.logvar, path.disp, path.kl)
    assert m.transition_kl(shifted, a)[:, 2:].min() > 1.0


def test_frames_posterior_reads_blocked_moves_where_frames_are_known():
    """The variant's posterior mean does not move on a blocked step; the prior rollout (no
    frames) is used for prediction."""
    m = small(state_inference="frames_posterior")
    obs, a, _ = crop_world_batch(3, 20, seed=2)
    path = m.posterior_states(obs, a, sample=False)
    moved, _ = m.frame_moved(obs)
    step = path.mean[:, 1:] - path.mean[:, :-1]
    assert step[moved == 0].abs().max() < 1e-6 and step[moved == 1].abs().sum(-1).min() > 0


def _legacy_config(**legacy) -> dict:
    from worldmodels.training import config_to_dict

    cfg = config_to_dict(GTMSMConfig(tau=12, z_dim=6, hidden=(32,)))
    cfg.pop("state_inference")  # configs saved before the option existed
    cfg.update(legacy, gate_loss_weight=1.0)
    return cfg


def test_legacy_blocked_from_frames_keys(tmp_path):
    from worldmodels.training import config_from_dict
    from worldmodels.training.checkpoint import FORMAT_VERSION, CheckpointError, load, save_checkpoint

    cfg = config_from_dict(GTMSMConfig, _legacy_config(blocked_from_frames=False))
    assert cfg.state_inference == "prior" and cfg.blocked_from_frames is None
    assert cfg.gate_loss_weight is None
    with pytest.raises(ValueError, match="state_inference"):
        GTMSMConfig(blocked_from_frames=False, state_inference="frames_posterior")
    with pytest.raises(ValueError, match="gate_loss_weight"):
        GTMSMConfig(gate_loss_weight=1.0)
    model = small()
    for legacy, ok in ((False, True), (True, False)):
        path = tmp_path / f"legacy_{legacy}.pt"
        save_checkpoint({"format_version": FORMAT_VERSION, "model_name": "gtmsm",
                         "model_class": "worldmodels.gtmsm.model:GTMSM",
                         "model_config": _legacy_config(blocked_from_frames=legacy),
                         "model": model.state_dict()}, path)
        if ok:  # the thesis model, with its weights
            loaded = load(path)
            assert loaded.config.state_inference == "prior"
            assert torch.equal(loaded.transition.M.weight, model.transition.M.weight)
        else:  # no current setting reproduces it: a clear error, never a silent change
            with pytest.raises(CheckpointError, match="blocked_from_frames=True.*state_inference"):
                load(path)


def test_isotropy_term_is_scale_free_and_zero_for_isotropic_states():
    m = small()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 500, 2, generator=g, dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)
    # exactly isotropic sample covariance: whiten each sequence
    L = torch.linalg.cholesky(x.transpose(1, 2) @ x / 499)
    iso = torch.linalg.solve_triangular(L, x.transpose(1, 2), upper=False).transpose(1, 2)
    assert abs(m.isotropy(iso).item()) < 1e-6
    assert abs(m.isotropy(iso * 7.0).item()) < 1e-6  # scale-free
    squashed = iso * torch.tensor([1.0, 0.05], dtype=torch.float64)
    assert m.isotropy(squashed).item() > 1.0
