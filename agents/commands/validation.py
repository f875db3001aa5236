"""Checks of command-line options and config values, run before a command does any work.

Every check raises `UsageError` (a ``ValueError``) whose message starts with the option or config
key it is about, then says what was expected and what was given, e.g.
``--drop-prob: expected a number in [0, 1], got 2.0``. The console script prints it as one line
and exits with status 2.

The caps below bound what one command may be asked to do; a value above a cap is almost always a
typo (``--episodes 1000000000000``) and would otherwise run for days or exhaust memory.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: sequences in one dataset split (``generate --train/--valid/--test``)
MAX_SPLIT_SEQUENCES = 1_000_000
#: frames per generated sequence (``generate --seq-len``)
MAX_SEQ_LEN = 10_000
#: sequences per shard file (``generate --shard-size``)
MAX_SHARD_SIZE = 100_000
#: worker processes (``generate --workers``)
MAX_WORKERS = 256
#: optimiser updates of one training run (``train --steps``, ``train.steps``)
MAX_TRAIN_STEPS = 100_000_000
#: sequences per training or evaluation batch
MAX_BATCH_SIZE = 65_536
#: episodes planned as one batch (``plan --episodes``)
MAX_EPISODES = 1_024
#: steps of one episode (``plan --steps``, ``video --steps``)
MAX_EPISODE_STEPS = 100_000
#: planning horizon and filtering context, in steps (``plan --horizon``, ``--context``)
MAX_HORIZON = 1_000
#: evaluation context and horizon, in frames (``evaluate --context``, ``--horizon``)
MAX_EVAL_FRAMES = 10_000
#: reward-head training updates (``plan --reward-steps``)
MAX_REWARD_STEPS = 10_000_000
#: clips in one video grid (``video --num``, ``--cols``)
MAX_VIDEO_CLIPS = 256
#: frames of all clips of one video together (``video --num`` x ``--steps``)
MAX_VIDEO_FRAMES = 200_000
#: upscale factor of a video (``video --scale``)
MAX_VIDEO_SCALE = 64
#: frames per second of a video (``video --fps``)
MAX_FPS = 240.0
#: seeds are non-negative and fit numpy's and torch's generators
MAX_SEED = 2 ** 63 - 1

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


class UsageError(ValueError):
    """An option or config value that is invalid; the message starts with its name."""


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_int(option: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]`` (either bound may be None); `UsageError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{option}: expected an integer, got {_show(value)}")
    if lo is not None and value < lo:
        raise UsageError(f"{option}: expected an integer >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise UsageError(f"{option}: expected an integer <= {hi:_} (a cap against typos), got {value:_}")
    return value


def check_float(option: str, value: Any, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{option}: expected a number, got {_show(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise UsageError(f"{option}: expected a finite number, got {value}")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    if low_bad or (hi is not None and value > hi):
        left = "(" if lo_open else "["
        want = (f"in {left}{lo:g}, {hi:g}]" if lo is not None and hi is not None
                else f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else f"<= {hi:g}")
        raise UsageError(f"{option}: expected a number {want}, got {value:g}")
    return value


def check_choice(option: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``; `UsageError` listing them otherwise."""
    choices = list(choices)
    if value not in choices:
        raise UsageError(f"{option}: expected one of {', '.join(map(str, choices))}, got {_show(value)}")
    return value


def check_keys(where: str, values: Any, known: Iterable[str]) -> dict[str, Any]:
    """``values`` if it is a mapping whose keys are all in ``known``; names the first unknown key."""
    known = sorted(known)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"{where}: expected a mapping, got {_show(values)}")
    for key in values:
        if key not in known:
            raise UsageError(f"{where}.{key}: unknown key; known keys of {where}: {', '.join(known)}")
    return values


def check_seed(option: str, value: Any) -> int:
    """A seed: an integer in ``[0, 2**63 - 1]``."""
    return check_int(option, value, 0, MAX_SEED)


