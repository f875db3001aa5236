"""``worldmodels train-policy``: train a latent actor-critic in the imagination of a trained model.

Examples::

    # the pendulum preset: start states from the dataset, rewards from the model's reward head
    worldmodels train-policy --checkpoint runs/pendulum/kvae --data runs/data/pendulum \\
        --config actor_critic_pendulum --run-dir runs/pendulum/policy
    # then act with the actor alone, or plan with its critic as MPC's terminal value
    worldmodels plan --checkpoint runs/pendulum/kvae --value runs/pendulum/policy

The reward head is ``--reward-head`` or the one saved next to the checkpoint (trained on
``--data`` by ``worldmodels plan`` when there is none). The action space comes from ``--env``.
Writes ``<run-dir>/actor_critic.pt``, ``metrics.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import add_config_args, apply_overrides, load_config
from .validation import (
    DEVICE_CHOICES,
    MAX_BATCH_SIZE,
    MAX_HORIZON,
    MAX_TRAIN_STEPS,
    UsageError,
    check_checkpoint_path,
    check_choice,
    check_dataclass_values,
    check_dataset,
    check_device,
    check_int,
    check_model_fits,
    check_seed,
    resolve_device,
)

HELP = "train a latent actor-critic in a trained world model's imagination (policy and MPC value)"
SECTIONS = ("name", "env", "data", "actor_critic", "run_dir")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train-policy", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--checkpoint", required=True, help="trained world model: a run folder or a .pt checkpoint")
    p.add_argument("--data", default=None, help="dataset whose train split gives the start states "
                                                "(default: the config's data.root)")
    p.add_argument("--reward-head", default=None, help="reward head (.pt); default <checkpoint>/reward_head.pt")
    p.add_argument("--env", default=None, help="Gymnasium id whose action space the actor uses "
                                               "(default: the config's env, else worldmodels/Pendulum-v0)")
    p.add_argument("--run-dir", default=None, help="output folder (default: <checkpoint folder>/policy)")
    p.add_argument("--updates", type=int, default=None, help="overrides actor_critic.updates")
    p.add_argument("--seed", type=int, default=None, help="overrides actor_critic.seed")
    p.add_argument("--overwrite", action="store_true", help="replace an actor-critic already in --run-dir")
    p.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    return p


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config (preset or file, ``--set`` and the flags), checked before any work."""
    from worldmodels.agents.policy import ActorCriticConfig

    cfg = apply_overrides(load_config(args.config), args.overrides)
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise UsageError(f"config: unknown section(s) {unknown}; expected among {list(SECTIONS)}")
    ac = cfg.get("actor_critic") or {}
    if not isinstance(ac, dict):
        raise UsageError(f"actor_critic: expected a mapping, got {ac!r}")
    if args.updates is not None:
        ac["updates"] = check_int("--updates", args.updates, 1, MAX_TRAIN_STEPS)
    if args.seed is not None:
        ac["seed"] = check_seed("--seed", args.seed)
    check_dataclass_values(ActorCriticConfig, ac, "actor_critic")
    for key, hi in (("updates", MAX_TRAIN_STEPS), ("batch_size", MAX_BATCH_SIZE), ("horizon", MAX_HORIZON),
                    ("context", MAX_HORIZON)):
        if key in ac:
            check_int(f"actor_critic.{key}", ac[key], 1, hi)
    cfg["actor_critic"] = ac
    data = cfg.get("data") or {}
    if not isinstance(data, dict):
        raise UsageError(f"data: expected a mapping, got {data!r}")
    cfg["data"] = {"root": args.data or data.get("root")}
    cfg["env"] = args.env or cfg.get("env") or "worldmodels/Pendulum-v0"
    return cfg


def check_args(args: argparse.Namespace, cfg: dict[str, Any]) -> Path:
    """Every option and file, before anything is loaded or written; returns the run folder."""
    import worldmodels.envs as envs_pkg
    from worldmodels.agents.policy import POLICY_FILE

    from .plan import default_reward_head

    check_choice("--env", cfg["env"], sorted(envs_pkg.ENV_IDS))
    check_device("--device", args.device)
    check_checkpoint_path("--checkpoint", args.checkpoint)
    if not cfg["data"]["root"]:
        raise UsageError("--data: expected the dataset whose train split gives the start states")
    check_dataset("--data", cfg["data"]["root"], "train")
    head = Path(args.reward_head) if args.reward_head else default_reward_head(args.checkpoint)
    if not head.is_file():
        raise FileNotFoundError(f"--reward-head {head}: no such file (train one with worldmodels plan "
                                "--checkpoint ... --data ..., or pass --reward-head)")
    ck = Path(args.checkpoint)
    run_dir = Path(args.run_dir or cfg.get("run_dir") or ((ck if ck.is_dir() else ck.parent) / "policy"))
    if (run_dir / POLICY_FILE).exists() and not args.overwrite:
        raise UsageError(f"--run-dir {run_dir}: holds a trained actor-critic; choose another folder or pass "
                         "--overwrite")
    return run_dir


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from worldmodels.agents.policy import ActorCriticConfig, train_actor_critic
    from worldmodels.agents.reward import RewardHead

    from .plan import default_reward_head, env_layout_of, load_world_model

    cfg = resolve_config(args)
    run_dir = check_args(args, cfg)
    model = load_world_model(args.checkpoint, device="cpu")
    check_model_fits("--checkpoint", model, *env_layout_of(cfg["env"]), cfg["env"])
    head = RewardHead.load(Path(args.reward_head) if args.reward_head else default_reward_head(args.checkpoint))
    env = gym.make(cfg["env"])
    try:
        ac_cfg = ActorCriticConfig.from_dict(cfg["actor_critic"]).for_action_space(env.action_space).for_model(model)
    except (TypeError, ValueError) as e:
        raise UsageError(f"actor_critic: {e}") from e
    finally:
        env.close()
    device = resolve_device("--device", args.device)
    ac, metrics = train_actor_critic(model.to(device), head.to(device), cfg["data"]["root"], ac_cfg, run_dir,
                                     device=device, progress=not args.no_progress, overwrite=args.overwrite)
    last = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    print(json.dumps(last))
    print(f"actor-critic: {run_dir}")
    print(f"plan with its value: worldmodels plan --checkpoint {args.checkpoint} --value {run_dir}")
    return 0
