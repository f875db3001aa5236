"""The latent actor-critic trained in imagination (agents.policy): lambda-returns against their
definition, learning on small known worlds (continuous and discrete actions), the critic's values,
the frozen world model, saving/loading as data, the actor in a real environment, and the learned
value as MPC's terminal value (fused == reference == definition)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from agents_toy_models import LinearConfig, LinearEnv, LinearWorldModel

from worldmodels.agents.costs import QuadraticCost, rollout_objective
from worldmodels.agents.fast_imagine import mean_imagine_fn
from worldmodels.agents.mpc import MPCAgent, MPCConfig
from worldmodels.agents.planners import CEM, CEMConfig
from worldmodels.agents.policy import (
    ActorCritic,
    ActorCriticConfig,
    ActorCriticFileError,
    ActorPolicy,
    ReturnScale,
    frozen,
    lambda_returns,
    start_states,
    train_actor_critic,
)
from worldmodels.agents.policy.trainer import METRICS_FILE, POLICY_FILE, SUMMARY_FILE
from worldmodels.base import LatentState

GOAL = torch.tensor([0.8, -0.6])
DISCRETE_B = (0.3 * torch.tensor([[0.0, 1, -1, 0, 0], [0, 0, 0, 1, -1]])).tolist()  # stay, +-x, +-y


@dataclass(frozen=True)
class PointState(LatentState):
    z: torch.Tensor


class StepLinearModel(LinearWorldModel):
    """The toy linear model ``z' = A z + B a`` with the stepwise protocol."""

    def initial_state(self, belief, *, sample=False, generator=None):
        return PointState(belief.features())

    def step(self, state, actions, *, sample=False, generator=None):
        z = state.z @ self.A.T + actions @ self.B.T
        return PointState(z), z


def point_model(discrete: bool = False) -> StepLinearModel:
    """A point in the plane moved by 0.3 per unit action (box [-1, 1]^2, or 5 discrete moves)."""
    return StepLinearModel(LinearConfig(A=[[1.0, 0.0], [0.0, 1.0]],
                                        B=DISCRETE_B if discrete else [[0.3, 0.0], [0.0, 0.3]]))


def contexts(model, M: int = 512, seed: int = 0) -> dict[str, torch.Tensor]:
    """One-frame contexts at uniform points of [-1, 1]^2 (frames are the state, ``[1, 1, 2]``)."""
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.rand(M, 1, 1, 1, 2, generator=g) * 2 - 1, "actions": torch.zeros(M, 1, model.action_dim)}


def toy_config(discrete: bool, **kw) -> ActorCriticConfig:
    base = dict(discrete=discrete, hidden=(64, 64), horizon=10, discount=0.9, updates=150, batch_size=64,
                actor_lr=3e-3, critic_lr=1e-2, target_tau=0.05, log_every=25, context=1)
    return ActorCriticConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained():
    """The continuous toy after 150 updates: (model, actor_critic, metrics, params before training)."""
    model = point_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ac, metrics = train_actor_critic(model, QuadraticCost(GOAL), contexts(model), toy_config(False),
                                     None, "cpu", False)
    return model, ac, metrics, before


@torch.no_grad()
def imagined_return(model, reward_fn, starts, policy, steps: int, discount: float = 1.0) -> torch.Tensor:
    """Discounted return ``[M]`` of ``policy(features) -> actions`` over ``steps`` model steps."""
    state, f = starts.state, starts.features
    total = torch.zeros(f.shape[0])
    for h in range(steps):
        a = policy(f)
        state, f2 = model.step(state, a)
        total += discount ** h * reward_fn(f, a, f2)
        f = f2
    return total


