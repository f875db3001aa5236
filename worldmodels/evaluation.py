"""Long-horizon prediction and imputation metrics for any `WorldModel`, with JSON, plots, videos.

Prediction: from ``context`` observed frames the model predicts open-loop for ``horizon`` steps
(`WorldModel.predict`, driven by the recorded actions); per horizon step we report MSE, PSNR and
SSIM over sequences, each with its mean, a 95% confidence interval of the mean
(``mean +- 1.96 * std / sqrt(N)``) and the 2.5/97.5 percentiles of the per-sequence values.

Every prediction report also scores the trivial baseline that repeats the last context frame.

Imputation: frames are hidden by a mask (``random``: each frame missing with probability ``p``;
``block``: a contiguous middle block) and `WorldModel.impute` fills them in; metrics are over the
missing frames.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .atomic_io import atomic_path, atomic_write_json
from .checks import check_shape, model_method

METRICS = ("mse", "psnr", "ssim")


# ----------------------------------------------------------------------------- per-frame metrics

def frame_mse(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean squared error per frame: ``[..., C, H, W] -> [...]``."""
    if pred.shape != truth.shape:
        raise ValueError(f"pred: expected shape {list(truth.shape)} (as truth), got {list(pred.shape)}")
    return ((pred.float() - truth.float()) ** 2).mean(dim=(-3, -2, -1))


def frame_psnr(pred: torch.Tensor, truth: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per frame: ``[..., C, H, W] -> [...]`` (MSE floored at 1e-10)."""
    return 10.0 * torch.log10(data_range ** 2 / frame_mse(pred, truth).clamp(min=1e-10))


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def frame_ssim(pred: torch.Tensor, truth: torch.Tensor, window: int = 11, sigma: float = 1.5,
               data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per frame (Wang et al. 2004, Gaussian window, valid region):
    ``[..., C, H, W] -> [...]``, averaged over channels. The window shrinks (odd) for small frames."""
    if pred.shape != truth.shape:
        raise ValueError(f"pred: expected shape {list(truth.shape)} (as truth), got {list(pred.shape)}")
    if pred.dim() < 3:
        raise ValueError(f"pred: expected at least 3 dims [..., C, H, W], got {list(pred.shape)}")
    C, H, W = pred.shape[-3:]
    lead = pred.shape[:-3]
    size = min(window, H, W)
    size -= (size + 1) % 2  # odd
    x = pred.reshape(-1, C, H, W).float()
    y = truth.reshape(-1, C, H, W).float()
    w = _gaussian_window(size, sigma * size / window if size < window else sigma, x.device, x.dtype)
    w = w.expand(C, 1, size, size)

    def filt(z):
        return F.conv2d(z, w, groups=C)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x ** 2
    syy = filt(y * y) - mu_y ** 2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(-3, -2, -1)).reshape(lead)


def frame_metrics(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"mse", "psnr", "ssim"}`` per frame, each ``[...]`` for inputs ``[..., C, H, W]``."""
    return {"mse": frame_mse(pred, truth), "psnr": frame_psnr(pred, truth), "ssim": frame_ssim(pred, truth)}


def summarize(values: np.ndarray) -> dict[str, list[float]]:
    """Per-column statistics of ``values [N, K]`` (N sequences): mean, 95% CI of the mean, std,
    2.5/97.5 percentiles. Each entry is a list of K floats."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1:
        raise ValueError(f"values: expected shape [N >= 1, K], got {list(v.shape)}")
    n = v.shape[0]
    mean = v.mean(0)
    std = v.std(0, ddof=1) if n > 1 else np.zeros_like(mean)
    half = 1.96 * std / math.sqrt(n)
    return {"mean": mean.tolist(), "ci_low": (mean - half).tolist(), "ci_high": (mean + half).tolist(),
            "std": std.tolist(), "p2_5": np.percentile(v, 2.5, axis=0).tolist(),
            "p97_5": np.percentile(v, 97.5, axis=0).tolist()}


# ----------------------------------------------------------------------------- data

def _batches(data: Any, split: str, batch_size: int, max_sequences: int | None, progress: bool = False,
             desc: str = "evaluate"):
    """Batches of the first ``max_sequences`` sequences of ``split``, in order; a progress bar
    (sequences done) when ``progress``."""
    from tqdm.auto import tqdm

    from .training.trainer import as_dataset, dataset_size

    dataset, collate = as_dataset(data, split)
    size = dataset_size(dataset)
    n = size if max_sequences is None else min(size, max_sequences)
    idx = list(range(n))
    loader = DataLoader(dataset, batch_sampler=[idx[i:i + batch_size] for i in range(0, n, batch_size)],
                        collate_fn=collate)
    with tqdm(total=n, desc=desc, unit="seq", disable=not progress, dynamic_ncols=True) as bar:
        for batch in loader:
            yield batch
            bar.update(batch.batch_size)


