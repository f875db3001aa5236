"""Hidden tensors in the planning hot path: a float64 model plans as a float64 model.

A tensor created inside a hot path without the inputs' dtype and device (``torch.zeros(n)``,
``torch.tensor(x)``) is float32 on the CPU. On a GPU it would be a hidden host tensor. Running the
models and every continuous planner with float64 weights is the CPU stand-in for that check:
matmuls refuse mixed dtypes, and the outputs are asserted to stay float64.
"""

from __future__ import annotations

import pytest
import torch

from worldmodels.agents.mpc import MPCAgent, MPCConfig
from worldmodels.agents.planners import make_planner
from worldmodels.agents.reward import RewardHead, RewardHeadConfig
from worldmodels.kvae import KVAE, KVAEConfig

SMALL = dict(population=128, iterations=2, horizon=5)


def pendulum_kvae(dynamics: str) -> KVAE:
    torch.manual_seed(0)
    cfg = KVAEConfig(obs_shape=(1, 16, 16), action_dim=1, a_dim=3, z_dim=6, num_modes=4, encoder="conv",
                     decoder="conv", likelihood="bernoulli", use_controls=True, dynamics=dynamics,
                     dynamics_hidden=16)
    return KVAE(cfg).double().eval()


@pytest.mark.parametrize("dynamics", ["lstm", "mlp"])
def test_kvae_belief_imagine_and_step_stay_float64(dynamics):
    m = pendulum_kvae(dynamics)
    obs = torch.rand(2, 4, 1, 16, 16, dtype=torch.float64)
    act = torch.rand(2, 4, 1, dtype=torch.float64)
    belief = m.observe(obs, act)
    assert belief.features().dtype == torch.float64
    lat = m.imagine(belief, torch.rand(2, 3, 5, 1, dtype=torch.float64))
    assert lat.dtype == torch.float64 and m.decode(lat).dtype == torch.float64
    state, feat = m.step(m.initial_state(belief), torch.rand(2, 1, dtype=torch.float64))
    assert feat.dtype == torch.float64


@pytest.mark.parametrize("preset", ["cem_fast", "icem", "mppi", "planet", "random"])
@pytest.mark.parametrize("fused", [True, False])
def test_every_continuous_planner_plans_a_float64_model(preset, fused):
    m = pendulum_kvae("lstm")
    head = RewardHead(RewardHeadConfig(latent_dim=m.latent_dim, action_dim=m.action_dim, hidden=(8,))).double()
    overrides = {k: v for k, v in SMALL.items() if preset != "random" or k != "iterations"}
    planner = make_planner(preset, -2.0, 2.0, **overrides)
    agent = MPCAgent(m, planner, head.eval(), MPCConfig(context=2, fused=fused), num_envs=2,
                     obs_to_tensor=lambda o: torch.as_tensor(o), device="cpu")
    with torch.no_grad():
        for _ in range(2):
            action = agent.act(torch.rand(2, 1, 16, 16, dtype=torch.float64))
    action = torch.as_tensor(action)
    assert action.shape[0] == 2 and torch.isfinite(action).all() and action.abs().max() <= 2.0
