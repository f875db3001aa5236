"""Files are data, never code; runs are never overwritten by accident; writes survive full disks.

A crafted reward head or checkpoint must be refused before anything it names runs; a trained run
folder changes only with resume or overwrite; temp files of killed writers are cleaned up.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from test_trainer import quiet
from toy_models import ToyConfig, ToyDataset, ToyModel

from worldmodels import register_model
from worldmodels.agents.commands import build_model
from worldmodels.agents.reward import RewardHead, RewardHeadConfig, RewardHeadFileError
from worldmodels.atomic_io import WriteError, atomic_write, atomic_write_text, remove_stale_temps
from worldmodels.registry import UnknownModelError, get_model_class, registered_models
from worldmodels.training import CheckpointError, RunExistsError, Trainer, load, read_metrics


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class _RunsCode:
    """Unpickling this creates ``marker`` (what a malicious file would do with os.system)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# ----------------------------------------------------------------------------- reward heads

def test_crafted_reward_head_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "reward_head.pt"
    torch.save({"config": {"latent_dim": 2, "action_dim": 1}, "state_dict": {}, "x": _RunsCode(str(marker))}, evil)
    with pytest.raises(RewardHeadFileError, match="cannot be read as data"):
        RewardHead.load(evil)
    assert not marker.exists()
    # a plain pickle (not a torch zip file) is refused the same way
    with open(tmp_path / "plain.pt", "wb") as f:
        pickle.dump(_RunsCode(str(marker)), f)
    with pytest.raises(RewardHeadFileError):
        RewardHead.load(tmp_path / "plain.pt")
    assert not marker.exists()


