"""Bad inputs to the ``worldmodels`` console script, run in-process: each must end in one line on
stderr that names the offending option or file, exit status 2 (invalid option or config) or 1
(a missing or damaged file), no traceback, and no file created or changed."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from worldmodels.agents.cli import COMMANDS, main

BIG = str(10 ** 12)
BALL = "worldmodels/BouncingBall-v0"  # the environment of the fixture's run
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
NEEDS_PYGAME = pytest.mark.skipif(importlib.util.find_spec("pygame") is None,
                                  reason="CartPole renders with pygame (gymnasium[classic-control])")
TINY_MODEL = ["--set", "model.name=vae_rnn",
              "--set", "model.config={latent_dim: 4, hidden_dim: 8, encoder: mlp, mlp_hidden: [32], "
                       "likelihood: bernoulli}",
              "--set", "train.batch_size=8", "--set", "train.val_every=1", "--set", "train.checkpoint_every=1",
              "--set", "train.tensorboard=false", "--set", "eval.horizon=5", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny dataset, a run trained for one step, and damaged or foreign files next to them."""
    from worldmodels.envs.generate import generate_dataset, get_spec

    root = tmp_path_factory.mktemp("fuzz")
    data = root / "data"
    spec = dataclasses.replace(get_spec("bouncing_ball_small"), splits={"train": 8, "valid": 4, "test": 4},
                               seq_len=20, shard_size=8)
    generate_dataset(spec, data, num_workers=1, progress=False)
    pendulum = root / "pendulum"
    generate_dataset(dataclasses.replace(get_spec("pendulum_small"), splits={"test": 2}, seq_len=20), pendulum,
                     num_workers=1, progress=False)
    run = root / "run"
    assert main(["train", "--config", "demo", "--run-dir", str(run), "--set", f"data.root={data}", *TINY_MODEL,
                 "--steps", "1", "--device", "cpu"]) == 0
    noseqlen = root / "noseqlen"
    shutil.copytree(data, noseqlen)
    manifest = json.loads((noseqlen / "manifest.json").read_text())
    del manifest["seq_len"]
    (noseqlen / "manifest.json").write_text(json.dumps(manifest))
    novalid = root / "novalid"
    shutil.copytree(data, novalid)
    manifest = json.loads((novalid / "manifest.json").read_text())
    del manifest["splits"]["valid"]
    (novalid / "manifest.json").write_text(json.dumps(manifest))
    badmanifest = root / "badmanifest"
    badmanifest.mkdir()
    (badmanifest / "manifest.json").write_text("{not json")
    (root / "nomanifest").mkdir()
    (root / "notrun").mkdir()
    (root / "notrun" / "notes.txt").write_text("hello")
    (root / "empty.pt").write_bytes(b"")
    (root / "garbage.pt").write_bytes(os.urandom(256))
    torch.save({"config": {"latent_dim": 4}, "state_dict": _RunsCode()}, root / "evil_head.pt")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    crafted = (("evil_class.pt", None, "sys:exit"), ("evil_name.pt", "os:fork", ckpt["model_class"]))
    for name, model_name, model_class in crafted:
        torch.save({**ckpt, "model_name": model_name, "model_class": model_class}, root / name)
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "bad.yaml").write_text("train: {lr: [1,\n")
    (root / "file.txt").write_text("a user's file")
    (root / "dir.mp4").mkdir()
    (root / "old.gif").write_bytes(b"GIF89a a user's video")
    return {"evil_head": root / "evil_head.pt", "evil_class": root / "evil_class.pt",
            "evil_name": root / "evil_name.pt", "video": root / "old.gif", "root": root,
            "data": data, "run": run, "noseqlen": noseqlen, "novalid": novalid, "pendulum": pendulum,
            "badmanifest": badmanifest,
            "nomanifest": root / "nomanifest", "notrun": root / "notrun", "empty": root / "empty.pt",
            "garbage": root / "garbage.pt", "listyaml": root / "list.yaml", "badyaml": root / "bad.yaml",
            "file": root / "file.txt", "dirmp4": root / "dir.mp4"}


class _RunsCode:
    """Unpickling this runs a shell command (a crafted file): loaders must refuse it."""

    def __reduce__(self):
        return os.system, ("touch pwned",)


