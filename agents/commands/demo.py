"""``worldmodels demo``: the end-to-end example, small enough for a CPU in a few minutes.

Stages (each a function of the shared `DemoState`, so later stages can be appended): generate a
small pixel-pendulum dataset -> train a Kalman VAE -> evaluate open-loop prediction and
imputation -> swing the pendulum up from pixels by latent MPC with that model (next to a random
policy) -> write a JSON summary. Everything lands in the run folder; the paths are printed at
the end.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldmodels.atomic_io import atomic_write_json

from . import add_config_args, apply_overrides, default_run_dir, ensure_dataset, load_config, merge
from .config_check import check_run_config, check_run_dir
from .validation import DEVICE_CHOICES, UsageError, check_device, resolve_device

HELP = "run the end-to-end demo: small dataset -> train -> evaluate -> plan -> video, plot, JSON"

#: the embedded default (``configs/demo.yaml`` holds the same); about 7 minutes on 2 CPU cores.
#: ``control: null`` skips the planning stage (it needs pendulum data: it plans in Pendulum-v0).
DEFAULT_CONFIG: dict[str, Any] = {
    "name": "demo",
    "data": {"preset": "pendulum_small", "root": "runs/data/pendulum_small"},
    "model": {"name": "kvae", "config": {"a_dim": 3, "z_dim": 6, "num_modes": 4}},
    "train": {"steps": 400, "batch_size": 32, "lr": 3e-3, "grad_clip": 150.0, "log_every": 10,
              "val_every": 100, "checkpoint_every": 100, "seed": 0, "device": "auto"},
    "eval": {"context": 5, "horizon": 10, "num_videos": 4, "imputation": "random", "drop_prob": 0.5,
             "batch_size": 32},
    "control": {"env": "worldmodels/Pendulum-v0", "planner": "cem_fast", "horizon": 12, "terminal_weight": 2.0,
                "episodes": 4, "steps": 200, "reward_steps": 1500, "rl_rounds": 3, "rl_episodes": 8,
                "rl_train_steps": 200},
}


@dataclass
class DemoState:
    """What the stages share: the resolved config, the run folder and each stage's outputs."""

    cfg: dict[str, Any]
    run_dir: Path
    device: str = "cpu"
    overwrite: bool = False
    data_root: Path | None = None
    model: Any = None
    train_summary: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    control: dict[str, Any] | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def stage_data(state: DemoState) -> None:
    """Generate (or reuse) the dataset named by ``cfg['data']``."""
    state.data_root = ensure_dataset(state.cfg["data"], progress=state.cfg["train"].get("progress", True))
    state.cfg["data"]["root"] = str(state.data_root)
    state.outputs["dataset"] = str(state.data_root)


def stage_train(state: DemoState) -> None:
    """Train the model of ``cfg['model']`` with ``cfg['train']`` (run folder: checkpoints, metrics)."""
    from .train import train_from_config

    state.model, state.train_summary = train_from_config(state.cfg, state.run_dir, overwrite=state.overwrite)
    state.outputs["checkpoint"] = state.train_summary["best_checkpoint"] or state.train_summary["checkpoint"]
    state.outputs["metrics"] = str(state.run_dir / "metrics.jsonl")


def stage_evaluate(state: DemoState) -> None:
    """Prediction vs horizon and imputation on the test split: JSON, plot, video grid."""
    from worldmodels.evaluation import EvalConfig, evaluate

    from . import dataclass_from

    ecfg = dataclass_from(EvalConfig, state.cfg.get("eval") or {}, "eval")
    state.evaluation = evaluate(state.model, state.data_root, state.run_dir / "eval", ecfg, device=state.device,
                                progress=state.cfg["train"].get("progress", True))
    state.outputs.update(state.evaluation["files"])


