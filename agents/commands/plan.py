"""``worldmodels plan``: run the latent MPC agent (or the oracle) in a real environment.

Examples::

    # the trained KVAE, a reward head trained on the dataset's rewards (saved next to the model)
    worldmodels plan --checkpoint runs/pendulum_swingup/kvae --data runs/data/pendulum \\
        --env worldmodels/Pendulum-v0 --planner cem_fast --episodes 4 --steps 200
    # the oracle baseline (true dynamics, same planner)
    worldmodels plan --oracle --env worldmodels/Pendulum-v0 --planner planet

Prints the mean return and writes ``<out>/plan.json``, the episode video (real frames) and the
real-vs-imagined video of the first episode.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worldmodels.atomic_io import atomic_write_json

if TYPE_CHECKING:
    from torch import nn

    from worldmodels.base import WorldModel

from .validation import (
    DEVICE_CHOICES,
    MAX_EPISODE_STEPS,
    MAX_EPISODES,
    MAX_HORIZON,
    MAX_REWARD_STEPS,
    UsageError,
    check_checkpoint_path,
    check_choice,
    check_dataset,
    check_device,
    check_float,
    check_int,
    check_model_fits,
    check_planner,
    check_seed,
    resolve_device,
)

HELP = "run the latent MPC agent (planner in the world model's latent space) in an environment"

ORACLES = {"worldmodels/Pendulum-v0": "pendulum", "worldmodels/BouncingBall-v0": "ball"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    from worldmodels.agents.planners import PLANNERS, PRESETS

    p = subparsers.add_parser("plan", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="trained world model: a run folder or a .pt checkpoint")
    src.add_argument("--oracle", action="store_true", help="plan with the true dynamics (pendulum, ball)")
    p.add_argument("--env", default="worldmodels/Pendulum-v0", help="Gymnasium id (default: %(default)s)")
    p.add_argument("--reward-head", default=None, help="trained reward head (.pt); default <checkpoint>/reward_head.pt")
    p.add_argument("--data", default=None, help="dataset to train a reward head on when none exists")
    p.add_argument("--reward-steps", type=int, default=2000, help="reward head training updates")
    p.add_argument("--planner", default="cem_fast", choices=sorted(set(PRESETS) | set(PLANNERS)),
                   help="planner preset or name (default: %(default)s; 'planet' = H12 J1000 K100 I10)")
    p.add_argument("--horizon", type=int, default=None, help="override the planning horizon")
    p.add_argument("--episodes", type=int, default=4, help="episodes, planned as one batch")
    p.add_argument("--steps", type=int, default=200, help="steps per episode")
    p.add_argument("--context", type=int, default=8, help="frames the agent filters at each step")
    p.add_argument("--replan-every", type=int, default=1)
    p.add_argument("--terminal-weight", type=float, default=0.0,
                   help="the last imagined step's reward counts 1 + this many times (a short horizon's stand-in "
                        "for what comes after it; default: %(default)s)")
    p.add_argument("--value", default=None, metavar="RUN",
                   help="an actor-critic (worldmodels train-policy run folder or .pt) whose critic is the terminal "
                        "value: the objective becomes sum_h discount^h r_h + discount^H V(z_H), with its discount")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help=f"{DEVICE_CHOICES} (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint or runs>/plan)")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def plan_episodes(model, reward_fn, env_id: str, *, planner: str = "cem_fast", planner_overrides=None,
                  episodes: int = 4, steps: int = 200, context: int = 8, replan_every: int = 1,
                  terminal_weight: float = 0.0, seed: int = 0, device: str = "cpu", use_state: bool = False,
                  value_fn=None, discount: float = 1.0,
                  out_dir: str | Path | None = None, video: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run ``episodes`` batched episodes of the MPC agent; returns returns and file paths.

    ``use_state=True`` feeds ``info["state"]`` instead of the frames (oracle models);
    ``value_fn`` (latents ``[..., D]`` -> ``[...]``) adds ``discount^H V(z_H)`` to the objective.
    """
    import torch

    from worldmodels.agents.mpc import MPCAgent, MPCConfig
    from worldmodels.agents.planners import make_planner
    from worldmodels.agents.rl_loop import make_vector_env, rollout

    venv = make_vector_env(env_id, episodes, max_episode_steps=steps + 1)
    pl = make_planner(planner, action_space=venv.single_action_space, **(planner_overrides or {}))
    agent = MPCAgent(model, pl, reward_fn,
                     MPCConfig(context=1 if use_state else context, replan_every=replan_every, seed=seed,
                               terminal_weight=terminal_weight, discount=discount,
                               record=video and not use_state),
                     num_envs=episodes, device=device, value_fn=value_fn)
    if use_state:
        policy = lambda o, i: agent.act(i["state"])  # noqa: E731
    else:
        policy = lambda o, i: agent.act(o)  # noqa: E731
    t0 = time.time()
    with torch.no_grad():
        out = rollout(venv, policy, steps, seed=[seed + i for i in range(episodes)], reset_fn=agent.reset,
                      progress=progress, desc="plan")
    seconds = time.time() - t0
    result: dict[str, Any] = {
        "env": env_id, "planner": planner, "planner_config": vars(pl.config), "terminal_weight": terminal_weight,
        "discount": discount, "value": value_fn is not None,
        "episodes": episodes,
        "steps": steps, "mean_return": float(out["returns"].mean()), "std_return": float(out["returns"].std()),
        "returns": out["returns"].tolist(), "seconds": seconds,
        "decisions_per_s": episodes * steps / seconds, "files": {},
    }
    if ORACLES.get(env_id) == "pendulum" and "states" in out:
        from worldmodels.agents.oracle import upright_fraction

        result["upright_fraction_last50"] = upright_fraction(out["states"]).tolist()
    if out_dir is not None and video:
        from worldmodels.video import write_video

        out_dir = Path(out_dir)
        result["files"]["episode_video"] = str(write_video(out["obs"][0], out_dir / "episode.mp4", fps=20,
                                                           scale=max(1, 128 // out["obs"].shape[2])))
        if agent.imagined:
            result["files"]["imagination_video"] = str(agent.imagination_video(out_dir / "imagination.mp4"))
    return result


def _oracle(env_id: str):
    from worldmodels.agents.oracle import BallOracle, PendulumOracle, TargetDistanceReward, pendulum_reward

    kind = ORACLES.get(env_id)
    if kind == "pendulum":
        return PendulumOracle(), pendulum_reward
    if kind == "ball":
        return BallOracle(), TargetDistanceReward()
    raise UsageError(f"--env: expected an environment with an oracle ({', '.join(sorted(ORACLES))}), "
                     f"got {env_id!r}")


def saved_reward_head(args: argparse.Namespace):
    """``(head, path)``: the reward head of ``--reward-head`` or the one saved next to the
    checkpoint, loaded on the CPU; ``head`` is None where there is none yet (`fit_reward_head`)."""
    from worldmodels.agents.reward import RewardHead

    path = Path(args.reward_head) if args.reward_head else default_reward_head(args.checkpoint)
    return (RewardHead.load(path) if path.exists() else None), path


def fit_reward_head(args: argparse.Namespace, model, path: Path, device: str):
    """A new reward head for ``model`` trained on ``--data`` (``--reward-steps`` updates), saved
    at ``path``; returns ``(head, metrics)``."""
    from worldmodels.agents.reward import RewardHeadConfig, train_reward_head
    from worldmodels.data import make_dataloader

    if not args.data:
        raise UsageError(f"--data: required to train a reward head, there is none at {path} (or pass --reward-head)")
    cfg = RewardHeadConfig(latent_dim=model.latent_dim, action_dim=model.action_dim, steps=args.reward_steps)
    head, metrics = train_reward_head(model, make_dataloader(args.data, "train", 64, shuffle=False),
                                      make_dataloader(args.data, "valid", 64, shuffle=False), cfg,
                                      device=device, progress=not args.no_progress)
    head.save(path)
    print(f"reward head: held-out MSE {metrics['valid_mse']:.4g} (R^2 {metrics['valid_r2']:.3f}) -> {path}")
    return head, metrics


def check_args(args: argparse.Namespace) -> None:
    """Every option, under its own name, before anything is loaded or written."""
    import worldmodels.envs as envs

    check_choice("--env", args.env, sorted(envs.ENV_IDS))
    if args.oracle and args.env not in ORACLES:
        raise UsageError(f"--env: expected an environment with an oracle ({', '.join(sorted(ORACLES))}) for "
                         f"--oracle, got {args.env!r}")
    check_int("--episodes", args.episodes, 1, MAX_EPISODES)
    check_int("--steps", args.steps, 1, MAX_EPISODE_STEPS)
    if args.horizon is not None:
        check_int("--horizon", args.horizon, 1, MAX_HORIZON)
    check_int("--context", args.context, 1, MAX_HORIZON)
    check_int("--replan-every", args.replan_every, 1, MAX_HORIZON)
    check_float("--terminal-weight", args.terminal_weight, 0.0)
    check_int("--reward-steps", args.reward_steps, 1, MAX_REWARD_STEPS)
    check_planner("--planner", args.planner, args.env, args.horizon)
    check_seed("--seed", args.seed)
    check_device("--device", args.device)
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: expected a folder, got an existing file")
    if args.oracle:
        if args.value is not None:
            raise UsageError("--value: expected a world model (--checkpoint); the oracle plans without a value")
        return
    check_checkpoint_path("--checkpoint", args.checkpoint)
    if args.value is not None and not value_path(args.value).is_file():
        raise FileNotFoundError(f"--value {args.value}: no actor-critic file (expected a train-policy run folder "
                                "or its .pt)")
    if args.reward_head is not None:
        if not Path(args.reward_head).is_file():
            raise FileNotFoundError(f"--reward-head {args.reward_head}: no such file")
    elif not default_reward_head(args.checkpoint).is_file():
        if not args.data:
            raise UsageError(f"--data: required to train a reward head, there is none at "
                             f"{default_reward_head(args.checkpoint)} (or pass --reward-head)")
        for split in ("train", "valid"):
            check_dataset("--data", args.data, split,
                          split_option="--data (a reward head trains on its train and valid splits)")


def env_layout_of(env_id: str) -> tuple[list[int], int]:
    """``(obs_shape [H, W, C], action_dim)`` of a registered environment."""
    import gymnasium as gym

    from worldmodels.envs.generate import env_layout

    env = gym.make(env_id).unwrapped
    layout = env_layout(env)
    env.close()
    return layout["obs_shape"], layout["action_dim"]


def value_path(run: str | Path) -> Path:
    """The actor-critic file of a ``train-policy`` run folder (or the file itself)."""
    from worldmodels.agents.policy import POLICY_FILE

    p = Path(run)
    return p / POLICY_FILE if p.is_dir() else p


def default_reward_head(checkpoint: str | Path) -> Path:
    """Where the reward head of a checkpoint (file or run folder) is saved: next to it."""
    ckpt = Path(checkpoint)
    return (ckpt if ckpt.is_dir() else ckpt.parent) / "reward_head.pt"


def run(args: argparse.Namespace) -> int:
    check_args(args)
    overrides = {} if args.horizon is None else {"horizon": args.horizon}
    info: dict[str, Any] = {}
    value = None
    if args.oracle:
        device = resolve_device("--device", args.device)
        model, reward_fn = _oracle(args.env)
        model = model.to(device)
        out = Path(args.out or "runs/plan_oracle")
    else:  # the files are read and checked on the CPU before the device notice and any work
        model = load_world_model(args.checkpoint, device="cpu")
        check_model_fits("--checkpoint", model, *env_layout_of(args.env), args.env)
        reward_fn, head_path = saved_reward_head(args)
        device = resolve_device("--device", args.device)
        model = model.to(device)
        if args.value is not None:
            from worldmodels.agents.policy import ActorCritic

            value = ActorCritic.load(value_path(args.value))
            if value.config.latent_dim != model.latent_dim:
                raise UsageError(f"--value {args.value}: its critic reads {value.config.latent_dim}-d latents, "
                                 f"the model's are {model.latent_dim}-d")
        metrics = None
        if reward_fn is None:
            reward_fn, metrics = fit_reward_head(args, model, head_path, device)
        reward_fn = reward_fn.to(device)
        info = {"checkpoint": args.checkpoint, "reward_head": str(head_path), "reward_head_metrics": metrics,
                "value_run": args.value}
        if value is not None:
            value = value.to(device).eval()
        ck = Path(args.checkpoint)
        out = Path(args.out or ((ck if ck.is_dir() else ck.parent) / "plan"))
    out.mkdir(parents=True, exist_ok=True)
    result = plan_episodes(model, reward_fn, args.env, planner=args.planner, planner_overrides=overrides,
                           episodes=args.episodes, steps=args.steps, context=args.context,
                           replan_every=args.replan_every, terminal_weight=args.terminal_weight,
                           seed=args.seed, device=device,
                           value_fn=None if value is None else value.value,
                           discount=1.0 if value is None else value.config.discount,
                           use_state=args.oracle, out_dir=out, video=not args.no_video,
                           progress=not args.no_progress)
    result.update(info)
    atomic_write_json(out / "plan.json", result)
    print(f"mean return {result['mean_return']:.2f} +- {result['std_return']:.2f} over {args.episodes} episodes "
          f"({result['decisions_per_s']:.1f} decisions/s)")
    for k, v in result["files"].items():
        print(f"{k}: {v}")
    print(f"summary: {out / 'plan.json'}")
    return 0


def fit_demo_reward_head(model, dataset: str | Path, steps: int, *, device: str = "cpu", progress: bool = True):
    """The demo's reward head on ``model``'s filtered latents of ``dataset`` (train split; errors
    on the valid split); returns ``(head, metrics)``."""
    from worldmodels.agents.reward import RewardHeadConfig, train_reward_head
    from worldmodels.data import make_dataloader

    return train_reward_head(
        model, make_dataloader(str(dataset), "train", 64, shuffle=False),
        make_dataloader(str(dataset), "valid", 64, shuffle=False),
        RewardHeadConfig(latent_dim=model.latent_dim, action_dim=model.action_dim, steps=steps),
        device=device, progress=progress)


def demo_rl_config(*, rounds: int, planner: str, horizon: int, episodes: int, episode_steps: int,
                   train_steps: int, reward_steps: int, device: str = "cpu"):
    """The demo's PlaNet-style rounds in Pendulum-v0 (``worldmodels.agents.rl_loop.RLLoopConfig``): no per-round
    evaluation or video; each round's reward head gets a third of the base head's updates (>= 500)."""
    from worldmodels.agents.rl_loop import RLLoopConfig

    return RLLoopConfig(env_id="worldmodels/Pendulum-v0", rounds=rounds, collect_episodes=episodes,
                        episode_steps=episode_steps, eval_episodes=0, planner=planner,
                        planner_overrides={"horizon": horizon}, train_steps=train_steps,
                        reward_steps=max(500, reward_steps // 3), device=str(device), video=False)


def swingup_demo(run_dir: str | Path, *, device: str = "cpu", checkpoint: str | None = None,
                 dataset: str = "runs/data/pendulum_small", train_steps: int = 400, reward_steps: int = 1500,
                 episodes: int = 1, steps: int = 200, planner: str = "cem_fast", horizon: int = 20,
                 rl_rounds: int = 0, rl_episodes: int = 8, rl_train_steps: int = 200, rl_horizon: int | None = None,
                 rl_episode_steps: int = 150, terminal_weight: float = 0.0,
                 progress: bool = True) -> dict[str, Any]:
    """The demo's last stage: a KVAE on pixel-pendulum data swings the pendulum up by latent MPC.

    Uses ``checkpoint`` if given, else trains a small KVAE on ``dataset`` (``pendulum_small``,
    generated if missing) for ``train_steps`` updates; fits a reward head; runs ``rl_rounds``
    PlaNet-style rounds in ``<run_dir>/swingup/rl`` (``worldmodels.agents.rl_loop``: ``rl_episodes`` MPC
    episodes of ``rl_episode_steps`` steps with exploration noise, planned over ``rl_horizon``
    steps (default ``horizon``), join the data; ``rl_train_steps`` fine-tuning updates; a new
    reward head); runs ``episodes`` episodes (``terminal_weight``: see ``MPCConfig``); writes
    ``<run_dir>/swingup/{episode.mp4, imagination.mp4, plan.json}``.

    The random-torque data rarely pass the top slowly, so a model trained on them alone tends to
    swing through it or oscillate around it; rounds of the agent's own swing-ups supply those
    states (README, "The demo": measured over three training seeds).
    """
    import torch

    from worldmodels.agents.reward import RewardHead
    from worldmodels.envs.generate import generate_dataset
    from worldmodels.training import TrainConfig, Trainer

    out = Path(run_dir) / "swingup"
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        from worldmodels.kvae import KVAE, KVAEConfig

        generate_dataset("pendulum_small", dataset, progress=progress)
        torch.manual_seed(0)
        model = KVAE(KVAEConfig(obs_shape=(1, 16, 16), action_dim=1, a_dim=3, z_dim=6, num_modes=4))
        cfg = TrainConfig(steps=train_steps, batch_size=32, lr=3e-3, grad_clip=150.0, device=device,
                          progress=progress, tensorboard=False, checkpoint_every=None)
        Trainer(model, cfg, out / "kvae", dataset, dataset, resume="auto").fit()
        checkpoint = str(out / "kvae")
    model = load_world_model(checkpoint, device=device)
    head, metrics = fit_demo_reward_head(model, dataset, reward_steps, device=device, progress=progress)
    head.save(out / "reward_head.pt")
    rounds: list[dict[str, Any]] = []
    if rl_rounds > 0:
        from worldmodels.agents.rl_loop import run_rl_loop

        rl_cfg = demo_rl_config(rounds=rl_rounds, planner=planner, horizon=rl_horizon or horizon,
                                episodes=rl_episodes, episode_steps=rl_episode_steps, train_steps=rl_train_steps,
                                reward_steps=reward_steps, device=device)
        rounds = run_rl_loop(model, head, dataset, out / "rl", rl_cfg, progress=progress)
        last = out / "rl" / f"round_{rounds[-1]['round']:03d}"
        model = load_world_model(last / "model", device=device)
        head = RewardHead.load(last / "reward_head.pt", device=device)
        metrics = rounds[-1]["reward_head"]
        checkpoint = str(last / "model")
    result = plan_episodes(model, head, "worldmodels/Pendulum-v0", planner=planner,
                           planner_overrides={"horizon": horizon}, episodes=episodes, steps=steps,
                           terminal_weight=terminal_weight, device=device, out_dir=out, progress=progress)
    result["reward_head_metrics"] = metrics
    result["checkpoint"] = checkpoint
    result["rl_rounds"] = [{k: v for k, v in r.items() if k != "reward_head"} for r in rounds]
    atomic_write_json(out / "plan.json", result)
    return result


def load_world_model(path: str | Path, device: str = "cpu") -> WorldModel:
    """``worldmodels.training.load``, tolerating checkpoints that lack *buffers* the model class
    gained since (e.g. training counters); missing parameters still raise. A ``TypeError`` unless
    the checkpoint holds a `WorldModel`."""
    from worldmodels.base import as_world_model

    return as_world_model(_load_tolerant(path, device), str(path))


def _load_tolerant(path: str | Path, device: str) -> nn.Module:
    from worldmodels.training import CheckpointError, load
    from worldmodels.training.checkpoint import build_model, read_checkpoint

    try:
        return load(path, device=device)
    except CheckpointError:
        ckpt = read_checkpoint(path, map_location="cpu")
        model = build_model(ckpt)
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
        params = {n for n, _ in model.named_parameters()}
        if unexpected or any(k in params for k in missing):
            raise
        print(f"note: checkpoint {path} lacks buffers {missing}; kept their initial values")
        return model.to(device).eval()
