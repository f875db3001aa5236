"""The compute floor of planning: analytic FLOPs against torch's FLOP counter, the floor
arithmetic of ``experiments.bench_planning``, the matmul peak, and a readable figure."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from experiments.bench_planning import (
    figure,
    floor_fields,
    make_agent,
    step_flops,
    time_agent,
)
from experiments.pendulum_swingup import kvae_config
from worldmodels.agents.oracle import PendulumOracle, pendulum_reward
from worldmodels.agents.reward import RewardHead, RewardHeadConfig
from worldmodels.flops import linear_flops, matmul_peak_gflops
from worldmodels.kvae import KVAE
from worldmodels.kvae.flops import imagine_step_flops


def counted(fn, *args) -> int:
    with FlopCounterMode(display=False) as fc:
        fn(*args)
    return int(fc.get_total_flops())


def bias_column_flops(module: torch.nn.Module) -> int:
    """FLOPs per row that the fused rollouts spend on biases stored as a last weight column
    (multiplied by a ones row): ``2 * out`` per layer. The floor counts the model's own
    multiply-adds and leaves these out."""
    if isinstance(module, KVAE):
        rnn = getattr(module.dynamics, "rnn", None)  # the MLP alpha network keeps its biases
        return 2 * (4 * rnn.hidden_size + module.num_modes) if rnn is not None else 0
    return sum(2 * m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear))


def small_kvae(dynamics: str, use_controls: bool = True) -> KVAE:
    torch.manual_seed(0)
    cfg = kvae_config(dynamics=dynamics, use_controls=use_controls, dynamics_hidden=12, a_dim=2, z_dim=5,
                      num_modes=3)
    return KVAE(cfg).eval()


@pytest.mark.parametrize("dynamics,use_controls", [("lstm", True), ("mlp", True), ("lstm", False)])
def test_imagine_step_flops_equal_the_counted_fused_rollout(dynamics, use_controls, one_thread):
    model = small_kvae(dynamics, use_controls)
    B, N, H = 2, 5, 4
    belief = model.observe(torch.rand(B, 3, 1, 16, 16), torch.rand(B, 3, 1))
    actions = torch.rand(B, N, H, 1)
    fast = model.fast_mean_imagine()
    per_step = imagine_step_flops(model).total + bias_column_flops(model)
    assert counted(fast.imagine_features_first, belief, actions) == B * N * H * per_step
    step = imagine_step_flops(model)
    assert step.alpha > 0 and step.mixing > 0
    # the alpha network is the only part that depends on the hidden width
    wider = KVAE(kvae_config(dynamics=dynamics, use_controls=use_controls, dynamics_hidden=24, a_dim=2,
                             z_dim=5, num_modes=3))
    assert imagine_step_flops(wider).mixing == step.mixing
    assert imagine_step_flops(wider).alpha > step.alpha


def test_imagine_step_flops_refuse_a_model_without_dynamics():
    model = KVAE(kvae_config(prior="gaussian"))
    with pytest.raises(ValueError, match="prior"):
        imagine_step_flops(model)


def test_reward_head_flops_equal_the_counted_rollout_and_forward(one_thread):
    D, A, H, R = 9, 1, 4, 7
    head = RewardHead(RewardHeadConfig(latent_dim=D, action_dim=A, hidden=(16, 8))).eval()
    per_step = linear_flops(head)
    latents, actions, start = torch.rand(H, D, R), torch.rand(H, A, R), torch.rand(D, R)
    assert counted(head.rollout_rewards, start, latents, actions) == H * R * (per_step + bias_column_flops(head))
    with torch.no_grad():
        assert counted(head, torch.rand(R, D), torch.rand(R, A), torch.rand(R, D)) == R * per_step


def test_step_flops_only_for_a_kvae_and_a_reward_module():
    model = small_kvae("lstm")
    head = RewardHead(RewardHeadConfig(latent_dim=model.latent_dim, action_dim=1))
    flops = step_flops(model, head)
    assert flops == {"model": imagine_step_flops(model).total, "reward": linear_flops(head)}
    assert step_flops(model, pendulum_reward) is None
    assert step_flops(PendulumOracle(), head) is None


def kvae_head_frames():
    """A small LSTM-alpha KVAE, a reward head on its latents, and a seeded source of random
    frames ``frames(n) -> [n, 1, 16, 16]``."""
    model = small_kvae("lstm")
    head = RewardHead(RewardHeadConfig(latent_dim=model.latent_dim, action_dim=1)).eval()
    gen = torch.Generator().manual_seed(0)

    def frames(n):
        return torch.rand(n, 1, 16, 16, generator=gen)

    return model, head, frames


@pytest.mark.parametrize("num_envs", [1, 3])
def test_floor_flops_equal_the_counted_flops_of_a_decision(num_envs, one_thread):
    """The bench's FLOPs of a decision (imagined steps x per-step FLOPs + the filter) are what
    torch counts when the agent decides, and the imagined steps are candidates x iterations x horizon."""
    model, head, frames = kvae_head_frames()
    with torch.no_grad():
        calls = []
        row = time_agent(model, head, "cem_fast", num_envs, frames, repeats=2, context=3, device="cpu",
                         between=lambda: calls.append(len(calls)) or float(len(calls)))
        assert row["between_all"] == [1.0, 2.0, 3.0]  # before the first and after each timed decision
        assert row["latent_steps_per_decision"] == num_envs * row["population"] * row["iterations"] * row["horizon"]
        floor = floor_fields(row, step_flops(model, head), peak_gflops=1.0)
        agent = make_agent(model, head, "cem_fast", num_envs, frames, context=3, device="cpu")
        decision = counted(agent.act, frames(num_envs))
    bias_columns = row["latent_steps_per_decision"] * (bias_column_flops(model) + bias_column_flops(head))
    assert decision == pytest.approx(num_envs * floor["flops_per_env_decision"]["total"] + bias_columns, rel=1e-12)
    assert floor["flops_per_env_decision"]["observe"] > 0


def test_floor_scales_with_the_peak_and_the_measured_time():
    row = {"num_envs": 4, "latent_steps_per_decision": 48_000, "observe_flops_per_decision": 10_000,
           "seconds_per_decision_median": 0.3, "seconds_per_decision_min": 0.2}
    flops = {"model": 20_000, "reward": 10_000}
    a = floor_fields(row, flops, peak_gflops=50.0)
    b = floor_fields(row, flops, peak_gflops=100.0)
    assert b["floor_seconds_per_decision"] == pytest.approx(a["floor_seconds_per_decision"] / 2)
    assert b["time_vs_floor"] == pytest.approx(2 * a["time_vs_floor"])
    assert a["best_time_vs_floor"] == pytest.approx(a["time_vs_floor"] * 0.2 / 0.3)
    # ratio to the floor = floor throughput / measured throughput (4 envs per decision)
    assert a["time_vs_floor"] == pytest.approx(a["floor_decisions_per_s"] / (4 / 0.3))
    per_env = a["flops_per_env_decision"]
    assert per_env["total"] == pytest.approx(per_env["plan"] + per_env["observe"])
    assert per_env["plan"] * 4 == 48_000 * 30_000


def test_matmul_peak_is_a_plausible_rate(one_thread):
    peak = matmul_peak_gflops(64, 32, 256, repeats=2, min_seconds=0.002)
    assert math.isfinite(peak) and 0.05 < peak < 1e5  # GFLOP/s of one CPU thread
    with pytest.raises(ValueError, match="m, k, n"):
        matmul_peak_gflops(0, 4, 4)


def _rows() -> list[dict]:
    rows = []
    for preset, n, fused in itertools.product(("planet", "icem", "cem_fast"), (1, 16), (True, False)):
        split = {"observe_s": 0.01, "model_s": 0.05, "reward_s": 0.04, "planner_s": 0.01}
        rows.append({"model": "kvae", "preset": preset, "num_envs": n, "fused": fused, "split_s": split,
                     "decisions_per_s": n / 0.11,
                     "floor": {"floor_seconds_per_decision": 0.02, "floor_decisions_per_s": n / 0.02},
                     **({"op_breakdown_s": {"wall": 0.12, "matmul": 0.05, "elementwise": 0.04, "views": 0.01,
                                            "other": 0.02}} if fused else {})})
        if fused:
            rows.append({"model": "oracle", "preset": preset, "num_envs": n, "fused": True,
                         "split_s": split, "decisions_per_s": n / 0.01})
    return rows


@pytest.mark.parametrize("profiled", [True, False])
def test_figure_labels_do_not_overlap(profiled):
    import matplotlib.pyplot as plt

    rows = _rows() if profiled else [{k: v for k, v in r.items() if k != "op_breakdown_s"} for r in _rows()]
    fig = figure(rows)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        labels = [t for t in fig.axes[0].get_yticklabels() if t.get_text()]
        assert len(labels) == 12 and len({t.get_text() for t in labels}) == 12
        boxes = [t.get_window_extent(renderer) for t in labels]
        for p, q in itertools.combinations(boxes, 2):
            assert not p.overlaps(q), "tick labels overlap"
        for ax in fig.axes:  # no tick label of either axis runs into another one
            for axis in (ax.xaxis, ax.yaxis):
                ticks = [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_visible()
                         and t.get_text()]
                assert not any(p.overlaps(q) for p, q in itertools.combinations(ticks, 2))
        assert len(fig.axes) == (3 if profiled else 2)
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
        for left, right in zip(boxes[:-1], boxes[1:]):
            assert left.x1 <= right.x0, "neighbouring panels overlap"
    finally:
        plt.close(fig)


def test_profiled_row_splits_a_decision_and_relates_its_matmuls_to_the_floor(one_thread):
    model, head, frames = kvae_head_frames()
    with torch.no_grad():
        row = time_agent(model, head, "cem_fast", 1, frames, repeats=1, context=3, device="cpu", breakdown=True)
    b = row["op_breakdown_s"]
    assert b["matmul"] > 0 and b["elementwise"] > 0 and b["wall"] >= b["matmul"] + b["elementwise"]
    floor = floor_fields(row, step_flops(model, head), peak_gflops=100.0)
    assert floor["profiled_matmul_time_vs_floor"] == pytest.approx(b["matmul"] / floor["floor_seconds_per_decision"])
    assert "op_breakdown_s" not in time_agent(model, head, "cem_fast", 1, frames, repeats=1, context=3, device="cpu")
