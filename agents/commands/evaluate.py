"""``worldmodels evaluate``: long-horizon open-loop prediction (MSE, PSNR, SSIM per step with 95%
intervals) and missing-frame imputation of a trained model, written as JSON + plot + video grid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from . import apply_overrides, dataclass_from, yaml_load
from .config_check import check_eval
from .validation import (
    DEVICE_CHOICES,
    MAX_EVAL_FRAMES,
    DatasetError,
    UsageError,
    check_checkpoint_path,
    check_choice,
    check_dataset,
    check_device,
    check_float,
    check_int,
    check_model_fits,
    resolve_device,
)

HELP = "evaluate a trained model: prediction vs horizon, imputation; JSON + plot + video"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help=HELP, description=__doc__)
    p.add_argument("checkpoint", help="checkpoint file or run folder (uses checkpoints/best.pt, else last.pt)")
    p.add_argument("--data", default=None, help="dataset folder (default: the run's data.root)")
    p.add_argument("--split", default=None, help="dataset split (default: test)")
    p.add_argument("--context", "-k", type=int, default=None, help="observed frames k")
    p.add_argument("--horizon", "-H", type=int, default=None, help="predicted frames H")
    p.add_argument("--imputation", choices=["random", "block", "none"], default=None,
                   help="imputation mask (default: random)")
    p.add_argument("--drop-prob", type=float, default=None, help="random imputation: missing probability")
    p.add_argument("--max-sequences", type=int, default=None)
    p.add_argument("--out", default=None, help="output folder (default: <run>/eval)")
    p.add_argument("--device", default="cpu", help=f"{DEVICE_CHOICES} (default: %(default)s)")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an EvalConfig entry, e.g. --set eval.num_videos=8")
    return p


def _run_folder(checkpoint: Path) -> Path:
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``run_config.yaml`` (``{}`` if it has none); `DatasetError` if it is unreadable."""
    path = run_dir / "run_config.yaml"
    if not path.is_file():
        return {}
    try:
        cfg = yaml_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: expected the run's YAML config, got unreadable text") from e
    if not isinstance(cfg, dict):
        raise DatasetError(f"{path}: expected a YAML mapping, got {type(cfg).__name__}")
    return cfg


def evaluate_run(checkpoint: str | Path, eval_cfg: dict[str, Any], data: str | Path | None = None,
                 out: str | Path | None = None, device: str = "cpu", video: bool = True,
                 progress: bool = False) -> dict[str, Any]:
    """Load a model (`worldmodels.training.load`) and run `worldmodels.evaluation.evaluate` on
    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Everything is checked (`UsageError` naming the option or config key, ``FileNotFoundError``
    for missing files) before the output folder is written.
    """
    from worldmodels.evaluation import EvalConfig, evaluate
    from worldmodels.training import load

    checkpoint = check_checkpoint_path("checkpoint", checkpoint)
    run_dir = _run_folder(checkpoint)
    run_cfg = read_run_config(run_dir)
    run_data, run_eval = (v if isinstance(v := run_cfg.get(k), dict) else {} for k in ("data", "eval"))
    root = data or run_data.get("root")
    if root is None:
        raise UsageError("--data: required, the run folder has no run_config.yaml naming its dataset")
    merged = {**run_eval, **eval_cfg}
    check_eval(merged, "eval")
    ecfg = dataclass_from(EvalConfig, merged, "eval")
    manifest = check_dataset("--data" if data else "data.root", root, ecfg.split)
    check_eval(merged, "eval", seq_len=manifest["seq_len"])
    out_dir = Path(out) if out else run_dir / "eval"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: expected a folder, got an existing file")
    model = load(checkpoint, device="cpu")
    check_model_fits("checkpoint", model, manifest["obs_shape"], manifest["action_dim"], f"dataset {root}")
    device = resolve_device("--device", device)  # after every check: the notice only when work starts
    model = model.to(device)
    return evaluate(model, Path(root), out_dir, ecfg, device=device, video=video, progress=progress)


def check_args(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line options, checked under their own names; returns the ``eval`` overrides."""
    sets = apply_overrides({}, args.overrides)
    for key in sets:
        if key != "eval":
            raise UsageError(f"--set {key}: expected eval.<key> (evaluate only takes EvalConfig entries)")
    over = sets.get("eval") or {}
    if not isinstance(over, dict):
        raise UsageError(f"--set eval: expected eval.<key>=value, got {over!r}")
    check_device("--device", args.device)
    if args.context is not None:
        check_int("--context", args.context, 1, MAX_EVAL_FRAMES)
    if args.horizon is not None:
        check_int("--horizon", args.horizon, 1, MAX_EVAL_FRAMES)
    if args.drop_prob is not None:
        check_float("--drop-prob", args.drop_prob, 0.0, 1.0)
    if args.max_sequences is not None:
        check_int("--max-sequences", args.max_sequences, 1)
    if args.split is not None:
        check_choice("--split", args.split, ("train", "valid", "test"))
    flags = {"split": args.split, "context": args.context, "horizon": args.horizon, "drop_prob": args.drop_prob,
             "max_sequences": args.max_sequences}
    over.update({k: v for k, v in flags.items() if v is not None})
    if args.imputation is not None:
        over["imputation"] = None if args.imputation == "none" else args.imputation
    return over


def format_table(pred: dict[str, Any], every: int = 1) -> str:
    """Per-step mean [95% CI] of MSE, PSNR, SSIM as a text table."""
    lines = [f"{'step':>4}  {'MSE':>22}  {'PSNR (dB)':>22}  {'SSIM':>22}"]
    m = pred["metrics"]
    H = pred["horizon"]
    for h in range(H):
        if h % every and h != H - 1:
            continue
        cells = [f"{m[k]['mean'][h]:.4f} [{m[k]['ci_low'][h]:.4f}, {m[k]['ci_high'][h]:.4f}]" for k in ("mse",)]
        cells += [f"{m[k]['mean'][h]:.2f} [{m[k]['ci_low'][h]:.2f}, {m[k]['ci_high'][h]:.2f}]" for k in ("psnr",)]
        cells += [f"{m[k]['mean'][h]:.3f} [{m[k]['ci_low'][h]:.3f}, {m[k]['ci_high'][h]:.3f}]" for k in ("ssim",)]
        lines.append(f"{h + 1:>4}  " + "  ".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    over = check_args(args)
    result = evaluate_run(args.checkpoint, over, args.data, args.out, args.device, video=not args.no_video,
                          progress=not args.no_progress)
    pred = result["prediction"]
    print(f"open-loop prediction from {pred['context']} frames, N={pred['n_sequences']} sequences")
    print(format_table(pred, every=max(1, pred["horizon"] // 8)))
    b = pred["baseline_copy_last"]
    print(f"baseline repeating the last observed frame: MSE {b['mse']['mean'][0]:.4f} (step 1) -> "
          f"{b['mse']['mean'][-1]:.4f} (step {pred['horizon']}), SSIM {b['ssim']['mean'][0]:.3f} -> "
          f"{b['ssim']['mean'][-1]:.3f}")
    imp = result.get("imputation")
    if imp and "metrics" in imp:
        print(f"imputation ({imp['mode']}): MSE on missing frames {imp['metrics']['mse']['mean']:.4f} "
              f"[{imp['metrics']['mse']['ci_low']:.4f}, {imp['metrics']['mse']['ci_high']:.4f}]")
    elif imp:
        print(f"imputation skipped: {imp.get('skipped')}")
    for k, v in result["files"].items():
        print(f"{k:>18}: {v}")
    return 0
