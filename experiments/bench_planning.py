"""Planning speed: decisions per second of the latent MPC agent on the KVAE pendulum model,
and how far it is from the compute floor measured in the same run.

Measures, for the PlaNet preset (H=12, J=1000, K=100, I=10) and cheaper presets:
decisions/s for one environment and for 16 environments planned at once, latent steps/s, and
how the time of one decision splits into filtering (``observe``), the model's ``imagine``,
the reward head and the planner's own work (sampling, top-k, refits). The oracle (true
pendulum dynamics, same planner) is measured in the same run as a baseline.

Compute floor: the FLOPs of one decision are the imagined steps (candidates x iterations x
horizon) times the analytic FLOPs of a step of the model's imagination and of the reward head
(``worldmodels.kvae.flops``, ``worldmodels.flops``), plus the filter's ``observe`` on the context,
counted with ``torch.utils.flop_counter`` and reported separately. The matmul peak is measured
in the same run, before and between each row's timed decisions (the best timing is kept), on the
GEMM that dominates planning (``[4 * hidden, hidden] x [hidden, J * envs]``, the alpha LSTM's
gate product) at the thread count used. Floor seconds = FLOPs / peak; each row reports its
median time as a multiple of the floor. The machine's load average at the start and end of the
run is recorded: other work on the machine slows the timed decisions more than the best-of
peak, so a loaded machine overstates the ratio to the floor.

Where the time goes (CPU): one more decision of each fused KVAE row runs under the profiler,
and its time is split into matmuls, elementwise work and reductions, tensor views, and the rest
(Python and dispatch) (``worldmodels.profiling``); ``profiled_matmul_time_vs_floor`` is the
matmuls' own time over the floor, i.e. how close the GEMMs alone come to the peak.

    python -m experiments.bench_planning [--checkpoint runs/pendulum_swingup/kvae] [--device cuda]

Without ``--checkpoint`` an untrained KVAE of the pendulum experiment's size is timed (speed
does not depend on the weights). Writes ``experiments/results/bench_planning.json`` and
``bench_planning.png``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from experiments._results import output_dir, save_results
from worldmodels.agents.mpc import MPCAgent, MPCConfig
from worldmodels.agents.oracle import PendulumOracle, pendulum_reward
from worldmodels.agents.planners import PRESETS, make_planner
from worldmodels.agents.reward import RewardHead, RewardHeadConfig
from worldmodels.atomic_io import atomic_path
from worldmodels.flops import linear_flops, matmul_peak_gflops
from worldmodels.kvae import KVAE
from worldmodels.kvae.flops import imagine_step_flops
from worldmodels.profiling import op_time_breakdown


def pendulum_kvae(device, dynamics: str = "lstm"):
    from experiments.pendulum_swingup import kvae_config

    return KVAE(kvae_config(dynamics=dynamics)).to(device).eval()


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def make_agent(model, reward_fn, preset: str, num_envs: int, obs_fn, context: int, device,
               fused: bool = True) -> MPCAgent:
    """An MPC agent with ``preset``'s planner whose context window is full but for the next
    observation (``context - 1`` observations of ``obs_fn(num_envs)`` pushed, nothing planned)."""
    planner = make_planner(preset, -2.0, 2.0)
    agent = MPCAgent(model, planner, reward_fn, MPCConfig(context=context, warm_start=True, fused=fused),
                     num_envs=num_envs, obs_to_tensor=lambda o: torch.as_tensor(o), device=device)
    for _ in range(context - 1):
        agent._push(torch.as_tensor(obs_fn(num_envs)))
    return agent


def observe_flops(agent: MPCAgent) -> int:
    """Matmul FLOPs of the agent's filter over its current context (``agent.belief()``, all
    environments), counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        agent.belief()
    return int(fc.get_total_flops())