def case(cmd: str, *args: str, code: int = 2, names: str, marks=()):
    """One bad input: ``worldmodels cmd args`` (``{key}`` placeholders are fixture paths) must exit
    with ``code`` and a line containing ``names``."""
    return pytest.param([cmd, *args], code, names, id=f"{cmd} {' '.join(args)}"[:90], marks=marks)


CASES = [
    # ---------------------------------------------------------------- generate
    case("generate", names="preset"),
    case("generate", "nosuch", names="preset"),
    case("generate", "bouncing_ball_small", "--train", BIG, names="--train"),
    case("generate", "bouncing_ball_small", "--valid", "-1", names="--valid"),
    case("generate", "bouncing_ball_small", "--test", BIG, names="--test"),
    case("generate", "bouncing_ball_small", "--train", "0", "--valid", "0", "--test", "0", names="--train"),
    case("generate", "bouncing_ball_small", "--train", "abc", names="--train"),
    case("generate", "bouncing_ball_small", "--seq-len", "0", names="--seq-len"),
    case("generate", "bouncing_ball_small", "--seq-len", str(10 ** 9), names="--seq-len"),
    case("generate", "bouncing_ball_small", "--seed", "-1", names="--seed"),
    case("generate", "bouncing_ball_small", "--shard-size", "0", names="--shard-size"),
    case("generate", "bouncing_ball_small", "--workers", "0", names="--workers"),
    case("generate", "bouncing_ball_small", "--workers", "100000", names="--workers"),
    case("generate", "bouncing_ball_small", "--policy", "nosuch", names="--policy"),
    case("generate", "pendulum_small", "--env-kwargs", '{"g": NaN}', names="--env-kwargs"),
    case("generate", "pendulum_small", "--env-kwargs", '{"g": Infinity}', names="--env-kwargs"),
    case("generate", "pendulum_small", "--env-kwargs", '{"g": -Infinity}', names="--env-kwargs"),
    case("generate", "bouncing_ball_small", "--env-kwargs", '{"gravity": [0, NaN]}', names="--env-kwargs.gravity"),
    case("generate", "pendulum_small", "--env-kwargs", '{"foo": 1}', names="'foo'"),
    case("generate", "pendulum_small", "--env-kwargs", '[1, 2]', names="--env-kwargs"),
    case("generate", "pendulum_small", "--env-kwargs", '{"g": ', names="--env-kwargs"),
    case("generate", "pendulum_small", "--env-kwargs", '{"size": 17}', names="--env-kwargs"),
    case("generate", "pendulum_small", "--env-kwargs", '{"render_mode": "human"}', names="render_mode"),
    case("generate", "bouncing_ball_small", "--name", "../escape", names="--name"),
    case("generate", "bouncing_ball_small", "--name", "a/b", names="--name"),
    case("generate", "bouncing_ball_small", "--name", "", names="--name"),
    case("generate", "bouncing_ball_small", "--out", "{file}", names="--out"),
    case("generate", "bouncing_ball_small", "--out", "{data}", names="--overwrite"),
    case("generate", "bouncing_ball_small", "--bogus", names="--bogus"),
    case("generate", "--env", "Nope-v0", names="--env"),
    case("generate", "--env", "gymnasium.envs.classic_control:CartPole-v1", names="--env"),
    case("generate", "bouncing_ball_small", "--env", "CartPole-v1", names="--env"),
    case("generate", "--env", "CartPole-v1", "--size", "0", names="--size"),
    case("generate", "--env", "CartPole-v1", "--size", "100000", names="--size"),
    case("generate", "--env", "CartPole-v1", "--size", "16x", names="--size"),
    case("generate", "--env", "CartPole-v1", "--size", "16x16x3", names="--size"),
    case("generate", "--env", "CartPole-v1", "--frame-skip", "0", names="--frame-skip"),
    case("generate", "--env", "CartPole-v1", "--frame-skip", BIG, names="--frame-skip"),
    case("generate", "--env", "CartPole-v1", "--policy", "zero", names="--policy", marks=NEEDS_PYGAME),
    case("generate", "--env", "CartPole-v1", "--env-kwargs", '{"foo": 1}', names="--env-kwargs"),
    case("generate", "--env", "CartPole-v1", "--env-kwargs", '{"render_mode": "human"}', names="--env-kwargs"),
    case("generate", "--env", "CartPole-v1", "--seq-len", "0", names="--seq-len"),
    case("generate", "bouncing_ball_small", "--size", "16", names="--size"),
    case("generate", "bouncing_ball_small", "--frame-skip", "2", names="--frame-skip"),
    case("generate", "--env", "worldmodels/Pendulum-v0", "--grayscale", names="--grayscale"),
    # ---------------------------------------------------------------- train
    case("train", names="data"),
    case("train", "--config", "nosuch", names="--config nosuch"),
    case("train", "--config", "{listyaml}", names="list.yaml"),
    case("train", "--config", "{badyaml}", names="bad.yaml"),
    case("train", "--config", "{garbage}", names="garbage.pt"),
    case("train", "--config", "demo", "--set", "train.val_every=0", names="train.val_every"),
    case("train", "--config", "demo", "--set", "train.checkpoint_every=0", names="train.checkpoint_every"),
    case("train", "--config", "demo", "--set", "train.steps=abc", names="train.steps"),
    case("train", "--config", "demo", "--set", "train.steps=-1", names="train.steps"),
    case("train", "--config", "demo", "--set", "train.lr=.nan", names="train.lr"),
    case("train", "--config", "demo", "--set", "train.lr=-1e-3", names="train.lr"),
    case("train", "--config", "demo", "--set", "train.batch_size=0", names="train.batch_size"),
    case("train", "--config", "demo", "--set", "train.batch_size=1.5", names="train.batch_size"),
    case("train", "--config", "demo", "--set", f"train.batch_size={BIG}", names="train.batch_size"),
    case("train", "--config", "demo", "--set", "train.optimizer=sgd", names="train.optimizer"),
    case("train", "--config", "demo", "--set", "train.seed=-1", names="train.seed"),
    case("train", "--config", "demo", "--set", "train.grad_clip=0", names="train.grad_clip"),
    case("train", "--config", "demo", "--set", "train.foo=1", names="train.foo"),
    case("train", "--config", "demo", "--set", "train.betas=abc", names="train.betas"),
    case("train", "--config", "demo", "--set", "train.betas=[0.9]", names="train.betas"),
    case("train", "--config", "demo", "--set", "train.betas=[0.9, .inf]", names="train.betas[1]"),
    case("train", "--config", "demo", "--set", "train.freeze=5", names="train.freeze"),
    case("train", "--config", "demo", "--set", "model.config.mlp_hidden=[32, x]", names="model.config.mlp_hidden[1]"),
    case("train", "--config", "demo", "--set", "foo.bar=1", names="foo"),
    case("train", "--config", "demo", "--set", "train.lr", names="--set"),
    case("train", "--config", "demo", "--set", "=1", names="--set"),
    case("train", "--config", "demo", "--set", "train..lr=1", names="--set"),
    case("train", "--config", "demo", "--set", "train.lr=[1,", names="--set train.lr"),
    case("train", "--config", "demo", "--set", "data=5", names="data"),
    case("train", "--config", "demo", "--set", "model.name=this:s", names="model.name"),
    case("train", "--config", "demo", "--set", "model.name=os:system", names="model.name"),
    case("train", "--config", "demo", "--set", "model.config.nosuch=1", names="model.config.nosuch"),
    case("train", "--config", "demo", "--set", "model.config.z_dim=abc", names="model.config.z_dim"),
    case("train", "--config", "demo", "--set", "model.config=5", names="model.config"),
    case("train", "--config", "demo", "--set", "model.colour=red", names="model.colour"),
    case("train", "--config", "demo", "--set", "data.preset=nosuch", names="data.preset"),
    case("train", "--config", "demo", "--set", "data.preset=null", "--set", "data.root={nomanifest}",
         names="data.root"),
    case("train", "--config", "demo", "--set", "data.root={noseqlen}", code=1, names="seq_len"),
    case("train", "--config", "demo", "--set", "data.root={badmanifest}", code=1, names="badmanifest"),
    case("train", "--config", "demo", "--set", "eval.drop_prob=2", names="eval.drop_prob"),
    case("train", "--config", "demo", "--set", "eval.imputation=sometimes", names="eval.imputation"),
    case("train", "--config", "demo", "--set", "data.root={data}", "--set", "eval.horizon=100", names="eval.horizon"),
    case("train", "--config", "demo", "--device", "gpu", names="--device"),
    case("train", "--config", "demo", "--device", "cuda", names="--device", marks=NO_CUDA),
    case("train", "--config", "demo", "--set", "train.device=tpu", names="train.device"),
    case("train", "--config", "demo", "--steps", "-1", names="--steps"),
    case("train", "--config", "demo", "--steps", BIG, names="--steps"),
    case("train", "--config", "demo", "--resume", names="--resume"),
    case("train", "--config", "demo", "--run-dir", "{file}", names="--run-dir"),
    case("train", "--config", "demo", "--set", "name=../../elsewhere", names="name"),
    case("train", "--config", "demo", "--set", "name=[1]", names="name"),
    case("train", "--config", "demo", "--set", "run_dir=5", names="run_dir"),
    case("train", "--config", "demo", "--run-dir", "{run}", "--set", "data.root={data}", *TINY_MODEL,
         names="--run-dir"),
    case("train", "--config", "demo", "--run-dir", "{run}", "--set", "data.root={data}", "--resume", "--overwrite",
         *TINY_MODEL, names="--overwrite"),
    # ---------------------------------------------------------------- evaluate
    case("evaluate", "nosuch", code=1, names="nosuch"),
    case("evaluate", "{notrun}", code=1, names="notrun"),
    case("evaluate", "{empty}", "--data", "{data}", code=1, names="empty.pt"),
    case("evaluate", "{garbage}", "--data", "{data}", code=1, names="garbage.pt"),
    case("evaluate", "{empty}", names="--data"),
    case("evaluate", "{run}", "--drop-prob", "2", names="--drop-prob"),
    case("evaluate", "{run}", "--drop-prob", "-0.1", names="--drop-prob"),
    case("evaluate", "{run}", "--drop-prob", "nan", names="--drop-prob"),
    case("evaluate", "{run}", "--context", "0", names="--context"),
    case("evaluate", "{run}", "--horizon", "0", names="--horizon"),
    case("evaluate", "{run}", "--horizon", str(10 ** 9), names="--horizon"),
    case("evaluate", "{run}", "--context", "15", "--horizon", "15", names="context"),
    case("evaluate", "{run}", "--max-sequences", "0", names="--max-sequences"),
    case("evaluate", "{run}", "--split", "nosuch", names="--split"),
    case("evaluate", "{run}", "--imputation", "bogus", names="--imputation"),
    case("evaluate", "{run}", "--device", "gpu", names="--device"),
    case("evaluate", "{run}", "--device", "cuda", names="--device", marks=NO_CUDA),
    case("evaluate", "{run}", "--set", "foo.bar=1", names="--set foo"),
    case("evaluate", "{run}", "--set", "eval.nosuch=1", names="eval.nosuch"),
    case("evaluate", "{run}", "--set", "eval.fps=0", names="eval.fps"),
    case("evaluate", "{run}", "--set", "eval.batch_size=-2", names="eval.batch_size"),
    case("evaluate", "{run}", "--data", "{nomanifest}", code=1, names="nomanifest"),
    case("evaluate", "{run}", "--data", "{noseqlen}", code=1, names="seq_len"),
    case("evaluate", "{run}", "--out", "{file}", names="--out"),
    case("evaluate", "{run}", "--data", "{pendulum}", names="pendulum"),
    case("evaluate", "{run}", "--data", "{pendulum}", "--device", "auto", names="pendulum"),
    case("evaluate", "{garbage}", "--data", "{data}", "--device", "auto", code=1, names="garbage.pt"),
    # ---------------------------------------------------------------- plan
    case("plan", names="--checkpoint"),
    case("plan", "--oracle", "--episodes", BIG, names="--episodes"),
    case("plan", "--oracle", "--episodes", "0", names="--episodes"),
    case("plan", "--oracle", "--episodes", "abc", names="--episodes"),
    case("plan", "--oracle", "--steps", "0", names="--steps"),
    case("plan", "--oracle", "--steps", str(10 ** 9), names="--steps"),
    case("plan", "--oracle", "--horizon", str(10 ** 9), names="--horizon"),
    case("plan", "--oracle", "--horizon", "0", names="--horizon"),
    case("plan", "--oracle", "--context", "0", names="--context"),
    case("plan", "--oracle", "--replan-every", "0", names="--replan-every"),
    case("plan", "--oracle", "--terminal-weight", "nan", names="--terminal-weight"),
    case("plan", "--oracle", "--terminal-weight", "inf", names="--terminal-weight"),
    case("plan", "--oracle", "--terminal-weight", "-1", names="--terminal-weight"),
    case("plan", "--oracle", "--reward-steps", "-5", names="--reward-steps"),
    case("plan", "--oracle", "--seed", "-1", names="--seed"),
    case("plan", "--oracle", "--device", "gpu", names="--device"),
    case("plan", "--oracle", "--device", "cuda", names="--device", marks=NO_CUDA),
    case("plan", "--oracle", "--env", "nosuch", names="--env"),
    case("plan", "--oracle", "--env", "worldmodels/ImageNavigation-v0", names="--env"),
    case("plan", "--oracle", "--planner", "nosuch", names="--planner"),
    case("plan", "--oracle", "--planner", "categorical", names="--planner"),
    case("plan", "--oracle", "--env", "worldmodels/BouncingBall-v0", "--planner", "categorical_cem",
         names="--planner"),
    case("plan", "--oracle", "--out", "{file}", names="--out"),
    case("plan", "--oracle", "--checkpoint", "{run}", names="--checkpoint"),
    case("plan", "--checkpoint", "nosuch", code=1, names="nosuch"),
    case("plan", "--checkpoint", "{notrun}", code=1, names="notrun"),
    case("plan", "--checkpoint", "{run}", names="--data"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "nosuch.pt", code=1, names="--reward-head"),
    case("plan", "--checkpoint", "{run}", "--data", "{nomanifest}", code=1, names="nomanifest"),
    case("plan", "--checkpoint", "{run}", "--data", "{noseqlen}", code=1, names="seq_len"),
    case("plan", "--checkpoint", "{run}", "--data", "{data}", "--reward-steps", "0", names="--reward-steps"),
    case("plan", "--checkpoint", "{run}", "--data", "{novalid}", names="--data"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "{garbage}", "--env", BALL, "--device", "auto", code=1,
         names="garbage.pt"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "{garbage}", "--device", "auto", names="--checkpoint"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "{garbage}", "--env", "worldmodels/Pendulum-v0",
         names="--checkpoint"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "{garbage}", "--env", "worldmodels/ImageNavigation-v0",
         "--planner", "categorical", names="--checkpoint"),
    case("plan", "--checkpoint", "{empty}", "--reward-head", "{garbage}", code=1, names="empty.pt"),
    case("plan", "--checkpoint", "{garbage}", "--reward-head", "{garbage}", code=1, names="garbage.pt"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "{garbage}", "--env", BALL, code=1, names="garbage.pt"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "{empty}", "--env", BALL, code=1, names="empty.pt"),
    case("plan", "--checkpoint", "{run}", "--reward-head", "{evil_head}", "--env", BALL, code=1, names="evil_head.pt"),
    case("plan", "--checkpoint", "{evil_class}", "--reward-head", "{evil_head}", code=1, names="evil_class.pt"),
    case("plan", "--checkpoint", "{evil_name}", "--reward-head", "{evil_head}", code=1, names="evil_name.pt"),
    case("evaluate", "{evil_class}", "--data", "{data}", code=1, names="sys:exit"),
    case("evaluate", "{evil_name}", "--data", "{data}", code=1, names="os:fork"),
    # ---------------------------------------------------------------- train-policy
    case("train-policy", names="--checkpoint"),
    case("train-policy", "--checkpoint", "{run}", names="--data"),
    case("train-policy", "--checkpoint", "{notrun}", "--data", "{data}", code=1, names="notrun"),
    case("train-policy", "--checkpoint", "{evil_class}", "--data", "{data}", "--reward-head", "{garbage}",
         "--env", BALL, code=1, names="evil_class.pt"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{nomanifest}", code=1, names="--data"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", code=1, names="--reward-head"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--reward-head", "{evil_head}",
         "--env", BALL, code=1, names="evil_head.pt"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--reward-head", "{garbage}",
         "--env", "worldmodels/Pendulum-v0", names="--checkpoint"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--updates", "0", names="--updates"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--updates", BIG, names="--updates"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--updates", "abc", names="--updates"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--seed", "-1", names="--seed"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--device", "gpu", names="--device"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--device", "cuda", names="--device",
         marks=NO_CUDA),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--env", "nosuch", names="--env"),
    case("train-policy", "--config", "nosuch", "--checkpoint", "{run}", names="--config nosuch"),
    case("train-policy", "--config", "{listyaml}", "--checkpoint", "{run}", names="list.yaml"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--set", "actor_critic.horizon=0",
         names="actor_critic.horizon"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--set", f"actor_critic.batch_size={BIG}",
         names="actor_critic.batch_size"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--set", "actor_critic.bogus=1",
         names="bogus"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--set", "actor_critic.discount=.nan",
         names="actor_critic.discount"),
    case("train-policy", "--checkpoint", "{run}", "--data", "{data}", "--set", "actor_critic=[1]",
         names="actor_critic"),
    case("train-policy", "--checkpoint", "{run}", "--set", "bogus.x=1", names="bogus"),
    case("train-policy", "--checkpoint", "{run}", "--bogus", names="--bogus"),
    # ---------------------------------------------------------------- video
    case("video", "--out", "a.mp4", names="--dataset"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.txt", names="--out"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "{dirmp4}", names="--out"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "{video}", names="--overwrite"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--scale", "-1", names="--scale"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--scale", str(10 ** 6), names="--scale"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--num", BIG, names="--num"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--num", "0", names="--num"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--cols", "0", names="--cols"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--fps", "0", names="--fps"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--fps", "nan", names="--fps"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--steps", "0", names="--steps"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--steps", str(10 ** 9), names="--steps"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--num", "256", "--steps", "10000",
         names="--steps"),
    case("video", "--env", "nosuch", "--out", "a.mp4", names="--env"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--policy", "nosuch", names="--policy"),
    case("video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4", "--seed", "-1", names="--seed"),
    case("video", "--dataset", "nosuch", "--out", "a.mp4", code=1, names="nosuch"),
    case("video", "--dataset", "{nomanifest}", "--out", "a.mp4", code=1, names="nomanifest"),
    case("video", "--dataset", "{noseqlen}", "--out", "a.mp4", code=1, names="seq_len"),
    case("video", "--dataset", "{badmanifest}", "--out", "a.mp4", code=1, names="badmanifest"),
    case("video", "--dataset", "{data}", "--out", "a.mp4", "--split", "nosuch", names="--split"),
    case("video", "--dataset", "{data}", "--out", "a.mp4", "--indices", "99999", names="--indices"),
    case("video", "--dataset", "{data}", "--out", "a.mp4", "--indices", "-1", names="--indices"),
    # ---------------------------------------------------------------- demo
    case("demo", "--set", "control.horizon=0", names="control.horizon"),
    case("demo", "--set", f"control.episodes={BIG}", names="control.episodes"),
    case("demo", "--set", f"control.steps={BIG}", names="control.steps"),
    case("demo", "--set", "control.steps=abc", names="control.steps"),
    case("demo", "--set", "control.terminal_weight=.nan", names="control.terminal_weight"),
    case("demo", "--set", "control.reward_steps=-5", names="control.reward_steps"),
    case("demo", "--set", "control.rl_rounds=-1", names="control.rl_rounds"),
    case("demo", "--set", "control.rl_horizon=0", names="control.rl_horizon"),
    case("demo", "--set", "control.planner=nosuch", names="control.planner"),
    case("demo", "--set", "control.planner=categorical", names="control.planner"),
    case("demo", "--set", "control.env=CartPole-v1", names="control.env"),
    case("demo", "--set", "control.nosuch=1", names="control.nosuch"),
    case("demo", "--set", "control=5", names="control"),
    case("demo", "--set", "train.val_every=0", names="train.val_every"),
    case("demo", "--set", "train.steps=abc", names="train.steps"),
    case("demo", "--set", "train=5", names="train"),
    case("demo", "--set", "eval.drop_prob=2", names="eval.drop_prob"),
    case("demo", "--set", "eval.horizon=0", names="eval.horizon"),
    case("demo", "--set", "eval.context=100", names="eval.context"),
    case("demo", "--set", "model.name=sys:exit", names="model.name"),
    case("demo", "--set", "model.config.nosuch=1", names="model.config.nosuch"),
    case("demo", "--set", "data.preset=nosuch", names="data.preset"),
    case("demo", "--set", "data.root={noseqlen}", code=1, names="seq_len"),
    case("demo", "--set", "control.steps=[1,", names="--set control.steps"),
    case("demo", "--device", "gpu", names="--device"),
    case("demo", "--device", "cuda", names="--device", marks=NO_CUDA),
    case("demo", "--config", "nosuch", names="--config"),
    case("demo", "--config", "{listyaml}", names="list.yaml"),
    case("demo", "--run-dir", "{file}", names="--run-dir"),
]


def snapshot(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folders``: path -> (size, mtime in ns, sha256)."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[str(p)] = (-1, 0, "dir")
    return out


def fill(text: str, files: dict[str, Path]) -> str:
    """``text`` with each ``{key}`` of ``files`` replaced by that path (other braces kept)."""
    for key, path in files.items():
        text = text.replace("{" + key + "}", str(path))
    return text


def test_the_table_covers_every_command_with_enough_cases():
    counts = Counter(c.values[0][0] for c in CASES)
    assert len(CASES) >= 110
    assert {cmd: counts[cmd] >= 15 for cmd in COMMANDS} == dict.fromkeys(COMMANDS, True), counts


@pytest.mark.parametrize("argv,code,names", CASES)
def test_bad_input_is_one_line_naming_it_and_changes_nothing(argv, code, names, files, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(tmp_path)
    argv = [fill(a, files) for a in argv]
    names = fill(names, files)
    before = snapshot(tmp_path, files["root"])
    capsys.readouterr()
    t0 = time.perf_counter()
    status = main(argv)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"worldmodels {argv[0]}: error: "), lines[0]
    assert names in lines[0], lines[0]
    assert status == code, lines[0]
    assert snapshot(tmp_path, files["root"]) == before
    assert seconds < 10, f"{seconds:.1f} s: the input was not refused before the work started"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--config", "nosuch"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "UsageError" in err
    assert err.strip().splitlines()[-1].startswith("worldmodels train: error: --config nosuch")


def test_unexpected_errors_are_not_hidden(monkeypatch, capsys):
    """A bug (an exception that is not a usage, file or runtime error) keeps its traceback."""
    from worldmodels.agents.commands import video

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(video, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4"])


@pytest.mark.parametrize("errno_name,filename,expected", [
    ("ENOSPC", "/x/y.pt", "disk full: /x/y.pt"),
    ("EROFS", "/x/y.pt", "cannot write /x/y.pt: read-only or permission denied"),
    ("EACCES", "/x/y.pt", "cannot write /x/y.pt: read-only or permission denied"),
    ("ENOENT", "/x/y.pt", "/x/y.pt: no such file or directory"),
    ("ENOSPC", None, "disk full: No space left on device"),
])
def test_disk_and_permission_errors_are_named(errno_name, filename, expected, monkeypatch, capsys):
    import errno

    from worldmodels.agents.commands import video

    def failing(args):
        code = getattr(errno, errno_name)
        raise OSError(code, os.strerror(code), filename)

    monkeypatch.setattr(video, "run", failing)
    assert main(["video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4"]) == 1
    assert capsys.readouterr().err == f"worldmodels video: error: {expected}\n"


def test_device_auto_falls_back_to_the_cpu_with_a_notice(monkeypatch, capsys):
    from worldmodels.agents.commands.validation import UsageError, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("--device", "auto") == "cpu"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device auto" in err and "CPU" in err
    assert resolve_device("--device", "cpu") == "cpu" and capsys.readouterr().err == ""
    for bad in ("cuda", "cuda:1", "gpu", "CPU", "", None):
        with pytest.raises(UsageError, match="--device"):
            resolve_device("--device", bad)


def test_write_errors_keep_the_writers_words(monkeypatch, capsys):
    """`atomic_io.WriteError` already names the file and what happened: printed as it is."""
    import errno

    from worldmodels.agents.commands import video
    from worldmodels.atomic_io import WriteError

    def failing(args):
        raise WriteError(errno.ENOSPC, "disk full while writing /x/y.pt; the previous file is kept")

    monkeypatch.setattr(video, "run", failing)
    assert main(["video", "--env", "worldmodels/Pendulum-v0", "--out", "a.mp4"]) == 1
    assert capsys.readouterr().err == ("worldmodels video: error: disk full while writing /x/y.pt; the previous "
                                       "file is kept\n")


def test_a_diverged_training_run_is_a_runtime_error(monkeypatch, capsys):
    from worldmodels.agents.commands import train
    from worldmodels.training.trainer import TrainingDiverged

    def diverging(args):
        raise TrainingDiverged("training stopped at step 7: 10 consecutive non-finite losses\n(see metrics.jsonl)")

    monkeypatch.setattr(train, "run", diverging)
    assert main(["train", "--config", "demo"]) == 1
    assert capsys.readouterr().err == ("worldmodels train: error: training stopped at step 7: 10 consecutive "
                                       "non-finite losses (see metrics.jsonl)\n")