# --- lambda-returns ----------------------------------------------------------------------------
def test_lambda_returns_hand_example():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    # R_2 = 3 + .5 (.5 * 40 + .5 * 40) = 23; R_1 = 2 + .5 (.5 * 30 + .5 * 23) = 15.25;
    # R_0 = 1 + .5 (.5 * 20 + .5 * 15.25) = 9.8125
    torch.testing.assert_close(lambda_returns(r, v, 0.5, 0.5), torch.tensor([[9.8125, 15.25, 23.0]]))
    # lambda = 1: discounted rewards plus the discounted bootstrap; lambda = 0: one-step TD targets
    torch.testing.assert_close(lambda_returns(r, v, 0.5, 1.0)[:, 0], torch.tensor([1 + 1 + 0.75 + 5.0]))
    torch.testing.assert_close(lambda_returns(r, v, 0.5, 0.0), torch.tensor([[11.0, 17.0, 23.0]]))


def test_lambda_returns_are_the_lambda_mixture_of_n_step_returns():
    g = torch.Generator().manual_seed(0)
    B, H, gamma, lam = 4, 6, 0.9, 0.7
    r, v = torch.randn(B, H, generator=g, dtype=torch.float64), torch.randn(B, H + 1, generator=g, dtype=torch.float64)

    def n_step(t, n):  # sum_{k<n} gamma^k r_{t+k} + gamma^n V_{t+n}
        return sum(gamma ** k * r[:, t + k] for k in range(n)) + gamma ** n * v[:, t + n]

    for t in range(H):
        N = H - t
        ref = (1 - lam) * sum(lam ** (n - 1) * n_step(t, n) for n in range(1, N)) + lam ** (N - 1) * n_step(t, N)
        torch.testing.assert_close(lambda_returns(r, v, gamma, lam)[:, t], ref)
    with pytest.raises(ValueError, match="values"):
        lambda_returns(r, v[:, :-1], gamma, lam)


def test_return_scale_is_a_moving_percentile_spread_at_least_one():
    s = ReturnScale(decay=0.5, percentiles=(0.0, 1.0))
    assert float(s.update(torch.tensor([0.0, 10.0]))) == 10.0  # the first batch sets the spread
    assert float(s.update(torch.tensor([0.0, 2.0]))) == 6.0  # 0.5 * 10 + 0.5 * 2
    small = ReturnScale()
    assert float(small.update(torch.tensor([0.0, 0.01]))) == 1.0  # small returns are not blown up


# --- learning on the toy worlds ------------------------------------------------------------------
def test_actor_beats_random_in_imagination(trained):
    model, ac, metrics, _ = trained
    starts = start_states(model, contexts(model, 256, seed=1), context=1)
    g = torch.Generator().manual_seed(2)
    reward = QuadraticCost(GOAL)
    actor = imagined_return(model, reward, starts, lambda f: ac.actor(f).mode(), 30)
    rand = imagined_return(model, reward, starts, lambda f: torch.rand(f.shape[0], 2, generator=g) * 2 - 1, 30)
    assert actor.mean() > 0.2 * rand.mean()  # returns are negative: at least 5x less cost
    assert metrics["updates"] == 150 and metrics["imagined_steps"] == 150 * 64 * 10
    assert all(np.isfinite(metrics[k]) for k in ("return", "critic_loss", "entropy", "value"))


def test_actor_beats_random_in_the_real_system(trained):
    model, ac, _, _ = trained
    env = LinearEnv(model, goal=tuple(GOAL.tolist()), max_steps=30)
    policy = ActorPolicy(model, ac, context=2, deterministic=True)
    rng = np.random.default_rng(0)

    def episode(act, seed):
        obs, _ = env.reset(seed=seed)
        policy.reset()
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total, done = total + r, term or trunc
        return total

    learned = [episode(policy.act, s) for s in range(3)]
    rand = [episode(lambda o: rng.uniform(-1, 1, 2).astype(np.float32), s) for s in range(3)]
    assert np.mean(learned) > 0.2 * np.mean(rand)
    a = policy.act(env.reset(seed=9)[0])
    assert a.shape == (2,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)


