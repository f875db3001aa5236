"""Bouncing ball to a target with the KVAE and force control, vs an oracle and random forces.

The ball (``worldmodels/BouncingBall-v0``, 32x32 binary frames, 2-d force in [-1, 1]^2) must
be brought to the scene centre. Policies, all run batched from the same seeds:

* random: uniform random forces;
* oracle: the planner on the true state with a torch re-implementation of the ball physics
  (``worldmodels.agents.oracle.BallOracle``) and the env's reward;
* latent: MPC in the KVAE's latent space with a reward head trained on the dataset rewards
  (``bouncing_ball_forces`` data, ``bouncing_ball_forces_small`` with ``--quick``).

Metric: final distance to the target (px), mean over episodes, and the mean distance over the
last 10 steps.

    python -m experiments.ball_to_target [--quick] [--skip-latent]

Writes ``experiments/results/ball_to_target.json`` (+ ``.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from experiments.pendulum_swingup import prepare_latent_agent

ENV_ID = "worldmodels/BouncingBall-v0"
TARGET = (16.0, 16.0)


def kvae_config(**overrides):
    """The KVAE of the ball experiments (32x32 binary frames), with 2-d force controls."""
    from worldmodels.kvae import KVAEConfig

    cfg = dict(obs_shape=(1, 32, 32), action_dim=2, a_dim=2, z_dim=4, num_modes=3,
               likelihood="bernoulli", use_controls=True, dynamics="lstm")
    cfg.update(overrides)
    return KVAEConfig(**cfg)


def run_policy(name, make_policy, episodes, steps, seed, progress):
    from worldmodels.agents.rl_loop import make_vector_env, rollout

    venv = make_vector_env(ENV_ID, episodes, max_episode_steps=steps + 1)
    policy, reset_fn = make_policy(episodes)
    t0 = time.time()
    with torch.no_grad():
        out = rollout(venv, policy, steps, seed=[seed + i for i in range(episodes)], reset_fn=reset_fn,
                      progress=progress, desc=name)
    out["seconds"] = time.time() - t0
    pos = np.concatenate([out["states"][:, :, :2], out["final_state"][:, None, :2]], 1)
    out["distance"] = np.linalg.norm(pos - np.asarray(TARGET), axis=-1)  # [n, steps + 1]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/ball_to_target")
    p.add_argument("--data", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--train-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--reward-steps", type=int, default=3000)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--planner", default="cem_fast")
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--context", type=int, default=20, help="frames filtered per decision (6: 6.4 px, 20: 2.5 px)")
    p.add_argument("--skip-latent", action="store_true")
    p.add_argument("--seed", type=int, default=2000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:  # a smoke run: a few updates, 2 short episodes
        args.train_steps, args.reward_steps, args.episodes, args.steps, args.horizon, args.context = 3, 3, 2, 4, 3, 2
        args.batch_size = 8
        if args.run_dir == "runs/ball_to_target":
            args.run_dir = "runs/ball_to_target_quick"
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)

    from worldmodels.agents.mpc import MPCAgent, MPCConfig
    from worldmodels.agents.oracle import BallOracle, TargetDistanceReward
    from worldmodels.agents.planners import make_planner

    def planner():
        return make_planner(args.planner, -1.0, 1.0, action_dim=2, horizon=args.horizon)

    rng = np.random.default_rng(args.seed)
    runs = {}
    def random_forces(n):
        return (lambda o, i: rng.uniform(-1, 1, (n, 2)).astype(np.float32)), None

    runs["random"] = run_policy("random", random_forces, args.episodes, args.steps, args.seed, progress)

    def oracle(n):
        agent = MPCAgent(BallOracle().to(device), planner(), TargetDistanceReward(TARGET),
                         MPCConfig(context=1, seed=args.seed), num_envs=n, device=device)
        return (lambda o, i: agent.act(i["state"])), agent.reset

    runs["oracle"] = run_policy("oracle", oracle, args.episodes, args.steps, args.seed, progress)
    info = {}
    if not args.skip_latent:
        model, head, info = prepare_latent_agent(
            args, run, device, progress, preset="bouncing_ball_forces_small" if args.quick else "bouncing_ball_forces",
            config_fn=kvae_config, train_steps=(1500, 20000))
        holder = {}

        def latent(n):
            agent = MPCAgent(model, planner(), head, MPCConfig(context=args.context, seed=args.seed, record=True),
                             num_envs=n, device=device)
            holder["agent"] = agent
            return (lambda o, i: agent.act(o)), agent.reset

        runs["latent"] = run_policy("latent", latent, args.episodes, args.steps, args.seed, progress)
        try:
            holder["agent"].imagination_video(run / "imagination.mp4", horizon=6, scale=4)
        except Exception as e:
            print(f"video failed: {e}", file=sys.stderr)

    results = {}
    for name, r in runs.items():
        d = r["distance"]
        results[name] = {"final_distance_px_mean": float(d[:, -1].mean()),
                         "final_distance_px_std": float(d[:, -1].std()),
                         "last10_distance_px_mean": float(d[:, -10:].mean()),
                         "mean_return": float(r["returns"].mean()),
                         "seconds": r["seconds"]}
    if "latent" in results:
        R = {k: results[k]["last10_distance_px_mean"] for k in results}
        results["normalised_score_last10"] = (R["random"] - R["latent"]) / (R["random"] - R["oracle"])
    results.update(info)
    from experiments._results import output_dir, save_results

    out = save_results("ball_to_target", vars(args), results, module="ball_to_target", args=argv,
                       seed=args.seed, out_dir=output_dir(args.out_dir, args.quick))
    plot(runs, out.with_suffix(".png"))
    print(json.dumps(results, indent=1, default=str))
    print(f"wrote {out}")
    return 0


def plot(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        m, s = r["distance"].mean(0), r["distance"].std(0)
        ax.plot(m, label=name)
        ax.fill_between(np.arange(len(m)), m - s, m + s, alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel("distance to target (px)")
    ax.set_title("ball to target")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
