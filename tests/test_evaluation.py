"""Evaluation metrics against independent references, indexing of open-loop prediction and
imputation, and the written report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldmodels.base import TensorBelief, WorldModel
from worldmodels.evaluation import (
    EvalConfig,
    evaluate,
    evaluate_imputation,
    evaluate_prediction,
    frame_psnr,
    frame_ssim,
    make_mask,
    summarize,
)


class CopyLast(WorldModel):
    """Predicts that the last observed frame stays; imputes missing frames with zeros."""

    def __init__(self, shape=(1, 6, 6), action_dim=1):
        super().__init__()
        self.shape, self.latent_dim, self.action_dim = shape, int(np.prod(shape)), action_dim

    def loss(self, batch):
        raise NotImplementedError

    def observe(self, obs, actions, mask=None):
        return TensorBelief(obs[:, -1].flatten(1))

    def imagine(self, belief, actions, *, sample=False, generator=None):
        B, N, H, _ = actions.shape
        return belief.z[:, None, None].expand(B, N, H, -1)

    def decode(self, latents):
        return latents.reshape(*latents.shape[:-1], *self.shape)

    def impute(self, obs, actions, mask, method="smooth"):
        return obs * mask[..., None, None, None]


class Seqs(torch.utils.data.Dataset):
    def __init__(self, n=10, T=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.obs = torch.rand(n, T, 1, 6, 6, generator=g)
        self.act = torch.zeros(n, T, 1)

    def __len__(self):
        return len(self.obs)

    def __getitem__(self, i):
        return {"obs": self.obs[i], "actions": self.act[i], "mask": torch.ones(self.obs.shape[1])}


def ssim_reference(x: np.ndarray, y: np.ndarray, size=11, sigma=1.5) -> float:
    """Direct window-by-window SSIM of two single-channel images."""
    ax = np.arange(size) - (size - 1) / 2
    w = np.exp(-ax ** 2 / (2 * sigma ** 2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            a, b = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_and_psnr_match_references():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 14, 13, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = frame_ssim(y, x)
    for b in range(2):
        assert got[b].item() == pytest.approx(ssim_reference(y[b, 0].numpy(), x[b, 0].numpy()), abs=1e-5)
    assert torch.allclose(frame_ssim(x, x), torch.ones(2, dtype=torch.float32))
    assert (frame_ssim(y, x) < 0.9).all()
    assert frame_psnr(torch.full((1, 2, 2), 0.1), torch.zeros(1, 2, 2)).item() == pytest.approx(20.0)


def test_summarize_statistics():
    v = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [6.0, 10.0]])
    s = summarize(v)
    assert s["mean"] == pytest.approx([3.0, 10.0])
    half = 1.96 * np.std(v[:, 0], ddof=1) / 2
    assert s["ci_low"][0] == pytest.approx(3.0 - half) and s["ci_high"][0] == pytest.approx(3.0 + half)
    assert s["ci_low"][1] == s["ci_high"][1] == 10.0


def test_prediction_metrics_index_horizon_steps_correctly():
    data = Seqs()
    k, H = 3, 4
    res = evaluate_prediction(CopyLast(), data, k, H, batch_size=4)  # 3 batches, the last one short
    obs = data.obs
    expect = ((obs[:, k - 1:k] - obs[:, k:k + H]) ** 2).mean(dim=(2, 3, 4)).numpy()
    np.testing.assert_allclose(res["per_sequence"]["mse"], expect, rtol=1e-5)
    assert res["n_sequences"] == 10 and res["per_sequence"]["ssim"].shape == (10, H)
    assert res["examples"]["pred"].shape == (4, k + H, 1, 6, 6)
    with pytest.raises(ValueError, match="shorter than context"):
        evaluate_prediction(CopyLast(), data, 5, 4)


def test_imputation_scores_only_missing_frames():
    data = Seqs(n=6)
    res = evaluate_imputation(CopyLast(), data, "block", batch_size=4)
    T = 8
    mask = make_mask(6, T, "block")
    assert mask[0].tolist() == [1, 1, 0, 0, 0, 1, 1, 1]
    miss = (1 - mask)[..., None, None, None]
    expect = ((data.obs ** 2) * miss).mean(dim=(2, 3, 4)).sum(1) / miss.sum(dim=(1, 2, 3, 4))
    np.testing.assert_allclose(res["per_sequence"]["mse"], expect.numpy(), rtol=1e-5)
    assert np.isnan(res["per_time_mse"][0]) and not np.isnan(res["per_time_mse"][2])
    r = make_mask(500, 10, "random", 0.3, torch.Generator().manual_seed(1))
    assert (r[:, 0] == 1).all() and abs(1 - r[:, 1:].mean().item() - 0.3) < 0.03


def test_evaluate_writes_json_plot_and_videos(tmp_path):
    out = evaluate(CopyLast(), Seqs(), tmp_path, EvalConfig(context=2, horizon=5, num_videos=2, imputation="random"))
    for key in ("prediction_json", "prediction_plot", "prediction_video", "imputation_json", "imputation_plot",
                "imputation_video"):
        assert (tmp_path / out["files"][key].split("/")[-1]).stat().st_size > 0, key
    js = json.loads((tmp_path / "prediction.json").read_text())
    assert len(js["metrics"]["psnr"]["mean"]) == 5 and js["n_sequences"] == 10
    assert json.loads((tmp_path / "imputation.json").read_text())["metrics"]["mse"]["mean"] > 0


def test_copy_last_baseline_is_reported_and_matches_a_copy_model(tmp_path):
    out = evaluate(CopyLast(), Seqs(), tmp_path, EvalConfig(context=3, horizon=4, imputation=None), video=False)
    pred = out["prediction"]
    for m in ("mse", "psnr", "ssim"):
        np.testing.assert_allclose(pred["baseline_copy_last"][m]["mean"], pred["metrics"][m]["mean"], rtol=1e-6)


def test_evaluate_shows_a_progress_bar_over_sequences_when_asked(tmp_path, capsys):
    """``progress=True`` draws a bar per stage on stderr; the default stays silent."""
    model, data = CopyLast(), Seqs()
    cfg = EvalConfig(context=2, horizon=3, batch_size=2, max_sequences=4, imputation="random")
    evaluate(model, data, tmp_path / "quiet", cfg, video=False)
    assert "evaluate prediction" not in capsys.readouterr().err
    evaluate(model, data, tmp_path / "loud", cfg, video=False, progress=True)
    err = capsys.readouterr().err
    assert "evaluate prediction" in err and "evaluate imputation" in err and "4/4" in err
