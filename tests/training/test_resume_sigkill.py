"""A CPU deterministic run killed with SIGKILL and resumed logs the same losses as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from worldmodels.training import read_checkpoint, read_metrics

SCRIPT = str(Path(__file__).parent / "train_toy_script.py")


def run(args, kill_at=None, sig=signal.SIGKILL):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WM_TOY_KILL_AT", None)
    if kill_at is not None:
        env["WM_TOY_KILL_AT"] = str(kill_at)
        env["WM_TOY_SIGNAL"] = str(int(sig))
    return subprocess.run([sys.executable, SCRIPT, *args], env=env, capture_output=True, text=True, timeout=120)


def curve(run_dir: Path):
    return [(r["split"], r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl")]


def assert_resume_matches(full: Path, interrupted: Path, args: list[str]) -> None:
    """Resuming ``interrupted`` reproduces the uninterrupted run's loss curve and final weights."""
    r = run([str(interrupted), *args, "--resume"])
    assert r.returncode == 0, r.stderr
    assert curve(interrupted) == curve(full)
    a = read_checkpoint(full / "checkpoints" / "last.pt")["model"]
    b = read_checkpoint(interrupted / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_then_resume_reproduces_loss_curve(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = ["18", "8", "--noise", "0.1"]  # noise: the model draws from torch's RNG every step
    # the uninterrupted reference runs in this process (same script code, one thread)
    import train_toy_script

    train_toy_script.main([str(full), *args])
    # loss calls: steps 1-6, one validation batch at step 6, steps 7-9 -> call 11 is inside step 10
    r = run([str(killed), *args], kill_at=11)
    assert r.returncode == -signal.SIGKILL
    ckpt = read_checkpoint(killed / "checkpoints" / "last.pt")
    assert ckpt["step"] == 8  # the last checkpoint before the kill
    assert max(s for _, s, _ in curve(killed)) == 9  # the killed run had logged past its checkpoint
    assert_resume_matches(full, killed, args)


def test_ctrl_c_checkpoints_the_finished_step_then_resumes_exactly(tmp_path):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    args = ["18", "8", "--noise", "0.1"]
    import train_toy_script

    train_toy_script.main([str(full), *args])
    # SIGINT arrives inside step 10's loss: the step completes, is checkpointed, then Ctrl-C propagates
    r = run([str(stopped), *args], kill_at=11, sig=signal.SIGINT)
    assert r.returncode != 0 and "KeyboardInterrupt" in r.stderr
    assert "interrupted at step 10" in r.stdout + r.stderr
    assert read_checkpoint(stopped / "checkpoints" / "last.pt")["step"] == 10
    assert_resume_matches(full, stopped, args)


def test_sigterm_checkpoints_the_finished_step_then_resumes_exactly(tmp_path):
    """A job scheduler's SIGTERM is handled like Ctrl-C: the step finishes and is checkpointed."""
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    args = ["18", "8", "--noise", "0.1"]
    import train_toy_script

    train_toy_script.main([str(full), *args])
    r = run([str(stopped), *args], kill_at=11, sig=signal.SIGTERM)
    assert r.returncode != 0 and r.returncode != -signal.SIGTERM  # handled, not killed outright
    assert "interrupted at step 10" in r.stdout + r.stderr
    assert read_checkpoint(stopped / "checkpoints" / "last.pt")["step"] == 10
    assert_resume_matches(full, stopped, args)