def test_critic_value_at_start_matches_the_long_return(trained):
    model, ac, _, _ = trained
    starts = start_states(model, contexts(model, 256, seed=3), context=1)
    g = torch.Generator().manual_seed(4)
    # the value of the (stochastic) actor under the critic's discount, far beyond the training horizon
    mc = imagined_return(model, QuadraticCost(GOAL), starts, lambda f: ac.actor(f).sample(g)[0], 80, discount=0.9)
    with torch.no_grad():
        v = ac.value(starts.features)
    assert mc.std() > 0.5  # the start states differ in value
    assert abs(float(v.mean() - mc.mean())) < 0.1 * float(mc.abs().mean())
    assert float(torch.corrcoef(torch.stack([v, mc]))[0, 1]) > 0.93


def test_world_model_is_frozen_and_restored(trained):
    model, _, _, before = trained
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert model.training  # the mode it had before training
    model.A.requires_grad_(False)
    with pytest.raises(RuntimeError), frozen(model):
        assert not model.B.requires_grad
        raise RuntimeError("restored even after an error")
    assert model.B.requires_grad and not model.A.requires_grad
    model.A.requires_grad_(True)


def test_discrete_actor_learns_by_reinforce():
    model = point_model(discrete=True)
    ac, metrics = train_actor_critic(model, QuadraticCost(GOAL), contexts(model), toy_config(True, updates=100),
                                     None, "cpu", False)
    assert ac.config.gradient == "reinforce" and metrics["entropy"] > 0
    starts = start_states(model, contexts(model, 256, seed=1), context=1)
    g = torch.Generator().manual_seed(2)
    reward = QuadraticCost(GOAL)
    actor = imagined_return(model, reward, starts, lambda f: ac.actor(f).mode(), 30)
    rand = imagined_return(model, reward, starts,
                           lambda f: F.one_hot(torch.randint(5, (f.shape[0],), generator=g), 5).float(), 30)
    assert actor.mean() > 0.2 * rand.mean()
    policy = ActorPolicy(model, ac, context=1, num_envs=3)
    moves = policy.act(np.zeros((3, 1, 1, 2), np.float32))
    assert moves.shape == (3,) and moves.dtype.kind == "i"
    # from the origin, the goal (0.8, -0.6) is reached fastest by +x or -y
    assert set(moves.tolist()) <= {1, 4}


# --- files ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_save_load_round_trip_and_run_folder(tmp_path):
    model = point_model()
    cfg = toy_config(False, updates=4, log_every=2)
    ac, _ = train_actor_critic(model, QuadraticCost(GOAL), contexts(model, 64), cfg, tmp_path, "cpu", False)
    path = tmp_path / POLICY_FILE
    assert (tmp_path / SUMMARY_FILE).is_file() and len((tmp_path / METRICS_FILE).read_text().splitlines()) == 2
    loaded = ActorCritic.load(path)
    assert loaded.config == ac.config
    for k, v in ac.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    z = torch.randn(5, 2)
    torch.testing.assert_close(loaded.actor(z).mode(), ac.actor(z).mode())
    with pytest.raises(FileExistsError):
        train_actor_critic(model, QuadraticCost(GOAL), contexts(model, 64), cfg, tmp_path, "cpu", False)
    with pytest.raises(FileExistsError):
        ac.save(path)
    bad = tmp_path / "pickled.pt"
    bad.write_bytes(pickle.dumps({"format": "x", "config": ActorCriticConfig()}))
    with pytest.raises(ActorCriticFileError):
        ActorCritic.load(bad)
    blob = torch.load(path, weights_only=True)
    blob["config"]["hidden"] = [8]
    torch.save(blob, tmp_path / "misshaped.pt")
    with pytest.raises(ActorCriticFileError, match="do not fit"):
        ActorCritic.load(tmp_path / "misshaped.pt")


