"""``worldmodels generate``: make a sequence dataset (sharded ``.npz`` + ``manifest.json``).

Examples::

    worldmodels generate --list
    worldmodels generate bouncing_ball --out runs/data/bouncing_ball --workers 2
    worldmodels generate pendulum_small --train 1000 --seq-len 30 --out runs/data/pendulum_1k
    worldmodels generate image_navigation --env-kwargs '{"obstacles": true}' --out runs/data/nav_obstacles
    worldmodels generate --env CartPole-v1 --size 32 --grayscale --seq-len 20 --out runs/data/cartpole

``--env`` takes any registered Gymnasium id whose environment renders ``rgb_array`` frames: the
renders, resized (``--size``), optionally grey (``--grayscale``), are the observations, each
action is repeated ``--frame-skip`` times, the action space is read from the environment (Box:
float actions, Discrete: one-hot) and a flat vector observation is recorded as the true state.

An interrupted run resumes when started again with the same arguments; ``--overwrite``
regenerates a folder that holds a different dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from pathlib import Path

from .validation import (
    MAX_SEQ_LEN,
    MAX_SHARD_SIZE,
    MAX_SPLIT_SEQUENCES,
    MAX_WORKERS,
    UsageError,
    check_choice,
    check_finite_values,
    check_int,
    check_name,
    check_seed,
)

HELP = "generate a sequence dataset from a preset or any Gymnasium env (sharded .npz + manifest.json)"
#: sizes of a dataset made with --env when no option says otherwise
ENV_DEFAULTS = {"seq_len": 20, "splits": {"train": 256, "valid": 32, "test": 32}, "shard_size": 64,
                "policy": "random", "frame_size": (32, 32)}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("generate", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", nargs="?", help="preset name (see --list); or use --env")
    p.add_argument("--env", default=None, metavar="ID",
                   help="any registered Gymnasium id that renders rgb_array frames, e.g. CartPole-v1")
    p.add_argument("--size", default=None, metavar="H[xW]",
                   help="frame size of an --env dataset (area resizing; default 32)")
    p.add_argument("--grayscale", action="store_true", help="one grey channel (with --env)")
    p.add_argument("--frame-skip", type=int, default=None, metavar="K",
                   help="repeat each action K times, sum the rewards, keep the last frame (with --env)")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--out", default=None, help="dataset folder (default: runs/data/<preset>)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="regenerate everything (no resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for split in ("train", "valid", "test"):
        p.add_argument(f"--{split}", type=int, default=None, metavar="N", help=f"number of {split} sequences")
    p.add_argument("--seq-len", type=int, default=None, help="frames per sequence")
    p.add_argument("--seed", type=int, default=None, help="root seed")
    p.add_argument("--shard-size", type=int, default=None, help="sequences per shard file")
    p.add_argument("--policy", default=None,
                   help="exploration policy: zero | uniform | poisson_repeat | random (default with --env)")
    p.add_argument("--env-kwargs", default=None,
                   help="JSON object of environment options, merged into the preset's (passed to gymnasium.make)")
    p.add_argument("--name", default=None, help="dataset name recorded in the manifest")
    return p


def spec_from_args(args: argparse.Namespace):
    """The preset ``DatasetSpec`` with the command-line overrides applied, every option checked
    (`UsageError` naming the option) before anything is generated."""
    from worldmodels.envs.generate import PRESETS, get_spec
    from worldmodels.envs.policies import POLICIES

    if args.env is not None:
        if args.preset:
            raise UsageError(f"--env: give a preset or --env, not both (got {args.preset!r} and --env {args.env})")
        spec = env_spec(args)
    else:
        if not args.preset:
            raise UsageError(f"preset: expected a preset name (worldmodels generate --list): {', '.join(PRESETS)}"
                             " (or --env ID for any Gymnasium environment)")
        check_choice("preset", args.preset, PRESETS)
        for option, given in (("--size", args.size is not None), ("--grayscale", args.grayscale),
                              ("--frame-skip", args.frame_skip is not None)):
            if given:
                raise UsageError(f"{option}: applies to --env datasets; preset {args.preset!r} makes its own frames")
        spec = get_spec(args.preset)
    changes: dict = {}
    splits = dict(spec.splits)
    for split in ("train", "valid", "test"):
        n = getattr(args, split)
        if n is not None:
            check_int(f"--{split}", n, 0, MAX_SPLIT_SEQUENCES)
            if n == 0:
                splits.pop(split, None)
            else:
                splits[split] = n
    if not splits:
        raise UsageError("--train/--valid/--test: expected at least one split with sequences, got none")
    if splits != spec.splits:
        changes["splits"] = splits
    if args.seq_len is not None:
        changes["seq_len"] = check_int("--seq-len", args.seq_len, 1, MAX_SEQ_LEN)
    if args.seed is not None:
        changes["seed"] = check_seed("--seed", args.seed)
    if args.shard_size is not None:
        changes["shard_size"] = check_int("--shard-size", args.shard_size, 1, MAX_SHARD_SIZE)
    if args.policy is not None:
        changes["policy"] = check_choice("--policy", args.policy, sorted(POLICIES))
    if args.name is not None:
        changes["name"] = check_name("--name", args.name)
    if args.env_kwargs:
        changes["env_kwargs"] = {**spec.env_kwargs, **env_kwargs_from_json(args.env_kwargs, spec.env_id)}
    if changes.get("policy") not in (None, spec.policy):
        changes.setdefault("policy_kwargs", {})
    spec = dataclasses.replace(spec, **changes) if changes else spec
    check_env_options(spec)
    return spec


def parse_size(option: str, text: str) -> tuple[int, int]:
    """``"H"`` or ``"HxW"`` as ``(H, W)`` with sides in ``[1, MAX_FRAME_SIDE]``."""
    from worldmodels.envs.gym_pixels import MAX_FRAME_SIDE

    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"{option}: expected H or HxW (e.g. 32 or 48x64), got {text!r}")
    sides = [check_int(option, int(p), 1, MAX_FRAME_SIDE) for p in parts]
    return (sides[0], sides[-1])


def env_spec(args: argparse.Namespace):
    """The ``DatasetSpec`` of ``--env ID`` with its pixel options (defaults: ``ENV_DEFAULTS``)."""
    from worldmodels.envs import ENV_IDS
    from worldmodels.envs.generate import DatasetSpec
    from worldmodels.envs.gym_pixels import MAX_FRAME_SKIP, EnvNotSupported, check_registered

    try:
        env_id = check_registered(args.env)
    except EnvNotSupported as e:
        raise UsageError(f"--env: {e}") from e
    native = env_id in ENV_IDS
    pixel: dict = {}
    if native:
        for option, given in (("--size", args.size is not None), ("--grayscale", args.grayscale),
                              ("--frame-skip", args.frame_skip is not None)):
            if given:
                raise UsageError(f"{option}: applies to Gymnasium envs outside worldmodels/; {env_id} makes its "
                                 "own frames")
    else:
        pixel["frame_size"] = parse_size("--size", args.size) if args.size is not None else ENV_DEFAULTS["frame_size"]
        pixel["grayscale"] = bool(args.grayscale)
        if args.frame_skip is not None:
            pixel["frame_skip"] = check_int("--frame-skip", args.frame_skip, 1, MAX_FRAME_SKIP)
    name = env_id.replace("/", "_")
    return DatasetSpec(name, env_id, ENV_DEFAULTS["seq_len"], dict(ENV_DEFAULTS["splits"]),
                       policy=ENV_DEFAULTS["policy"], shard_size=ENV_DEFAULTS["shard_size"], **pixel)


def env_kwargs_from_json(text: str, env_id: str) -> dict:
    """The ``--env-kwargs`` JSON object: finite values, keys the environment ``env_id`` takes."""
    import worldmodels.envs as envs

    try:
        extra = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--env-kwargs: expected a JSON object, got invalid JSON ({e})") from e
    if not isinstance(extra, dict):
        raise UsageError(f"--env-kwargs: expected a JSON object, got {text!r}")
    if env_id not in envs.ENV_IDS:  # another Gymnasium env: gymnasium.make checks its own options
        return check_finite_values("--env-kwargs", extra)
    classes = {f"{c.__module__}:{c.__name__}": c
               for c in (envs.BouncingBallEnv, envs.ImageNavigationEnv, envs.PixelPendulumEnv)}
    cls = classes[envs.ENV_IDS[env_id][0]]
    known = set(inspect.signature(cls.__init__).parameters) - {"self", "render_mode"}
    for key in extra:
        if key not in known:
            raise UsageError(f"--env-kwargs: unknown option {key!r} for {env_id}; known: {', '.join(sorted(known))}")
    return check_finite_values("--env-kwargs", extra)


def check_env_options(spec) -> None:
    """Build ``spec``'s environment once so that it checks its own options (nothing is written)."""
    from worldmodels.envs.generate import make_env
    from worldmodels.envs.gym_pixels import EnvNotSupported
    from worldmodels.envs.policies import make_policy

    try:
        env = make_env(spec)
    except EnvNotSupported as e:
        raise UsageError(f"--env {spec.env_id}: {e}") from e
    except (TypeError, ValueError) as e:
        raise UsageError(f"--env-kwargs: {e}") from e
    try:
        make_policy(spec.policy, env.action_space, **spec.policy_kwargs)
    except ValueError as e:
        raise UsageError(f"--policy {spec.policy}: {e}") from e
    finally:
        env.close()


