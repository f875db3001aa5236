"""Image-navigation goal reaching with GTM-SM's spatial memory, vs a random walk and an oracle.

Each episode (``worldmodels/ImageNavigation-v0``, 8x8 RGB views of a 32x32 world, 9x9
positions, 5 discrete actions): an exploration phase of ``--explore`` random-walk steps, then a
goal phase of ``--budget`` steps to reach the place whose view equals the goal crop (a place
seen during exploration, at least ``--min-distance`` moves from where exploration ended).
Success = standing on the goal within the budget. Policies in the goal phase:

* random walk (uniform actions);
* oracle: categorical CEM on the true grid position with the true goal position;
* GTM-SM: categorical CEM in GTM-SM's latent space; the belief memorises every frame of the
  episode (DND memory), imagined codes are the memory's prior at imagined states, and the cost
  is the squared distance of the imagined code to the encoding of the goal crop.

    python -m experiments.navigation_goal --checkpoint runs/gtmsm/...   # trained GTM-SM
    python -m experiments.navigation_goal --quick                       # trains a small one
    python -m experiments.navigation_goal --skip-latent                 # random vs oracle

Writes ``experiments/results/navigation_goal.json`` (+ ``.png``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ENV_ID = "worldmodels/ImageNavigation-v0"
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)])


def make_env(steps: int):
    import gymnasium as gym

    from worldmodels import envs  # noqa: F401

    return gym.make(ENV_ID, goal="view", max_episode_steps=steps + 1)


def setup_episode(seed: int, explore: int, min_distance: int):
    """Exploration actions and a goal among the visited places (pre-simulated, same seed)."""
    env = make_env(explore + 1)
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    actions = rng.integers(0, 4, explore)
    visited = [tuple(info["state"].astype(int))]
    for a in actions:
        _, _, _, _, info = env.step(int(a))
        visited.append(tuple(info["state"].astype(int)))
    final = np.array(visited[-1])
    cands = sorted({v for v in visited if np.abs(np.array(v) - final).sum() >= min_distance})
    if not cands:
        cands = sorted(set(visited) - {tuple(final)})
    goal = cands[int(rng.integers(len(cands)))]
    return actions, goal


def run_episodes(policy_name: str, make_agent, seeds, explore: int, budget: int, min_distance: int,
                 progress: bool):
    """Batched episodes: ``make_agent(n, goals, goal_views) -> act(obs [n,...], states [n,2], t)``."""
    from tqdm.auto import tqdm

    n = len(seeds)
    setups = [setup_episode(s, explore, min_distance) for s in seeds]
    envs_ = [make_env(explore + budget) for _ in seeds]
    obs, states, goal_views = [], [], []
    for env, s, (_, goal) in zip(envs_, seeds, setups):
        o, info = env.reset(seed=s, options={"goal": goal})
        obs.append(o), states.append(info["state"]), goal_views.append(env.unwrapped._goal_view.copy())
    hist_obs, hist_act = [np.stack(obs)], []
    for t in range(explore):  # exploration: the same random walk for every policy
        a = np.array([setup[0][t] for setup in setups])
        res = [env.step(int(ai)) for env, ai in zip(envs_, a)]
        hist_act.append(a)
        hist_obs.append(np.stack([r[0] for r in res]))
        states = [r[4]["state"] for r in res]
    goals = np.array([setup[1] for setup in setups])
    act = make_agent(n, goals, np.stack(goal_views), hist_obs, hist_act)
    reached = np.full(n, -1)
    for t in tqdm(range(budget), desc=policy_name, disable=not progress, leave=False):
        a = np.asarray(act(hist_obs[-1], np.stack(states), t))
        res = [env.step(int(ai)) for env, ai in zip(envs_, a)]
        hist_act.append(a)
        hist_obs.append(np.stack([r[0] for r in res]))
        states = [r[4]["state"] for r in res]
        got = np.array([r[1] > 0 for r in res]) & (reached < 0)
        reached[got] = t + 1
    return {"success": reached > 0, "steps_to_goal": reached}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/navigation_goal")
    p.add_argument("--checkpoint", default=None, help="trained GTM-SM (run folder or .pt)")
    p.add_argument("--quick", action="store_true", help="train a small GTM-SM if no checkpoint")
    p.add_argument("--train-steps", type=int, default=None)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--explore", type=int, default=96)
    p.add_argument("--budget", type=int, default=30)
    p.add_argument("--min-distance", type=int, default=4)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--population", type=int, default=200)
    p.add_argument("--skip-latent", action="store_true")
    p.add_argument("--seed", type=int, default=3000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--retrain", action="store_true",
                   help="delete a GTM-SM run folder trained under another configuration and train again")
    args = p.parse_args(argv)
    if args.quick:  # a smoke run: a few updates, 2 short episodes
        args.train_steps = args.train_steps or 3
        args.episodes, args.explore, args.budget, args.horizon, args.population = 2, 24, 4, 3, 20
        args.min_distance = 1
        if args.run_dir == "runs/navigation_goal":
            args.run_dir = "runs/navigation_goal_quick"
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    seeds = [args.seed + i for i in range(args.episodes)]

    from worldmodels.agents.costs import QuadraticCost
    from worldmodels.agents.mpc import MPCAgent, MPCConfig
    from worldmodels.agents.oracle import GridOracle
    from worldmodels.agents.planners import make_planner

    def planner():
        return make_planner("categorical", num_actions=5, horizon=args.horizon, population=args.population,
                            num_elites=max(args.population // 10, 2), iterations=4)

    rng = np.random.default_rng(args.seed)

    def random_walk(n, goals, goal_views, hist_obs, hist_act):
        return lambda o, s, t: rng.integers(0, 4, n)

    def oracle(n, goals, goal_views, hist_obs, hist_act):
        agent = MPCAgent(GridOracle(), planner(), QuadraticCost(torch.as_tensor(goals, dtype=torch.float32)),
                         MPCConfig(context=1, seed=args.seed), num_envs=n,
                         obs_to_tensor=lambda x: torch.as_tensor(x, dtype=torch.float32), device=device)
        return lambda o, s, t: agent.act(s)

    common = (seeds, args.explore, args.budget, args.min_distance, progress)
    t0 = time.time()
    runs = {"random_walk": run_episodes("random walk", random_walk, *common)}
    runs["oracle"] = run_episodes("oracle", oracle, *common)
    info: dict = {}
    if not args.skip_latent:
        model, info = prepare_gtmsm(args, run, device, progress)

        def latent(n, goals, goal_views, hist_obs, hist_act):
            from worldmodels.agents.mpc import image_obs_to_tensor

            gv = image_obs_to_tensor(goal_views).to(device)
            with torch.no_grad():
                goal_code = model.encode(gv)[0]  # [n, z]
            S = model.config.state_dim
            target = torch.cat([torch.zeros(n, S, device=device), goal_code], -1)
            weight = torch.cat([torch.zeros(S), torch.ones(goal_code.shape[-1])]).to(device)
            agent = MPCAgent(model, planner(), QuadraticCost(target, state_weight=weight),
                             MPCConfig(context=args.explore + args.budget + 1, seed=args.seed), num_envs=n,
                             device=device)
            # replay the exploration into the agent's history (frames and one-hot actions)
            for t, o in enumerate(hist_obs[:-1]):
                agent._push(image_obs_to_tensor(o))
                agent._act[:, -1] = torch.nn.functional.one_hot(torch.as_tensor(hist_act[t]), 5).float()
            return lambda o, s, t: agent.act(o)

        runs["gtmsm"] = run_episodes("gtm-sm", latent, *common)
    results = {name: {"success_rate": float(r["success"].mean()),
                      "mean_steps_to_goal_successful": float(r["steps_to_goal"][r["success"]].mean())
                      if r["success"].any() else None,
                      "successes": r["success"].astype(int).tolist()} for name, r in runs.items()}
    results.update(info)
    results["wall_seconds"] = time.time() - t0
    from experiments._results import output_dir, save_results
    from experiments.protocol import Protocol, SeedSet

    protocol = Protocol((0,), SeedSet.span("ImageNavigation-v0 episode seed", args.seed, args.episodes),
                        notes="one GTM-SM (training seed 0); no setting is selected on these episodes")
    out = save_results("navigation_goal", vars(args), results, module="navigation_goal", args=argv,
                       protocol=protocol, seed=args.seed, out_dir=output_dir(args.out_dir, args.quick))
    plot(runs, args.budget, out.with_suffix(".png"))
    print(json.dumps(results, indent=1, default=str))
    print(f"wrote {out}")
    return 0


def prepare_gtmsm(args, run: Path, device, progress: bool):
    from experiments.pendulum_swingup import dataset_split
    from experiments.protocol import prepare_run_dir
    from worldmodels.agents.commands.plan import load_world_model
    from worldmodels.envs.generate import generate_dataset
    from worldmodels.gtmsm import GTMSM, GTMSMConfig
    from worldmodels.training import TrainConfig, Trainer

    if args.checkpoint:
        return load_world_model(args.checkpoint, device=str(device)).eval(), {"checkpoint": args.checkpoint}
    preset = "image_navigation_small" if args.quick else "image_navigation"
    data = Path(f"runs/data/{preset}")
    generate_dataset(preset, data, progress=progress)
    kdir = run / "gtmsm"
    steps = args.train_steps or (800 if args.quick else 20000)
    model_cfg = GTMSMConfig(tau=64 if args.quick else 256)
    prepare_run_dir(kdir, {"preset": preset, "steps": steps, "model": vars(model_cfg), "batch_size": 16,
                           "lr": 1e-3, "seed": 0}, retrain=args.retrain)
    if not (kdir / "summary.json").exists():
        torch.manual_seed(0)
        model = GTMSM(model_cfg)
        cfg = TrainConfig(steps=steps, batch_size=16, lr=1e-3, device=str(device), progress=progress,
                          tensorboard=False, val_every=max(steps // 4, 1), checkpoint_every=max(steps // 4, 1))
        Trainer(model, cfg, kdir, dataset_split(data, "train"), dataset_split(data, "valid"),
                resume=(kdir / "checkpoints").exists()).fit()
    return load_world_model(kdir, device=str(device)).eval(), {"checkpoint": str(kdir), "dataset": str(data)}


def plot(runs, budget, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        steps = np.where(r["success"], r["steps_to_goal"], budget + 1)
        ax.plot(np.arange(1, budget + 1), [(steps <= k).mean() for k in range(1, budget + 1)], label=name)
    ax.set_xlabel("steps after exploration")
    ax.set_ylabel("fraction at goal")
    ax.set_title("image navigation: reach the goal view")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