def test_config_checks_and_action_spaces():
    from gymnasium import spaces

    with pytest.raises(ValueError, match="discount"):
        ActorCriticConfig(discount=1.5)
    with pytest.raises(ValueError, match="actor_grad"):
        ActorCriticConfig(discrete=True, actor_grad="dynamics")
    with pytest.raises(ValueError, match="unknown keys"):
        ActorCriticConfig.from_dict({"horizn": 3})
    box = ActorCriticConfig().for_action_space(spaces.Box(-2.0, 2.0, (1,), np.float32))
    assert box.bounds() == ((-2.0,), (2.0,)) and not box.discrete and box.gradient == "dynamics"
    disc = ActorCriticConfig().for_action_space(spaces.Discrete(4))
    assert disc.discrete and disc.action_dim == 4 and disc.gradient == "reinforce"
    with pytest.raises(ValueError, match="action_dim"):
        ActorCriticConfig(action_dim=3).for_model(point_model())


def test_pendulum_preset_is_a_valid_config():
    import gymnasium as gym
    import yaml

    from worldmodels import envs  # noqa: F401  (registers the environments)

    root = Path(__file__).resolve().parents[2]
    preset = yaml.safe_load((root / "configs" / "actor_critic_pendulum.yaml").read_text())
    space = gym.make(preset["env"]).action_space
    cfg = ActorCriticConfig.from_dict(preset["actor_critic"]).for_action_space(space)
    assert cfg.bounds() == ((-2.0,), (2.0,)) and cfg.gradient == "dynamics"
    assert cfg.hidden == tuple(preset["actor_critic"]["hidden"])


def test_continued_training_keeps_the_architecture():
    model = point_model()
    ac = ActorCritic(toy_config(False).for_model(model))
    with pytest.raises(ValueError, match="hidden"):
        train_actor_critic(model, QuadraticCost(GOAL), contexts(model, 64), toy_config(False, hidden=(8,)),
                           None, "cpu", False, actor_critic=ac)


def test_actions_stay_inside_the_box():
    cfg = ActorCriticConfig(latent_dim=2, action_dim=2, action_low=(-2.0, 0.0), action_high=(2.0, 0.5))
    ac = ActorCritic(cfg)
    z = 50 * torch.randn(1000, 2)
    dist = ac.actor(z)
    a, logp = dist.sample(torch.Generator().manual_seed(0))
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.5])
    assert bool(((a >= low) & (a <= high)).all()) and bool(((dist.mode() >= low) & (dist.mode() <= high)).all())
    # log_prob of a drawn action recovers the draw's log density (where tanh is not saturated)
    inner = ((a - low) / (high - low) - 0.5).abs().max(-1).values < 0.45
    torch.testing.assert_close(dist.log_prob(a)[inner], logp[inner], rtol=1e-3, atol=1e-3)


# --- the critic as MPC's terminal value ----------------------------------------------------------
def test_value_term_fused_equals_reference_equals_definition():
    from test_fast_imagine import _belief, _head, _kvae

    model = _kvae("lstm")
    belief, head = _belief(model), _head(model)
    ac = ActorCritic(ActorCriticConfig(hidden=(16,), seed=3).for_model(model))
    assert mean_imagine_fn(model) is not None and hasattr(head, "rollout_rewards")
    acts = torch.rand(2, 5, 4, 1, generator=torch.Generator().manual_seed(3)) * 4 - 2
    gamma = 0.9
    with torch.no_grad():
        fused = rollout_objective(model, belief, head, discount=gamma, value_fn=ac.value)(acts)
        ref = rollout_objective(model, belief, head, discount=gamma, value_fn=ac.value, fast=False)(acts)
        without = rollout_objective(model, belief, head, discount=gamma, fast=False)(acts)
        lat = model.imagine(belief, acts)  # [B, N, H, D]
        start = belief.features()[:, None, None].expand(-1, 5, 1, -1)
        r = head(torch.cat([start, lat[:, :, :-1]], 2), acts, lat)  # [B, N, H]
        definition = (gamma ** torch.arange(4.0) * r).sum(-1) + gamma ** 4 * ac.value(lat[:, :, -1])
    torch.testing.assert_close(ref, definition, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, definition, rtol=1e-4, atol=1e-4)
    assert (ref - without).abs().min() > 1e-4  # the value term is really there


