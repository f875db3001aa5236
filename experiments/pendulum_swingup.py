"""Pendulum swing-up from 16x16 pixels with the KVAE, next to the oracle and a random policy.

For each training seed (``--seeds``, default 0 1 2): the ``pendulum`` dataset (``pendulum_small``
with ``--quick``), a KVAE trained with the package trainer and a reward head on its filtered
latents, in ``<run>/seed_<s>`` (resumed; a folder trained under another configuration is an error
unless ``--retrain``). The planning horizon is chosen among ``--horizons`` on the tuning starts
(reset seeds 0, 1, ...); the score is then measured at that horizon on held-out starts (reset
seeds 1000, 1001, ...), where the random policy, the oracle (same planner on the true state with
the true dynamics) and each seed's latent MPC agent (pixels -> KVAE belief -> planner -> torque)
run from the same starts, all episodes batched.

Three latent agents per training seed, all from pixels through the KVAE's filter: (i) MPC with the
reward head, (ii) MPC with the critic of a latent actor-critic (``worldmodels.agents.policy``,
trained in the KVAE's imagination with the ``actor_critic_pendulum`` preset) as its terminal value,
(iii) that actor alone. (i) and (ii) each get their own horizon, chosen on the tuning starts.
Every agent learns from the same offline dataset: the env steps used are the dataset's frames.

Score (returns are negative): ``(R_agent - R_random) / (R_oracle - R_random)``, per training seed
and as a mean with a 95 % interval, all against the oracle at the horizon chosen for (i); target
>= 0.9. One command, from scratch:

    python -m experiments.pendulum_swingup                 # --quick: a smoke run
    python -m experiments.pendulum_swingup --skip-latent   # oracle vs random only

Writes ``experiments/results/pendulum_swingup.json`` (+ ``.png``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from experiments.protocol import Protocol, SeedSet, budget_record, config_hash, mean_ci, paired_claim, prepare_run_dir
from worldmodels.agents.oracle import upright_fraction

ENV_ID = "worldmodels/Pendulum-v0"


def kvae_config(**overrides):
    """The KVAE used for the pendulum (16x16 grey frames, 1-d torque control)."""
    from worldmodels.kvae import KVAEConfig

    cfg = dict(obs_shape=(1, 16, 16), action_dim=1, a_dim=3, z_dim=6, num_modes=4,
               encoder="conv", decoder="conv", likelihood="bernoulli", use_controls=True,
               dynamics="lstm", dynamics_hidden=50)
    cfg.update(overrides)
    return KVAEConfig(**cfg)


def evaluate(policy_name: str, make_policy, episodes: int, steps: int, seed: int, progress: bool):
    """Returns of ``episodes`` batched episodes; ``make_policy(n) -> (policy, reset_fn, agent)``."""
    from worldmodels.agents.rl_loop import make_vector_env, rollout

    venv = make_vector_env(ENV_ID, episodes, max_episode_steps=steps + 1)
    policy, reset_fn, agent = make_policy(episodes)
    t0 = time.time()
    with torch.no_grad():
        out = rollout(venv, policy, steps, seed=[seed + i for i in range(episodes)], reset_fn=reset_fn,
                      progress=progress, desc=policy_name)
    out["seconds"] = time.time() - t0
    out["agent"] = agent
    return out


QUICK = {"train_steps": 6, "reward_steps": 6, "episodes": 2, "tuning_episodes": 2, "steps": 8,
         "horizons": [3, 5], "batch_size": 16, "policy_updates": 4}
POLICY_PRESET = "actor_critic_pendulum"  # configs/actor_critic_pendulum.yaml
TUNING_START, EVALUATION_START = 0, 1000  # reset seeds of the tuning and of the held-out evaluation episodes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/pendulum_swingup", help="one sub-folder per training seed")
    p.add_argument("--data", default=None, help="dataset folder (default runs/data/<preset>)")
    p.add_argument("--quick", action="store_true", help="small data, a few updates, short episodes (a smoke run)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of the KVAE")
    p.add_argument("--train-steps", type=int, default=4000, help="KVAE updates per training seed")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--reward-steps", type=int, default=3000)
    p.add_argument("--horizons", type=int, nargs="+", default=[12, 20],
                   help="planning horizons tried on the tuning starts; the best (mean normalised score over "
                        "training seeds) is the one reported on the evaluation starts")
    p.add_argument("--tuning-episodes", type=int, default=8, help="tuning starts (reset seeds 0, 1, ...)")
    p.add_argument("--episodes", type=int, default=20, help="held-out evaluation starts (reset seeds 1000, ...)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--planner", default="cem_fast", help="planner preset (agents.planners.PRESETS)")
    p.add_argument("--context", type=int, default=8)
    p.add_argument("--dynamics", default="mlp", choices=["lstm", "mlp"],
                   help="KVAE alpha network (mlp: Markov in a_{t-1}, ~2x faster planning)")
    p.add_argument("--skip-latent", action="store_true", help="only the oracle and random policies")
    p.add_argument("--skip-policy", action="store_true",
                   help="no actor-critic: only latent MPC with the reward head")
    p.add_argument("--policy-updates", type=int, default=None,
                   help="actor-critic updates per training seed (default: the actor_critic_pendulum preset's)")
    p.add_argument("--retrain", action="store_true",
                   help="delete run folders trained under another configuration and train again")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    args = p.parse_args(argv)
    if args.quick:  # the quick sizes replace the defaults, not the values given on the command line
        for k, v in QUICK.items():
            if getattr(args, k) == p.get_default(k):
                setattr(args, k, v)
        if args.run_dir == "runs/pendulum_swingup":
            args.run_dir = "runs/pendulum_swingup_quick"
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct training seeds, got {args.seeds}")
    if min(args.horizons) < 1 or args.episodes < 1 or args.tuning_episodes < 1:
        p.error("--horizons, --episodes and --tuning-episodes must be >= 1")
    args.checkpoint = None
    return args


def make_protocol(args: argparse.Namespace) -> Protocol:
    """Training seeds; tuning starts ``0..``; held-out evaluation starts ``1000..`` (Pendulum-v0 reset seeds)."""
    ns = f"{ENV_ID} reset seed"
    return Protocol(tuple(args.seeds), SeedSet.span(ns, EVALUATION_START, args.episodes),
                    SeedSet.span(ns, TUNING_START, args.tuning_episodes),
                    notes="the planning horizon is chosen on the tuning starts; every reported return comes "
                          "from the evaluation starts")


def reference_returns(args, device, horizon: int, start: int, episodes: int, progress: bool) -> dict[str, dict]:
    """Random-policy and oracle (true dynamics, same planner and horizon) episodes from ``start``."""
    from worldmodels.agents.mpc import MPCAgent, MPCConfig
    from worldmodels.agents.oracle import PendulumOracle, pendulum_reward
    from worldmodels.agents.planners import make_planner

    rng = np.random.default_rng(start)

    def random_policy(n):
        return (lambda o, i: rng.uniform(-2, 2, (n, 1)).astype(np.float32)), None, None

    def oracle_policy(n):
        agent = MPCAgent(PendulumOracle().to(device), make_planner(args.planner, -2.0, 2.0, horizon=horizon),
                         pendulum_reward, MPCConfig(context=1, seed=start), num_envs=n, device=device)
        return (lambda o, i: agent.act(i["state"])), agent.reset, agent

    return {"random": evaluate("random", random_policy, episodes, args.steps, start, progress),
            "oracle": evaluate("oracle", oracle_policy, episodes, args.steps, start, progress)}


def latent_returns(args, model, head, device, horizon: int, start: int, episodes: int, progress: bool,
                   actor_critic=None) -> dict:
    """Latent MPC episodes (pixels -> KVAE belief -> planner -> torque) from reset seeds ``start..``;
    with ``actor_critic``, its critic is the terminal value (``sum_h gamma^h r_h + gamma^H V(z_H)``)."""
    from worldmodels.agents.mpc import MPCAgent, MPCConfig
    from worldmodels.agents.planners import make_planner

    value_fn = None if actor_critic is None else actor_critic.value
    discount = 1.0 if actor_critic is None else actor_critic.config.discount

    def latent_policy(n):
        agent = MPCAgent(model, make_planner(args.planner, -2.0, 2.0, horizon=horizon), head,
                         MPCConfig(context=args.context, seed=start, discount=discount), num_envs=n,
                         device=device, value_fn=value_fn)
        return (lambda o, i: agent.act(o)), agent.reset, agent

    return evaluate("latent" if actor_critic is None else "latent+value", latent_policy, episodes, args.steps,
                    start, progress)


def actor_returns(args, model, actor_critic, device, start: int, episodes: int, progress: bool) -> dict:
    """The actor alone (its mode; pixels -> KVAE belief -> actor -> torque) from reset seeds ``start..``."""
    from worldmodels.agents.policy import ActorPolicy

    def actor_policy(n):
        agent = ActorPolicy(model, actor_critic, context=args.context, num_envs=n, seed=start, device=device)
        return (lambda o, i: agent.act(o)), agent.reset, agent

    return evaluate("actor", actor_policy, episodes, args.steps, start, progress)


def policy_config(args, model):
    """The ``actor_critic_pendulum`` preset for ``model`` and the pendulum's torque bounds."""
    import gymnasium as gym

    from worldmodels.agents.commands import load_config
    from worldmodels.agents.policy import ActorCriticConfig

    values = dict(load_config(POLICY_PRESET)["actor_critic"])
    values["seed"] = int(getattr(args, "train_seed", 0))
    if args.policy_updates is not None:
        values["updates"] = args.policy_updates
    if args.quick:
        values.update(batch_size=16, max_starts=64, log_every=2)
    env = gym.make(ENV_ID)
    try:
        return ActorCriticConfig.from_dict(values).for_action_space(env.action_space).for_model(model)
    finally:
        env.close()


