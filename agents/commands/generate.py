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
import json
import sys

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
    """The preset ``DatasetSpec`` with the command-line overrides applied."""
    from envs.generate import get_spec

    spec = get_spec(args.preset)
    changes = {}
    splits = dict(spec.splits)
    for split in ("train", "valid", "test"):
        n = getattr(args, split)
        if n is not None:
            if n == 0:
                splits.pop(split, None)
            else:
                splits[split] = n
    if splits != spec.splits:
        changes["splits"] = splits
    for attr, key in (("seq_len", "seq_len"), ("seed", "seed"), ("shard_size", "shard_size"),
                      ("policy", "policy"), ("name", "name")):
        if getattr(args, attr) is not None:
            changes[key] = getattr(args, attr)
    if args.env_kwargs:
        try:
            extra = json.loads(args.env_kwargs)
        except json.JSONDecodeError as e:
            raise ValueError(f"--env-kwargs: not valid JSON ({e})") from e
        if not isinstance(extra, dict):
            raise ValueError(f"--env-kwargs: expected a JSON object, got {args.env_kwargs!r}")
        changes["env_kwargs"] = {**spec.env_kwargs, **extra}
    if changes.get("policy") not in (None, spec.policy):
        changes.setdefault("policy_kwargs", {})
    return dataclasses.replace(spec, **changes) if changes else spec


def run(args: argparse.Namespace) -> int:
    from envs.generate import PRESETS, generate_dataset

    if args.list or not args.preset:
        for name, s in PRESETS.items():
            sizes = "/".join(f"{k} {v}" for k, v in s.splits.items())
            print(f"{name:28s} {s.env_id:36s} T={s.seq_len:<4d} {sizes:32s} {s.description}")
        return 0 if args.list else 2
    try:
        spec = spec_from_args(args)
        out = args.out or f"runs/data/{spec.name}"
        manifest = generate_dataset(spec, out, num_workers=args.workers, resume=not args.overwrite,
                                    progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"worldmodels generate: error: {e}", file=sys.stderr)
        return 2
    print(f"dataset written: {manifest}")
    return 0