def test_mpc_plans_with_a_terminal_value_alone():
    """With zero reward inside the horizon, only the terminal value can lead MPC to the goal."""
    model = LinearWorldModel()  # double integrator, goal (1, 0)
    env = LinearEnv(model, goal=(1.0, 0.0), max_steps=30)
    zero = lambda before, actions, after: after.sum(-1) * 0.0  # noqa: E731
    value = QuadraticCost(torch.tensor([1.0, 0.0]))

    def returns(value_fn):
        planner = CEM(CEMConfig(horizon=6, population=64, num_elites=8, iterations=3), -1.0, 1.0)
        agent = MPCAgent(model, planner, zero, MPCConfig(context=2), value_fn=value_fn)
        obs, _ = env.reset(seed=0)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(agent.act(obs))
            total, done = total + r, term or trunc
        return total

    with_value = returns(lambda z: value(z[..., None, :], z[..., None, :0], z[..., None, :])[..., 0])
    assert with_value > 0.7 * returns(None)


def test_kvae_integration_sampled_dynamics_and_pixels():
    """A few updates on a small KVAE with a reward head (sampled transitions), then the actor acts
    from uint8 pixels through the KVAE's filter; the KVAE and the head are left as they were."""
    from test_fast_imagine import _head, _kvae

    model, g = _kvae("lstm"), torch.Generator().manual_seed(5)
    head = _head(model)
    model.train()
    before = {k: v.clone() for k, v in [*model.state_dict().items(), *head.state_dict().items()]}
    data = {"obs": torch.rand(32, 4, 1, 8, 8, generator=g), "actions": torch.rand(32, 4, 1, generator=g) * 4 - 2}
    cfg = ActorCriticConfig(hidden=(16,), horizon=5, updates=3, batch_size=8, log_every=1, sample_dynamics=True,
                            action_low=(-2.0,), action_high=(2.0,))
    ac, metrics = train_actor_critic(model, head, data, cfg, None, "cpu", False)
    assert metrics["start_states"] == 32 and np.isfinite(metrics["return"]) and np.isfinite(metrics["critic_loss"])
    after = {**model.state_dict(), **head.state_dict()}
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert all(p.requires_grad and p.grad is None for p in [*model.parameters(), *head.parameters()])
    assert model.training and not head.training
    policy = ActorPolicy(model, ac, context=3, deterministic=False, seed=1)
    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    actions = np.stack([policy.act(f) for f in frames])
    assert actions.shape == (4, 1) and np.all(np.abs(actions) <= 2.0) and len(np.unique(actions)) > 1


def test_context_windows_from_batches():
    from worldmodels.agents.policy.starts import context_windows
    from worldmodels.base import Batch

    obs = torch.arange(2 * 7, dtype=torch.float32).reshape(2, 7, 1, 1, 1).expand(2, 7, 1, 1, 2)
    batch = Batch(obs=obs, actions=obs[:, :, 0, 0, :1], mask=torch.ones(2, 7))
    w = context_windows([batch, batch], context=3, stride=2, limit=100)
    # windows end at frames 2, 4, 6 of each sequence of both batches: 2 batches x 3 ends x 2 rows
    assert w["obs"].shape == (12, 3, 1, 1, 2) and w["actions"].shape == (12, 3, 1)
    torch.testing.assert_close(w["obs"][:2, :, 0, 0, 0], torch.tensor([[0.0, 1, 2], [7, 8, 9]]))
    torch.testing.assert_close(w["actions"][4:6, :, 0], torch.tensor([[4.0, 5, 6], [11, 12, 13]]))
    assert context_windows([batch, batch], context=3, stride=2, limit=5)["obs"].shape[0] == 5
    with pytest.raises(ValueError, match="context"):
        context_windows([batch], context=8, stride=1, limit=10)
