"""Dataset generation: layout, determinism across worker counts, resume, atomicity, bad specs."""

import dataclasses
import json

import numpy as np
import pytest
from gymnasium import spaces

from worldmodels.envs.generate import PRESETS, DatasetSpec, generate_dataset, get_spec, rollout_sequences
from worldmodels.envs.policies import PoissonRepeatPolicy


def _spec(**kw):
    base = dict(name="t", env_id="worldmodels/BouncingBall-v0", seq_len=6, splits={"train": 10, "test": 3},
                shard_size=4, seed=11, policy="uniform")
    base.update(kw)
    return DatasetSpec(**base)


def _arrays(root, split):
    m = json.loads((root / "manifest.json").read_text())
    shards = [np.load(root / e["file"]) for e in m["splits"][split]["shards"]]
    return {k: np.concatenate([s[k] for s in shards]) for k in ("obs", "actions", "rewards", "states")}


def test_layout_and_contract(tmp_path):
    mpath = generate_dataset(_spec(), tmp_path / "d", num_workers=1, progress=False)
    root = mpath.parent
    m = json.loads(mpath.read_text())
    assert m["complete"] and m["obs_shape"] == [32, 32, 1] and m["action_dim"] == 2 and m["state_dim"] == 4
    assert [e["file"] for e in m["splits"]["train"]["shards"]] == [f"train/shard_0000{i}.npz" for i in range(3)]
    a = _arrays(root, "train")
    assert a["obs"].shape == (10, 6, 32, 32, 1) and a["obs"].dtype == np.uint8
    assert a["actions"].shape == (10, 6, 2) and a["actions"].dtype == np.float32
    assert a["rewards"].shape == (10, 6) and a["states"].shape == (10, 6, 4)
    # contract: rewards[:, t] is what step(actions[:, t]) returned, states[:, t] belongs to obs[:, t]
    from worldmodels.envs.bouncing_ball import BouncingBallEnv

    env = BouncingBallEnv()
    spec = _spec()
    ref = rollout_sequences(spec, "train", 2, 1, env)
    np.testing.assert_array_equal(ref["obs"][0], a["obs"][2])
    np.testing.assert_array_equal(ref["actions"][0], a["actions"][2])
    x, y = a["states"][2, 1, :2]
    assert np.isclose(a["rewards"][2, 0], -np.hypot(x - 16, y - 16) / 32, atol=1e-5)
    assert not list(root.rglob(".*.tmp"))
    # byte-reproducible shards: a second run records the same checksums
    m2 = json.loads(generate_dataset(_spec(), tmp_path / "again", num_workers=1, progress=False).read_text())
    def hashes(manifest):
        return [e["sha256"] for e in manifest["splits"]["train"]["shards"]]

    assert hashes(m2) == hashes(m)


def test_same_data_for_any_worker_count_and_shard_size(tmp_path):
    generate_dataset(_spec(), tmp_path / "a", num_workers=1, progress=False)
    generate_dataset(_spec(shard_size=3), tmp_path / "b", num_workers=2, progress=False)
    for split in ("train", "test"):
        a, b = _arrays(tmp_path / "a", split), _arrays(tmp_path / "b", split)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(_arrays(tmp_path / "a", "train")["obs"][0], _arrays(tmp_path / "a", "train")["obs"][1])


def test_resume_after_interruption(tmp_path):
    root = tmp_path / "d"
    spec = _spec()
    mpath = generate_dataset(spec, root, num_workers=1, progress=False)
    full = _arrays(root, "train")
    m = json.loads(mpath.read_text())
    # simulate a crash: shard 1 never finished, a stale temp file is left, the manifest says incomplete
    m["complete"] = False
    m["splits"]["train"]["shards"][1]["done"] = False
    (root / "train/shard_00001.npz").unlink()
    (root / "train/.shard_00001.npz.999.tmp").write_bytes(b"half")
    mpath.write_text(json.dumps(m))
    before = (root / "train/shard_00000.npz").stat().st_mtime_ns
    generate_dataset(spec, root, num_workers=1, progress=False)
    assert (root / "train/shard_00000.npz").stat().st_mtime_ns == before  # kept, not regenerated
    assert json.loads(mpath.read_text())["complete"]
    assert not list(root.rglob(".*.tmp"))
    for k, v in _arrays(root, "train").items():
        np.testing.assert_array_equal(v, full[k])