def stage_control(state: DemoState) -> None:
    """Latent MPC with the trained model swings up the pendulum from pixels; a random policy for scale."""
    ctl = state.cfg.get("control")
    if not ctl:
        return
    import numpy as np

    from worldmodels.agents.rl_loop import make_vector_env, rollout

    from .plan import swingup_demo

    if ctl.get("env", "worldmodels/Pendulum-v0") != "worldmodels/Pendulum-v0":
        raise ValueError(f"control.env: the demo's planning stage swings up worldmodels/Pendulum-v0, "
                         f"got {ctl['env']!r}")
    progress = state.cfg["train"].get("progress", True)
    episodes, steps = int(ctl.get("episodes", 1)), int(ctl.get("steps", 200))
    result = swingup_demo(state.run_dir, device=state.device, checkpoint=state.outputs["checkpoint"],
                          dataset=str(state.data_root), reward_steps=int(ctl.get("reward_steps", 1500)),
                          episodes=episodes, steps=steps, planner=ctl.get("planner", "cem_fast"),
                          horizon=int(ctl.get("horizon", 20)), rl_rounds=int(ctl.get("rl_rounds", 0)),
                          rl_episodes=int(ctl.get("rl_episodes", 8)),
                          rl_train_steps=int(ctl.get("rl_train_steps", 200)),
                          rl_horizon=ctl.get("rl_horizon"),
                          rl_episode_steps=int(ctl.get("rl_episode_steps", 150)),
                          terminal_weight=float(ctl.get("terminal_weight", 0.0)), progress=progress)
    venv = make_vector_env("worldmodels/Pendulum-v0", episodes, max_episode_steps=steps + 1)
    venv.action_space.seed(0)
    rand = rollout(venv, lambda o, i: venv.action_space.sample(), steps, seed=list(range(episodes)),
                   progress=False, desc="random")
    venv.close()
    state.control = {"mean_return": result["mean_return"], "returns": result["returns"],
                     "random_mean_return": float(np.mean(rand["returns"])), "steps": steps,
                     "decisions_per_s": result["decisions_per_s"],
                     "upright_fraction_last50": result.get("upright_fraction_last50"),
                     "rl_rounds": result["rl_rounds"],
                     "reward_head_valid_r2": result["reward_head_metrics"].get("valid_r2")}
    files = result["files"]
    state.outputs.update({k: v for k, v in files.items()})
    state.outputs["control_json"] = str(state.run_dir / "swingup" / "plan.json")


def stage_summary(state: DemoState) -> None:
    """``demo_summary.json``: headline numbers, timings and every output path."""
    pred = state.evaluation["prediction"] if state.evaluation else None
    imp = (state.evaluation or {}).get("imputation") or {}
    path = state.run_dir / "demo_summary.json"
    state.outputs["summary"] = str(path)
    summary = {
        "model": state.cfg["model"].get("name"),
        "dataset": state.cfg["data"].get("preset"),
        "train": {k: state.train_summary.get(k) for k in ("steps", "val", "best_step", "bad_steps", "time_s")}
        if state.train_summary else None,
        "prediction": None if pred is None else {
            "context": pred["context"], "horizon": pred["horizon"], "n_sequences": pred["n_sequences"],
            **{f"{m}_{which}_step": pred["metrics"][m]["mean"][i]
               for m in ("mse", "psnr", "ssim") for which, i in (("first", 0), ("last", -1))},
            "overall": pred["overall"],
            "baseline_copy_last": {k: {"first_step": v["mean"][0], "last_step": v["mean"][-1]}
                                   for k, v in pred["baseline_copy_last"].items()}},
        "imputation_mse": (imp.get("metrics") or {}).get("mse", {}).get("mean"),
        "control": state.control,
        "timings_s": {k: round(v, 1) for k, v in state.timings.items()},
        "outputs": state.outputs,
    }
    atomic_write_json(path, summary)


#: the demo's stages in order; append ``(name, fn(state))`` to extend it (e.g. planning).
STAGES: list[tuple[str, Callable[[DemoState], None]]] = [
    ("data", stage_data), ("train", stage_train), ("evaluate", stage_evaluate), ("control", stage_control),
    ("summary", stage_summary),
]


#: what the demo writes into its run folder besides the trainer's files
DEMO_OUTPUTS = ("eval", "swingup", "demo_summary.json", "run_config.yaml")