def check_same_dataset(out: Path, spec) -> None:
    """A folder that already holds a dataset may only be resumed with the same spec (else
    ``--overwrite``); an unreadable manifest is left to the generator to report."""
    path = out / "manifest.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(old, dict) and old != json.loads(json.dumps(spec.to_dict())):
        raise UsageError(f"--out {out}: holds a different dataset ({old.get('name')!r}); pass --overwrite to "
                         "replace it, or choose another folder")


def check_args(args: argparse.Namespace) -> None:
    """The options that are not part of the dataset spec."""
    if args.workers is not None:
        check_int("--workers", args.workers, 1, MAX_WORKERS)
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: expected a dataset folder, got an existing file")


def run(args: argparse.Namespace) -> int:
    from worldmodels.envs.generate import PRESETS, generate_dataset

    if args.list:
        for name, s in PRESETS.items():
            sizes = "/".join(f"{k} {v}" for k, v in s.splits.items())
            print(f"{name:28s} {s.env_id:36s} T={s.seq_len:<4d} {sizes:32s} {s.description}")
        return 0
    check_args(args)
    spec = spec_from_args(args)
    out = args.out or f"runs/data/{spec.name}"
    if not args.overwrite:
        check_same_dataset(Path(out), spec)
    manifest = generate_dataset(spec, out, num_workers=args.workers, resume=not args.overwrite,
                                progress=not args.no_progress)
    print(f"dataset written: {manifest}")
    return 0
