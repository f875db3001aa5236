"""Image-navigation goal reaching with GTM-SM's spatial memory, vs a random walk and an oracle,
under the evaluation protocol: one GTM-SM per training seed, held-out episode seeds.

Each episode (``worldmodels/ImageNavigation-v0``, 8x8 RGB views of a 32x32 world, 9x9
positions, 5 discrete actions): an exploration phase of ``--explore`` random-walk steps, then a
goal phase of ``--budget`` steps to reach the place whose view equals the goal crop (a place
seen during exploration, at least ``--min-distance`` moves from where exploration ended).
Success = standing on the goal within the budget. Policies in the goal phase:

* random walk (uniform moves);
* oracle: categorical CEM on the true grid position with the true goal position;
* GTM-SM: categorical CEM in GTM-SM's latent space; the belief memorises every frame of the
  episode (DND memory), imagined codes are the memory's prior at imagined states, and the cost
  is the squared distance of the imagined code to the encoding of the goal crop.

One command, from scratch::

    python -m experiments.navigation_goal            # --quick: a smoke run in seconds

The GTM-SM of each training seed (``--seeds 0 1 2``) is the thesis model of
``experiments.gtmsm_navigation``, trained by the same code in the same run folders
(``<run-dir>/seed_<s>/gtmsm``, config-hashed): a folder that command trained is reused, a missing
one is trained here. Every policy plays the same held-out episodes (``--episode-seed``,
``--episodes``); no setting is selected on them. Writes
``experiments/results/navigation_goal.json`` (+ ``.png``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import gtmsm_navigation
from experiments._results import output_dir, save_results
from experiments.protocol import Protocol, SeedSet, budget_record, mean_ci, paired_claim

ENV_ID = "worldmodels/ImageNavigation-v0"
EPISODE_SEEDS = "ImageNavigation-v0 episode seed"
NUM_ACTIONS = 5  # up, down, left, right, stay
LABELS = {"gtmsm": "GTM-SM (thesis)", "random_walk": "random walk", "oracle": "oracle (true positions)"}

#: ``make_agent(n, goals [n, 2], goal_views [n, H, W, C], hist_obs, hist_act) -> act(obs, states, t)``
AgentFactory = Callable[..., Callable[[np.ndarray, np.ndarray, int], Any]]


def make_env(steps: int):
    import gymnasium as gym

    from worldmodels import envs  # noqa: F401  (registers the environments)

    return gym.make(ENV_ID, goal="view", max_episode_steps=steps + 1)


def setup_episode(seed: int, explore: int, min_distance: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Exploration actions ``[explore]`` and a goal cell among the visited places (pre-simulated
    with the same seed)."""
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


def run_episodes(policy_name: str, make_agent: AgentFactory, seeds: Sequence[int], explore: int, budget: int,
                 min_distance: int, progress: bool) -> dict[str, np.ndarray]:
    """Batched episodes, one per seed: ``{"success": [n] bool, "steps_to_goal": [n] (-1: not reached)}``."""
    from tqdm.auto import tqdm

    n = len(seeds)
    setups = [setup_episode(s, explore, min_distance) for s in seeds]
    envs_ = [make_env(explore + budget) for _ in seeds]
    obs, states, goal_views = [], [], []
    for env, s, (_, goal) in zip(envs_, seeds, setups, strict=True):
        o, info = env.reset(seed=s, options={"goal": goal})
        obs.append(o)
        states.append(info["state"])
        goal_views.append(env.unwrapped._goal_view.copy())
    hist_obs, hist_act = [np.stack(obs)], []
    for t in range(explore):  # exploration: the same random walk for every policy
        a = np.array([setup[0][t] for setup in setups])
        res = [env.step(int(ai)) for env, ai in zip(envs_, a, strict=True)]
        hist_act.append(a)
        hist_obs.append(np.stack([r[0] for r in res]))
        states = [r[4]["state"] for r in res]
    goals = np.array([setup[1] for setup in setups])
    act = make_agent(n, goals, np.stack(goal_views), hist_obs, hist_act)
    reached = np.full(n, -1)
    for t in tqdm(range(budget), desc=policy_name, disable=not progress, leave=False):
        a = np.asarray(act(hist_obs[-1], np.stack(states), t))
        res = [env.step(int(ai)) for env, ai in zip(envs_, a, strict=True)]
        hist_act.append(a)
        hist_obs.append(np.stack([r[0] for r in res]))
        states = [r[4]["state"] for r in res]
        got = np.array([r[1] > 0 for r in res]) & (reached < 0)
        reached[got] = t + 1
    return {"success": reached > 0, "steps_to_goal": reached}


