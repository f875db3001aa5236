"""Trainer behaviour on a tiny model: optimisation, accumulation, freezing, clipping, schedules,
non-finite guard, early stopping, run folder and checkpoint errors."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from toy_models import ToyConfig, ToyDataset, ToyModel

from worldmodels.training import (
    CheckpointError,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load,
    lr_at,
    read_checkpoint,
    read_metrics,
)


def make(seed=0, **cfg):
    torch.manual_seed(seed)
    return ToyModel(ToyConfig(**cfg))


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def quiet(**kw):
    kw.setdefault("progress", False)
    kw.setdefault("checkpoint_every", None)
    return TrainConfig(**kw)


def test_fit_reduces_loss_and_writes_run_folder(tmp_run):
    model = make(noise=0.05)
    cfg = quiet(steps=60, batch_size=8, lr=1e-2, log_every=5, checkpoint_every=20)
    summary = Trainer(model, cfg, tmp_run, ToyDataset(32), ToyDataset(8, seed=1)).fit()
    rows = [r for r in read_metrics(tmp_run / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in rows] == list(range(5, 61, 5))
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    for key in ("mse", "kl", "grad_norm", "grad_norm/dynamics", "grad_norm/readout", "lr", "frames_per_s"):
        assert key in rows[0]
    assert rows[0]["frames_per_s"] > 0
    assert summary["steps"] == 60 and summary["bad_steps"] == 0
    cfg_json = json.loads((tmp_run / "config.json").read_text())
    assert cfg_json["train"]["batch_size"] == 8 and cfg_json["model"]["noise"] == 0.05
    assert json.loads((tmp_run / "summary.json").read_text())["steps"] == 60
    ckpt = read_checkpoint(tmp_run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 60 and ckpt["package_version"] and ckpt["train_config"]["lr"] == 1e-2
    assert set(ckpt["rng"][0]) >= {"python", "numpy", "torch"}
    # load() rebuilds the model from its config; the run folder resolves to best.pt
    best = load(tmp_run / "checkpoints" / "best.pt")
    assert isinstance(best, ToyModel) and not best.training
    for k, v in best.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])  # restore_best: the model holds the best weights
    assert torch.equal(load(tmp_run).readout.weight, best.readout.weight)


def test_grad_accumulation_equals_full_batch(tmp_path):
    a, b = make(), make()
    Trainer(a, quiet(steps=6, batch_size=8, lr=1e-2), tmp_path / "a", ToyDataset(16)).fit()
    Trainer(b, quiet(steps=6, batch_size=8, lr=1e-2, grad_accum=4), tmp_path / "b", ToyDataset(16)).fit()
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    assert not torch.equal(a.readout.weight, make().readout.weight)


def test_freeze_keeps_group_fixed_for_given_epochs(tmp_path):
    ds = ToyDataset(16)  # batch 8 -> 2 steps per epoch
    model = make()
    init = params(model)
    Trainer(model, quiet(steps=4, batch_size=8, freeze={"dynamics": 2}), tmp_path / "a", ds).fit()
    assert torch.equal(model.dynamics.weight, init["dynamics.weight"])
    assert not torch.equal(model.readout.weight, init["readout.weight"])
    model2 = make()
    Trainer(model2, quiet(steps=5, batch_size=8, freeze={"dynamics": 2}), tmp_path / "b", ds).fit()
    assert not torch.equal(model2.dynamics.weight, init["dynamics.weight"])
    with pytest.raises(ValueError, match="unknown parameter group"):
        Trainer(make(), quiet(steps=1, batch_size=8, freeze={"decoder": 1}), tmp_path / "c", ds)


def test_grad_clip_matches_manual_adam_step(tmp_path):
    ds = ToyDataset(8)
    model = make()
    ref = copy.deepcopy(model)
    clip, lr = 1e-3, 0.1
    Trainer(model, quiet(steps=1, batch_size=8, lr=lr, eps=1.0, grad_clip=clip), tmp_path, ds).fit()
    # same step by hand on the whole (order-independent) batch
    from torch.utils.data.dataloader import default_collate

    from worldmodels.base import Batch

    d = default_collate([ds[i] for i in range(8)])
    loss = ref.loss(Batch(d["obs"], d["actions"], d["mask"])).loss
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(ref.parameters()), clip)
    assert norm > 10 * clip  # clipping is active
    torch.optim.Adam(ref.parameters(), lr=lr, eps=1.0).step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=1e-4, atol=1e-7)


def test_schedules_follow_the_papers(tmp_run):
    kvae = TrainConfig(epochs=100, lr=0.007, schedule="staircase", decay_rate=0.85, decay_every=20)
    assert lr_at(kvae, 0, 10, 1000) == pytest.approx(0.007)
    assert lr_at(kvae, 199, 10, 1000) == pytest.approx(0.007)  # epoch 19
    assert lr_at(kvae, 200, 10, 1000) == pytest.approx(0.007 * 0.85)
    assert lr_at(kvae, 450, 10, 1000) == pytest.approx(0.007 * 0.85 ** 2)
    gtm = TrainConfig(steps=100000, lr=1e-3, schedule="linear", final_lr=5e-5, anneal_steps=50000)
    assert lr_at(gtm, 25000, 1, 100000) == pytest.approx((1e-3 + 5e-5) / 2)
    assert lr_at(gtm, 50000, 1, 100000) == pytest.approx(5e-5)
    assert lr_at(gtm, 90000, 1, 100000) == pytest.approx(5e-5)
    # the trainer logs the lr it used: linear over 10 updates, logged after each update
    cfg = quiet(steps=10, batch_size=8, lr=1e-2, schedule="linear", final_lr=1e-3, log_every=1)
    Trainer(make(), cfg, tmp_run, ToyDataset(16)).fit()
    lrs = [r["lr"] for r in read_metrics(tmp_run / "metrics.jsonl") if r["split"] == "train"]
    assert lrs == pytest.approx([1e-2 - 9e-3 * s / 10 for s in range(1, 11)])


def test_nan_step_is_skipped_and_reported(tmp_run, capsys):
    model = make()
    model.nan_calls = {3}
    ref = make()
    summary = Trainer(model, quiet(steps=6, batch_size=8, log_every=1), tmp_run, ToyDataset(16)).fit()
    assert summary["bad_steps"] == 1
    rows = read_metrics(tmp_run / "metrics.jsonl")
    assert [r["step"] for r in rows if r["split"] == "bad"] == [3]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 4, 5, 6]
    assert all(math.isfinite(v) for v in model.state_dict()["readout.weight"].flatten().tolist())
    assert not torch.equal(model.readout.weight, ref.readout.weight)
    assert "non-finite kl" in capsys.readouterr().out


def test_repeated_nan_stops_naming_term_and_keeps_good_checkpoint(tmp_run):
    model = make()
    model.nan_calls = set(range(5, 100))
    cfg = quiet(steps=50, batch_size=8, max_bad_steps=3, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match="offending term: kl"):
        Trainer(model, cfg, tmp_run, ToyDataset(16)).fit()
    ckpt = read_checkpoint(tmp_run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 6  # skipped updates leave the step-4 weights, which are good
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert ckpt["trainer"]["consecutive_bad"] == 2
    # a model whose weights went non-finite is never written over a good checkpoint
    trainer = Trainer(model, cfg, tmp_run, ToyDataset(16), resume=True)
    with torch.no_grad():
        model.readout.weight[0, 0] = float("inf")
    before = (tmp_run / "checkpoints" / "last.pt").read_bytes()
    assert trainer._save("last.pt") is None
    assert (tmp_run / "checkpoints" / "last.pt").read_bytes() == before


def test_early_stopping_keeps_best_weights(tmp_run):
    model = make()
    # a large lr makes the validation loss bounce, so patience triggers
    cfg = quiet(steps=200, batch_size=8, lr=0.5, val_every=2, early_stopping_patience=3)
    summary = Trainer(model, cfg, tmp_run, ToyDataset(16), ToyDataset(8, seed=3)).fit()
    vals = [r for r in read_metrics(tmp_run / "metrics.jsonl") if r["split"] == "val"]
    assert summary["stopped_early"] and summary["steps"] < 200
    best = min(vals, key=lambda r: r["loss"])
    assert summary["best_step"] == best["step"] and summary["best_metric"] == pytest.approx(best["loss"])
    assert vals[-1]["step"] - best["step"] == 3 * 2
    saved = read_checkpoint(tmp_run / "checkpoints" / "best.pt")
    assert saved["step"] == best["step"]
    for k, v in saved["model"].items():
        assert torch.equal(model.state_dict()[k], v)


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load(tmp_path / "nope.pt")
    run = tmp_path / "run"
    Trainer(make(), quiet(steps=2, batch_size=8), run, ToyDataset(8)).fit()
    good = run / "checkpoints" / "last.pt"
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(bad)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load(tmp_path / "empty.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        Trainer(make(), quiet(steps=2, batch_size=8), tmp_path / "fresh", ToyDataset(8), resume=True).fit()
    other = ToyModel(ToyConfig(hidden=8))
    with pytest.raises(CheckpointError, match=r"model config differs.*hidden"):
        Trainer(other, quiet(steps=4, batch_size=8), run, ToyDataset(8), resume=True).fit()
    with pytest.raises(CheckpointError, match="batch_size"):
        Trainer(make(), quiet(steps=4, batch_size=4), run, ToyDataset(8), resume=True).fit()


def test_resume_in_process_continues_exactly(tmp_path):
    ds = ToyDataset(24)
    full = make(noise=0.1)
    Trainer(full, quiet(steps=12, batch_size=8, log_every=1), tmp_path / "full", ds).fit()
    part = make(noise=0.1)
    Trainer(part, quiet(steps=5, batch_size=8, log_every=1), tmp_path / "part", ds).fit()
    torch.manual_seed(999)  # a different global RNG state must not matter: the checkpoint restores it
    resumed = make(noise=0.1, seed=7)
    Trainer(resumed, quiet(steps=12, batch_size=8, log_every=1), tmp_path / "part", ds, resume=True).fit()
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v)
    a = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(tmp_path / "part" / "metrics.jsonl")]
    assert a == b


def test_tensorboard_gets_scalars_and_prediction_video(tmp_run, monkeypatch):
    """With tensorboard installed the logger writes scalars, images and a video (writer faked here)."""
    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append(("scalar", tag, step))

        def add_images(self, tag, images, step, dataformats):
            calls.append(("images", tag, images.shape, dataformats))

        def add_video(self, tag, video, step, fps):
            calls.append(("video", tag, tuple(video.shape)))

        def flush(self):
            pass

        def close(self):
            calls.append(("close",))

    import sys
    import types

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    Trainer(make(), quiet(steps=4, batch_size=8, log_every=2, val_every=4), tmp_run, ToyDataset(16),
            ToyDataset(8, seed=2)).fit()
    assert calls[0] == ("init", str(tmp_run / "tensorboard")) and calls[-1] == ("close",)
    assert ("scalar", "train/loss", 2) in calls and ("scalar", "val/loss", 4) in calls
    videos = [c for c in calls if c[0] == "video"]
    # 4 sequences of 6 frames tiled as truth | prediction: [1, T, 3, 4*(4+1)+1, 2*(4+1)+1]
    assert videos == [("video", "val/prediction", (1, 6, 3, 21, 11))]
    assert any(c[0] == "images" and c[3] == "NHWC" for c in calls)


def test_fit_flushes_denormals_on_cpu(tmp_path):
    if not torch.set_flush_denormal(False):  # earlier tests may have switched it on
        pytest.skip("this CPU does not support flushing denormals")
    denormal = torch.tensor([1e-40], dtype=torch.float32)
    assert (denormal * 1.0).item() > 0
    Trainer(make(), quiet(steps=1, batch_size=8, flush_denormal=True), tmp_path, ToyDataset(8)).fit()
    assert (denormal * 1.0).item() == 0.0  # arithmetic on a denormal now yields zero
    assert torch.tensor([1e-30]).item() > 0  # normal floats are untouched