def prepare_actor_critic(args, run: Path, model, head, device, progress: bool):
    """The actor-critic of one training seed, trained in ``model``'s imagination on the dataset's start
    states (resumed from ``run / "actor_critic"`` when trained there under the same configuration)."""
    from worldmodels.agents.policy import POLICY_FILE, ActorCritic, train_actor_critic

    config = policy_config(args, model)
    folder = prepare_run_dir(run / "actor_critic", {"actor_critic": asdict(config), "model_run": str(run)},
                             retrain=getattr(args, "retrain", False))
    summary = folder / "summary.json"
    if (folder / POLICY_FILE).is_file() and summary.is_file():
        return ActorCritic.load(folder / POLICY_FILE, device=device).eval(), json.loads(summary.read_text())["metrics"]
    preset = "pendulum_small" if args.quick else "pendulum"
    data = Path(args.data or f"runs/data/{preset}")
    ac, metrics = train_actor_critic(model, head, str(data), config, folder, device=device, progress=progress,
                                     overwrite=True)
    return ac.eval(), metrics


def dataset_frames(data: Path, splits: tuple[str, ...] = ("train", "valid")) -> int:
    """Env steps (frames) in ``splits`` of a dataset folder, from its manifest (the model, the reward
    head and the actor-critic learn from the train split and stop or check on the valid split)."""
    from worldmodels.data import read_manifest

    manifest = read_manifest(data)
    return sum(int(manifest["splits"][s]["num_sequences"]) for s in splits) * int(manifest["seq_len"])


