"""Goal-conditioned imagination (``GoalConditioned``, ``GoalDistanceReward``, ``goal_start_states``)
and the image-navigation actor experiment built on it: stepping a goal-carrying GTM-SM is its
``imagine``, the goal never changes, the reward is the planner's cost, a goal-conditioned discrete
actor learns to use its goal, goals are located in GTM-SM's memory, and the quick run is traceable."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch.nn import functional as F

from experiments import navigation_actor as na
from worldmodels.agents.costs import QuadraticCost
from worldmodels.agents.policy import (
    ActorCriticConfig,
    GoalConditioned,
    GoalDistanceReward,
    GoalState,
    goal_start_states,
    train_actor_critic,
)
from worldmodels.base import LatentState, LossOutput, TensorBelief, WorldModel
from worldmodels.gtmsm import GTMSM, GTMSMConfig

T_CTX, H = 10, 6


def small_gtmsm() -> GTMSM:
    torch.manual_seed(0)
    return GTMSM(GTMSMConfig(tau=T_CTX, z_dim=6, hidden=(32,), channels=8)).eval()


def episode(m: GTMSM, B: int = 3, T: int = T_CTX + H, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames ``[B, T, C, H, W]`` (distinct codes) and one-hot moves ``[B, T, 5]``."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(B, T, *m.config.obs_shape, generator=g)
    actions = F.one_hot(torch.randint(0, 5, (B, T), generator=g), 5).float()
    return obs, actions


def gtmsm_goal_setup(B: int = 3):
    m = small_gtmsm()
    obs, actions = episode(m, B)
    with torch.no_grad():
        belief = m.observe(obs[:, :T_CTX], actions[:, :T_CTX])
    wrapped, reward = na.goal_model(m)
    goal = torch.randn(B, wrapped.goal_dim, generator=torch.Generator().manual_seed(5))
    return m, wrapped, reward, belief, goal, actions[:, T_CTX - 1:T_CTX - 1 + H]


# --- the wrapper -----------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", [False, True])
def test_goal_step_loop_is_imagine_and_carries_the_goal(sample):
    m, wrapped, _, belief, goal, future = gtmsm_goal_setup()
    gb = wrapped.with_goal(belief, goal)
    D = m.latent_dim
    assert wrapped.latent_dim == D + goal.shape[1] and gb.features().shape == (3, wrapped.latent_dim)
    with torch.no_grad():
        ref = wrapped.imagine(gb, future[:, None], sample=sample, generator=torch.Generator().manual_seed(2))[:, 0]
        inner = m.imagine(belief, future[:, None], sample=sample, generator=torch.Generator().manual_seed(2))[:, 0]
        state = wrapped.initial_state(gb)
        g = torch.Generator().manual_seed(2)
        steps = []
        for h in range(H):
            state, f = wrapped.step(state, future[:, h], sample=sample, generator=g)
            steps.append(f)
    got = torch.stack(steps, 1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref[..., :D], inner)  # the model's own rollout, untouched
    assert torch.equal(got[..., D:], goal[:, None].expand(-1, H, -1))  # the goal, exactly, at every step
    assert isinstance(state, GoalState) and torch.equal(state.goal, goal)
    if sample:  # sampled codes differ from the means: the noise really flows through the wrapper
        assert not torch.allclose(ref[..., :D], m.imagine(belief, future[:, None])[:, 0])


def test_goal_state_rows_move_with_their_goal():
    _, wrapped, _, belief, goal, future = gtmsm_goal_setup()
    state = wrapped.initial_state(wrapped.with_goal(belief, goal))
    other, _ = wrapped.step(state, future[:, 0])
    picked = state.index(torch.tensor([2, 0]))
    assert isinstance(picked, GoalState) and torch.equal(picked.goal, goal[[2, 0]])
    assert torch.equal(picked.inner.state, state.inner.state[[2, 0]])  # type: ignore[attr-defined]
    mask = torch.tensor([True, False, True])
    merged = state.where(mask, other.replace(torch.tensor([1]), state.index(torch.tensor([0]))))
    assert torch.equal(merged.goal, goal[[0, 1, 2]]) and merged.batch_size == 3
    assert torch.equal(merged.inner.state[1], state.inner.state[1])  # type: ignore[attr-defined]
    assert torch.equal(merged.inner.state[0], other.inner.state[0])  # type: ignore[attr-defined]
    moved = state.replace(torch.tensor([1]), state.index(torch.tensor([2])))
    assert torch.equal(moved.goal[1], goal[2]) and torch.equal(moved.goal[0], goal[0])
    assert state.detach().goal.requires_grad is False


def test_reward_is_minus_the_squared_code_distance_the_planner_minimises():
    m, wrapped, reward, _, goal, _ = gtmsm_goal_setup()
    S, z = m.config.state_dim, m.config.z_dim
    g = torch.Generator().manual_seed(3)
    model_feats = torch.randn(3, 4, H, m.latent_dim, generator=g)  # [B, N, H, D] as a planner sees them
    after = torch.cat([model_feats, goal[:, None, None].expand(-1, 4, H, -1)], -1)
    before = torch.randn_like(after)
    actions = torch.randn(3, 4, H, 5, generator=g)
    r = reward(before, actions, after)
    want = -((model_feats[..., S:] - goal[:, None, None, :z]) ** 2).sum(-1)
    torch.testing.assert_close(r, want)
    # navigation_goal's CEM cost: QuadraticCost on the model's features, weight 1 on the code only
    target = torch.cat([torch.zeros(3, S), goal[:, :z]], -1)
    weight = torch.cat([torch.zeros(S), torch.ones(z)])
    torch.testing.assert_close(r, QuadraticCost(target, state_weight=weight)(model_feats, actions, model_feats))
    # the goal's state part (after the code) is not scored
    shifted = after.clone()
    shifted[..., -S:] += 5.0
    torch.testing.assert_close(reward(before, actions, shifted), r)


def test_bad_goals_and_states_raise_clear_errors():
    m, wrapped, _, belief, goal, future = gtmsm_goal_setup()
    with pytest.raises(ValueError, match="goal"):
        wrapped.with_goal(belief, goal[:, :-1])
    with pytest.raises(ValueError, match="goal"):
        wrapped.with_goal(belief, goal[:2])
    with pytest.raises(ValueError, match="goal: expected finite"):
        wrapped.with_goal(belief, goal * float("nan"))
    with pytest.raises(ValueError, match="goal: required"):
        wrapped.observe(torch.rand(3, 2, *m.config.obs_shape), torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match="goals"):
        goal_start_states(wrapped, belief, goal)  # [B, G] instead of [B, K, G]
    with pytest.raises(TypeError, match="GoalState"):
        wrapped.step(m.initial_state(belief), future[:, 0])
    with pytest.raises(TypeError, match="GoalBelief"):
        wrapped.imagine(belief, future[:, None])
    with pytest.raises(ValueError, match="goal_dim"):
        GoalConditioned(m, 0)
    with pytest.raises(ValueError, match="equal length"):
        GoalDistanceReward(slice(0, 2), slice(4, 7))
    with pytest.raises(ValueError, match="code"):
        GoalDistanceReward.for_model(wrapped, code=slice(0, m.latent_dim + 1))


def test_start_pool_pairs_each_belief_with_its_goals():
    m, wrapped, _, belief, _, _ = gtmsm_goal_setup()
    goals = torch.arange(3 * 2 * wrapped.goal_dim, dtype=torch.float32).reshape(3, 2, wrapped.goal_dim)
    pool = goal_start_states(wrapped, belief, goals)
    assert len(pool) == 6 and isinstance(pool.state, GoalState)
    rows = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.equal(pool.features[:, :m.latent_dim], belief.features()[rows])
    assert torch.equal(pool.features[:, m.latent_dim:], goals.reshape(6, -1))
    assert torch.equal(pool.state.goal, goals.reshape(6, -1))
    assert torch.equal(pool.state.inner.keys, belief.memory.keys[rows])  # type: ignore[attr-defined]


# --- a goal-conditioned discrete actor learns to use its goal (toy world) --------------------------
MOVES = 0.25 * torch.tensor([[0.0, 0.0], [1, 0], [-1, 0], [0, 1], [0, -1]])  # stay, +-x, +-y


@dataclass(frozen=True)
class PointState(LatentState):
    z: torch.Tensor


class PointModel(WorldModel):
    """A point in the plane moved by one of 5 discrete moves; features = position ``[B, 2]``."""

    latent_dim, action_dim = 2, 5

    def loss(self, batch):
        return LossOutput(torch.zeros(()))

    def observe(self, obs, actions, mask=None):
        return TensorBelief(obs[:, -1].reshape(obs.shape[0], 2))

    def imagine(self, belief, actions, *, sample=False, generator=None):
        return belief.features()[:, None, None] + torch.cumsum(actions @ MOVES, 2)

    def decode(self, latents):
        return latents[..., None, None, :]

    def initial_state(self, belief, *, sample=False, generator=None):
        return PointState(belief.features())

    def step(self, state, actions, *, sample=False, generator=None):
        assert isinstance(state, PointState)
        z = state.z + actions @ MOVES
        return PointState(z), z


def point_starts(wrapped: GoalConditioned, M: int, seed: int):
    """``M`` starts at uniform points of [-1, 1]^2, each with one uniform goal there."""
    g = torch.Generator().manual_seed(seed)
    belief = TensorBelief(torch.rand(M, 2, generator=g) * 2 - 1)
    return goal_start_states(wrapped, belief, (torch.rand(M, 1, 2, generator=g) * 2 - 1))


@torch.no_grad()
def final_distance(wrapped, starts, policy, steps: int) -> torch.Tensor:
    """Distance ``[M]`` to the goal after ``steps`` moves of ``policy(features) -> one-hot``."""
    state, f = starts.state, starts.features
    for _ in range(steps):
        state, f = wrapped.step(state, policy(f))
    return (f[:, :2] - f[:, 2:]).norm(dim=-1)


def test_goal_conditioned_discrete_actor_reaches_goals_and_uses_them():
    wrapped = GoalConditioned(PointModel(), goal_dim=2)
    reward = GoalDistanceReward.for_model(wrapped, code=slice(0, 2))
    config = ActorCriticConfig(discrete=True, actor_grad="reinforce", hidden=(64, 64), horizon=10, discount=0.9,
                               updates=200, batch_size=64, actor_lr=3e-3, critic_lr=1e-2, target_tau=0.05,
                               entropy_coef=1e-3, log_every=50)
    ac, metrics = train_actor_critic(wrapped, reward, point_starts(wrapped, 512, 0), config, None, "cpu", False)
    assert ac.config.latent_dim == 4 and metrics["start_states"] == 512
    test = point_starts(wrapped, 256, 1)
    gen = torch.Generator().manual_seed(2)

    def mode(f):
        return ac.actor(f).mode()

    def uniform(f):
        return F.one_hot(torch.randint(5, (f.shape[0],), generator=gen), 5).float()

    def wrong_goal(f):  # the same actor shown another start's goal
        return ac.actor(torch.cat([f[:, :2], f.roll(1, 0)[:, 2:]], -1)).mode()

    start = (test.features[:, :2] - test.features[:, 2:]).norm(dim=-1).mean()
    actor, rand = final_distance(wrapped, test, mode, 12).mean(), final_distance(wrapped, test, uniform, 12).mean()
    blind = final_distance(wrapped, test, wrong_goal, 12).mean()
    assert actor < 0.5 * start and actor < 0.5 * rand, (float(actor), float(rand), float(start))
    assert actor < 0.5 * blind, (float(actor), float(blind))


# --- goals in GTM-SM's memory --------------------------------------------------------------------
def test_a_memorised_code_is_located_at_the_state_where_it_was_memorised():
    m = small_gtmsm()
    obs, actions = episode(m, T=T_CTX)
    with torch.no_grad():
        belief = m.observe(obs, actions)
        codes = m.encode(obs)[0]  # [B, T, z]
        states = m.posterior_states(obs, actions, codes=codes, num_memorised=T_CTX, sample=False).mean
        located = m.locate_codes(belief.memory, codes)  # [B, T, S]
        one = m.locate_codes(belief.memory, codes[:, 4])  # [B, S]
        goal = na.goal_vectors(m, belief, codes[:, 4])
    torch.testing.assert_close(located, states)
    torch.testing.assert_close(one, states[:, 4])
    torch.testing.assert_close(goal, torch.cat([codes[:, 4], states[:, 4]], -1))
    assert goal.shape == (3, na.goal_dim(m))
    with pytest.raises(ValueError, match="codes"):
        m.locate_codes(belief.memory, codes[..., :-1])


def test_goal_frames_are_far_enough_back_and_not_the_current_view():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(4, 12, 3, generator=g)
    codes[0, 3:] = codes[0, -1]  # row 0: only frames 0..2 differ from the last view
    codes[1] = codes[1, -1]  # row 1: every frame looks the same: fall back to any earlier frame
    idx = na.goal_times(codes, 50, min_steps=4, generator=g)
    assert idx.shape == (4, 50)
    assert set(idx[0].tolist()) <= {0, 1, 2}
    assert int(idx[1].max()) <= 10
    assert int(idx[2:].max()) <= 12 - 1 - 4 and len(set(idx[2].tolist())) > 3


# --- the experiment's quick run --------------------------------------------------------------------
def test_quick_run_writes_a_traceable_result_and_reuses_its_actors(tmp_path, one_thread):
    out, run = tmp_path / "results", tmp_path / "run"
    argv = ["--quick", "--out-dir", str(out), "--run-dir", str(run), "--no-progress"]
    assert na.main(argv) == 0
    rec = json.loads((out / "navigation_actor.json").read_text())
    assert rec["command"].startswith("python -m experiments.navigation_actor --quick")
    assert (out / "navigation_actor.png").is_file()
    proto = rec["protocol"]
    assert proto["training_seeds"] == [0, 1, 2] and proto["evaluation"]["count"] == 4
    res = rec["results"]
    assert res["training_worlds"]["disjoint_from_evaluation"] is True
    head = res["headline"]["per_method"]
    assert set(head) == set(na.LABELS.values()) and all(len(v["values"]) == 3 for v in head.values())
    assert [c["statement"] for c in res["claims"]][0] == "the actor reaches the goal more often than a random walk"
    for s in ("0", "1", "2"):
        seed = res["per_seed"][s]
        assert len(seed["actor"]["successes"]) == 4
        assert seed["acting"]["actor"]["decisions"] == 4 * rec["config"]["budget"]
        assert seed["acting"]["gtmsm_cem"]["decisions_per_s"] > 0
        assert "checkpoint" not in seed["training"]["gtmsm"]["summary"]
        assert (run / f"seed_{s}" / "navigation_actor" / "actor_critic.pt").is_file()
    assert res["env_steps"]["dataset_frames"] > res["env_steps"]["actor_start_frames"] > 0
    # a second run finds every actor trained under the same configuration and does not train again
    first = {s: res["per_seed"][s]["training"]["actor"] for s in ("0", "1", "2")}
    assert na.main([*argv, "--out-dir", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "navigation_actor.json").read_text())["results"]
    assert {s: again["per_seed"][s]["training"]["actor"] for s in ("0", "1", "2")} == first
    assert again["per_seed"]["0"]["actor"] == res["per_seed"]["0"]["actor"]  # same actor, same episodes
