"""Planning speed: decisions per second of the latent MPC agent on the KVAE pendulum model.

Measures, for the PlaNet preset (H=12, J=1000, K=100, I=10) and cheaper presets:
decisions/s for one environment and for 16 environments planned at once, latent steps/s, and
how the time of one decision splits into filtering (``observe``), the model's ``imagine``,
the reward head and the planner's own work (sampling, top-k, refits). The oracle (true
pendulum dynamics, same planner) is measured in the same run as a baseline.

    python -m experiments.bench_planning [--checkpoint runs/pendulum_swingup/kvae] [--device cuda]

Without ``--checkpoint`` an untrained KVAE of the pendulum experiment's size is timed (speed
does not depend on the weights). Writes ``experiments/results/bench_planning.json`` and
``bench_planning.png``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from experiments._results import output_dir, save_results
from worldmodels.agents.mpc import MPCAgent, MPCConfig
from worldmodels.agents.oracle import PendulumOracle, pendulum_reward
from worldmodels.agents.planners import PRESETS, make_planner
from worldmodels.agents.reward import RewardHead, RewardHeadConfig


def pendulum_kvae(device, dynamics: str = "lstm"):
    from experiments.pendulum_swingup import kvae_config
    from worldmodels.kvae import KVAE

    return KVAE(kvae_config(dynamics=dynamics)).to(device).eval()


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_agent(model, reward_fn, preset: str, num_envs: int, obs_fn, repeats: int, context: int,
               device, fused: bool = True) -> dict:
    """Median seconds per decision and its split, over ``repeats`` decisions after a warm-up."""
    planner = make_planner(preset, -2.0, 2.0)
    agent = MPCAgent(model, planner, reward_fn, MPCConfig(context=context, warm_start=True, fused=fused),
                     num_envs=num_envs, obs_to_tensor=lambda o: torch.as_tensor(o), device=device)
    n = num_envs
    for _ in range(context - 1):  # fill the context window without planning
        agent._push(torch.as_tensor(obs_fn(n)))
    agent.act(obs_fn(n))  # warm-up decision (not timed)
    times, splits = [], []
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
    med = statistics.median(times)
    i = times.index(sorted(times)[len(times) // 2])
    cfg = planner.config
    return {
        "preset": preset, "num_envs": n, "fused": fused, "horizon": cfg.horizon, "population": cfg.population,
        "iterations": cfg.iterations, "repeats": repeats, "seconds_per_decision_median": med,
        "seconds_per_decision_all": times, "decisions_per_s": n / med,
        "latent_steps_per_s": splits[i]["latent_steps"] / med,
        "split_s": {k: v for k, v in splits[i].items() if k != "latent_steps"},
    }


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
    C, H, W = model.config.obs_shape
    gen = torch.Generator().manual_seed(0)

    def frames(n):
        return torch.rand(n, C, H, W, generator=gen).to(device)

    def states(n):
        th = torch.rand(n, generator=gen) * 6.28
        return torch.stack([th.cos(), th.sin(), torch.zeros(n)], -1).to(device)

    oracle = PendulumOracle().to(device)
    rows = []
    with torch.no_grad():
        for preset in args.presets:
            for n in (1, args.envs):
                r = time_agent(model, head, preset, n, frames, args.repeats, args.context, device)
                r["model"] = "kvae"
                rows.append(r)
                if args.reference:
                    ref = time_agent(model, head, preset, n, frames, args.repeats, args.context,
                                     device, fused=False)
                    ref["model"] = "kvae"
                    rows.append(ref)
                    print(f"{preset:9s} envs={n:3d}  kvae unfused reference {ref['decisions_per_s']:8.2f} dec/s",
                          flush=True)
                o = time_agent(oracle, pendulum_reward, preset, n, states, args.repeats, 1, device)
                o["model"] = "oracle"
                rows.append(o)
                print(f"{preset:9s} envs={n:3d}  kvae {r['decisions_per_s']:8.2f} dec/s "
                      f"({r['latent_steps_per_s']:.3g} latent steps/s)   oracle {o['decisions_per_s']:8.2f} dec/s",
                      flush=True)

    planet = {(r["model"], r["num_envs"]): r for r in rows if r["preset"] == "planet" and r["fused"]}
    summary = {}
    if planet:
        k1, k16 = planet[("kvae", 1)], planet[("kvae", args.envs)]
        summary = {
            "planet_decisions_per_s_1env": k1["decisions_per_s"],
            f"planet_decisions_per_s_{args.envs}envs": k16["decisions_per_s"],
            "planet_latent_steps_per_s_1env": k1["latent_steps_per_s"],
            f"planet_latent_steps_per_s_{args.envs}envs": k16["latent_steps_per_s"],
            "planet_batching_speedup": k16["decisions_per_s"] / k1["decisions_per_s"],
            "planet_kvae_vs_oracle_time_ratio_1env":
                planet[("oracle", 1)]["decisions_per_s"] / k1["decisions_per_s"],
            "planet_split_fraction_1env": {k: v / k1["seconds_per_decision_median"]
                                           for k, v in k1["split_s"].items()},
            "target_hz": 100 if device.type == "cuda" else 10,
        }
        summary["meets_target_1env"] = k1["decisions_per_s"] >= summary["target_hz"]
    config = {**vars(args), "device": str(device), "torch_threads": torch.get_num_threads(),
              "kvae_config": getattr(model, "config", None).__dict__ if hasattr(model, "config") else None,
              "presets": {k: PRESETS[k][1].__dict__ for k in args.presets}}
    out = save_results("bench_planning", config, {"summary": summary, "rows": rows},
                       module="bench_planning", args=argv,
                       seed=0, out_dir=output_dir(args.out_dir, args.quick))
    plot(rows, Path(out).with_suffix(".png"))
    print(f"wrote {out}")
    return 0


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kv = [r for r in rows if r["model"] == "kvae"]
    labels = [f"{r['preset']}\n{r['num_envs']} env{'' if r['fused'] else ' (ref)'}" for r in kv]
    parts = ["observe_s", "model_s", "reward_s", "planner_s"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    bottom = np.zeros(len(kv))
    for part in parts:
        vals = np.array([r["split_s"][part] * 1e3 / r["num_envs"] for r in kv])
        ax[0].bar(labels, vals, bottom=bottom, label=part[:-2])
        bottom += vals
    ax[0].set_ylabel("ms per decision (per env)")
    ax[0].set_title("KVAE pendulum: time split")
    ax[0].legend()
    ax[1].bar(labels, [r["decisions_per_s"] for r in kv], label="KVAE")
    ax[1].set_ylabel("decisions / s")
    ax[1].set_yscale("log")
    ax[1].set_title("throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