def check_device(option: str, value: Any) -> str:
    """A device spec (``auto``, ``cpu``, ``cuda``, ``cuda:N``) that this machine can honour.

    ``auto`` is returned as is (see `resolve_device`); ``cuda`` without CUDA, or ``cuda:N`` past
    the last GPU, is a `UsageError`.
    """
    import torch

    if not isinstance(value, str) or not _DEVICE.match(value):
        raise UsageError(f"{option}: expected one of {DEVICE_CHOICES}, got {_show(value)}")
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"{option}: expected a device this machine has, got {value!r} but CUDA is not "
                             "available; use cpu or auto")
        index = int(value.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"{option}: expected cuda:0 .. cuda:{torch.cuda.device_count() - 1}, got {value!r}")
    return value


def resolve_device(option: str, value: str) -> str:
    """A checked device spec with ``auto`` resolved: CUDA if available, else the CPU (with a
    one-line notice on stderr)."""
    import torch

    value = check_device(option, value)
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "cuda"
    print(f"note: {option} auto: CUDA is not available, running on the CPU", file=sys.stderr)
    return "cpu"


def check_dataclass_values(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check ``values`` against the fields of config dataclass ``cls``: known keys, and values of
    the annotated scalar types (ints, finite floats, bools, strings; None where optional).

    Fields of other types (tuples, dicts, nested configs) are left to ``cls`` itself.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    check_keys(where, values, fields)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: nothing to check against
        return values
    for key, value in values.items():
        _check_typed(f"{where}.{key}", hints.get(key, Any), value)
    return values


def _check_typed(option: str, tp: Any, value: Any) -> None:
    """Check ``value`` against annotation ``tp``: ints, finite floats, bools, strings, Literals,
    tuples and lists of those (entry by entry), mappings; other annotations are not checked."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            _check_typed(option, rest[0], value)
        return
    if tp is int:
        check_int(option, value)
    elif tp is float:
        check_float(option, value)
    elif tp is bool and not isinstance(value, bool):
        raise UsageError(f"{option}: expected true or false, got {_show(value)}")
    elif tp is str and not isinstance(value, str):
        raise UsageError(f"{option}: expected a string, got {_show(value)}")
    elif origin is typing.Literal:
        check_choice(option, value, args)
    elif origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{option}: expected a list, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UsageError(f"{option}: expected a list of {len(args)} entries, got {len(value)}")
            for i, (a, v) in enumerate(zip(args, value)):
                _check_typed(f"{option}[{i}]", a, v)
        elif args:
            for i, v in enumerate(value):
                _check_typed(f"{option}[{i}]", args[0], v)
    elif (origin is dict or tp is dict) and not isinstance(value, dict):
        raise UsageError(f"{option}: expected a mapping, got {_show(value)}")


def check_finite_values(option: str, value: Any) -> Any:
    """``value`` (numbers, or lists/dicts of them) with every number finite; `UsageError` naming
    the entry otherwise."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{option}: expected finite numbers, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite_values(f"{option}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite_values(f"{option}[{i}]", v)
    return value


def check_dataset(option: str, root: str | Path, split: str | None = None,
                  split_option: str = "--split") -> dict[str, Any]:
    """The manifest of dataset folder ``root`` (named by ``option``) and, if given, a check that
    it has ``split`` (named by ``split_option`` when it lacks it). A missing folder or manifest
    raises ``FileNotFoundError``; a damaged one (`worldmodels.data.read_manifest` checks its
    schema) raises `DatasetError`."""
    from worldmodels.data import read_manifest

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{option} {root}: no such dataset folder")
    if not (root / "manifest.json").is_file():
        raise FileNotFoundError(f"{option} {root}: not a dataset folder (no manifest.json; make one with "
                                "worldmodels generate PRESET --out DIR)")
    try:
        manifest = read_manifest(root)
    except ValueError as e:
        raise DatasetError(f"{option} {root}: {e}") from e
    if split is not None and split not in manifest["splits"]:
        raise UsageError(f"{split_option}: expected a split of {root} ({', '.join(sorted(manifest['splits']))}), "
                         f"got {split!r}")
    return manifest


class DatasetError(RuntimeError):
    """A dataset folder whose files cannot be used (damaged or of another format)."""


def check_checkpoint_path(option: str, path: str | Path) -> Path:
    """``path`` if it is a checkpoint file or a run folder holding one (``checkpoints/best.pt``,
    ``checkpoints/last.pt``, ``best.pt`` or ``last.pt``); ``FileNotFoundError`` naming it otherwise.
    Whether the file is a usable checkpoint is for the loader to say."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{option} {path}: no such file or folder")
    if path.is_dir() and any((path / sub / name).is_file() for sub in ("checkpoints", ".")
                             for name in ("best.pt", "last.pt")):
        return path
    raise FileNotFoundError(f"{option} {path}: not a run folder (no checkpoints/best.pt or last.pt in it) "
                            "and not a checkpoint file")


def check_planner(option: str, name: str, env_id: str, horizon: int | None = None) -> None:
    """Planner preset or name ``name`` must suit ``env_id``'s action space (the categorical
    planner for discrete actions, the others for continuous ones) and accept ``horizon``."""
    import gymnasium as gym
    from gymnasium import spaces

    import worldmodels.envs as envs  # noqa: F401  (registers the environments)
    from worldmodels.agents.planners import PLANNERS, PRESETS, CategoricalCEM, make_planner

    check_choice(option, name, sorted(set(PRESETS) | set(PLANNERS)))
    env = gym.make(env_id)
    space = env.action_space
    env.close()
    planner_cls = PLANNERS[PRESETS[name][0] if name in PRESETS else name][0]
    discrete = isinstance(space, spaces.Discrete)
    if discrete != (planner_cls is CategoricalCEM):
        kind = "discrete" if discrete else "continuous"
        fits = sorted(n for n in set(PRESETS) | set(PLANNERS)
                      if (PLANNERS[PRESETS[n][0] if n in PRESETS else n][0] is CategoricalCEM) == discrete)
        raise UsageError(f"{option}: {env_id} has {kind} actions; expected one of {', '.join(fits)}, got {name!r}")
    try:
        make_planner(name, action_space=space, **({} if horizon is None else {"horizon": horizon}))
    except (TypeError, ValueError) as e:
        raise UsageError(f"{option} {name}: {e}") from e


def check_model_fits(option: str, model: Any, obs_hwc: Iterable[int], action_dim: int, source: str) -> None:
    """A loaded model (named by ``option``) must take the frames ``[H, W, C]`` and ``action_dim``
    actions of ``source`` (a dataset or an environment); `UsageError` naming both otherwise."""
    H, W, C = (int(v) for v in obs_hwc)
    want = getattr(getattr(model, "config", None), "obs_shape", None)
    if want is not None and tuple(int(v) for v in want) != (C, H, W):
        raise UsageError(f"{option}: the model takes frames of shape {list(want)} (C, H, W), {source} has "
                         f"{[C, H, W]}")
    if int(getattr(model, "action_dim", action_dim)) != int(action_dim):
        raise UsageError(f"{option}: the model takes {model.action_dim}-dimensional actions, {source} has "
                         f"{int(action_dim)}")


def check_name(option: str, value: Any) -> str:
    """A name that becomes a folder name (``runs/<name>-<time>``, ``runs/data/<name>``): 1 to 128
    characters, no path separator, not starting with a dot."""
    if (not isinstance(value, str) or not 1 <= len(value) <= 128 or value.startswith(".")
            or any(c in value for c in "/\\\0")):
        raise UsageError(f"{option}: expected a folder name (1 to 128 characters, no '/', not starting with '.'), "
                         f"got {_show(value)}")
    return value