def test_different_spec_in_same_folder_is_refused_unless_overwrite(tmp_path):
    root = tmp_path / "d"
    generate_dataset(_spec(), root, num_workers=1, progress=False)
    other = _spec(seed=12, splits={"train": 4})
    with pytest.raises(ValueError, match="different dataset"):
        generate_dataset(other, root, num_workers=1, progress=False)
    generate_dataset(other, root, num_workers=1, resume=False, progress=False)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["shard_00000.npz"]
    assert _arrays(root, "train")["obs"].shape[0] == 4


def test_failed_shard_leaves_nothing_half_written(tmp_path, monkeypatch):
    import worldmodels.envs.generate as g

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(g, "save_npz", boom)
    root = tmp_path / "d"
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset(_spec(), root, num_workers=1, progress=False)
    assert not list(root.rglob("*.npz")) and not list(root.rglob(".*.tmp"))
    assert not json.loads((root / "manifest.json").read_text())["complete"]


def test_bad_specs():
    with pytest.raises(ValueError, match="preset"):
        get_spec("bouncing_bal")
    with pytest.raises(ValueError, match="env_id: 'CartPole-v9' is not a registered Gymnasium id"):
        _spec(env_id="CartPole-v9")
    with pytest.raises(ValueError, match="env_id"):
        _spec(env_id="gymnasium.envs:CartPole-v1")  # a module path is never imported
    with pytest.raises(ValueError, match="frame_size/grayscale/frame_skip"):
        _spec(grayscale=True)  # the package's own envs make their own frames
    with pytest.raises(ValueError, match="splits"):
        _spec(splits={"training": 3})
    with pytest.raises(ValueError, match="policy"):
        _spec(policy="greedy")
    with pytest.raises(ValueError, match="unknown field"):
        DatasetSpec.from_dict({**dataclasses.asdict(_spec()), "frames": 3})
    with pytest.raises(ValueError, match="env_kwargs"):
        generate_dataset(_spec(env_kwargs={"colour": "red"}), "/tmp/never_written", progress=False)
    with pytest.raises(ValueError, match="num_workers"):
        generate_dataset(_spec(), "/tmp/never_written", num_workers=0, progress=False)


def test_presets_exist_with_paper_sizes():
    for name in ("bouncing_ball", "bouncing_ball_gravity", "bouncing_ball_polygon", "pendulum", "image_navigation",
                 "bouncing_ball_small", "pendulum_small", "image_navigation_small"):
        assert name in PRESETS
    assert PRESETS["bouncing_ball"].splits["train"] == 5000 and PRESETS["bouncing_ball"].splits["test"] == 1000
    assert PRESETS["bouncing_ball"].seq_len == 20
    assert PRESETS["pendulum"].splits == {"train": 500, "valid": 500, "test": 500} and PRESETS["pendulum"].seq_len == 15
    assert PRESETS["image_navigation"].seq_len == 512


def test_pong_and_image_navigation_small_preset_rollouts():
    out = rollout_sequences(_spec(env_id="worldmodels/BouncingBallPong-v0", policy="zero", seq_len=20), "train", 0, 3)
    assert out["states"].shape == (3, 20, 6)
    nav = rollout_sequences(get_spec("image_navigation_small"), "train", 0, 2)
    acts = nav["actions"]
    assert acts.shape == (2, 96, 5) and (acts.sum(-1) == 1).all()  # one-hot
    # states follow actions: a move changes the position by at most one cell
    d = np.abs(np.diff(nav["states"], axis=1)).sum(-1)
    assert set(np.unique(d)) <= {0.0, 1.0} and d.sum() > 20