def test_reward_head_round_trip_and_schema_errors(tmp_path):
    head = RewardHead(RewardHeadConfig(latent_dim=3, action_dim=1, hidden=(8,)))
    head.save(tmp_path / "h.pt")
    again = RewardHead.load(tmp_path / "h.pt")
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values()))
    torch.save({"config": {"latent_dim": 3, "action_dim": 1, "evil": 1}, "state_dict": {}}, tmp_path / "k.pt")
    with pytest.raises(RewardHeadFileError, match="unknown config keys.*evil"):
        RewardHead.load(tmp_path / "k.pt")
    torch.save({"config": {"latent_dim": 5, "action_dim": 1, "hidden": [8]}, "state_dict": head.state_dict()},
               tmp_path / "s.pt")
    with pytest.raises(RewardHeadFileError, match="do not fit"):
        RewardHead.load(tmp_path / "s.pt")
    with pytest.raises(FileNotFoundError, match="reward head not found"):
        RewardHead.load(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- checkpoints and the registry

def _trained_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    Trainer(ToyModel(ToyConfig()), quiet(steps=2, batch_size=8), run, ToyDataset(8)).fit()
    return run


@pytest.mark.parametrize("model_class,model_name", [
    ("sys:exit", None), ("os:fork", None), ("builtins:print", None), ("os:getcwd", None),
    ("toy_models:ToyModel", "os:fork"), ("os:fork", "toy"),
])
def test_checkpoint_naming_any_callable_is_refused(tmp_path, model_class, model_name, monkeypatch):
    run = _trained_run(tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["model_class"], ckpt["model_name"] = model_class, model_name
    bad = tmp_path / "crafted.pt"
    torch.save(ckpt, bad)
    called = []
    for mod, name in (("os", "fork"), ("sys", "exit"), ("os", "getcwd")):
        monkeypatch.setattr(f"{mod}.{name}", lambda *a, _n=name: called.append(_n))
    with pytest.raises(CheckpointError, match="not a registered model|unknown model|registered as"):
        load(bad)
    assert called == []


def test_loading_uses_the_registry_for_user_models(tmp_path):
    run = _trained_run(tmp_path)
    assert torch.equal(load(run).readout.weight, load(run / "checkpoints" / "last.pt").readout.weight)
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["model_name"] == "toy"

    class Unregistered(ToyModel):
        pass

    other = tmp_path / "other"
    Trainer(Unregistered(ToyConfig()), quiet(steps=1, batch_size=8), other, ToyDataset(8)).fit()
    with pytest.raises(CheckpointError, match="register it with worldmodels.register_model"):
        load(other)
    register_model("test_unregistered", Unregistered)
    assert type(load(other)) is Unregistered
    with pytest.raises(ValueError, match="already registered"):
        register_model("test_unregistered", ToyModel)
    with pytest.raises(ValueError, match="name"):
        register_model("os:fork", ToyModel)


@pytest.mark.parametrize("name", ["os:fork", "this:s", "worldmodels.kvae:KVAE", "sys", "", None, 3])
def test_config_model_name_is_never_imported(name):
    with pytest.raises(ValueError, match="model.name: unknown model"):
        build_model({"name": name}, (1, 16, 16), 1)


def test_builtin_models_are_registered():
    assert {"kvae", "gtmsm", "vae_rnn", "dkf", "dvbf"} <= set(registered_models())
    assert get_model_class("kvae").__name__ == "KVAE"
    with pytest.raises(UnknownModelError):
        get_model_class("KVAE")


# ----------------------------------------------------------------------------- run folders

def test_training_again_into_a_trained_run_changes_no_file(tmp_path):
    run = _trained_run(tmp_path)
    before = snapshot(run)
    with pytest.raises(RunExistsError, match="already holds a trained run"):
        Trainer(ToyModel(ToyConfig()), quiet(steps=4, batch_size=8), run, ToyDataset(8))
    assert snapshot(run) == before
    # a refused resume (another batch size) changes no file either
    with pytest.raises(CheckpointError, match="batch_size"):
        Trainer(ToyModel(ToyConfig()), quiet(steps=4, batch_size=4), run, ToyDataset(8), resume=True)
    assert snapshot(run) == before


def test_overwrite_starts_the_run_afresh_and_keeps_user_files(tmp_path):
    run = _trained_run(tmp_path)
    (run / "notes.txt").write_text("mine")
    Trainer(ToyModel(ToyConfig()), quiet(steps=3, batch_size=8, log_every=1), run, ToyDataset(8), overwrite=True).fit()
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert steps == [1, 2, 3]  # not 1, 2 followed by 1, 2, 3
    assert (run / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="one of them"):
        Trainer(ToyModel(ToyConfig()), quiet(steps=3, batch_size=8), run, ToyDataset(8), resume=True, overwrite=True)


@pytest.mark.parametrize("resume", [False, True])
def test_run_stopped_before_its_first_checkpoint_restarts_cleanly(tmp_path, resume):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text(json.dumps({"split": "train", "step": 1, "loss": 9.0}) + "\n")
    Trainer(ToyModel(ToyConfig()), quiet(steps=2, batch_size=8, log_every=1), run, ToyDataset(8),
            resume=resume).fit()
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2]
    assert all(r["loss"] != 9.0 for r in rows)


# ----------------------------------------------------------------------------- atomic writes

def test_atomic_writes_honour_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o600
    old = os.umask(0o002)
    try:
        p = atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o664


def test_full_disk_is_reported_and_the_old_file_kept(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def fill(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=f"disk full while writing {target}"):
        atomic_write(target, fill)

    def torch_zip_fails(f):
        raise RuntimeError("[enforce fail at inline_container.cc:783] . unexpected pos 36096 vs 35984")

    with pytest.raises(WriteError, match="disk full"):
        atomic_write(target, torch_zip_fails)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_unwritable_folder_is_reported(tmp_path, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match="read-only or not writable"):
        atomic_write_text(tmp_path / "x.json", "{}")


def test_temp_files_of_killed_writers_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".last.pt.wmtmp-{dead}-abc.tmp"
    live = tmp_path / f".last.pt.wmtmp-{os.getpid()}-abc.tmp"
    other = tmp_path / ".hidden-user-file"
    for p in (stale, live, other):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()
    # the trainer cleans its run folder at start
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    leftover = run / "checkpoints" / f".last.pt.wmtmp-{dead}-q.tmp"
    leftover.write_bytes(b"x")
    Trainer(ToyModel(ToyConfig()), quiet(steps=1, batch_size=8), run, ToyDataset(8), resume="auto")
    assert not leftover.exists()