def time_agent(model, reward_fn, preset: str, num_envs: int, obs_fn, repeats: int, context: int,
               device, fused: bool = True, between: Callable[[], float] | None = None,
               breakdown: bool = False) -> dict:
    """Median seconds per decision (one ``act`` for all ``num_envs``) and its split, over
    ``repeats`` decisions after a warm-up; also the imagined latent steps of one decision and
    the FLOPs of its filter (``observe_flops``). ``between()``, if given, runs before the first
    and after every timed decision (untimed); its values are returned as ``between_all``, so a
    reference measurement (the matmul peak) sees the same load as the decisions. With
    ``breakdown`` one more decision runs under the profiler (CPU only) and its time split by kind
    of operator is returned as ``op_breakdown_s`` (``worldmodels.profiling``)."""
    agent = make_agent(model, reward_fn, preset, num_envs, obs_fn, context, device, fused)
    n = num_envs
    agent.act(obs_fn(n))  # warm-up decision (not timed)
    times, splits = [], []
    probes = [between()] if between is not None else []
    for _ in range(repeats):
        agent.timer.reset()
        s0 = dict(agent.stats)
        _sync(device)
        t0 = time.perf_counter()
        agent.act(obs_fn(n))
        _sync(device)
        dt = time.perf_counter() - t0
        times.append(dt)
        obs_s = agent.stats["observe_s"] - s0["observe_s"]
        splits.append({"observe_s": obs_s, "model_s": agent.timer.model_s,
                       "reward_s": agent.timer.reward_s,
                       "planner_s": dt - obs_s - agent.timer.model_s - agent.timer.reward_s,
                       "latent_steps": agent.timer.latent_steps})
        if between is not None:
            probes.append(between())
    profiled = (op_time_breakdown(lambda: agent.act(obs_fn(n))).to_dict()
                if breakdown and torch.device(device).type == "cpu" else None)
    med = statistics.median(times)
    i = times.index(sorted(times)[len(times) // 2])
    cfg = agent.planner.config
    return {
        "preset": preset, "num_envs": n, "fused": fused, "horizon": cfg.horizon, "population": cfg.population,
        "iterations": cfg.iterations, "repeats": repeats, "seconds_per_decision_median": med,
        "seconds_per_decision_all": times, "seconds_per_decision_min": min(times),
        "decisions_per_s": n / med,
        "latent_steps_per_s": splits[i]["latent_steps"] / med,
        "latent_steps_per_decision": splits[i]["latent_steps"],
        "observe_flops_per_decision": observe_flops(agent),
        "split_s": {k: v for k, v in splits[i].items() if k != "latent_steps"},
        **({"between_all": probes} if between is not None else {}),
        **({"op_breakdown_s": profiled} if profiled is not None else {}),
    }


def step_flops(model, reward_fn) -> dict[str, int] | None:
    """Matmul FLOPs of one imagined step of one candidate: ``model`` (a KVAE's imagination) and
    ``reward`` (a reward head's MLP); None where no analytic count exists (other models, a reward
    that is not a module)."""
    if not isinstance(model, KVAE) or model.config.prior != "lgssm" or not isinstance(reward_fn, nn.Module):
        return None
    return {"model": imagine_step_flops(model).total, "reward": linear_flops(reward_fn)}


def peak_gemm(model, population: int, num_envs: int) -> tuple[int, int, int]:
    """``(m, k, n)`` of the GEMM that dominates planning: the alpha LSTM's gate product
    ``[4 * hidden, hidden] x [hidden, population * num_envs]`` in the features-first layout."""
    hidden = model.config.dynamics_hidden if isinstance(model, KVAE) else 64
    return 4 * hidden, hidden, population * num_envs


def floor_fields(row: dict, flops: dict[str, int], peak_gflops: float) -> dict[str, Any]:
    """The compute floor of a timed row (``time_agent``) given per-step ``flops``
    (``step_flops``) and a measured matmul peak in GFLOP/s.

    ``flops_per_env_decision``: ``plan`` (imagined steps x (model + reward)), ``observe`` (the
    filter) and ``total``, per environment; ``floor_seconds_per_decision`` is the whole
    decision's (all environments) ``total`` FLOPs over the peak; ``time_vs_floor`` the measured
    median time as a multiple of it, ``best_time_vs_floor`` the fastest decision's (the peak is a
    best-of timing too, so this one is the less sensitive to other load on the machine).
    """
    n = row["num_envs"]
    plan = row["latent_steps_per_decision"] * (flops["model"] + flops["reward"])
    observe = row["observe_flops_per_decision"]
    floor_s = (plan + observe) / (peak_gflops * 1e9)
    return {
        "flops_per_step": dict(flops),
        "flops_per_env_decision": {"plan": plan / n, "observe": observe / n, "total": (plan + observe) / n},
        "peak_gflops": peak_gflops,
        "floor_seconds_per_decision": floor_s,
        "floor_decisions_per_s": n / floor_s,
        "time_vs_floor": row["seconds_per_decision_median"] / floor_s,
        "best_time_vs_floor": row["seconds_per_decision_min"] / floor_s,
        **({"profiled_matmul_time_vs_floor": row["op_breakdown_s"]["matmul"] / floor_s}
           if "op_breakdown_s" in row else {}),
    }


def summarize(rows: list[dict], envs: int, device: torch.device) -> dict[str, Any]:
    """Headline figures of the PlaNet preset (fused path) at 1 and ``envs`` environments."""
    planet = {(r["model"], r["num_envs"]): r for r in rows if r["preset"] == "planet" and r["fused"]}
    if ("kvae", 1) not in planet or ("kvae", envs) not in planet:
        return {}
    k1, kn = planet[("kvae", 1)], planet[("kvae", envs)]
    summary: dict[str, Any] = {
        "planet_decisions_per_s_1env": k1["decisions_per_s"],
        f"planet_decisions_per_s_{envs}envs": kn["decisions_per_s"],
        "planet_oracle_decisions_per_s_1env": planet[("oracle", 1)]["decisions_per_s"],
        "planet_latent_steps_per_s_1env": k1["latent_steps_per_s"],
        f"planet_latent_steps_per_s_{envs}envs": kn["latent_steps_per_s"],
        "planet_batching_speedup": kn["decisions_per_s"] / k1["decisions_per_s"],
        "planet_kvae_vs_oracle_time_ratio_1env":
            planet[("oracle", 1)]["decisions_per_s"] / k1["decisions_per_s"],
        "planet_split_fraction_1env": {k: v / k1["seconds_per_decision_median"]
                                       for k, v in k1["split_s"].items()},
        "target_hz": 100 if device.type == "cuda" else 10,
    }
    summary["meets_target_1env"] = k1["decisions_per_s"] >= summary["target_hz"]
    if "floor" in k1 and "floor" in kn:
        for tag, r in (("1env", k1), (f"{envs}envs", kn)):
            f = r["floor"]
            summary[f"planet_flops_per_env_decision_{tag}"] = f["flops_per_env_decision"]["total"]
            summary[f"planet_peak_gflops_{tag}"] = f["peak_gflops"]
            summary[f"planet_floor_decisions_per_s_{tag}"] = f["floor_decisions_per_s"]
            summary[f"planet_time_vs_floor_{tag}"] = f["time_vs_floor"]
            summary[f"planet_best_time_vs_floor_{tag}"] = f["best_time_vs_floor"]
            if "op_breakdown_s" in r:
                b = r["op_breakdown_s"]
                summary[f"planet_profiled_fraction_{tag}"] = {
                    k: b[k] / b["wall"] for k in ("matmul", "elementwise", "views", "other")}
                summary[f"planet_profiled_matmul_time_vs_floor_{tag}"] = f["profiled_matmul_time_vs_floor"]
        summary["within_2x_of_floor_1env"] = k1["floor"]["time_vs_floor"] <= 2.0
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="trained KVAE (run folder or .pt)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--context", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--presets", nargs="+", default=["planet", "icem", "cem_fast"])
    p.add_argument("--dynamics", default="lstm", choices=["lstm", "mlp"],
                   help="alpha network of the untrained KVAE timed without --checkpoint")
    p.add_argument("--reference", action="store_true",
                   help="also time the unfused path (model.imagine + reward head) for comparison")
    p.add_argument("--notes", default="", help="free text recorded with the results (e.g. other load)")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--quick", action="store_true", help="the cem_fast preset, 2 envs, 1 repeat (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.presets, args.envs, args.repeats, args.reference = ["cem_fast"], 2, 1, False
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    torch.manual_seed(0)
    load_start = list(os.getloadavg())

    if args.checkpoint:
        from worldmodels.agents.commands.plan import load_world_model
        model = load_world_model(args.checkpoint, device=str(device))
    else:
        model = pendulum_kvae(device, args.dynamics)
    head_path = Path(args.checkpoint or "").parent / "reward_head.pt"
    if args.checkpoint and head_path.exists():
        head = RewardHead.load(head_path, device=device).eval()
    else:
        head = RewardHead(RewardHeadConfig(latent_dim=model.latent_dim,
                                           action_dim=model.action_dim)).to(device).eval()
    flops = step_flops(model, head)
    C, H, W = model.config.obs_shape
    gen = torch.Generator().manual_seed(0)

    def frames(n):
        return torch.rand(n, C, H, W, generator=gen).to(device)

    def states(n):
        th = torch.rand(n, generator=gen) * 6.28
        return torch.stack([th.cos(), th.sin(), torch.zeros(n)], -1).to(device)

    peak_kw = {"repeats": 1, "min_seconds": 0.005} if args.quick else {"repeats": 3, "min_seconds": 0.03}

    def timed(preset: str, n: int, fused: bool = True) -> dict:
        """A KVAE row with its floor: the matmul peak is the best of the GEMM timings taken
        before and between the row's decisions (``time_agent``'s ``between``)."""
        gemm = peak_gemm(model, PRESETS[preset][1].population, n)
        probe = (lambda: matmul_peak_gflops(*gemm, device=device, **peak_kw)) if flops is not None else None
        row = time_agent(model, head, preset, n, frames, args.repeats, args.context, device, fused, between=probe,
                         breakdown=fused)
        row["model"] = "kvae"
        if flops is not None:
            peaks = row.pop("between_all")
            row["floor"] = {**floor_fields(row, flops, max(peaks)), "peak_gemm_mkn": list(gemm),
                            "peak_gflops_all": peaks}
        return row

    oracle = PendulumOracle().to(device)
    rows = []
    with torch.no_grad():
        for preset in args.presets:
            for n in (1, args.envs):
                r = timed(preset, n)
                rows.append(r)
                if args.reference:
                    ref = timed(preset, n, fused=False)
                    rows.append(ref)
                    print(f"{preset:9s} envs={n:3d}  kvae unfused reference {ref['decisions_per_s']:8.2f} dec/s",
                          flush=True)
                o = time_agent(oracle, pendulum_reward, preset, n, states, args.repeats, 1, device)
                o["model"] = "oracle"
                rows.append(o)
                floor = (f"  floor {r['floor']['floor_decisions_per_s']:8.2f} dec/s "
                         f"(x{r['floor']['time_vs_floor']:.2f}, best x{r['floor']['best_time_vs_floor']:.2f}, "
                         f"peak {r['floor']['peak_gflops']:.1f} GFLOP/s)"
                         if "floor" in r else "")
                print(f"{preset:9s} envs={n:3d}  kvae {r['decisions_per_s']:8.2f} dec/s "
                      f"({r['latent_steps_per_s']:.3g} latent steps/s){floor}   "
                      f"oracle {o['decisions_per_s']:8.2f} dec/s", flush=True)

    summary = summarize(rows, args.envs, device)
    environment = {"load_average_1_5_15min": {"start": load_start, "end": list(os.getloadavg())},
                   "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    config = {**vars(args), "device": str(device), "torch_threads": torch.get_num_threads(),
              "kvae_config": getattr(model, "config", None).__dict__ if hasattr(model, "config") else None,
              "presets": {k: PRESETS[k][1].__dict__ for k in args.presets}}
    out = save_results("bench_planning", config,
                       {"summary": summary, "environment": environment, "notes": args.notes, "rows": rows},
                       module="bench_planning", args=argv,
                       seed=0, out_dir=output_dir(args.out_dir, args.quick))
    plot(rows, Path(out).with_suffix(".png"))
    print(f"wrote {out}")
    return 0


def _label(r: dict) -> str:
    return f"{r['preset']} {r['num_envs']} env{'' if r['num_envs'] == 1 else 's'}{'' if r['fused'] else ' (ref)'}"


def figure(rows: list[dict]):
    """The results figure, one horizontal bar per KVAE row (labels stacked, never overlapping):
    the time split of one decision per environment with the compute floor marked, decisions/s
    of the KVAE, its floor and the oracle (log scale), and (rows with ``op_breakdown_s``) the
    profiled split into matmuls, elementwise work, views and the rest."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kv = [r for r in rows if r["model"] == "kvae"]
    oracle = {(r["preset"], r["num_envs"]): r for r in rows if r["model"] == "oracle"}
    y = np.arange(len(kv))
    profiled = any("op_breakdown_s" in r for r in kv)
    legend_kw = {"fontsize": 8, "loc": "upper center", "bbox_to_anchor": (0.5, -0.22 if len(kv) > 4 else -0.45),
                 "ncol": 3, "frameon": False}  # below each panel, clear of the bars
    fig, ax = plt.subplots(1, 3 if profiled else 2, figsize=(16 if profiled else 11, 2.4 + 0.42 * len(kv)),
                           sharey=True)
    left = np.zeros(len(kv))
    for part in ("observe_s", "model_s", "reward_s", "planner_s"):
        vals = np.array([r["split_s"][part] * 1e3 / r["num_envs"] for r in kv])
        ax[0].barh(y, vals, left=left, label=part[:-2])
        left += vals
    floors = [(i, r["floor"]["floor_seconds_per_decision"] * 1e3 / r["num_envs"])
              for i, r in enumerate(kv) if "floor" in r]
    if floors:
        fi, fv = zip(*floors)
        ax[0].scatter(fv, fi, marker="|", s=250, color="k", zorder=3, label="compute floor")
    ax[0].set_xlabel("ms per decision (per env)")
    ax[0].set_title("KVAE pendulum: time split")
    ax[0].legend(**legend_kw)
    h = 0.27
    ax[1].barh(y - h, [r["decisions_per_s"] for r in kv], h, label="KVAE")
    ax[1].barh(y, [r["floor"]["floor_decisions_per_s"] if "floor" in r else np.nan for r in kv], h,
               label="KVAE compute floor")
    ax[1].barh(y + h, [oracle[(r["preset"], r["num_envs"])]["decisions_per_s"]
                       if (r["preset"], r["num_envs"]) in oracle else np.nan for r in kv], h, label="oracle")
    ax[1].set_xlabel("env-decisions / s (all envs together)")
    ax[1].set_xscale("log")
    ax[1].set_title("throughput")
    ax[1].legend(**legend_kw)
    if profiled:
        left = np.zeros(len(kv))
        for part in ("matmul", "elementwise", "views", "other"):
            vals = np.array([r["op_breakdown_s"][part] / r["op_breakdown_s"]["wall"] if "op_breakdown_s" in r
                             else np.nan for r in kv])
            ax[2].barh(y, vals, left=left, label=part)
            left += np.nan_to_num(vals)
        ax[2].set_xlim(0, 1)
        ax[2].set_xlabel("fraction of a profiled decision")
        ax[2].set_title("where the time goes (operators)")
        ax[2].legend(**legend_kw)
    ax[0].set_yticks(y)
    ax[0].set_yticklabels([_label(r) for r in kv], fontsize=9)
    ax[0].invert_yaxis()
    fig.tight_layout()
    return fig


def plot(rows: list[dict], path: Path) -> None:
    """``figure(rows)`` saved to ``path`` (PNG, written atomically)."""
    import matplotlib.pyplot as plt

    fig = figure(rows)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
