"""Image-navigation goal reaching with a goal-conditioned discrete actor trained only in GTM-SM's
imagination, beside a random walk, an oracle and GTM-SM's CEM planner, under the evaluation protocol.

The task is ``experiments.navigation_goal``'s: each held-out episode (``worldmodels/ImageNavigation-v0``,
8x8 RGB views of a fresh 32x32 world, 9x9 positions, 5 moves) has an exploration random walk of
``--explore`` steps, then ``--budget`` steps to stand on the place whose view equals the goal crop
(a place seen during exploration, at least ``--min-distance`` moves from where exploration ended).

The actor ``pi(a | s, z, goal)`` (``worldmodels.agents.policy``, REINFORCE with a critic baseline) is
trained in the imagination of the frozen GTM-SM of each training seed:

* start states: the first ``--explore + 1`` frames of training sequences of the image-navigation
  dataset are memorised (the belief after an exploration phase); each start gets
  ``--goals-per-start`` goals, frames seen during that phase at least ``--min-distance`` steps
  before its end whose code differs from the last frame's;
* goal vector: the code of the goal frame and the agent state at which the memory holds the
  nearest code (a reverse read of the DND: the goal's place in GTM-SM's state space), carried
  unchanged in the latent state by ``GoalConditioned``;
* reward: minus the squared distance between the imagined code (the memory's prior at the
  imagined state) and the goal code, the cost the CEM planner minimises.

In the real episodes the actor acts by its mode: after each step the whole episode is memorised
again (as the planner does), the goal crop is encoded and located in the exploration memory.
Training never sees an evaluation episode: the actor learns from the dataset's training split,
the episodes are fresh worlds drawn from ``--episode-seed`` on. No setting is selected on them.

One command, from scratch::

    python -m experiments.navigation_actor            # --quick: a smoke run in seconds

The GTM-SM of each training seed (``--seeds 0 1 2``) is ``experiments.gtmsm_navigation``'s thesis
model in its run folder (``<run-dir>/seed_<s>/gtmsm``, reused when present, trained here when
missing); the actor goes to ``<run-dir>/seed_<s>/navigation_actor`` (config-hashed, reused).
Writes ``experiments/results/navigation_actor.json`` (+ ``.png``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from experiments import gtmsm_navigation
from experiments._results import output_dir, save_results
from experiments.navigation_goal import (
    EPISODE_SEEDS,
    NUM_ACTIONS,
    AgentFactory,
    add_run_args,
    episode_summary,
    navigation_args,
    print_summary,
    reference_agents,
    run_episodes,
)
from experiments.protocol import Protocol, SeedSet, budget_record, config_hash, mean_ci, paired_claim, prepare_run_dir
from worldmodels.agents.policy import (
    POLICY_FILE,
    ActorCritic,
    ActorCriticConfig,
    GoalConditioned,
    GoalDistanceReward,
    GoalState,
    StartStates,
    goal_start_states,
    train_actor_critic,
)
from worldmodels.agents.policy.starts import cat_states
from worldmodels.atomic_io import atomic_write_json
from worldmodels.gtmsm import GTMSM, GTMSMBelief

TRAIN_SEQUENCES = "image_navigation/train sequence"
LABELS = {"actor": "actor (mode, trained in GTM-SM)", "gtmsm_cem": "GTM-SM CEM planner",
          "random_walk": "random walk", "oracle": "oracle (true positions)"}
#: the actor's settings (``--quick`` shrinks updates, batch, horizon and starts)
ACTOR_DEFAULTS = dict(discrete=True, actor_grad="reinforce", hidden=(128, 128), horizon=15, discount=0.95,
                      return_lambda=0.95, updates=3000, batch_size=128, actor_lr=1e-3, critic_lr=1e-3,
                      entropy_coef=3e-3, target_tau=0.02, log_every=50)
QUICK_ACTOR = dict(updates=6, batch_size=8, horizon=3, log_every=2)


# --- goals in GTM-SM's memory -------------------------------------------------------------------
def goal_dim(model: GTMSM) -> int:
    """Size G of the goal vector: the goal code (``z_dim``) then its memorised state (``state_dim``)."""
    return model.config.z_dim + model.config.state_dim


def goal_vectors(model: GTMSM, belief: GTMSMBelief, goal_codes: torch.Tensor) -> torch.Tensor:
    """Goal vectors ``[B, (Q,) z_dim + state_dim]`` of ``goal_codes [B, (Q,) z_dim]`` in the belief's memory."""
    return torch.cat([goal_codes, model.locate_codes(belief.memory, goal_codes)], -1)


