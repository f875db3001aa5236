"""``worldmodels generate``: make a sequence dataset (sharded ``.npz`` + ``manifest.json``).

Examples::

    worldmodels generate --list
    worldmodels generate bouncing_ball --out runs/data/bouncing_ball --workers 2
    worldmodels generate pendulum_small --train 1000 --seq-len 30 --out runs/data/pendulum_1k
    worldmodels generate image_navigation --env-kwargs '{"obstacles": true}' --out runs/data/nav_obstacles

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

HELP = "generate a sequence dataset from a preset (sharded .npz + manifest.json)"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("generate", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", nargs="?", help="preset name (see --list)")
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
    p.add_argument("--policy", default=None, help="exploration policy: zero | uniform | poisson_repeat")
    p.add_argument("--env-kwargs", default=None, help="JSON object of environment options, merged into the preset's")
    p.add_argument("--name", default=None, help="dataset name recorded in the manifest")
    return p


def spec_from_args(args: argparse.Namespace):
    """The preset ``DatasetSpec`` with the command-line overrides applied, every option checked
    (`UsageError` naming the option) before anything is generated."""
    from worldmodels.envs.generate import PRESETS, get_spec
    from worldmodels.envs.policies import POLICIES

    if not args.preset:
        raise UsageError(f"preset: expected a preset name (worldmodels generate --list): {', '.join(PRESETS)}")
    check_choice("preset", args.preset, PRESETS)
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


def env_kwargs_from_json(text: str, env_id: str) -> dict:
    """The ``--env-kwargs`` JSON object: finite values, keys the environment ``env_id`` takes."""
    from worldmodels import envs

    try:
        extra = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--env-kwargs: expected a JSON object, got invalid JSON ({e})") from e
    if not isinstance(extra, dict):
        raise UsageError(f"--env-kwargs: expected a JSON object, got {text!r}")
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

    try:
        make_env(spec).close()
    except (TypeError, ValueError) as e:
        raise UsageError(f"--env-kwargs: {e}") from e


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
    if isinstance(old, dict) and old != json.loads(json.dumps(dataclasses.asdict(spec))):
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