def test_poisson_repeat_policy_statistics():
    pol = PoissonRepeatPolicy(spaces.Discrete(5), rate=2.0)
    pol.reset(np.random.default_rng(0))
    info = {"action_mask": np.array([0, 1, 1, 1, 1])}  # "up" blocked right now
    acts = np.array([pol(None, info) for _ in range(20000)])
    assert (acts == 0).sum() == 0  # never starts a run into a blocked move
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, acts, -1]) != 0))
    assert 1.5 < runs.mean() < 3.5  # repeated moves: runs much longer than 1
    # fraction of "stay" steps: P(n=0) / (P(n=0) + E[n]) = e^-2 / (e^-2 + 2)
    assert abs((acts == 4).mean() - np.exp(-2) / (np.exp(-2) + 2)) < 0.02


def test_blocked_as_stay_relabels_wall_hits():
    spec = _spec(env_id="worldmodels/ImageNavigation-v0", policy="poisson_repeat", seq_len=200,
                 policy_kwargs={"rate": 4.0, "blocked_as_stay": True})
    out = rollout_sequences(spec, "train", 0, 2)
    moves = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)], float)
    pred = out["states"][:, :-1] + out["actions"][:, :-1] @ moves
    np.testing.assert_array_equal(pred, out["states"][:, 1:])  # every labelled move happened: linear dynamics
    walls = rollout_sequences(dataclasses.replace(spec, policy_kwargs={"rate": 4.0}), "train", 0, 2)
    pred = walls["states"][:, :-1] + walls["actions"][:, :-1] @ moves
    assert (pred != walls["states"][:, 1:]).any()  # without it, wall hits keep their move label


def test_resume_after_sigkill_gives_identical_data(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = _spec(splits={"train": 240}, shard_size=10, seq_len=10)
    root = tmp_path / "killed"
    code = ("import dataclasses, json, sys; from worldmodels.envs.generate import DatasetSpec, generate_dataset; "
            "generate_dataset(DatasetSpec(**json.loads(sys.argv[1])), sys.argv[2], num_workers=1, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(dataclasses.asdict(spec)), str(root)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            try:
                m = json.loads((root / "manifest.json").read_text())
                if sum(e["done"] for e in m["splits"]["train"]["shards"]) >= 3:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    m = json.loads((root / "manifest.json").read_text())  # the manifest is never half-written
    done = sum(e["done"] for e in m["splits"]["train"]["shards"])
    if done == len(m["splits"]["train"]["shards"]):
        pytest.skip("the machine was too fast to interrupt the run")
    assert not m["complete"] and done >= 3
    generate_dataset(spec, root, num_workers=2, progress=False)
    assert not list(root.rglob(".*.tmp"))
    generate_dataset(spec, tmp_path / "clean", num_workers=1, progress=False)
    a, b = _arrays(root, "train"), _arrays(tmp_path / "clean", "train")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_concurrent_generators_of_one_folder_agree(tmp_path):
    import threading

    root, errors = tmp_path / "d", []

    def gen():
        try:
            generate_dataset(_spec(), root, num_workers=1, progress=False)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=gen) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    from worldmodels.data import SequenceDataset

    assert len(SequenceDataset(root, "train")) == 10  # checksums in the manifest match the files


def test_complete_dataset_is_left_untouched(tmp_path):
    mpath = generate_dataset(_spec(), tmp_path / "d", num_workers=1, progress=False)
    before = (mpath.stat().st_mtime_ns, mpath.read_bytes())
    assert generate_dataset(_spec(), tmp_path / "d", num_workers=1, progress=False) == mpath
    assert (mpath.stat().st_mtime_ns, mpath.read_bytes()) == before