def episode_summary(r: dict[str, np.ndarray]) -> dict[str, Any]:
    """Success rate, mean steps to the goal of the successful episodes, per-episode successes."""
    ok = r["success"]
    return {"success_rate": float(ok.mean()),
            "mean_steps_to_goal_successful": float(r["steps_to_goal"][ok].mean()) if ok.any() else None,
            "successes": ok.astype(int).tolist()}


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The options every navigation experiment shares: threads, device, progress, results folder,
    ``--quick`` and ``--retrain``."""
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    p.add_argument("--quick", action="store_true", help="a few updates, 4 short episodes (a smoke run)")
    p.add_argument("--retrain", action="store_true",
                   help="delete run folders trained under another configuration and train again")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of the GTM-SM")
    p.add_argument("--steps", type=int, default=None,
                   help="GTM-SM updates (default: experiments.gtmsm_navigation's, so its runs are reused)")
    p.add_argument("--run-dir", default=None,
                   help="GTM-SM run folders, shared with experiments.gtmsm_navigation "
                        "(default runs/gtmsm_navigation[_quick])")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--episode-seed", type=int, default=3000, help="first held-out episode seed")
    p.add_argument("--explore", type=int, default=96)
    p.add_argument("--budget", type=int, default=30)
    p.add_argument("--min-distance", type=int, default=4)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--population", type=int, default=200)
    add_run_args(p)
    args = p.parse_args(argv)
    if args.quick:
        args.episodes, args.explore, args.budget, args.horizon, args.population = 4, 24, 4, 3, 20
        args.min_distance = 1
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct training seeds, got {args.seeds}")
    return args


def navigation_args(args: argparse.Namespace) -> argparse.Namespace:
    """The `experiments.gtmsm_navigation` settings whose thesis GTM-SM this command uses."""
    argv = ["--models", "gtmsm", "--seeds", *map(str, args.seeds), "--device", args.device,
            "--threads", str(args.threads)]
    argv += ["--steps", str(args.steps)] if args.steps is not None else []
    argv += ["--run-dir", args.run_dir] if args.run_dir is not None else []
    argv += ["--quick"] if args.quick else []
    argv += ["--no-progress"] if args.no_progress else []
    argv += ["--retrain"] if args.retrain else []
    return gtmsm_navigation.parse_args(argv)


#: ``act(obs [n, ...], states [n, 2], t) -> actions [n]`` of one batch of episodes
Act = Callable[[np.ndarray, np.ndarray, int], Any]


def reference_agents(args: argparse.Namespace, device: torch.device, rng: np.random.Generator
                     ) -> tuple[AgentFactory, AgentFactory, Callable[..., AgentFactory]]:
    """``(random walk, oracle, cem(model, wrap=None))``: the goal phase's policies.

    The random walk draws uniform moves from ``rng``; the oracle runs categorical CEM (4 iterations,
    elites a tenth of ``args.population``, horizon ``args.horizon``) on the true grid position towards
    the true goal; ``cem(model)`` runs the same planner in a GTM-SM's latent space, scoring the squared
    distance of the imagined code to the goal crop's encoding, with the exploration in its memory.
    ``wrap(act) -> act`` (e.g. a timer) wraps the planner's decisions.
    """
    from worldmodels.agents.costs import QuadraticCost
    from worldmodels.agents.mpc import MPCAgent, MPCConfig, image_obs_to_tensor
    from worldmodels.agents.oracle import GridOracle
    from worldmodels.agents.planners import make_planner

    def planner():
        return make_planner("categorical", num_actions=NUM_ACTIONS, horizon=args.horizon, population=args.population,
                            num_elites=max(args.population // 10, 2), iterations=4)

    def random_walk(n, goals, goal_views, hist_obs, hist_act):
        return lambda o, s, t: rng.integers(0, 4, n)

    def oracle(n, goals, goal_views, hist_obs, hist_act):
        agent = MPCAgent(GridOracle(), planner(), QuadraticCost(torch.as_tensor(goals, dtype=torch.float32)),
                         MPCConfig(context=1, seed=args.episode_seed), num_envs=n,
                         obs_to_tensor=lambda x: torch.as_tensor(x, dtype=torch.float32), device=device)
        return lambda o, s, t: agent.act(s)

    def cem(model, wrap: Callable[[Act], Act] | None = None) -> AgentFactory:
        def make(n, goals, goal_views, hist_obs, hist_act):
            with torch.no_grad():
                goal_code = model.encode(image_obs_to_tensor(goal_views).to(device))[0]  # [n, z]
            S = model.config.state_dim
            target = torch.cat([torch.zeros(n, S, device=device), goal_code], -1)
            weight = torch.cat([torch.zeros(S), torch.ones(goal_code.shape[-1])]).to(device)
            agent = MPCAgent(model, planner(), QuadraticCost(target, state_weight=weight),
                             MPCConfig(context=args.explore + args.budget + 1, seed=args.episode_seed), num_envs=n,
                             device=device)
            for t, o in enumerate(hist_obs[:-1]):  # the exploration enters the agent's history
                agent._push(image_obs_to_tensor(o))
                agent._act[:, -1] = torch.nn.functional.one_hot(torch.as_tensor(hist_act[t]), NUM_ACTIONS).float()
            act: Act = lambda o, s, t: agent.act(o)  # noqa: E731
            return act if wrap is None else wrap(act)
        return make

    return random_walk, oracle, cem


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    nav = navigation_args(args)
    progress = not args.no_progress
    device = torch.device(args.device)
    seeds = list(range(args.episode_seed, args.episode_seed + args.episodes))

    from worldmodels.gtmsm import GTMSM

    random_walk, oracle, latent = reference_agents(args, device, np.random.default_rng(args.episode_seed))
    common = (seeds, args.explore, args.budget, args.min_distance, progress)
    t0 = time.time()
    refs = {"random_walk": run_episodes("random walk", random_walk, *common),
            "oracle": run_episodes("oracle", oracle, *common)}
    spec, train_set, _ = gtmsm_navigation.load_data(nav)
    base = gtmsm_navigation.gtmsm_config(nav, train_set[0]["obs"].shape[1:], train_set.actions.shape[-1])
    per_seed: dict[int, dict[str, Any]] = {}
    runs: dict[str, dict[str, np.ndarray]] = {}
    training = {}
    for seed in args.seeds:
        models, rec = gtmsm_navigation.trained_models(nav, seed, ["gtmsm"], train_set, base, spec.name)
        training[seed] = rec["gtmsm"]
        model = models["gtmsm"]
        assert isinstance(model, GTMSM)
        runs[f"gtmsm seed {seed}"] = run_episodes(f"gtm-sm seed {seed}", latent(model), *common)
        per_seed[seed] = episode_summary(runs[f"gtmsm seed {seed}"])
        print(f"seed {seed}: GTM-SM goal rate {per_seed[seed]['success_rate']:.3f}", flush=True)
    ref_summary = {k: episode_summary(r) for k, r in refs.items()}
    rates = {"gtmsm": [per_seed[s]["success_rate"] for s in args.seeds],
             **{k: [v["success_rate"]] * len(args.seeds) for k, v in ref_summary.items()}}
    results: dict[str, Any] = {
        "headline": {"metric": f"goal rate within {args.budget} steps after {args.explore} exploration steps, "
                               f"{args.episodes} held-out episodes",
                     "lower_is_better": False,
                     "per_method": {LABELS[k]: mean_ci(v) for k, v in rates.items()}},
        "claims": [paired_claim("GTM-SM (thesis) reaches the goal more often than a random walk",
                                rates["random_walk"], rates["gtmsm"]),
                   paired_claim("the oracle reaches the goal more often than GTM-SM (thesis)",
                                rates["gtmsm"], rates["oracle"])],
        "per_seed": {str(s): per_seed[s] for s in args.seeds},
        "references": ref_summary,
        "training": {str(s): training[s] for s in args.seeds},
        "budget": budget_record(nav.steps, nav.batch_size, gtmsm_navigation.PAPER_BUDGET["updates"],
                                gtmsm_navigation.PAPER_BUDGET["batch_size"],
                                "random walk and oracle need no training; they play the same episodes"),
        "budget_note": ("the GTM-SM of each training seed is experiments.gtmsm_navigation's thesis model "
                        "(the same run folders); the random walk and the oracle do not depend on the training "
                        "seed, so their value is repeated per seed"),
        "wall_seconds": time.time() - t0,
    }
    protocol = Protocol(tuple(args.seeds), SeedSet.span(EPISODE_SEEDS, args.episode_seed, args.episodes),
                        notes="no setting is selected on any episode: the planner settings are the script's defaults")
    out_dir = output_dir(args.out_dir, args.quick)
    plot({**refs, **runs}, args.budget, out_dir / "navigation_goal.png")
    results["artifacts"] = {"plot": "navigation_goal.png"}
    out = save_results("navigation_goal", vars(args), results, module="navigation_goal", args=argv,
                       protocol=protocol, out_dir=out_dir)
    print_summary(results, out)
    return 0


def print_summary(results: dict[str, Any], out: Path) -> None:
    """The goal rates (mean over training seeds), the claims' verdicts and the file written."""
    print("goal rate, mean over training seeds:",
          {k: round(v["mean"], 3) for k, v in results["headline"]["per_method"].items()})
    for c in results["claims"]:
        print(f"  {c['statement']}: {c['verdict']}")
    print(f"wrote {out}")


def plot(runs: dict[str, dict[str, np.ndarray]], budget: int, path: Path) -> None:
    """Fraction of episodes at the goal against the steps of the goal phase, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        steps = np.where(r["success"], r["steps_to_goal"], budget + 1)
        ax.plot(np.arange(1, budget + 1), [(steps <= k).mean() for k in range(1, budget + 1)],
                label=LABELS.get(name, name))
    ax.set_xlabel("steps after exploration")
    ax.set_ylabel("fraction at goal")
    ax.set_title("image navigation: reach the goal view (held-out episodes)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