def goal_model(model: GTMSM) -> tuple[GoalConditioned, GoalDistanceReward]:
    """GTM-SM with a goal vector in its state, and the reward ``-|imagined code - goal code|^2``."""
    wrapped = GoalConditioned(model, goal_dim(model))
    S, z = model.config.state_dim, model.config.z_dim
    return wrapped, GoalDistanceReward.for_model(wrapped, code=slice(S, S + z), goal=slice(0, z))


def goal_times(codes: torch.Tensor, per_row: int, min_steps: int, generator: torch.Generator,
               tol: float = 1e-6) -> torch.Tensor:
    """``per_row`` goal frame indices ``[B, per_row]`` (drawn with replacement) among frames at least
    ``min_steps`` before the last of ``codes [B, T, z]`` whose code differs from the last frame's
    (squared distance > ``tol``); a row without such a frame draws among all earlier frames."""
    B, T, _ = codes.shape
    if T < 2:
        raise ValueError(f"codes: need at least 2 frames to draw goals, got shape {list(codes.shape)}")
    t = torch.arange(T, device=codes.device)
    far = (t <= T - 1 - max(min_steps, 1)).expand(B, T)
    differs = ((codes - codes[:, -1:]) ** 2).sum(-1) > tol
    ok = far & differs
    fallback = (t < T - 1).expand(B, T)
    weights = torch.where(ok.any(1, keepdim=True), ok, fallback).to(codes.dtype)
    return torch.multinomial(weights, per_row, replacement=True, generator=generator)


@torch.no_grad()
def navigation_starts(model: GTMSM, wrapped: GoalConditioned, train_set: gtmsm_navigation.ShardSequences,
                      sequences: int, explore: int, per_start: int, min_distance: int, seed: int,
                      device: torch.device, chunk: int = 64) -> StartStates:
    """The actor's start pool: the first ``sequences`` training sequences, each memorised over its
    first ``explore + 1`` frames, with ``per_start`` goals each (`goal_times`, `goal_vectors`);
    ``sequences * per_start`` rows."""
    if train_set.obs.shape[1] < explore + 1:
        raise ValueError(f"--explore: {explore + 1} frames do not fit training sequences of "
                         f"{train_set.obs.shape[1]} frames")
    sequences = min(sequences, len(train_set))
    gen = torch.Generator(device=device).manual_seed(seed)
    goals, inner, feats = [], [], []
    for i in range(0, sequences, chunk):
        batch = train_set.batch(range(i, min(i + chunk, sequences))).to(device)
        obs, act = batch.obs[:, :explore + 1], batch.actions[:, :explore + 1]
        belief = model.observe(obs, act)
        codes = model.encode(obs)[0]  # [b, T, z]
        idx = goal_times(codes, per_start, min_distance, gen)  # [b, K]
        goal_codes = codes.gather(1, idx[..., None].expand(-1, -1, codes.shape[-1]))  # [b, K, z]
        pool = goal_start_states(wrapped, belief, goal_vectors(model, belief, goal_codes))
        assert isinstance(pool.state, GoalState)
        goals.append(pool.state.goal)
        inner.append(pool.state.inner)
        feats.append(pool.features)
    return StartStates(GoalState(torch.cat(goals), cat_states(inner)), torch.cat(feats))


# --- the actor of one training seed ------------------------------------------------------------
def actor_config(args: argparse.Namespace, seed: int) -> ActorCriticConfig:
    """The actor-critic's settings for training seed ``seed``."""
    values: dict[str, Any] = {**ACTOR_DEFAULTS, "seed": seed}
    if args.quick:
        values.update(QUICK_ACTOR)
    for key in ("updates", "batch_size", "horizon"):
        if getattr(args, f"actor_{key}") is not None:
            values[key] = getattr(args, f"actor_{key}")
    return ActorCriticConfig(**values)


