"""Checks of a whole run config (``data``, ``model``, ``train``, ``eval``, ``control``) before any
work starts: ``worldmodels train`` and ``worldmodels demo`` call `check_run_config` first, so a bad
value in a late stage is reported before the dataset is generated or the model trained.

Errors are `UsageError`s naming the config key (``train.val_every: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from . import build_model, dataclass_from
from .validation import (
    MAX_BATCH_SIZE,
    MAX_EPISODE_STEPS,
    MAX_EPISODES,
    MAX_EVAL_FRAMES,
    MAX_HORIZON,
    MAX_REWARD_STEPS,
    MAX_TRAIN_STEPS,
    MAX_WORKERS,
    UsageError,
    check_choice,
    check_dataset,
    check_device,
    check_float,
    check_int,
    check_keys,
    check_name,
    check_planner,
    check_seed,
)

#: the sections a run config may have
SECTIONS = ("name", "data", "model", "train", "eval", "control", "run_dir")
DATA_KEYS = ("preset", "root", "regenerate", "num_workers")
MODEL_KEYS = ("name", "config")
#: the demo's planning stage: key -> (lowest, highest) for ints, or a kind
CONTROL_INTS: dict[str, tuple[int, int]] = {
    "episodes": (1, MAX_EPISODES), "steps": (1, MAX_EPISODE_STEPS), "reward_steps": (1, MAX_REWARD_STEPS),
    "horizon": (1, MAX_HORIZON), "rl_rounds": (0, 1_000), "rl_episodes": (1, MAX_EPISODES),
    "rl_train_steps": (1, MAX_TRAIN_STEPS), "rl_episode_steps": (2, MAX_EPISODE_STEPS),
}
CONTROL_KEYS = (*CONTROL_INTS, "env", "planner", "terminal_weight", "rl_horizon")
IMPUTATIONS = (None, "random", "block")


def check_run_config(cfg: Any, stages: Literal["train", "demo"] = "train") -> dict[str, Any]:
    """Check every section of ``cfg``; returns it. ``stages="demo"`` also checks ``control``
    (the demo's planning stage; ``control: null`` skips it)."""
    if not isinstance(cfg, dict):
        raise UsageError(f"config: expected a mapping of sections, got {type(cfg).__name__}")
    check_keys("config", cfg, SECTIONS)
    for key in ("data", "model", "train", "eval"):
        if not isinstance(cfg.get(key) or {}, dict):
            raise UsageError(f"{key}: expected a mapping, got {cfg[key]!r}")
    if cfg.get("name") is not None:
        check_name("name", cfg["name"])
    if cfg.get("run_dir") is not None:
        check_run_dir("run_dir", cfg["run_dir"])
    layout = check_data(cfg.get("data") or {})
    check_model(cfg.get("model") or {}, layout)
    check_train(cfg.get("train") or {})
    check_eval(cfg.get("eval") or {}, "eval", seq_len=layout.get("seq_len"))
    if stages == "demo" and cfg.get("control"):
        check_control(cfg["control"])
    return cfg


def check_run_dir(option: str, path: Any) -> Path:
    """A run folder path: a string naming a folder (not an existing file)."""
    if not isinstance(path, str) or not path.strip():
        raise UsageError(f"{option}: expected a folder path, got {path!r}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {p}: expected a folder, got an existing file")
    return p


def check_data(data: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` section; returns the dataset layout (``obs_shape`` [H, W, C], ``action_dim``,
    ``seq_len``) from its manifest, or from the preset when the dataset is still to be generated."""
    from worldmodels.envs.generate import PRESETS, env_layout, make_env

    check_keys("data", data, DATA_KEYS)
    preset = data.get("preset")
    if preset is not None:
        check_choice("data.preset", preset, PRESETS)
    if data.get("num_workers") is not None:
        check_int("data.num_workers", data["num_workers"], 1, MAX_WORKERS)
    if data.get("regenerate") is not None and not isinstance(data["regenerate"], bool):
        raise UsageError(f"data.regenerate: expected true or false, got {data['regenerate']!r}")
    root = data.get("root")
    if root is not None and not isinstance(root, str):
        raise UsageError(f"data.root: expected a folder path, got {root!r}")
    if root is None and preset is None:
        raise UsageError("data: expected data.root (a dataset folder) or data.preset (to generate one), got "
                         "neither (pass --config PRESET or --set data.preset=NAME)")
    root_path = Path(root or f"runs/data/{preset}")
    if (root_path / "manifest.json").is_file() and not data.get("regenerate"):
        m = check_dataset("data.root", root_path)
        return {"obs_shape": m["obs_shape"], "action_dim": m["action_dim"], "seq_len": m["seq_len"]}
    if preset is None:
        raise UsageError(f"data.root {root_path}: expected a dataset folder (with manifest.json), or data.preset "
                         "to generate one")
    if root_path.exists() and not root_path.is_dir():
        raise UsageError(f"data.root {root_path}: expected a folder, got an existing file")
    spec = PRESETS[preset]
    env = make_env(spec)
    layout = env_layout(env)
    env.close()
    return {"obs_shape": layout["obs_shape"], "action_dim": layout["action_dim"], "seq_len": spec.seq_len}


def check_model(model: dict[str, Any], layout: dict[str, Any]) -> None:
    """The ``model`` section: a registered name, and a config the model accepts (the model is
    built on the ``meta`` device, so no memory is allocated whatever the sizes)."""
    import torch

    from worldmodels.registry import registered_models

    check_keys("model", model, MODEL_KEYS)
    name = model.get("name", "vae_rnn")
    check_choice("model.name", name, sorted(registered_models()))
    if not isinstance(model.get("config") or {}, dict):
        raise UsageError(f"model.config: expected a mapping, got {model['config']!r}")
    H, W, C = layout["obs_shape"]
    try:
        with torch.device("meta"):
            build_model(model, (int(C), int(H), int(W)), int(layout["action_dim"]))
    except UsageError:
        raise
    except (ValueError, TypeError, RuntimeError, AssertionError) as e:
        raise UsageError(f"model.config: {e}") from e


def check_train(train: dict[str, Any]) -> None:
    """The ``train`` section: a valid ``TrainConfig``, a usable device, a bounded length."""
    from worldmodels.training import TrainConfig

    tcfg = dataclass_from(TrainConfig, train, "train")
    if tcfg.steps is not None:
        check_int("train.steps", tcfg.steps, 0, MAX_TRAIN_STEPS)
    if tcfg.epochs is not None:
        check_int("train.epochs", tcfg.epochs, 0, MAX_TRAIN_STEPS)
    check_int("train.batch_size", tcfg.batch_size, 1, MAX_BATCH_SIZE)
    check_float("train.lr", tcfg.lr, 0.0, lo_open=True)
    check_seed("train.seed", tcfg.seed)
    check_device("train.device", tcfg.device)


def check_eval(ev: dict[str, Any], where: str, seq_len: int | None = None) -> None:
    """An ``EvalConfig`` section: ranges of every entry, and ``context + horizon <= seq_len`` when
    the sequence length is known."""
    from worldmodels.evaluation import EvalConfig

    e = dataclass_from(EvalConfig, ev, where)
    check_int(f"{where}.context", e.context, 1, MAX_EVAL_FRAMES)
    check_int(f"{where}.horizon", e.horizon, 1, MAX_EVAL_FRAMES)
    check_choice(f"{where}.split", e.split, ("train", "valid", "test"))
    check_int(f"{where}.batch_size", e.batch_size, 1, MAX_BATCH_SIZE)
    if e.max_sequences is not None:
        check_int(f"{where}.max_sequences", e.max_sequences, 1)
    check_int(f"{where}.num_videos", e.num_videos, 0, 256)
    check_float(f"{where}.fps", e.fps, 0.0, 240.0, lo_open=True)
    check_int(f"{where}.video_scale", e.video_scale, 1, 64)
    check_choice(f"{where}.imputation", e.imputation, IMPUTATIONS)
    check_float(f"{where}.drop_prob", e.drop_prob, 0.0, 1.0)
    check_seed(f"{where}.seed", e.seed)
    if seq_len is not None and e.context + e.horizon > int(seq_len):
        raise UsageError(f"{where}.context + {where}.horizon: expected at most the sequence length {seq_len}, "
                         f"got {e.context} + {e.horizon}")


def check_control(ctl: Any) -> None:
    """The demo's ``control`` section (planning in Pendulum-v0 and the RL rounds)."""
    from worldmodels.agents.planners import PLANNERS, PRESETS

    check_keys("control", ctl, CONTROL_KEYS)
    for key, (lo, hi) in CONTROL_INTS.items():
        if key in ctl:
            check_int(f"control.{key}", ctl[key], lo, hi)
    if ctl.get("rl_horizon") is not None:
        check_int("control.rl_horizon", ctl["rl_horizon"], 1, MAX_HORIZON)
    if "terminal_weight" in ctl:
        check_float("control.terminal_weight", ctl["terminal_weight"], 0.0)
    planner = ctl.get("planner", "cem_fast")
    check_choice("control.planner", planner, sorted(set(PRESETS) | set(PLANNERS)))
    for key in ("horizon", "rl_horizon"):
        if ctl.get(key) is not None:
            check_planner("control.planner", planner, "worldmodels/Pendulum-v0", ctl[key])
    if "env" in ctl:
        check_choice("control.env", ctl["env"], ("worldmodels/Pendulum-v0",))

