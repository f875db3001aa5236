"""The ``worldmodels`` console script: help, config overrides, presets, and a tiny end-to-end run
(generate -> train -> resume -> evaluate, and the demo) on the small bouncing-ball preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from worldmodels.agents.cli import available_commands, main
from worldmodels.agents.commands import (
    CONFIG_DIR,
    apply_overrides,
    build_model,
    dataclass_from,
    list_presets,
    load_config,
)
from worldmodels.registry import get_model_class


def test_help_of_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    cmds = available_commands()
    assert {"train", "evaluate", "demo"} <= set(cmds)
    for name in cmds:
        assert name in out
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert f"worldmodels {name}" in capsys.readouterr().out
    assert main([]) == 2


def test_overrides_parse_yaml_values_and_nest():
    cfg = apply_overrides({"train": {"lr": 0.1}}, ["train.lr=3e-3", "model.config.mlp_hidden=[64, 32]",
                                                   "train.freeze={dynamics: 2}", "eval.imputation=null"])
    assert cfg["train"]["lr"] == pytest.approx(3e-3)
    assert cfg["model"]["config"]["mlp_hidden"] == [64, 32]
    assert cfg["train"]["freeze"] == {"dynamics": 2} and cfg["eval"]["imputation"] is None
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["train.lr"])


#: the presets that are run configs (a model to train); configs/ may hold others (e.g. an actor-critic's)
RUN_PRESETS = [name for name in list_presets() if "model" in load_config(name)]


@pytest.mark.parametrize("name", RUN_PRESETS)
def test_presets_build_their_model_and_configs(name):
    from worldmodels.evaluation import EvalConfig
    from worldmodels.training import TrainConfig

    cfg = load_config(name)
    assert cfg["data"]["preset"]
    from worldmodels.envs.generate import PRESETS

    assert cfg["data"]["preset"] in PRESETS
    tcfg = dataclass_from(TrainConfig, cfg["train"], "train")
    dataclass_from(EvalConfig, cfg.get("eval") or {}, "eval")
    defaults = get_model_class(cfg["model"]["name"]).config_class()  # data shapes: class defaults
    model = build_model(cfg["model"], defaults.obs_shape, defaults.action_dim)
    for group in tcfg.freeze:
        assert group in model.parameter_groups(), f"{name}: freeze names unknown group {group!r}"
    with pytest.raises(ValueError, match="train"):
        dataclass_from(TrainConfig, {**cfg["train"], "learning_rate": 1}, "train")


def test_demo_default_matches_configs_demo_yaml():
    from worldmodels.agents.commands.demo import DEFAULT_CONFIG

    assert yaml.safe_load((CONFIG_DIR / "demo.yaml").read_text()) == DEFAULT_CONFIG


TINY = ["--set", "model.name=vae_rnn",
        "--set", "model.config={latent_dim: 4, hidden_dim: 8, encoder: mlp, mlp_hidden: [32], likelihood: bernoulli}",
        "--set", "train.batch_size=16", "--set", "train.val_every=2", "--set", "train.checkpoint_every=2",
        "--set", "eval.horizon=5", "--set", "eval.num_videos=1", "--set", "eval.max_sequences=8",
        "--set", "control=null", "--no-progress"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from worldmodels.envs.generate import generate_dataset

    root = tmp_path_factory.mktemp("data") / "bouncing_ball_small"
    generate_dataset("bouncing_ball_small", root, num_workers=1, progress=False)
    return root


def test_demo_runs_end_to_end_with_tiny_override(tmp_path, capsys):
    """The default demo (pendulum KVAE -> evaluate -> latent MPC swing-up), shrunk to seconds."""
    from worldmodels.envs.generate import generate_dataset

    data = tmp_path / "pendulum_small"
    generate_dataset("pendulum_small", data, num_workers=1, progress=False)
    run = tmp_path / "demo"
    tiny = ["--set", f"data.root={data}", "--set", "train.steps=4", "--set", "train.batch_size=16",
            "--set", "train.val_every=2", "--set", "train.checkpoint_every=2",
            "--set", "model.config={a_dim: 2, z_dim: 3, num_modes: 2, encoder: mlp, decoder: mlp, mlp_hidden: [32]}",
            "--set", "eval.horizon=5", "--set", "eval.num_videos=1", "--set", "eval.max_sequences=8",
            "--set", "control.steps=6", "--set", "control.episodes=1", "--set", "control.reward_steps=5",
            "--set", "control.horizon=3", "--set", "control.rl_episodes=1", "--set", "control.rl_episode_steps=15",
            "--set", "control.rl_train_steps=2",
            "--set", "control.rl_horizon=2", "--no-progress"]
    assert main(["demo", "--run-dir", str(run), "--device", "cpu", *tiny]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "demo_summary.json").read_text())
    assert summary["model"] == "kvae" and summary["dataset"] == "pendulum_small"
    for key in ("prediction_video", "prediction_plot", "prediction_json", "summary", "checkpoint",
                "episode_video", "imagination_video", "control_json"):
        assert Path(summary["outputs"][key]).is_file(), key
        assert summary["outputs"][key] in out  # the demo prints where its outputs are
    assert summary["train"]["steps"] == 4 and len(json.loads((run / "eval" / "prediction.json").read_text())
                                                   ["metrics"]["ssim"]["mean"]) == 5
    control = summary["control"]
    assert control["steps"] == 6 and len(control["returns"]) == 1
    assert len(control["returns"]) == len(control["upright_fraction_last50"])
    # the default's three rounds of fine-tuning on the agent's own episode: each one's 15 steps
    # joined the data as a window, and the final episodes plan with the last round's model
    assert len(control["rl_rounds"]) == 3 and control["rl_rounds"][0]["eval_return_mean"] is None
    manifest = json.loads((run / "swingup" / "rl" / "data" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["num_sequences"] == 256 + 3
    plan = json.loads((run / "swingup" / "plan.json").read_text())
    assert plan["checkpoint"].endswith("round_002/model")
    # rounds collect at control.rl_horizon, the final episodes plan at control.horizon
    assert json.loads((run / "swingup" / "rl" / "config.json").read_text())["planner_overrides"] == {"horizon": 2}
    assert plan["planner_config"]["horizon"] == 3 and plan["terminal_weight"] == 2.0  # the default's
    assert all(r <= 0 for r in control["returns"]) and control["random_mean_return"] <= 0  # pendulum costs
    assert "swing-up" in out


def test_demo_without_control_stage(tmp_path, data_root, capsys):
    run = tmp_path / "demo"
    assert main(["demo", "--run-dir", str(run), "--set", f"data.root={data_root}",
                 "--set", "data.preset=bouncing_ball_small", "--set", "train.steps=2", "--device", "cpu",
                 *TINY]) == 0
    summary = json.loads((run / "demo_summary.json").read_text())
    assert summary["control"] is None and "episode_video" not in summary["outputs"]


def test_train_resume_and_evaluate_commands(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    base = ["--config", "demo", "--run-dir", str(run), "--set", f"data.root={data_root}", *TINY,
            "--set", "train.log_every=1"]
    assert main(["train", *base, "--steps", "2"]) == 0
    assert main(["train", *base, "--steps", "4", "--resume"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in rows if r["split"] == "val"] == [2, 4]
    assert json.loads((run / "summary.json").read_text())["resumed"] is True
    capsys.readouterr()
    assert main(["evaluate", str(run), "--horizon", "4", "--imputation", "block", "--no-video",
                 "--max-sequences", "4"]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "imputation (block)" in out and "repeating the last observed frame" in out
    assert json.loads((run / "eval" / "prediction.json").read_text())["horizon"] == 4
    capsys.readouterr()
    assert main(["train", "--config", "demo", "--resume"]) == 2
    assert capsys.readouterr().err.startswith("worldmodels train: error: --resume: expected --run-dir")


def test_train_command_is_reproducible_under_its_seed(tmp_path, data_root):
    from worldmodels.training import read_checkpoint

    def weights(name, seed):
        run = tmp_path / name
        torch.manual_seed(int.from_bytes(name.encode(), "little") % 2 ** 31)  # whatever the caller's state
        assert main(["train", "--config", "demo", "--run-dir", str(run), "--set", f"data.root={data_root}",
                     *TINY, "--steps", "1", "--set", f"train.seed={seed}"]) == 0
        return read_checkpoint(run / "checkpoints" / "last.pt")["model"]

    a, b, c = weights("a", 0), weights("b", 0), weights("c", 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_video_replaces_an_existing_file_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "v.gif"
    out.write_bytes(b"a user's file")
    argv = ["video", "--env", "worldmodels/Pendulum-v0", "--num", "1", "--steps", "2", "--out", str(out)]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"a user's file"
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_bytes().startswith(b"GIF8")


def test_plan_command_trains_a_reward_head_once_then_reuses_it(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "demo", "--run-dir", str(run), "--set", f"data.root={data_root}", *TINY,
                 "--steps", "1"]) == 0
    argv = ["plan", "--checkpoint", str(run), "--env", "worldmodels/BouncingBall-v0", "--episodes", "1",
            "--steps", "2", "--horizon", "2", "--planner", "random", "--no-video", "--no-progress"]
    capsys.readouterr()
    assert main([*argv, "--data", str(data_root), "--reward-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "reward head: held-out MSE" in out and (run / "reward_head.pt").is_file()
    head = (run / "reward_head.pt").read_bytes()
    assert main(argv) == 0  # no --data needed now: the saved head is used, and kept as it is
    assert "reward head:" not in capsys.readouterr().out and (run / "reward_head.pt").read_bytes() == head
    plan = json.loads((run / "plan" / "plan.json").read_text())
    assert plan["reward_head"] == str(run / "reward_head.pt") and plan["reward_head_metrics"] is None
    assert len(plan["returns"]) == 1 and plan["steps"] == 2


def test_demo_refuses_a_trained_run_folder_without_overwrite(tmp_path, capsys):
    """A demo run folder that holds a trained run is refused before any work; no file changes."""
    from worldmodels.training.run_dir import run_state

    run = tmp_path / "demo"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"model")
    (run / "demo_summary.json").write_text("{}")
    assert run_state(run) == "trained"
    assert main(["demo", "--run-dir", str(run), "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run-dir" in err[0] and "--overwrite" in err[0]
    assert (run / "checkpoints" / "last.pt").read_bytes() == b"model"
    from worldmodels.agents.commands.demo import clear_demo_outputs

    (run / "notes.txt").write_text("mine")
    clear_demo_outputs(run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_train_policy_then_plan_with_its_value(tmp_path, data_root, capsys):
    """train-policy trains an actor-critic in the model; plan --value uses its critic and discount."""
    run = tmp_path / "run"
    assert main(["train", "--config", "demo", "--run-dir", str(run), "--set", f"data.root={data_root}", *TINY,
                 "--steps", "1"]) == 0
    plan = ["plan", "--checkpoint", str(run), "--env", "worldmodels/BouncingBall-v0", "--episodes", "1",
            "--steps", "2", "--horizon", "2", "--planner", "random", "--no-video", "--no-progress"]
    assert main([*plan, "--data", str(data_root), "--reward-steps", "2"]) == 0
    policy = run / "policy"
    argv = ["train-policy", "--checkpoint", str(run), "--data", str(data_root), "--env", "worldmodels/BouncingBall-v0",
            "--run-dir", str(policy), "--updates", "3", "--set", "actor_critic.batch_size=8",
            "--set", "actor_critic.horizon=3", "--set", "actor_critic.max_starts=32", "--set", "actor_critic.context=2",
            "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    assert (policy / "actor_critic.pt").is_file()
    before = (policy / "actor_critic.pt").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2  # a second run does not replace it without --overwrite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run-dir" in err[0] and (policy / "actor_critic.pt").read_bytes() == before
    assert main([*plan, "--value", str(policy)]) == 0
    result = json.loads((run / "plan" / "plan.json").read_text())
    assert result["value"] is True and result["discount"] == 0.99 and result["value_run"] == str(policy)
    capsys.readouterr()
    assert main([*plan, "--value", str(tmp_path / "nothing")]) == 1
    assert "--value" in capsys.readouterr().err