def prepare_actor(args: argparse.Namespace, seed: int, model: GTMSM, model_dir: Path,
                  train_set: gtmsm_navigation.ShardSequences, device: torch.device,
                  progress: bool) -> tuple[ActorCritic, dict[str, Any]]:
    """The goal-conditioned actor of training seed ``seed``, trained in ``model``'s imagination
    (reused from ``<run-dir>/seed_<seed>/navigation_actor`` when trained there under the same
    configuration and the same GTM-SM run). Returns it and its training record."""
    wrapped, reward = goal_model(model)
    config = actor_config(args, seed).for_model(wrapped)
    gtmsm_hash = (model_dir / "config_hash.txt").read_text().strip() if (model_dir / "config_hash.txt").is_file() \
        else None
    run_config = {"actor_critic": asdict(config), "gtmsm_run": gtmsm_hash, "gtmsm_steps": args.nav_steps,
                  "explore": args.explore, "start_sequences": args.start_sequences,
                  "goals_per_start": args.goals_per_start, "min_distance": args.min_distance}
    folder = prepare_run_dir(model_dir.parent / "navigation_actor", run_config, retrain=args.retrain)
    record_file = folder / "training.json"
    if (folder / POLICY_FILE).is_file() and record_file.is_file():
        return ActorCritic.load(folder / POLICY_FILE, device=device), json.loads(record_file.read_text())
    t0 = time.perf_counter()
    starts = navigation_starts(model, wrapped, train_set, args.start_sequences, args.explore, args.goals_per_start,
                               args.min_distance, seed, device)
    start_s = time.perf_counter() - t0
    ac, metrics = train_actor_critic(wrapped, reward, starts, config, folder, device, progress, overwrite=True)
    record = {"start_states_s": start_s, "train_s": metrics["seconds"],
              "seconds_per_update": metrics["seconds"] / config.updates, "config_hash": config_hash(run_config),
              "metrics": metrics}
    atomic_write_json(record_file, record)
    return ac, record


# --- policies in the real episodes ---------------------------------------------------------------
class DecisionTimer:
    """Wall time and count of batched decisions (one call decides for every episode of the batch)."""

    def __init__(self) -> None:
        self.seconds, self.calls, self.decisions = 0.0, 0, 0

    def wrap(self, act: Callable[[np.ndarray, np.ndarray, int], Any]) -> Callable[[np.ndarray, np.ndarray, int], Any]:
        def timed(obs: np.ndarray, states: np.ndarray, t: int) -> Any:
            t0 = time.perf_counter()
            out = act(obs, states, t)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            self.decisions += len(obs)
            return out
        return timed

    def record(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "batched_calls": self.calls, "decisions": self.decisions,
                "decisions_per_s": self.decisions / self.seconds if self.seconds > 0 else None}


def frames_tensor(frames: Sequence[np.ndarray] | np.ndarray, device: torch.device) -> torch.Tensor:
    """Gymnasium views ``uint8 [..., H, W, C]`` as float ``[..., C, H, W]`` in [0, 1] on ``device``."""
    from worldmodels.agents.mpc import image_obs_to_tensor

    return image_obs_to_tensor(np.asarray(frames)).to(device)


