"""``worldmodels evaluate``: long-horizon open-loop prediction (MSE, PSNR, SSIM per step with 95%
intervals) and missing-frame imputation of a trained model, written as JSON + plot + video grid."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from . import apply_overrides, dataclass_from

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
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an EvalConfig entry, e.g. --set eval.num_videos=8")
    return p


def _run_folder(checkpoint: Path) -> Path:
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def evaluate_run(checkpoint: str | Path, eval_cfg: dict[str, Any], data: str | Path | None = None,
                 out: str | Path | None = None, device: str = "cpu", video: bool = True) -> dict[str, Any]:
    """Load a model (`worldmodels.training.load`) and run `worldmodels.evaluation.evaluate`."""
    from worldmodels.evaluation import EvalConfig, evaluate
    from worldmodels.training import load

    checkpoint = Path(checkpoint)
    run_dir = _run_folder(checkpoint)
    run_cfg = {}
    if (run_dir / "run_config.yaml").is_file():
        run_cfg = yaml.safe_load((run_dir / "run_config.yaml").read_text()) or {}
    root = data or (run_cfg.get("data") or {}).get("root")
    if root is None:
        raise SystemExit("--data is required: the run folder has no run_config.yaml naming its dataset")
    ecfg = dataclass_from(EvalConfig, {**(run_cfg.get("eval") or {}), **eval_cfg}, "eval")
    model = load(checkpoint, device=device)
    return evaluate(model, Path(root), Path(out) if out else run_dir / "eval", ecfg, device=device, video=video)


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
    over = apply_overrides({}, args.overrides).get("eval", {})
    flags = {"split": args.split, "context": args.context, "horizon": args.horizon, "drop_prob": args.drop_prob,
             "max_sequences": args.max_sequences}
    over.update({k: v for k, v in flags.items() if v is not None})
    if args.imputation is not None:
        over["imputation"] = None if args.imputation == "none" else args.imputation
    result = evaluate_run(args.checkpoint, over, args.data, args.out, args.device, video=not args.no_video)
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
