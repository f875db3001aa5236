"""``worldmodels video``: render dataset sequences or fresh episodes to an mp4 or gif.

Examples::

    worldmodels video --dataset runs/data/bouncing_ball_small --split test --num 8 --out runs/videos/ball.gif
    worldmodels video --env worldmodels/Pendulum-v0 --num 4 --steps 100 --policy uniform --out runs/videos/pend.mp4
    worldmodels video --env worldmodels/ImageNavigation-v0 --render --steps 64 --out runs/videos/nav.mp4

Clips are tiled in a grid (``--cols`` per row) and upscaled by ``--scale``; ``--render`` shows the
environment's ``render()`` frames (e.g. the whole world with the agent's view) instead of
observations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .validation import (
    MAX_EPISODE_STEPS,
    MAX_FPS,
    MAX_VIDEO_CLIPS,
    MAX_VIDEO_FRAMES,
    MAX_VIDEO_SCALE,
    UsageError,
    check_choice,
    check_dataset,
    check_float,
    check_int,
    check_seed,
)

HELP = "render dataset sequences or environment episodes to mp4/gif"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("video", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="dataset folder (with manifest.json)")
    src.add_argument("--env", help="environment id, e.g. worldmodels/BouncingBall-v0")
    p.add_argument("--out", required=True, help="output file, .mp4 or .gif")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--indices", type=int, nargs="+", default=None, help="dataset sequences to show")
    p.add_argument("--num", type=int, default=4, help="number of sequences/episodes (default 4)")
    p.add_argument("--steps", type=int, default=50, help="episode length for --env (default 50)")
    p.add_argument("--policy", default=None, help="policy for --env: zero | uniform | poisson_repeat "
                                                   "(default: the env's dataset policy)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed for --env")
    p.add_argument("--render", action="store_true", help="use env.render() frames instead of observations")
    p.add_argument("--cols", type=int, default=4, help="clips per row")
    p.add_argument("--scale", type=int, default=0, help="upscale factor (default: to about 128 px per clip)")
    p.add_argument("--fps", type=float, default=5.0, help="frames per second")
    return p


def _dataset_clips(args) -> list[np.ndarray]:
    from worldmodels.data import SequenceDataset

    ds = SequenceDataset(args.dataset, args.split)
    idx = args.indices if args.indices is not None else list(range(min(args.num, len(ds))))
    return [ds.frames_uint8(i) for i in idx]


_DEFAULT_POLICY = {"worldmodels/ImageNavigation-v0": "poisson_repeat", "worldmodels/Pendulum-v0": "uniform"}


def _env_clips(args) -> list[np.ndarray]:
    import gymnasium as gym

    from worldmodels.envs.policies import make_policy  # importing envs registers the environments

    env = gym.make(args.env, render_mode="rgb_array", max_episode_steps=args.steps + 1)
    policy = make_policy(args.policy or _DEFAULT_POLICY.get(args.env, "zero"), env.action_space)
    clips = []
    for k in range(args.num):
        obs, info = env.reset(seed=args.seed + k)
        policy.reset(np.random.default_rng(args.seed + k))
        frames = [env.render() if args.render else obs]
        for _ in range(args.steps - 1):
            obs, _, term, trunc, info = env.step(policy(obs, info))
            frames.append(env.render() if args.render else obs)
            if term or trunc:
                break
        frames += [frames[-1]] * (args.steps - len(frames))  # equal lengths for tiling
        clips.append(np.stack(frames))
    env.close()
    return clips


def check_args(args: argparse.Namespace) -> None:
    """Every option, under its own name, before anything is rendered or written."""
    from worldmodels.envs.policies import POLICIES

    if Path(args.out).suffix.lower() not in (".mp4", ".gif"):
        raise UsageError(f"--out: expected a .mp4 or .gif file name, got {args.out!r}")
    if Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: expected a file name, got an existing folder")
    if Path(args.out).exists() and not args.overwrite:
        raise UsageError(f"--out {args.out}: exists; pass --overwrite to replace it")
    check_int("--num", args.num, 1, MAX_VIDEO_CLIPS)
    check_int("--cols", args.cols, 1, MAX_VIDEO_CLIPS)
    check_int("--scale", args.scale, 0, MAX_VIDEO_SCALE)
    check_float("--fps", args.fps, 0.0, MAX_FPS, lo_open=True)
    if args.dataset:
        manifest = check_dataset("--dataset", args.dataset, args.split)
        n = int(manifest["splits"][args.split].get("num_sequences", 0))
        if args.indices is not None:
            if len(args.indices) > MAX_VIDEO_CLIPS:
                raise UsageError(f"--indices: expected at most {MAX_VIDEO_CLIPS} sequences, got {len(args.indices)}")
            bad = [i for i in args.indices if not 0 <= i < n]
            if bad:
                raise UsageError(f"--indices: expected 0 .. {n - 1} (split {args.split!r} has {n} sequences), "
                                 f"got {bad}")
        frames = int(manifest["seq_len"]) * (len(args.indices) if args.indices is not None else min(args.num, n))
    else:
        import worldmodels.envs as envs

        check_choice("--env", args.env, sorted(envs.ENV_IDS))
        check_int("--steps", args.steps, 1, MAX_EPISODE_STEPS)
        check_seed("--seed", args.seed)
        if args.policy is not None:
            check_choice("--policy", args.policy, sorted(POLICIES))
        frames = args.num * args.steps
    if frames > MAX_VIDEO_FRAMES:
        raise UsageError(f"--num x --steps: expected at most {MAX_VIDEO_FRAMES:_} frames in one video, got {frames:_}")


def run(args: argparse.Namespace) -> int:
    from worldmodels.video import tile_clips, write_video

    check_args(args)
    clips = _dataset_clips(args) if args.dataset else _env_clips(args)
    h = clips[0].shape[1]
    scale = args.scale or max(1, 128 // h)
    rows = [clips[i : i + args.cols] for i in range(0, len(clips), args.cols)]
    grid = tile_clips(rows, pad=1, scale=scale)
    path = write_video(grid, args.out, fps=args.fps)
    print(f"video written: {path} ({grid.shape[0]} frames, {grid.shape[2]}x{grid.shape[1]} px)")
    return 0