def normalised(latent: float, random: float, oracle: float) -> float:
    """``(R_agent - R_random) / (R_oracle - R_random)``: 0 = random policy, 1 = oracle."""
    return (latent - random) / (oracle - random)


def summary_of(r: dict) -> dict:
    return {"mean_return": float(r["returns"].mean()), "returns": r["returns"].tolist(),
            "upright_fraction_last50": float(upright_fraction(r["states"]).mean()), "seconds": r["seconds"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # denormal floats (the trained KVAE produces them) make CPU training ~5x slower; flushing
    # them to zero changes nothing measurable
    torch.set_flush_denormal(True)
    progress = not args.no_progress
    device = torch.device(args.device)
    protocol = make_protocol(args)
    t_start = time.time()

    # tuning: every horizon on the tuning starts, for every training seed
    tune_ref = {h: reference_returns(args, device, h, TUNING_START, args.tuning_episodes, progress)
                for h in args.horizons}
    agents, model_info, policy_info = {}, {}, {}
    mpc_kinds = ["mpc"] if args.skip_policy else ["mpc", "mpc_value"]
    tuning: dict[str, dict[str, dict[str, float]]] = {k: {} for k in mpc_kinds}
    if not args.skip_latent:
        for seed in args.seeds:
            args.train_seed = seed
            run = Path(args.run_dir) / f"seed_{seed}"
            model, head, model_info[str(seed)] = prepare_latent_agent(
                args, run, device, progress, config_fn=lambda: kvae_config(dynamics=args.dynamics))
            ac = None
            if not args.skip_policy:
                ac, policy_info[str(seed)] = prepare_actor_critic(args, run, model, head, device, progress)
            agents[seed] = (model, head, ac)
            for kind in mpc_kinds:
                tuning[kind][str(seed)] = {}
                for h in args.horizons:
                    lat = latent_returns(args, model, head, device, h, TUNING_START, args.tuning_episodes, progress,
                                         actor_critic=ac if kind == "mpc_value" else None)
                    ref = tune_ref[h]
                    tuning[kind][str(seed)][str(h)] = normalised(float(lat["returns"].mean()),
                                                                 float(ref["random"]["returns"].mean()),
                                                                 float(ref["oracle"]["returns"].mean()))
    tuning_mean = {kind: {str(h): (sum(t[str(s)][str(h)] for s in args.seeds) / len(args.seeds) if t else None)
                          for h in args.horizons} for kind, t in tuning.items()}
    chosen = {kind: (max(args.horizons, key=lambda h: tuning_mean[kind][str(h)]) if tuning[kind]
                     else args.horizons[0]) for kind in mpc_kinds}
    horizon = chosen["mpc"]

    # evaluation: the chosen horizons on the held-out starts, against the oracle at MPC's horizon
    ref = reference_returns(args, device, horizon, EVALUATION_START, args.episodes, progress)
    R_random, R_oracle = float(ref["random"]["returns"].mean()), float(ref["oracle"]["returns"].mean())
    methods = {"mpc": "latent MPC (KVAE)", "mpc_value": "latent MPC + learned value", "actor": "actor alone"}
    per_seed: dict[str, dict] = {}
    scores: dict[str, list[float]] = {}
    runs = dict(ref)
    for seed, (model, head, ac) in agents.items():
        episodes = {"mpc": latent_returns(args, model, head, device, horizon, EVALUATION_START, args.episodes,
                                          progress)}
        if ac is not None:
            episodes["mpc_value"] = latent_returns(args, model, head, device, chosen["mpc_value"], EVALUATION_START,
                                                   args.episodes, progress, actor_critic=ac)
            episodes["actor"] = actor_returns(args, model, ac, device, EVALUATION_START, args.episodes, progress)
        per_seed[str(seed)] = {}
        for kind, lat in episodes.items():
            score = normalised(float(lat["returns"].mean()), R_random, R_oracle)
            per_seed[str(seed)][kind] = {**summary_of(lat), "normalised_score": score,
                                         "reaches_0.9": bool(score >= 0.9)}
            scores.setdefault(kind, []).append(score)
            runs[f"{kind} seed {seed}"] = lat
            print(f"seed {seed}: {methods[kind]}: normalised score {score:.3f}", flush=True)

    preset = "pendulum_small" if args.quick else "pendulum"
    results: dict = {
        "chosen_horizon": horizon, "chosen_horizons": chosen, "tuning_normalised_score": tuning,
        "tuning_mean": tuning_mean, "evaluation": {k: summary_of(v) for k, v in ref.items()}, "per_seed": per_seed,
        "training": model_info, "actor_critic": policy_info, "wall_seconds": time.time() - t_start,
        "env_steps": {"dataset_frames": dataset_frames(Path(args.data or f"runs/data/{preset}")),
                      "online": 0, "note": "every latent agent learns from the same offline dataset (train and "
                                           "valid splits of uniform-random-torque episodes); none interacts "
                                           "with the environment before evaluation"},
        "budget": budget_record(args.train_steps, args.batch_size, None, None,
                                "the oracle plans with the true dynamics and the same planner and horizon"),
        "budget_note": "there is no paper number for this task; the target is a normalised score of 0.9",
    }
    if scores:
        results["headline"] = {"metric": f"normalised score (0 = random, 1 = oracle at H = {horizon}) on "
                                         f"{args.episodes} held-out starts", "lower_is_better": False,
                               "per_method": {methods[k]: mean_ci(v) for k, v in scores.items()}}
        results["claims"] = [paired_claim(f"{methods[k]} reaches 0.9 of the oracle", [0.9] * len(v), v)
                             for k, v in scores.items()]
        results["secondary"] = [{"metric": "reaches a normalised score of 0.9 (1 = yes, 0 = no; the mean is the "
                                           "fraction of training seeds)",
                                 "per_method": {methods[k]: mean_ci([float(x >= 0.9) for x in v])
                                                for k, v in scores.items()}}]
    config = dict(vars(args))
    config.pop("train_seed", None)
    config["planner_config"] = asdict(make_planner_config(args.planner, horizon))
    from experiments._results import output_dir, save_results

    out = save_results("pendulum_swingup", config, results, module="pendulum_swingup", args=argv,
                       protocol=protocol, out_dir=output_dir(args.out_dir, args.quick))
    plot(runs, out.with_suffix(".png"))
    print(f"wrote {out}")
    return 0


def make_planner_config(planner: str, horizon: int):
    from worldmodels.agents.planners import make_planner

    return make_planner(planner, -2.0, 2.0, horizon=horizon).config


def prepare_latent_agent(args, run: Path, device, progress: bool, preset: str | None = None,
                         config_fn=None, train_steps: tuple[int, int] = (1500, 20000)):
    """Data, trained KVAE and reward head (each resumed from ``run`` if present).

    ``preset``: dataset preset (default pendulum / pendulum_small with ``--quick``);
    ``config_fn``: KVAE config factory; ``train_steps``: default (quick, full) updates.
    """
    from worldmodels.agents.commands.plan import load_world_model
    from worldmodels.agents.reward import RewardHead, RewardHeadConfig, train_reward_head
    from worldmodels.envs.generate import generate_dataset
    from worldmodels.kvae import KVAE
    from worldmodels.training import TrainConfig, Trainer

    preset = preset or ("pendulum_small" if args.quick else "pendulum")
    config_fn = config_fn or kvae_config
    data = Path(args.data or f"runs/data/{preset}")
    generate_dataset(preset, data, progress=progress)
    info: dict = {"dataset": str(data)}
    seed = int(getattr(args, "train_seed", 0))
    steps = args.train_steps or (train_steps[0] if args.quick else train_steps[1])
    run_config = {"preset": preset, "checkpoint": args.checkpoint, "seed": seed, "reward_steps": args.reward_steps,
                  "kvae": None if args.checkpoint else config_fn().__dict__, "steps": steps,
                  "batch_size": args.batch_size, "lr": args.lr, "freeze_dynamics": 1 if args.quick else 5}
    prepare_run_dir(run, run_config, retrain=getattr(args, "retrain", False))
    info["config_hash"] = config_hash(run_config)
    if args.checkpoint:
        model = load_world_model(args.checkpoint, device=str(device))
    else:
        kdir = run / "kvae"
        done = kdir / "summary.json"
        if not done.exists():
            torch.manual_seed(seed)
            model = KVAE(config_fn())
            cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, schedule="staircase",
                              decay_rate=0.85, decay_every=max(steps // 10, 1), decay_unit="steps",
                              freeze={"dynamics": 1 if args.quick else 5}, grad_clip=150.0, seed=seed,
                              device=str(device), progress=progress, tensorboard=False,
                              val_every=max(steps // 5, 1), checkpoint_every=max(steps // 5, 1))
            summary = Trainer(model, cfg, kdir, dataset_split(data, "train"), dataset_split(data, "valid"),
                              resume=(kdir / "checkpoints").exists()).fit()
            info["kvae_train_summary"] = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
        model = load_world_model(kdir, device=str(device))
    model.eval()
    head_path = run / "reward_head.pt"
    metrics_path = run / "reward_head_metrics.json"
    if head_path.exists() and metrics_path.exists():
        head = RewardHead.load(head_path, device=device)
        metrics = json.loads(metrics_path.read_text())
    else:
        hcfg = RewardHeadConfig(latent_dim=model.latent_dim, action_dim=model.action_dim,
                                steps=args.reward_steps, skip_first=2)
        head, metrics = train_reward_head(model, batches(data, "train"), batches(data, "valid"), hcfg,
                                          device=device, progress=progress)
        head.save(head_path)
        metrics_path.write_text(json.dumps(metrics, indent=2))
    info["reward_head"] = metrics
    return model, head.eval(), info


class _NpzSplit(torch.utils.data.Dataset):
    """Fallback reader of one split of a dataset folder (contract 1) while ``worldmodels.data``
    is unavailable: items are dicts of tensors ``obs [T, C, H, W]`` in [0, 1], ``actions``,
    ``rewards``, ``states``, ``mask``."""

    def __init__(self, root: Path, split: str):
        files = sorted((Path(root) / split).glob("shard_*.npz"))
        if not files:
            raise FileNotFoundError(f"no shards in {Path(root) / split}")
        arrs = [np.load(f) for f in files]
        self.obs = torch.from_numpy(np.concatenate([a["obs"] for a in arrs]))  # uint8 NTHWC
        self.actions = torch.from_numpy(np.concatenate([a["actions"] for a in arrs]))
        self.rewards = torch.from_numpy(np.concatenate([a["rewards"] for a in arrs]))
        self.states = torch.from_numpy(np.concatenate([a["states"] for a in arrs]))

    def __len__(self) -> int:
        return self.obs.shape[0]

    def __getitem__(self, i):
        obs = self.obs[i].permute(0, 3, 1, 2).float() / 255.0
        return {"obs": obs, "actions": self.actions[i], "rewards": self.rewards[i],
                "states": self.states[i], "mask": torch.ones(obs.shape[0])}


def dataset_split(root: Path, split: str):
    """``worldmodels.data.SequenceDataset`` if available, else the npz fallback."""
    try:
        from worldmodels.data import SequenceDataset
    except ImportError:
        return _NpzSplit(root, split)
    return SequenceDataset(str(root), split=split)


def batches(root: Path, split: str, batch_size: int = 64):
    """Batches (``worldmodels.base.Batch``) of one split, in order."""
    try:
        from worldmodels.data import make_dataloader
    except ImportError:
        from worldmodels.base import Batch

        ds = _NpzSplit(root, split)
        return [Batch(obs=ds.obs[i:i + batch_size].permute(0, 1, 4, 2, 3).float() / 255.0,
                      actions=ds.actions[i:i + batch_size], mask=torch.ones(ds.obs[i:i + batch_size].shape[:2]),
                      rewards=ds.rewards[i:i + batch_size], states=ds.states[i:i + batch_size])
                for i in range(0, len(ds), batch_size)]
    return make_dataloader(str(root), split, batch_size, shuffle=False)


def plot(runs: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    names = list(runs)
    ax[0].bar(names, [runs[n]["returns"].mean() for n in names],
              yerr=[runs[n]["returns"].std() for n in names], capsize=4)
    ax[0].set_ylabel("mean return (20 episodes)")
    ax[0].set_title("pendulum swing-up")
    for n in names:
        th = np.arctan2(runs[n]["states"][:, :, 1], runs[n]["states"][:, :, 0])
        ax[1].plot(np.abs(th).mean(0), label=n)
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("mean |angle from upright| (rad)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