def actor_agent(model: GTMSM, actor_critic: ActorCritic, device: torch.device, timer: DecisionTimer) -> AgentFactory:
    """The actor's mode on ``cat(GTM-SM features of the memorised episode, goal vector)``.

    The goal crop is encoded and located in the memory of the exploration phase (as in training);
    at every step the whole episode so far is memorised again (``observe``)."""
    wrapped, _ = goal_model(model)

    def make(n, goals, goal_views, hist_obs, hist_act):
        frames = [frames_tensor(o, device) for o in hist_obs]  # each [n, C, H, W]
        moves = [torch.as_tensor(np.asarray(a), device=device) for a in hist_act]  # each [n]

        def history() -> tuple[torch.Tensor, torch.Tensor]:
            obs = torch.stack(frames, 1)
            acts = torch.stack([*moves, torch.zeros_like(moves[0])], 1) if moves else \
                torch.zeros(n, 1, dtype=torch.long, device=device)
            return obs, F.one_hot(acts.long(), NUM_ACTIONS).to(obs.dtype)

        with torch.no_grad():
            goal_code = model.encode(frames_tensor(goal_views, device))[0]  # [n, z]
            belief = model.observe(*history())
            goal = goal_vectors(model, belief, goal_code)

        @torch.no_grad()
        def act(obs: np.ndarray, states: np.ndarray, t: int) -> np.ndarray:
            if t > 0:
                frames.append(frames_tensor(obs, device))
            b = wrapped.with_goal(model.observe(*history()), goal)
            a = actor_critic.actor(b.features()).mode().argmax(-1)
            moves.append(a)
            return a.cpu().numpy()

        return timer.wrap(act)
    return make


def portable(record: dict[str, Any]) -> dict[str, Any]:
    """A training record without the machine paths of its run folder and checkpoint."""
    summary = {k: v for k, v in record.get("summary", {}).items() if k not in ("checkpoint", "run_dir")}
    return {**record, "summary": summary}


# --- protocol ------------------------------------------------------------------------------------
def dataset_world_seeds(dataset_seed: int, split: str, count: int) -> list[int]:
    """Reset seeds of the worlds of sequences ``0 .. count - 1`` of a dataset split
    (``worldmodels.envs.generate``: sequence ``i`` resets with a seed drawn from
    ``(dataset seed, split, i, attempt 0)``; navigation episodes never end early, so never redraw)."""
    from worldmodels.envs.generate import SPLITS

    code = SPLITS.index(split)
    return [int(np.random.SeedSequence([dataset_seed, code, i, 0]).generate_state(2)[0]) for i in range(count)]


def check_training_worlds(spec: Any, evaluation: SeedSet, start_sequences: int) -> dict[str, Any]:
    """Check that no world of the dataset's train and valid splits (what the GTM-SM and the actor
    learn from) is an evaluation episode's world; returns what was checked and the training
    sequences whose beginnings are the actor's start states."""
    counts = {s: int(spec.splits[s]) for s in ("train", "valid")}
    seen = {w for split, n in counts.items() for w in dataset_world_seeds(spec.seed, split, n)}
    common = sorted(seen & set(evaluation.seeds))
    if common:
        raise ValueError(f"evaluation episodes {common[:10]} reuse worlds of the training data")
    starts = SeedSet.span(TRAIN_SEQUENCES, 0, min(start_sequences, counts["train"]))
    return {"namespace": evaluation.namespace, "dataset": spec.name, "splits": counts,
            "actor_start_sequences": starts.to_json(),
            "rule": "reset seed of sequence i = SeedSequence([dataset seed, split, i, 0]).generate_state(2)[0]",
            "disjoint_from_evaluation": True}


# --- command line --------------------------------------------------------------------------------
#: sizes of the full run and of ``--quick`` (a value given on the command line wins over both)
FULL = {"episodes": 40, "explore": 96, "budget": 30, "min_distance": 4, "horizon": 8, "population": 200,
        "start_sequences": 512, "goals_per_start": 4}