@dataclass
class EvalConfig:
    """What `evaluate` computes and writes."""

    context: int = 5  # observed frames k
    horizon: int = 15  # predicted frames H (sequences need T >= k + H)
    split: str = "test"  # split read from a dataset folder
    batch_size: int = 32
    max_sequences: int | None = None
    num_videos: int = 4  # sequences in the video grid
    fps: float = 8.0
    video_scale: int = 4
    imputation: str | None = "random"  # None | random | block
    drop_prob: float = 0.5  # random imputation: probability a frame is missing
    impute_method: str = "smooth"
    seed: int = 0


# ----------------------------------------------------------------------------- prediction

@torch.no_grad()
def evaluate_prediction(model: torch.nn.Module, data: Any, context: int, horizon: int, *, split: str = "test",
                        batch_size: int = 32, max_sequences: int | None = None,
                        device: str | torch.device = "cpu", keep: int = 4, progress: bool = False) -> dict[str, Any]:
    """Open-loop prediction metrics.

    Returns ``{"per_sequence": {metric: ndarray [N, horizon]}, "n_sequences": N,
    "copy_last": {metric: ndarray [N, horizon]}`` (the baseline that repeats the last context
    frame), ``"examples": {"truth", "pred"} ndarrays [keep, k + H, C, H, W]}``.
    """
    if context < 1 or horizon < 1:
        raise ValueError(f"context/horizon: expected >= 1, got {context}/{horizon}")
    model = model.to(device).eval()
    predict = model_method(model, "predict")
    per: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    base: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    ex_truth, ex_pred = [], []
    for batch in _batches(data, split, batch_size, max_sequences, progress, "evaluate prediction"):
        T = batch.obs.shape[1]
        if T < context + horizon:
            raise ValueError(f"data: sequences of length {T} are shorter than context + horizon = "
                             f"{context + horizon}")
        obs = batch.obs[:, :context + horizon].to(device)
        actions = batch.actions[:, :context + horizon].to(device)
        pred = predict(obs, actions, context)
        check_shape("model.predict output", pred, (obs.shape[0], horizon, *obs.shape[2:]))
        for k, v in frame_metrics(pred, obs[:, context:]).items():
            per[k].append(v.cpu().numpy())
        copy_last = obs[:, context - 1:context].expand(-1, horizon, *obs.shape[2:])
        for k, v in frame_metrics(copy_last, obs[:, context:]).items():
            base[k].append(v.cpu().numpy())
        if sum(len(t) for t in ex_truth) < keep:
            ex_truth.append(obs.cpu().numpy())
            ex_pred.append(torch.cat([obs[:, :context], pred], 1).cpu().numpy())
    out = {k: np.concatenate(v, 0) for k, v in per.items()}
    n = len(out["mse"])
    if n == 0:
        raise ValueError(f"data: no sequences in split {split!r}")
    return {"per_sequence": out, "n_sequences": n, "context": context, "horizon": horizon,
            "copy_last": {k: np.concatenate(v, 0) for k, v in base.items()},
            "examples": {"truth": np.concatenate(ex_truth)[:keep], "pred": np.concatenate(ex_pred)[:keep]}}


# ----------------------------------------------------------------------------- imputation

