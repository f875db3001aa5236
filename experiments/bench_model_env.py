"""Model-environment speed: imagined env-steps per second of ``ModelVectorEnv`` on the pendulum KVAE.

Measures, for episode lengths 10 and 200, 1, 16 and 256 sub-environments and the latent and
pixel observation modes, the imagined env-steps per second (reset plus a full episode, reward
head included) and the cost of single steps early and late in the episode (steps 1-10 and
191-200), with the model's stepwise protocol (``KVAE.step``). The previous path, re-imagining
the whole action history at every step, is timed in the same run (latent mode) as the baseline.

    python -m experiments.bench_model_env [--quick] [--threads 2] [--device cpu]

The model is the ``configs/kvae_pendulum.yaml`` model with untrained weights (speed does not
depend on the weights), the reward an untrained ``RewardHead``. Writes
``experiments/results/bench_model_env.json`` and ``bench_model_env.png``.

On a CPU shared with other jobs, run it with ``OMP_WAIT_POLICY=PASSIVE``: OpenMP's worker
threads otherwise spin between the many tiny parallel regions of one step, and when the cores are
oversubscribed every region waits for a descheduled thread (milliseconds per matrix product).
The JSON records the policy and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from experiments._results import save_results
from worldmodels.agents.model_env import ModelVectorEnv
from worldmodels.agents.reward import RewardHead, RewardHeadConfig
from worldmodels.base import Belief, WorldModel

PRESET = "kvae_pendulum"
OBS_SHAPE, ACTION_DIM, MAX_TORQUE = (1, 16, 16), 1, 2.0  # the pendulum dataset's frames and torques


class ImagineOnly(WorldModel):
    """``model`` seen through the planner protocol only (no ``step``): the re-imagining baseline."""

    def __init__(self, model: WorldModel):
        super().__init__()
        self.inner = model
        self.latent_dim, self.action_dim = model.latent_dim, model.action_dim

    def loss(self, batch):
        return self.inner.loss(batch)

    def observe(self, obs, actions, mask=None) -> Belief:
        return self.inner.observe(obs, actions, mask)

    def imagine(self, belief, actions, *, sample=False, generator=None) -> torch.Tensor:
        return self.inner.imagine(belief, actions, sample=sample, generator=generator)

    def decode(self, latents) -> torch.Tensor:
        return self.inner.decode(latents)


def pendulum_model(device: torch.device) -> WorldModel:
    """The preset's KVAE, untrained, in eval mode on ``device``."""
    from worldmodels.agents.commands import build_model, load_config

    cfg = load_config(PRESET)
    return build_model(cfg["model"], OBS_SHAPE, ACTION_DIM).to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_episodes(env: ModelVectorEnv, length: int, repeats: int, seed: int = 0) -> dict:
    """Seconds per episode (reset + ``length`` steps, median over ``repeats``) and the seconds of
    every step of the last episode (for the per-step cost against the step index)."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-MAX_TORQUE, MAX_TORQUE, (length, env.num_envs, ACTION_DIM)).astype(np.float32)
    device = env.device
    episode_s, step_s = [], np.zeros((repeats, length))
    for r in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        env.reset(seed=seed + r)
        for t in range(length):
            s0 = time.perf_counter()
            env.step(actions[t])
            _sync(device)
            step_s[r, t] = time.perf_counter() - s0
        episode_s.append(time.perf_counter() - t0)
    return {"episode_s": episode_s, "step_s": step_s}


def step_cost(step_s: np.ndarray, last: int, window: int = 10) -> float:
    """Median seconds of steps ``last - window + 1 .. last`` (1-based) over all episodes: on a
    shared CPU single steps vary several-fold, so the window pools ``window x episodes`` steps."""
    return float(np.median(step_s[:, last - window:last]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few seconds: 1 and 16 envs, short episodes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    p.add_argument("--repeats", type=int, default=5, help="episodes timed per setting (stepwise path)")
    p.add_argument("--contexts", type=int, default=64, help="random starting contexts")
    p.add_argument("--busy-note", default="", help="a note on the machine's load, stored in the JSON")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--name", default="bench_model_env", help="JSON/PNG file name")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    torch.manual_seed(0)
    lengths = (10, 40) if args.quick else (10, 200)
    envs = (1, 16) if args.quick else (1, 16, 256)
    repeats = 1 if args.quick else args.repeats

    model = pendulum_model(device)
    head = RewardHead(RewardHeadConfig(latent_dim=model.latent_dim, action_dim=ACTION_DIM)).to(device).eval()
    g = torch.Generator().manual_seed(0)
    context = 3
    contexts = {"obs": torch.rand(args.contexts, context, *OBS_SHAPE, generator=g),
                "actions": (torch.rand(args.contexts, context, ACTION_DIM, generator=g) * 2 - 1) * MAX_TORQUE}
    action_space = spaces.Box(-MAX_TORQUE, MAX_TORQUE, (ACTION_DIM,), np.float32)

    rows, traces = [], {}
    for path, m in (("step", model), ("reimagine", ImagineOnly(model))):
        for mode in ("latent", "pixels"):
            if path == "reimagine" and mode == "pixels":
                continue  # decoding costs the same on both paths
            for n in envs:
                for L in lengths:
                    env = ModelVectorEnv(m, head, contexts, action_space, num_envs=n, episode_length=L,
                                         obs_mode=mode, device=device)
                    time_episodes(env, min(L, 3), 1)  # warm-up (not timed)
                    reps = repeats if path == "step" or L <= 10 else 1
                    res = time_episodes(env, L, reps)
                    ep = statistics.median(res["episode_s"])
                    row = {"path": path, "obs_mode": mode, "num_envs": n, "episode_length": L,
                           "repeats": reps, "seconds_per_episode_median": ep,
                           "seconds_per_episode_all": res["episode_s"],
                           "env_steps_per_s": n * L / ep,
                           "step_s_first": step_cost(res["step_s"], 10)}
                    if L == lengths[-1]:
                        row["step_s_last"] = step_cost(res["step_s"], L)
                        row["last_over_first"] = row["step_s_last"] / row["step_s_first"]
                        traces[f"{path}/{mode}/{n}"] = np.median(res["step_s"], 0).tolist()
                    rows.append(row)
                    extra = f"  step {L}/step 10 = {row['last_over_first']:.2f}" if "last_over_first" in row else ""
                    print(f"{path:9s} {mode:6s} envs={n:3d} L={L:3d}: {row['env_steps_per_s']:10.0f} "
                          f"env-steps/s{extra}", flush=True)

    def find(path, mode, n, L):
        key = (path, mode, n, L)
        return next(r for r in rows if (r["path"], r["obs_mode"], r["num_envs"], r["episode_length"]) == key)

    n_max, L_max = envs[-1], lengths[-1]
    new, old = find("step", "latent", n_max, L_max), find("reimagine", "latent", n_max, L_max)
    summary = {
        "num_envs": n_max, "episode_length": L_max,
        "latent_env_steps_per_s": new["env_steps_per_s"],
        "latent_env_steps_per_s_shortest_episode": find("step", "latent", n_max, lengths[0])["env_steps_per_s"],
        "pixels_env_steps_per_s": find("step", "pixels", n_max, L_max)["env_steps_per_s"],
        "step_last_over_first": new["last_over_first"],
        "reimagine_latent_env_steps_per_s": old["env_steps_per_s"],
        "reimagine_step_last_over_first": old["last_over_first"],
        "speedup_over_reimagine": new["env_steps_per_s"] / old["env_steps_per_s"],
        "target_env_steps_per_s": 20000, "target_last_over_first": 1.2,
    }
    summary["meets_targets"] = bool(summary["latent_env_steps_per_s"] >= 20000
                                    and summary["step_last_over_first"] <= 1.2)
    config = {"model_preset": f"configs/{PRESET}.yaml", "weights": "untrained (speed does not depend on them)",
              "reward": "untrained RewardHead (default config)", "obs_shape": list(OBS_SHAPE),
              "kvae_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(model.config).items()},
              "quick": args.quick, "device": str(device), "torch_threads": torch.get_num_threads(),
              "repeats": repeats, "episode_lengths": list(lengths), "num_envs": list(envs),
              "contexts": args.contexts, "context_frames": context, "machine_note": args.busy_note,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "load_average_1_5_15_min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    out = save_results(args.name, config, {"summary": summary, "rows": rows, "step_s_traces": traces},
                       module="bench_model_env", args=argv, seed=0, out_dir=args.out_dir)
    plot(rows, traces, Path(out).with_suffix(".png"))
    print(f"wrote {out}")
    return 0


def plot(rows: list[dict], traces: dict[str, list[float]], path: Path) -> None:
    """Env-steps/s against the number of envs, and the seconds per step against the step index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    keys = sorted({(r["path"], r["obs_mode"], r["episode_length"]) for r in rows})
    for path_, mode, L in keys:
        sel = sorted((r for r in rows if (r["path"], r["obs_mode"], r["episode_length"]) == (path_, mode, L)),
                     key=lambda r: r["num_envs"])
        ax0.plot([r["num_envs"] for r in sel], [r["env_steps_per_s"] for r in sel], marker="o",
                 linestyle="-" if path_ == "step" else "--", label=f"{path_}, {mode}, episode {L}")
    ax0.axhline(20000, color="grey", linewidth=0.8, linestyle=":", label="target 20,000/s")
    ax0.set(xscale="log", yscale="log", xlabel="sub-environments", ylabel="imagined env-steps / s",
            title="ModelVectorEnv throughput")
    ax0.legend(fontsize=7)
    for key, trace in sorted(traces.items()):
        if key.split("/")[1] == "latent":
            ax1.plot(np.arange(1, len(trace) + 1), np.asarray(trace) * 1e3, label=key)
    ax1.set(yscale="log", xlabel="step index in the episode", ylabel="ms per step (median)",
            title="cost of a step against the episode length (latent)")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