QUICK = {"episodes": 4, "explore": 24, "budget": 4, "min_distance": 1, "horizon": 3, "population": 20,
         "start_sequences": 8, "goals_per_start": 2}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (GTM-SM and actor)")
    p.add_argument("--steps", type=int, default=None,
                   help="GTM-SM updates (default: experiments.gtmsm_navigation's, so its runs are reused)")
    p.add_argument("--run-dir", default=None,
                   help="run folders, shared with experiments.gtmsm_navigation (default runs/gtmsm_navigation[_quick])")
    p.add_argument("--episodes", type=int, default=None, help=f"held-out episodes (default {FULL['episodes']})")
    p.add_argument("--episode-seed", type=int, default=3000, help="first held-out episode seed")
    p.add_argument("--explore", type=int, default=None, help=f"exploration steps (default {FULL['explore']})")
    p.add_argument("--budget", type=int, default=None, help=f"steps to reach the goal (default {FULL['budget']})")
    p.add_argument("--min-distance", type=int, default=None,
                   help=f"moves from the end of exploration to the goal (default {FULL['min_distance']})")
    p.add_argument("--horizon", type=int, default=None, help=f"CEM planning horizon (default {FULL['horizon']})")
    p.add_argument("--population", type=int, default=None, help=f"CEM candidates (default {FULL['population']})")
    p.add_argument("--start-sequences", type=int, default=None,
                   help=f"training sequences memorised as the actor's start states (default {FULL['start_sequences']})")
    p.add_argument("--goals-per-start", type=int, default=None,
                   help=f"goals drawn per start state (default {FULL['goals_per_start']})")
    p.add_argument("--actor-updates", type=int, default=None, help=f"default {ACTOR_DEFAULTS['updates']}")
    p.add_argument("--actor-batch-size", type=int, default=None, help=f"default {ACTOR_DEFAULTS['batch_size']}")
    p.add_argument("--actor-horizon", type=int, default=None,
                   help=f"imagined steps per update (default {ACTOR_DEFAULTS['horizon']})")
    add_run_args(p)
    args = p.parse_args(argv)
    for key, full in FULL.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else full)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct training seeds, got {args.seeds}")
    for key in ("episodes", "explore", "budget", "min_distance", "horizon", "population", "start_sequences",
                "goals_per_start"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')}: expected >= 1, got {getattr(args, key)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from experiments.navigation_goal import plot

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    nav = navigation_args(args)
    args.nav_steps = nav.steps
    progress = not args.no_progress
    device = torch.device(args.device)
    episodes = SeedSet.span(EPISODE_SEEDS, args.episode_seed, args.episodes)
    seeds = list(episodes.seeds)
    t0 = time.time()
    spec, train_set, _ = gtmsm_navigation.load_data(nav)
    worlds = check_training_worlds(spec, episodes, args.start_sequences)
    base = gtmsm_navigation.gtmsm_config(nav, train_set[0]["obs"].shape[1:], train_set.actions.shape[-1])

    rng = np.random.default_rng(args.episode_seed)  # the random walk draws as navigation_goal's does
    random_walk, oracle, cem = reference_agents(args, device, rng)
    common = (seeds, args.explore, args.budget, args.min_distance, progress)
    refs = {"random_walk": run_episodes("random walk", random_walk, *common),
            "oracle": run_episodes("oracle", oracle, *common)}
    runs: dict[str, dict[str, np.ndarray]] = {}
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        models, rec = gtmsm_navigation.trained_models(nav, seed, ["gtmsm"], train_set, base, spec.name)
        model = models["gtmsm"]
        if not isinstance(model, GTMSM):
            raise TypeError(f"seed {seed}: expected a GTM-SM, got {type(model).__name__}")
        model_dir = Path(nav.run_dir) / f"seed_{seed}" / "gtmsm"
        ac, actor_rec = prepare_actor(args, seed, model, model_dir, train_set, device, progress)
        timers = {"actor": DecisionTimer(), "gtmsm_cem": DecisionTimer()}
        runs[f"actor seed {seed}"] = run_episodes(f"actor seed {seed}", actor_agent(model, ac, device, timers["actor"]),
                                                  *common)
        runs[f"GTM-SM CEM seed {seed}"] = run_episodes(f"cem seed {seed}", cem(model, timers["gtmsm_cem"].wrap),
                                                       *common)
        per_seed[seed] = {"actor": episode_summary(runs[f"actor seed {seed}"]),
                          "gtmsm_cem": episode_summary(runs[f"GTM-SM CEM seed {seed}"]),
                          "acting": {k: t.record() for k, t in timers.items()},
                          "training": {"gtmsm": portable(rec["gtmsm"]), "actor": actor_rec}}
        print(f"seed {seed}: goal rate actor {per_seed[seed]['actor']['success_rate']:.3f}, "
              f"CEM {per_seed[seed]['gtmsm_cem']['success_rate']:.3f}", flush=True)
    results = summarize(args, nav, per_seed, {k: episode_summary(r) for k, r in refs.items()},
                        len(train_set) * int(train_set.obs.shape[1]), worlds)
    results["wall_seconds"] = time.time() - t0
    protocol = Protocol(tuple(args.seeds), episodes,
                        notes="no setting is selected on any episode: the actor's and the planner's settings are the "
                              "script's defaults; the actor and the GTM-SM learn from the dataset's train split, whose "
                              "worlds are checked to be none of the evaluation episodes' (results.training_worlds)")
    out_dir = output_dir(args.out_dir, args.quick)
    plot({**refs, **runs}, args.budget, out_dir / "navigation_actor.png")
    results["artifacts"] = {"plot": "navigation_actor.png"}
    config = {k: v for k, v in vars(args).items() if k != "nav_steps"}
    config["actor_critic"] = asdict(actor_config(args, args.seeds[0]))
    out = save_results("navigation_actor", config, results, module="navigation_actor", args=argv,
                       protocol=protocol, out_dir=out_dir)
    print_summary(results, out)
    return 0


def summarize(args: argparse.Namespace, nav: argparse.Namespace, per_seed: dict[int, dict[str, Any]],
              refs: dict[str, dict[str, Any]], dataset_frames: int, worlds: dict[str, Any]) -> dict[str, Any]:
    """The results block: headline goal rates, claims, decisions/s, env steps and wall times."""
    seeds = list(per_seed)
    rates = {"actor": [per_seed[s]["actor"]["success_rate"] for s in seeds],
             "gtmsm_cem": [per_seed[s]["gtmsm_cem"]["success_rate"] for s in seeds],
             **{k: [refs[k]["success_rate"]] * len(seeds) for k in ("random_walk", "oracle")}}
    speed = {k: [per_seed[s]["acting"][k]["decisions_per_s"] or 0.0 for s in seeds] for k in ("actor", "gtmsm_cem")}
    actor_train = [per_seed[s]["training"]["actor"]["train_s"] for s in seeds]
    return {
        "headline": {"metric": f"goal rate within {args.budget} steps after {args.explore} exploration steps, "
                               f"{args.episodes} held-out episodes",
                     "lower_is_better": False,
                     "per_method": {LABELS[k]: mean_ci(v) for k, v in rates.items()}},
        "secondary": [{"metric": f"decisions per second (one thread, {args.episodes} episodes batched)",
                       "per_method": {LABELS[k]: mean_ci(v) for k, v in speed.items()}},
                      {"metric": "actor training wall time in imagination (s)",
                       "per_method": {LABELS["actor"]: mean_ci(actor_train)}}],
        "claims": [paired_claim("the actor reaches the goal more often than a random walk",
                                rates["random_walk"], rates["actor"]),
                   paired_claim("GTM-SM's CEM planner reaches the goal more often than the actor",
                                rates["actor"], rates["gtmsm_cem"])],
        "per_seed": {str(s): per_seed[s] for s in seeds},
        "references": refs,
        "env_steps": {"dataset_frames": dataset_frames,
                      "actor_start_frames": worlds["actor_start_sequences"]["count"] * (args.explore + 1),
                      "note": "the GTM-SM learns from the frames of the dataset's train split (the first "
                              "tau + train_predict of each sequence); the actor's start states memorise the first "
                              "explore + 1 of some of the same sequences, so it needs no further env step; the "
                              "evaluation episodes add explore + budget steps each"},
        "training_worlds": worlds,
        "budget": budget_record(nav.steps, nav.batch_size, gtmsm_navigation.PAPER_BUDGET["updates"],
                                gtmsm_navigation.PAPER_BUDGET["batch_size"],
                                "the actor is trained in the imagination of the same GTM-SM; the random walk and "
                                "the oracle need no training; all play the same episodes"),
        "budget_note": ("the GTM-SM of each training seed is experiments.gtmsm_navigation's thesis model (the same "
                        "run folders); the random walk and the oracle do not depend on the training seed, so "
                        "their value is repeated per seed"),
    }


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
