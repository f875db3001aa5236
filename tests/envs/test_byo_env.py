"""Bring your own environment: any Gymnasium id as a pixel dataset (``generate --env``), the
array writer ``write_dataset``, and a pixel CartPole dataset through generate, train and
evaluate from the command line."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

pytest.importorskip("pygame")  # CartPole renders with pygame (gymnasium[classic-control])

from worldmodels.agents.cli import main  # noqa: E402
from worldmodels.data import SequenceDataset  # noqa: E402
from worldmodels.envs import write_dataset  # noqa: E402
from worldmodels.envs.generate import DatasetSpec, rollout_sequences  # noqa: E402
from worldmodels.envs.gym_pixels import EnvNotSupported, make_pixel_env, resize_area  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CARTPOLE = ["generate", "--env", "CartPole-v1", "--size", "16", "--grayscale", "--seq-len", "12", "--train", "8",
            "--valid", "4", "--test", "4", "--workers", "1", "--no-progress"]
TINY_KVAE = ["--set", "model.name=kvae",
             "--set", "model.config={a_dim: 2, z_dim: 3, num_modes: 2, encoder: mlp, decoder: mlp, mlp_hidden: [32]}",
             "--set", "data.preset=null", "--set", "train.batch_size=4", "--set", "train.val_every=2",
             "--set", "train.checkpoint_every=2", "--set", "train.tensorboard=false", "--set", "eval.context=4",
             "--set", "eval.horizon=4", "--no-progress"]


class _NoRender(gym.Env):
    """An environment without rgb_array rendering."""

    metadata = {"render_modes": []}
    observation_space = spaces.Box(-1.0, 1.0, (2,))
    action_space = spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode


class _MultiDiscrete(gym.Env):
    """Renders frames but acts in a MultiDiscrete space."""

    metadata = {"render_modes": ["rgb_array"]}
    observation_space = spaces.Box(-1.0, 1.0, (2,))
    action_space = spaces.MultiDiscrete([2, 3])

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def render(self):
        return np.zeros((8, 8, 3), np.uint8)


class _LastAction(gym.Env):
    """Acts in Discrete(3, start=-1); its observation is the last action it received."""

    metadata = {"render_modes": ["rgb_array"]}
    observation_space = spaces.Box(-1.0, 1.0, (1,))
    action_space = spaces.Discrete(3, start=-1)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.last = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.last = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.last = int(action)
        return np.array([action], np.float32), float(action), False, False, {}

    def render(self):
        return np.full((6, 6, 3), 127 * (self.last + 1), np.uint8)


@pytest.fixture(scope="module", autouse=True)
def test_envs():
    ids = {"byo_test/NoRender-v0": _NoRender, "byo_test/MultiDiscrete-v0": _MultiDiscrete,
           "byo_test/LastAction-v0": _LastAction}
    for env_id, cls in ids.items():
        gym.register(env_id, entry_point=cls)
    yield
    for env_id in ids:
        del gym.registry[env_id]


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("byo") / "cartpole"
    assert main([*CARTPOLE, "--out", str(out)]) == 0
    return out


def _shard_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.npz"))}


# --------------------------------------------------------------------------- generate --env


def test_cartpole_dataset_layout_and_contents(cartpole):
    m = json.loads((cartpole / "manifest.json").read_text())
    assert (m["obs_shape"], m["action_dim"], m["action_type"], m["state_dim"]) == ([16, 16, 1], 2, "discrete", 4)
    assert m["spec"]["frame_size"] == [16, 16] and m["spec"]["grayscale"] is True and m["spec"]["policy"] == "random"
    assert {s: v["num_sequences"] for s, v in m["splits"].items()} == {"train": 8, "valid": 4, "test": 4}
    ds = SequenceDataset(cartpole, "train")
    a = ds._actions.numpy()
    assert set(np.unique(a)) == {0.0, 1.0} and (a.sum(-1) == 1).all()  # one-hot
    assert 0.2 < a[..., 1].mean() < 0.8  # the random policy pushes both ways
    assert (ds._rewards.numpy() == 1.0).all()  # CartPole pays 1 per step, episodes redrawn if shorter
    frames = ds._obs.numpy()
    assert frames.dtype == np.uint8 and frames.std() > 0  # the cart and pole are drawn
    assert not (frames[:, 1:] == frames[:, :-1]).all()  # and they move


def test_states_are_the_cartpole_state_before_each_action(cartpole):
    """Replaying each recorded action from the recorded state reproduces the next state: the
    state and the one-hot action are aligned with the frames as the dataset contract says."""
    ds = SequenceDataset(cartpole, "valid")
    states, actions = ds._states.numpy(), ds._actions.numpy()
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    for n in range(len(ds)):
        for t in range(ds.seq_len - 1):
            env.state = states[n, t].astype(np.float64)
            obs, *_ = env.step(int(actions[n, t].argmax()))
            np.testing.assert_allclose(obs, states[n, t + 1], rtol=1e-5, atol=1e-6)


def test_regeneration_is_byte_identical_and_seeded(cartpole, tmp_path):
    again = tmp_path / "again"
    assert main([*CARTPOLE, "--out", str(again)]) == 0
    assert _shard_hashes(again) == _shard_hashes(cartpole) and _shard_hashes(cartpole)
    other = tmp_path / "other"
    assert main([*CARTPOLE, "--seed", "1", "--out", str(other)]) == 0
    assert _shard_hashes(other)["train/shard_00000.npz"] != _shard_hashes(cartpole)["train/shard_00000.npz"]


def test_frame_options():
    """``--size HxW`` without grayscale gives RGB frames of that size; with ``frame_skip=3`` one
    step is three steps of the environment (rewards summed, the last frame and state kept)."""
    spec = DatasetSpec("cp", "CartPole-v1", 5, {"train": 2}, policy="random", frame_size=(8, 12), frame_skip=3)
    out = rollout_sequences(spec, "train", 0, 2)
    assert out["obs"].shape == (2, 5, 8, 12, 3) and (out["rewards"] == 3.0).all()
    skip = make_pixel_env("CartPole-v1", frame_size=(8, 12), frame_skip=3)
    one = make_pixel_env("CartPole-v1", frame_size=(8, 12))
    f_skip, info_skip = skip.reset(seed=5)
    f_one, info_one = one.reset(seed=5)
    np.testing.assert_array_equal(f_skip, f_one)
    for action in (1, 1, 0):
        f_skip, r_skip, *_, info_skip = skip.step(action)
        total = 0.0
        for _ in range(3):
            f_one, r, *_, info_one = one.step(action)
            total += r
        assert r_skip == total == 3.0
        np.testing.assert_array_equal(info_skip["state"], info_one["state"])
        np.testing.assert_array_equal(f_skip, f_one)


def test_discrete_actions_with_an_offset_are_one_hot_by_index():
    """``Discrete(n, start)``: one-hot position ``a - start``; the env received ``a``."""
    spec = DatasetSpec("last", "byo_test/LastAction-v0", 8, {"train": 3}, policy="random", frame_size=(6, 6))
    out = rollout_sequences(spec, "train", 0, 3)
    received = out["states"][:, 1:, 0]  # the observation after step t is the action of step t
    np.testing.assert_array_equal(out["actions"][:, :-1].argmax(-1) - 1, received)
    np.testing.assert_array_equal(out["rewards"][:, :-1], received)
    assert set(np.unique(received)) == {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(out["obs"][:, 1:, 0, 0, 0], 127 * (received + 1))  # the frame after it


def test_resize_is_area_averaging():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 60, 3)).astype(np.uint8)
    small = resize_area(frame, (8, 12))  # exact 5 x 5 blocks: block means
    np.testing.assert_allclose(small, frame.reshape(8, 5, 12, 5, 3).mean((1, 3)), atol=1e-3)
    odd = resize_area(frame, (7, 9))  # uneven cells: still a weighted mean, so the total is kept
    assert odd.shape == (7, 9, 3)
    np.testing.assert_allclose(odd.mean((0, 1)), frame.mean((0, 1)), rtol=1e-4)


@pytest.mark.parametrize("env_id,message", [
    ("Nope-v0", "not a registered Gymnasium id"),
    ("gymnasium.envs.classic_control:CartPole-v1", "not a registered Gymnasium id"),
    ("byo_test/NoRender-v0", "does not render 'rgb_array'"),
    ("byo_test/MultiDiscrete-v0", "MultiDiscrete"),
])
def test_unusable_envs_are_refused(env_id, message, tmp_path, capsys):
    with pytest.raises(EnvNotSupported, match=re.escape(message)):
        make_pixel_env(env_id, frame_size=(8, 8))
    out = tmp_path / "never"
    assert main(["generate", "--env", env_id, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--env" in err and message in err and "Traceback" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- generate -> train -> evaluate


def test_cartpole_trains_a_kvae_and_evaluates_from_the_cli(cartpole, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--config", "demo", "--run-dir", str(run), "--set", f"data.root={cartpole}", *TINY_KVAE,
                 "--steps", "2", "--device", "cpu"]) == 0
    assert (run / "checkpoints" / "last.pt").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert math.isfinite(summary["val"]["loss"])
    assert main(["evaluate", str(run), "--horizon", "4", "--no-video", "--max-sequences", "4"]) == 0
    pred = json.loads((run / "eval" / "prediction.json").read_text())
    mse = pred["metrics"]["mse"]["mean"]
    assert pred["horizon"] == 4 and len(mse) == 4 and all(math.isfinite(x) and x >= 0 for x in mse)


# --------------------------------------------------------------------------- write_dataset


def _arrays(rng, n=5, T=6, float_obs=False):
    obs = rng.integers(0, 256, (n, T, 4, 6, 3)).astype(np.uint8)
    if float_obs:
        obs = rng.random((n, T, 4, 6, 3)).astype(np.float32)
    return obs, rng.standard_normal((n, T, 2)).astype(np.float32), rng.standard_normal((n, T)).astype(np.float32)


def test_write_dataset_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    obs, actions, rewards = _arrays(rng)
    states = rng.standard_normal((5, 6, 3))
    mask = (rng.random((5, 6)) > 0.3).astype(np.float32)
    root = tmp_path / "mine"
    write_dataset(root, obs, actions, rewards, states=states, mask=mask, shard_size=2)
    ds = SequenceDataset(root, "train")
    assert (len(ds), ds.obs_shape, ds.action_dim, ds.seq_len, ds.state_dim) == (5, (3, 4, 6), 2, 6, 3)
    assert len(list((root / "train").glob("shard_*.npz"))) == 3  # 2 + 2 + 1
    for i in range(5):
        item = ds[i]
        assert item["obs"].dtype.is_floating_point
        np.testing.assert_array_equal(ds.frames_uint8(i), obs[i])
        np.testing.assert_allclose(item["obs"].numpy(), obs[i].transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(item["actions"].numpy(), actions[i])
        np.testing.assert_array_equal(item["rewards"].numpy(), rewards[i])
        np.testing.assert_allclose(item["states"].numpy(), states[i].astype(np.float32))
        np.testing.assert_array_equal(item["mask"].numpy(), mask[i])
    # float frames in [0, 1] are kept as floats; no rewards -> zeros, no states -> S = 0, no mask -> ones
    fobs, factions, _ = _arrays(rng, float_obs=True)
    write_dataset(tmp_path / "floats", fobs, factions, action_type="discrete")
    fds = SequenceDataset(tmp_path / "floats", "train")
    np.testing.assert_array_equal(fds[2]["obs"].numpy(), fobs[2].transpose(0, 3, 1, 2))
    assert fds.state_dim == 0 and fds.action_type == "discrete"
    assert (fds._rewards.numpy() == 0).all() and (fds[0]["mask"].numpy() == 1).all()


def test_write_dataset_splits_and_overwrite(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "d"
    obs, actions, rewards = _arrays(rng, n=4)
    write_dataset(root, obs, actions, rewards, shard_size=2)
    vobs, vactions, vrewards = _arrays(rng, n=2)
    write_dataset(root, vobs, vactions, vrewards, split="valid")  # another split is added
    assert len(SequenceDataset(root, "train")) == 4 and len(SequenceDataset(root, "valid")) == 2
    before = _shard_hashes(root)
    with pytest.raises(ValueError, match="overwrite=True"):
        write_dataset(root, vobs, vactions, vrewards, split="train")
    assert _shard_hashes(root) == before  # nothing touched
    write_dataset(root, vobs, vactions, vrewards, split="train", overwrite=True)
    ds = SequenceDataset(root, "train")
    assert len(ds) == 2 and not (root / "train" / "shard_00001.npz").exists()  # the old second shard is gone
    np.testing.assert_array_equal(ds.frames_uint8(1), vobs[1])
    with pytest.raises(ValueError, match="obs_shape"):  # one layout per dataset
        write_dataset(root, vobs[:, :, :2], vactions, vrewards, split="test")


@pytest.mark.parametrize("change,names", [
    (lambda a: {**a, "actions": a["actions"].astype(np.int64)}, "actions"),
    (lambda a: {**a, "actions": a["actions"][:, :-1]}, "actions"),
    (lambda a: {**a, "obs": a["obs"][0]}, "obs"),
    (lambda a: {**a, "obs": a["obs"].astype(np.float32)}, "obs"),  # floats outside [0, 1]
    (lambda a: {**a, "rewards": np.full(a["rewards"].shape, np.nan, np.float32)}, "rewards"),
    (lambda a: {**a, "mask": np.full(a["rewards"].shape, 0.5, np.float32)}, "mask"),
    (lambda a: {**a, "split": "training"}, "split"),
])
def test_write_dataset_refuses_bad_arrays_before_writing(change, names, tmp_path):
    obs, actions, rewards = _arrays(np.random.default_rng(2))
    kwargs = change({"obs": obs, "actions": actions, "rewards": rewards})
    root = tmp_path / "d"
    with pytest.raises(ValueError, match=names):
        write_dataset(root, **kwargs)
    assert not root.exists()


def test_docs_own_environment_example_runs(tmp_path):
    """The first example of the "Your own environment" section of docs/datasets.md runs as written."""
    text = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own environment"):]
    code = re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