def make_mask(B: int, T: int, mode: str, drop_prob: float = 0.5, generator: torch.Generator | None = None,
              keep_first: int = 1) -> torch.Tensor:
    """Observation mask ``[B, T]`` (1 = observed): ``random`` drops each frame with ``drop_prob``;
    ``block`` hides frames ``[T // 3, 2T // 3)``. The first ``keep_first`` frames stay observed."""
    if mode == "random":
        mask = (torch.rand(B, T, generator=generator) >= drop_prob).float()
    elif mode == "block":
        mask = torch.ones(B, T)
        mask[:, T // 3: (2 * T) // 3] = 0
    else:
        raise ValueError(f"mode: expected 'random' or 'block', got {mode!r}")
    mask[:, :keep_first] = 1
    return mask


@torch.no_grad()
def evaluate_imputation(model: torch.nn.Module, data: Any, mode: str = "random", drop_prob: float = 0.5, *,
                        method: str = "smooth", split: str = "test", batch_size: int = 32,
                        max_sequences: int | None = None, device: str | torch.device = "cpu", seed: int = 0,
                        keep: int = 4, progress: bool = False) -> dict[str, Any]:
    """Missing-frame imputation metrics over the hidden frames.

    Returns ``{"per_sequence": {metric: ndarray [N]} (mean over each sequence's missing frames),
    "per_time_mse": ndarray [T] (mean over sequences where frame t is missing; NaN if never),
    "examples": {"truth", "masked", "imputed"} [keep, T, C, H, W], "mask_rate": float}``.
    """
    model = model.to(device).eval()
    impute = model_method(model, "impute")
    g = torch.Generator().manual_seed(seed)
    seq_metrics: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    t_sum, t_cnt = None, None
    ex: dict[str, list[np.ndarray]] = {"truth": [], "masked": [], "imputed": []}
    missing_total, frames_total = 0.0, 0
    for batch in _batches(data, split, batch_size, max_sequences, progress, "evaluate imputation"):
        B, T = batch.obs.shape[:2]
        mask = make_mask(B, T, mode, drop_prob, g)
        obs, actions, m = batch.obs.to(device), batch.actions.to(device), mask.to(device)
        imputed = impute(obs, actions, m, method=method)
        check_shape("model.impute output", imputed, tuple(obs.shape))
        per_frame = frame_metrics(imputed, obs)  # each [B, T]
        miss = (1 - m)
        denom = miss.sum(1).clamp(min=1)
        for k, v in per_frame.items():
            seq_metrics[k].append(((v * miss).sum(1) / denom).cpu().numpy()[miss.sum(1).cpu().numpy() > 0])
        ts, tc = (per_frame["mse"] * miss).sum(0).cpu(), miss.sum(0).cpu()
        t_sum = ts if t_sum is None else t_sum + ts
        t_cnt = tc if t_cnt is None else t_cnt + tc
        missing_total += float(miss.sum())
        frames_total += B * T
        if sum(len(x) for x in ex["truth"]) < keep:
            ex["truth"].append(obs.cpu().numpy())
            ex["masked"].append((obs * m[..., None, None, None]).cpu().numpy())
            ex["imputed"].append(imputed.cpu().numpy())
    per = {k: np.concatenate(v) for k, v in seq_metrics.items()}
    if t_sum is None or t_cnt is None:
        raise ValueError("data: no sequences to evaluate")
    per_time = (t_sum / t_cnt.clamp(min=1)).numpy()
    per_time[t_cnt.numpy() == 0] = np.nan
    return {"per_sequence": per, "n_sequences": len(per["mse"]), "per_time_mse": per_time,
            "mask_rate": 1 - missing_total / max(frames_total, 1), "mode": mode,
            "examples": {k: np.concatenate(v)[:keep] for k, v in ex.items()}}


# ----------------------------------------------------------------------------- reports

def _savefig(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return path


def plot_prediction(summary: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """MSE, PSNR and SSIM against horizon step with shaded 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, summary["horizon"] + 1)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, m in zip(axes, METRICS):
        s = summary["metrics"][m]
        ax.fill_between(steps, s["p2_5"], s["p97_5"], color="tab:orange", alpha=0.15,
                        label="2.5-97.5 percentile of sequences")
        ax.fill_between(steps, s["ci_low"], s["ci_high"], color="tab:blue", alpha=0.35, label="95% CI of mean")
        ax.plot(steps, s["mean"], color="tab:blue", marker="o", ms=3, label="model (mean)")
        if "baseline_copy_last" in summary:
            ax.plot(steps, summary["baseline_copy_last"][m]["mean"], color="gray", ls="--",
                    label="repeat last frame")
        ax.set_xlabel("prediction step")
        ax.set_title(m.upper() + (" (dB)" if m == "psnr" else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title or f"open-loop prediction from {summary['context']} frames (N={summary['n_sequences']})")
    fig.tight_layout()
    p = _savefig(fig, Path(path))
    plt.close(fig)
    return p


def _error_clip(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Absolute error as a red-on-black clip ``[T, H, W, 3]`` in [0, 1]."""
    err = np.abs(truth - pred).max(axis=1)  # [T, H, W]
    rgb = np.zeros((*err.shape, 3), np.float32)
    rgb[..., 0] = np.clip(err, 0, 1)
    return rgb


def prediction_video(examples: dict[str, np.ndarray], path: str | os.PathLike, context: int,
                     fps: float = 8.0, scale: int = 4) -> Path:
    """Grid video: one row per sequence, columns truth / prediction / |error|.

    During the ``context`` frames the prediction column shows the observed frames with a green
    border; predicted frames get a red border."""
    from .video import tile_clips, to_uint8_frames, write_video

    rows = []
    for truth, pred in zip(examples["truth"], examples["pred"]):
        p = to_uint8_frames(pred).copy()
        p[:context, [0, -1], :, :] = (0, 200, 0)
        p[:context, :, [0, -1], :] = (0, 200, 0)
        p[context:, [0, -1], :, :] = (220, 0, 0)
        p[context:, :, [0, -1], :] = (220, 0, 0)
        rows.append([truth, p, _error_clip(truth, pred)])
    grid = tile_clips(rows, pad=1, scale=scale, col_labels=["truth", "prediction", "|error|"])
    return write_video(grid, path, fps=fps)


def evaluate(model: torch.nn.Module, data: Any, out_dir: str | os.PathLike, config: EvalConfig | None = None,
             device: str | torch.device = "cpu", video: bool = True, progress: bool = False) -> dict[str, Any]:
    """Prediction (and optionally imputation) evaluation with everything written to ``out_dir``:
    ``prediction.json``, ``prediction.png``, ``prediction.mp4`` and, for imputation,
    ``imputation.json``, ``imputation.png``, ``imputation.mp4``. Returns the JSON summary with
    the written paths under ``"files"``."""
    config = config or EvalConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred = evaluate_prediction(model, data, config.context, config.horizon, split=config.split,
                               batch_size=config.batch_size, max_sequences=config.max_sequences,
                               device=device, keep=config.num_videos, progress=progress)
    summary: dict[str, Any] = {
        "model": type(model).__name__, "config": asdict(config), "context": config.context,
        "horizon": config.horizon, "n_sequences": pred["n_sequences"],
        "metrics": {m: summarize(v) for m, v in pred["per_sequence"].items()},
    }
    summary["overall"] = {m: float(np.mean(pred["per_sequence"][m])) for m in METRICS}
    summary["baseline_copy_last"] = {m: summarize(v) for m, v in pred["copy_last"].items()}
    summary["baseline_copy_last_overall"] = {m: float(np.mean(pred["copy_last"][m])) for m in METRICS}
    files = {"prediction_json": str(out / "prediction.json"),
             "prediction_plot": str(plot_prediction(summary, out / "prediction.png"))}
    if video:
        files["prediction_video"] = str(prediction_video(pred["examples"], out / "prediction.mp4", config.context,
                                                         config.fps, config.video_scale))
    result = {"prediction": summary}
    atomic_write_json(out / "prediction.json", summary, default=float)
    if config.imputation:
        try:
            imp = evaluate_imputation(model, data, config.imputation, config.drop_prob, method=config.impute_method,
                                      split=config.split, batch_size=config.batch_size,
                                      max_sequences=config.max_sequences, device=device, seed=config.seed,
                                      keep=config.num_videos, progress=progress)
        except NotImplementedError as e:
            result["imputation"] = {"skipped": str(e)}
        else:
            isum = {"mode": imp["mode"], "drop_prob": config.drop_prob, "method": config.impute_method,
                    "n_sequences": imp["n_sequences"], "observed_fraction": imp["mask_rate"],
                    "metrics": {m: {k: v[0] for k, v in summarize(imp["per_sequence"][m][:, None]).items()}
                                for m in METRICS},
                    "per_time_mse": [None if not np.isfinite(x) else float(x) for x in imp["per_time_mse"]]}
            atomic_write_json(out / "imputation.json", isum, default=float)
            files["imputation_json"] = str(out / "imputation.json")
            files["imputation_plot"] = str(_plot_imputation(imp, out / "imputation.png"))
            if video:
                from .video import tile_clips, write_video

                ex = imp["examples"]
                rows = [[t, m, i, _error_clip(t, i)] for t, m, i in zip(ex["truth"], ex["masked"], ex["imputed"])]
                grid = tile_clips(rows, scale=config.video_scale,
                                  col_labels=["truth", "observed", "imputed", "|error|"])
                files["imputation_video"] = str(write_video(grid, out / "imputation.mp4", fps=config.fps))
            result["imputation"] = isum
    result["files"] = files
    return result


def _plot_imputation(imp: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    y = imp["per_time_mse"]
    ax.plot(np.arange(len(y)), y, marker="o", ms=3)
    ax.set_xlabel("time step")
    ax.set_ylabel("MSE on missing frames")
    ax.set_title(f"imputation ({imp['mode']}, N={imp['n_sequences']})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = _savefig(fig, path)
    plt.close(fig)
    return p