def clear_demo_outputs(run_dir: Path) -> None:
    """Delete a previous demo's outputs from ``run_dir`` (for ``--overwrite``); other files stay."""
    import shutil

    from worldmodels.training.run_dir import clear_run

    clear_run(run_dir)
    for name in DEMO_OUTPUTS:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run_demo(cfg: dict[str, Any], run_dir: Path, device: str = "cpu",
             stages: list[tuple[str, Callable[[DemoState], None]]] | None = None, verbose: bool = True,
             overwrite: bool = False) -> DemoState:
    """Run ``stages`` (default `STAGES`) in order on a fresh `DemoState`.

    A run folder that holds a trained run is refused (`RunExistsError`) unless ``overwrite``.
    """
    from worldmodels.training.run_dir import RunExistsError, run_state

    if run_state(run_dir) == "trained" and not overwrite:
        raise RunExistsError(f"run folder {run_dir} already holds a trained run; choose another --run-dir "
                             "or pass --overwrite")
    stages = STAGES if stages is None else stages
    if overwrite:
        clear_demo_outputs(Path(run_dir))
    state = DemoState(cfg=cfg, run_dir=Path(run_dir), device=device, overwrite=overwrite)
    state.run_dir.mkdir(parents=True, exist_ok=True)
    for i, (name, fn) in enumerate(stages, 1):
        if verbose:
            print(f"[{i}/{len(stages)}] {name}: {(fn.__doc__ or '').strip().splitlines()[0]}", flush=True)
        t0 = time.time()
        fn(state)
        state.timings[name] = time.time() - t0
    return state


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--run-dir", default=None, help="run folder (default: runs/demo-<time>)")
    p.add_argument("--overwrite", action="store_true", help="start again in a run folder that holds a demo run")
    p.add_argument("--device", default=None, help=f"{DEVICE_CHOICES} (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """`DEFAULT_CONFIG`, merged with ``--config``, ``--set`` and the flags, every stage checked
    (`UsageError` naming the option or key) before any work."""
    if args.device is not None:
        check_device("--device", args.device)
    if args.run_dir is not None:
        check_run_dir("--run-dir", args.run_dir)
    base = merge(DEFAULT_CONFIG, load_config(args.config)) if args.config else DEFAULT_CONFIG
    cfg = apply_overrides(base, args.overrides)
    if not isinstance(cfg.get("train"), dict):
        raise UsageError(f"train: expected a mapping, got {cfg.get('train')!r}")
    if args.run_dir:
        cfg["run_dir"] = args.run_dir
    if args.device:
        cfg["train"]["device"] = args.device
    if args.no_progress:
        cfg["train"]["progress"] = False
    return check_run_config(cfg, "demo")


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    device = resolve_device("train.device", cfg["train"].get("device", "auto"))
    run_dir = default_run_dir(cfg, "demo")
    from worldmodels.training.run_dir import run_state

    if run_state(run_dir) == "trained" and not args.overwrite:
        raise UsageError(f"--run-dir {run_dir}: holds a trained run; choose another folder or pass --overwrite")
    t0 = time.time()
    state = run_demo(cfg, run_dir, device=device, overwrite=args.overwrite)
    pred = state.evaluation["prediction"] if state.evaluation else None
    print()
    print(f"demo finished in {time.time() - t0:.0f} s; run folder: {run_dir}")
    if pred is not None:
        m = pred["metrics"]
        print(f"open-loop prediction from {pred['context']} frames on {pred['n_sequences']} test sequences: "
              f"MSE {m['mse']['mean'][0]:.4f} (step 1) -> {m['mse']['mean'][-1]:.4f} (step {pred['horizon']}), "
              f"SSIM {m['ssim']['mean'][0]:.3f} -> {m['ssim']['mean'][-1]:.3f}")
        b = pred["baseline_copy_last"]
        print(f"  (baseline repeating the last observed frame: MSE {b['mse']['mean'][0]:.4f} -> "
              f"{b['mse']['mean'][-1]:.4f}, SSIM {b['ssim']['mean'][0]:.3f} -> {b['ssim']['mean'][-1]:.3f})")
    if state.control is not None:
        c = state.control
        print(f"pendulum swing-up from 16x16 pixels by latent MPC: mean return {c['mean_return']:.0f} over "
              f"{len(c['returns'])} episodes of {c['steps']} steps (random policy, same starts: "
              f"{c['random_mean_return']:.0f}; higher is better, 0 is upright and still)")
        if c.get("upright_fraction_last50") is not None:
            up = sum(f >= 0.9 for f in c["upright_fraction_last50"])
            print(f"  {up} of {len(c['returns'])} episodes end upright (within 0.5 rad for >= 90 % of the last 50 "
                  f"steps), after {len(c['rl_rounds'])} round(s) of fine-tuning on the agent's own episodes")
    labels = {"episode_video": "swing-up video", "imagination_video": "real vs imagined futures",
              "control_json": "swing-up results",
              "prediction_video": "video (truth | prediction | error)", "prediction_plot": "plot (metrics vs horizon)",
              "summary": "JSON summary", "prediction_json": "per-step metrics", "checkpoint": "model checkpoint",
              "imputation_video": "imputation video", "imputation_plot": "imputation plot"}
    for key, label in labels.items():
        if key in state.outputs:
            print(f"  {label:<36} {state.outputs[key]}")
    return 0
