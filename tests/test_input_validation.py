"""Bad inputs at the package's boundaries give one clear error naming the argument, file or key.

Three tables: environment options (constructors and ``reset`` options), dataset shards and
manifests, and the frames/masks given to the models' ``loss`` and ``observe``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldmodels.base import Batch
from worldmodels.baselines import DKF, DVBF, DKFConfig, DVBFConfig
from worldmodels.checks import check_frames, frames_to_float
from worldmodels.data import SequenceDataset
from worldmodels.envs import BouncingBallEnv, ImageNavigationEnv, PixelPendulumEnv
from worldmodels.envs.generate import DatasetSpec, generate_dataset
from worldmodels.envs.policies import make_policy
from worldmodels.gtmsm import GTMSM, GTMSMConfig
from worldmodels.kvae import KVAE, KVAEConfig
from worldmodels.vae_rnn import VAERNN, VAERNNConfig

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- environments
NAN, INF = math.nan, math.inf
BALL, POLYGON, PEND, NAV = "ball", "polygon", "pendulum", "navigation"
_ENVS = {BALL: lambda **kw: BouncingBallEnv(**kw), POLYGON: lambda **kw: BouncingBallEnv("polygon", **kw),
         PEND: lambda **kw: PixelPendulumEnv(**kw), NAV: lambda **kw: ImageNavigationEnv(**kw)}

# (env, constructor options, reset options, the option the message must name)
BAD_ENV_OPTIONS = [
    (BALL, {"force_scale": NAN}, None, "force_scale"),
    (BALL, {"force_scale": INF}, None, "force_scale"),
    (BALL, {"force_scale": -1.0}, None, "force_scale"),
    (BALL, {"gravity": (NAN, 0.0)}, None, "gravity"),
    (BALL, {"gravity": (0.0, -1e6)}, None, "gravity"),
    (BALL, {"gravity": (0.0,)}, None, "gravity"),
    (BALL, {"target": (NAN, 16.0)}, None, "target"),
    (BALL, {"target": (100.0, 16.0)}, None, "target"),
    (BALL, {"speed": (1e6, 1e6)}, None, "speed"),
    (BALL, {"speed": (15.0, 10.0)}, None, "speed"),
    (BALL, {"speed": (-1.0, 5.0)}, None, "speed"),
    (BALL, {"speed": (NAN, 5.0)}, None, "speed"),
    (BALL, {"start_std": -1.0}, None, "start_std"),
    (BALL, {"start_std": NAN}, None, "start_std"),
    (BALL, {"radius": 0.0}, None, "radius"),
    (BALL, {"radius": NAN}, None, "radius"),
    (BALL, {"radius": 20.0}, None, "radius"),
    (BALL, {"size": 8}, None, "size"),
    (BALL, {"size": 10**6}, None, "size"),
    (BALL, {"size": 32.5}, None, "size"),
    (BALL, {"dt": 0.0}, None, "dt"),
    (BALL, {"dt": NAN}, None, "dt"),
    (BALL, {"substeps": 0}, None, "substeps"),
    (BALL, {"substeps": 2.5}, None, "substeps"),
    (BALL, {}, {"position": (0.0, 0.0)}, "options['position']"),
    (BALL, {}, {"position": (1e6, 16.0)}, "options['position']"),
    (BALL, {}, {"position": (16.0, NAN)}, "options['position']"),
    (BALL, {}, {"position": (16.0,)}, "options['position']"),
    (POLYGON, {}, {"position": (4.0, 4.0)}, "options['position']"),  # inside the box, outside the hexagon
    (BALL, {}, {"velocity": (1e6, 0.0)}, "options['velocity']"),
    (BALL, {}, {"velocity": (NAN, 0.0)}, "options['velocity']"),
    (PEND, {"g": NAN}, None, "g"),
    (PEND, {"g": INF}, None, "g"),
    (PEND, {"g": -10.0}, None, "g"),
    (PEND, {"size": 20}, None, "size"),
    (PEND, {}, {"x_init": -1.0}, "options['x_init']"),
    (PEND, {}, {"x_init": INF}, "options['x_init']"),
    (PEND, {}, {"y_init": 100.0}, "options['y_init']"),
    (PEND, {}, {"y_init": "fast"}, "options['y_init']"),
    (NAV, {"world_size": 10**6}, None, "world_size"),
    (NAV, {"view": 0}, None, "view"),
    (NAV, {"step_px": 1.5}, None, "step_px"),
    (NAV, {"render_scale": 0}, None, "render_scale"),
    (NAV, {"obstacles": True, "num_obstacles": 0}, None, "num_obstacles"),
    (NAV, {"obstacles": True, "obstacle_cells": 9}, None, "obstacle_cells"),
    (NAV, {}, {"start": (9, 0)}, "options['start']"),
    (NAV, {}, {"goal": (0.5, 1)}, "options['goal']"),
]


@pytest.mark.parametrize("env, kwargs, options, option", BAD_ENV_OPTIONS,
                         ids=[f"{e}-{o}-{i}" for i, (e, _, _, o) in enumerate(BAD_ENV_OPTIONS)])
def test_bad_env_options_raise_a_clear_error(env, kwargs, options, option):
    with pytest.raises(ValueError) as info:
        _ENVS[env](**kwargs).reset(seed=0, options=options)
    message = str(info.value)
    assert message.startswith(option) and "expected" in message, message


@pytest.mark.parametrize("name, kwargs, option", [
    ("poisson_repeat", {"rate": NAN}, "rate"),
    ("poisson_repeat", {"rate": INF}, "rate"),
    ("poisson_repeat", {"rate": 0.0}, "rate"),
    ("poisson_repeat", {"stay_action": 7}, "stay_action"),
    ("uniform", {"scale": NAN}, "scale"),
])
def test_bad_policy_options_raise_a_clear_error(name, kwargs, option):
    space = gym.spaces.Discrete(5) if name == "poisson_repeat" else gym.spaces.Box(-1, 1, (2,))
    with pytest.raises(ValueError, match=rf"^{option}: expected"):
        make_policy(name, space, **kwargs)


def test_the_ball_speed_bound_is_where_the_walls_stop_holding():
    """Launched just below ``max_speed`` a ball stays inside the box for a whole episode; a few
    times faster it passes through a wall, which is why faster launches are refused."""
    env = BouncingBallEnv()
    assert env.max_speed == pytest.approx(env.radius * env.substeps / env.dt)

    def stays_inside() -> bool:
        xy = np.array([env.step(np.zeros(2))[4]["state"][:2] for _ in range(100)])
        return bool(((xy > 2.5) & (xy < env.size - 2.5)).all())

    v = 0.99 * env.max_speed
    env.reset(seed=0, options={"velocity": (v * 0.8, v * 0.6)})
    assert stays_inside()
    env.reset(seed=0)
    v = 5 * env.max_speed
    env._ball.velocity = (v * 0.8, v * 0.6)  # past the check, to show what it prevents
    assert not stays_inside()


@pytest.mark.parametrize("radius", [1.0, 3.0, 6.0])
def test_random_starts_keep_the_ball_inside_the_walls(radius):
    env = BouncingBallEnv(radius=radius, start_std=50.0)
    for seed in range(30):
        x, y = env.reset(seed=seed)[1]["state"][:2]
        assert 2.5 + radius < x < env.size - 2.5 - radius and 2.5 + radius < y < env.size - 2.5 - radius
    env.reset(seed=0, options={"position": (2.5 + radius, env.size - 2.5 - radius)})  # on the limit: accepted


@pytest.mark.parametrize("env", [PEND, NAV])
def test_render_or_step_before_reset_says_so(env):
    made = _ENVS[env](render_mode="rgb_array")
    with pytest.raises(RuntimeError, match=r"reset\(\) first"):
        made.render()
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        made.step(made.action_space.sample())


def test_a_ball_too_big_for_the_polygon_is_refused_not_looped_forever():
    with pytest.raises(ValueError, match="^radius: .*polygon"):
        BouncingBallEnv("polygon", size=16, radius=4.0).reset(seed=0)


# --------------------------------------------------------------------------- shards, manifests
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds") / "ball"
    spec = DatasetSpec("t", "worldmodels/BouncingBall-v0", 4, {"train": 3}, policy="uniform")
    generate_dataset(spec, root, num_workers=1, progress=False)
    return root


def _copy_with(src: Path, dst: Path, change_arrays=None, change_manifest=None) -> Path:
    """A copy of dataset ``src`` whose shard arrays / manifest went through the given edits
    (the manifest's size and checksum follow the edited shard, as a careless writer's would)."""
    manifest = json.loads((src / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    (dst / "train").mkdir(parents=True)
    with np.load(src / entry["file"]) as z:
        arrays = {k: z[k] for k in z.files}
    if change_arrays is not None:
        change_arrays(arrays)
    np.savez(dst / entry["file"], **arrays)
    data = (dst / entry["file"]).read_bytes()
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if change_manifest is not None:
        change_manifest(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _set(key, fn):
    def edit(d):
        d[key] = fn(d[key])
    return edit


def _first_entry(fn):
    def edit(m):
        fn(m["splits"]["train"]["shards"][0])
    return edit


# name -> (edit of the arrays, edit of the manifest, pattern naming the file/key)
SHARD = r"shard 'train/shard_00000\.npz'"
BAD_DATASETS = {
    "integer actions": (_set("actions", lambda a: a.astype(np.int64)), None, SHARD + r": actions has dtype int64"),
    "boolean actions": (_set("actions", lambda a: a > 0), None, SHARD + r": actions has dtype bool"),
    "integer rewards": (_set("rewards", lambda r: r.astype(np.int32)), None, SHARD + r": rewards has dtype int32"),
    "NaN rewards": (_set("rewards", lambda r: np.where(np.arange(r.size).reshape(r.shape) == 2, np.nan, r)), None,
                    SHARD + r": rewards holds NaN"),
    "inf actions": (_set("actions", lambda a: a * np.inf), None, SHARD + r": actions holds NaN or inf"),
    "int16 frames": (_set("obs", lambda o: o.astype(np.int16)), None, SHARD + r": obs has dtype int16"),
    "float frames in 0-255": (_set("obs", lambda o: o.astype(np.float32)), None,
                              SHARD + r": obs is floating but not within \[0, 1\]"),
    "missing rewards": (lambda d: d.pop("rewards"), None, SHARD + r" lacks arrays \['rewards'\]"),
    "actions wider than the manifest": (_set("actions", lambda a: np.concatenate([a, a], -1)), None,
                                        SHARD + r": actions has shape \[3, 4, 4\], expected \[3, 4, 2\]"),
    "fewer sequences than the manifest": (_set("obs", lambda o: o[:2]), None, SHARD + r": obs has shape"),
    "manifest obs_shape differs": (None, lambda m: m.update(obs_shape=[16, 16, 1]), SHARD + r": obs has shape"),
    "manifest without seq_len": (None, lambda m: m.pop("seq_len"), r"manifest\.json: missing key\(s\) \['seq_len'\]"),
    "manifest seq_len a string": (None, lambda m: m.update(seq_len="4"), r"manifest\.json: seq_len is '4'"),
    "manifest obs_shape of 2 dims": (None, lambda m: m.update(obs_shape=[32, 32]), r"manifest\.json: obs_shape"),
    "manifest shard outside the folder": (None, _first_entry(lambda e: e.update(file="../../etc/passwd")),
                                          r"manifest\.json: splits\['train'\]\.shards\[0\]\.file"),
    "manifest negative num_sequences": (None, _first_entry(lambda e: e.update(num_sequences=-1)),
                                        r"manifest\.json: splits\['train'\]\.shards\[0\]\.num_sequences"),
    "manifest a list": (None, lambda m: m.clear(), r"manifest\.json: missing key"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATASETS))
def test_bad_shards_and_manifests_raise_a_clear_error(case, dataset, tmp_path):
    change_arrays, change_manifest, pattern = BAD_DATASETS[case]
    root = _copy_with(dataset, tmp_path / "copy", change_arrays, change_manifest)
    with pytest.raises(ValueError, match=pattern):
        SequenceDataset(root, "train")


def test_a_manifest_that_is_not_an_object_is_refused(dataset, tmp_path):
    root = _copy_with(dataset, tmp_path / "copy")
    (root / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"manifest\.json: expected a JSON object, got list"):
        SequenceDataset(root)
    spec = DatasetSpec("t", "worldmodels/BouncingBall-v0", 4, {"train": 3}, policy="uniform")
    with pytest.raises(ValueError, match=r"manifest\.json: expected a JSON object.*resume=False"):
        generate_dataset(spec, root, num_workers=1, progress=False)  # resuming reads it too
    assert (root / "manifest.json").read_text() == "[1, 2]"  # and leaves it alone


def test_pickled_shards_are_refused(dataset, tmp_path):
    obj = np.empty(1, dtype=object)
    root = _copy_with(dataset, tmp_path / "copy", lambda d: d.update(states=obj))
    with pytest.raises(ValueError, match=SHARD + r" is truncated or corrupt"):
        SequenceDataset(root)


def test_float_frames_in_unit_range_are_read_as_such(dataset, tmp_path):
    root = _copy_with(dataset, tmp_path / "copy", _set("obs", lambda o: o.astype(np.float32) / 255.0))
    ref, got = SequenceDataset(dataset), SequenceDataset(root)
    torch.testing.assert_close(got[1]["obs"], ref[1]["obs"])
    np.testing.assert_array_equal(got.frames_uint8(1), ref.frames_uint8(1))


@pytest.mark.parametrize("change, option", [
    ({"splits": {"train": 10**12}}, "splits['train']"),
    ({"seq_len": 10**9}, "seq_len"),
    ({"seed": -1}, "seed"),
    ({"env_kwargs": {"force_scale": NAN}}, "force_scale"),
    ({"env_kwargs": {"gravity": (0.0, INF)}}, "gravity"),
    ({"policy_kwargs": {"scale": NAN}}, "scale"),
])
def test_bad_dataset_specs_are_refused_before_any_file_is_written(change, option, tmp_path):
    spec = dict(name="t", env_id="worldmodels/BouncingBall-v0", seq_len=4, splits={"train": 3}, policy="uniform")
    spec.update(change)
    with pytest.raises(ValueError, match=re.escape(option)):
        generate_dataset(DatasetSpec(**spec), tmp_path / "out", num_workers=1, progress=False)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- models
T = 6
MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "kvae": lambda: KVAE(KVAEConfig(obs_shape=(1, 16, 16), action_dim=2, a_dim=2, z_dim=3, num_modes=2,
                                    channels=8, dynamics_hidden=16, vae_warmup_updates=0)),
    "vaernn": lambda: VAERNN(VAERNNConfig(obs_shape=(1, 8, 8), action_dim=2, latent_dim=3, hidden_dim=12,
                                          encoder="mlp", mlp_hidden=(32,))),
    "gtmsm": lambda: GTMSM(GTMSMConfig(tau=3, z_dim=6, hidden=(32,), channels=8)),
    "dkf": lambda: DKF(DKFConfig(obs_shape=(1, 8, 8), num_layers=2, channels=8)),
    "dvbf": lambda: DVBF(DVBFConfig(obs_shape=(1, 8, 8), mlp_hidden=(32,))),
}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS[name]()


def _inputs(model: torch.nn.Module, B: int = 2, seed: int = 1):
    """Valid ``obs [B, T, C, H, W]`` in [0, 1], actions ``[B, T, A]`` and a mask with gaps."""
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(B, T, *cfg.obs_shape, generator=g)
    A = cfg.action_dim
    actions = torch.nn.functional.one_hot(torch.randint(0, A, (B, T), generator=g), A).float()
    mask = torch.ones(B, T)
    mask[:, 4] = 0.0  # a missing frame after GTM-SM's memorised steps (tau = 3)
    mask[1, 1] = 0.0
    return obs, actions, mask


def _call(model, entry: str, obs, actions, mask):
    if entry == "loss":
        torch.manual_seed(3)  # the losses sample; the same draws for comparable results
        return model.loss(Batch(obs, actions, mask)).loss
    return model.observe(obs, actions, mask).features()


def _with(x: torch.Tensor, idx, value: float) -> torch.Tensor:
    x = x.clone()
    x[idx] = value
    return x


# name -> (transform of (obs, actions, mask), error type, pattern the message must match)
BAD_MODEL_INPUTS = {
    "uint8 frames": (lambda o, a, m: ((o * 255).to(torch.uint8), a, m), TypeError,
                     r"obs: .*torch\.uint8.*divide by 255"),
    "float frames in 0-255": (lambda o, a, m: (o * 255, a, m), ValueError,
                              r"obs: values must lie in \[0, 1\].*divide|obs: values must lie in \[0, 1\].*255"),
    "negative frame values": (lambda o, a, m: (o - 0.5, a, m), ValueError, r"obs: values must lie in \[0, 1\]"),
    "float64 frames": (lambda o, a, m: (o.double(), a, m), TypeError, r"obs: expected dtype torch\.float32"),
    "int64 frames": (lambda o, a, m: (o.long(), a, m), TypeError, r"obs: expected .*torch\.int64"),
    "NaN at an observed step": (lambda o, a, m: (_with(o, (0, 2), math.nan), a, m), ValueError,
                                r"obs: frame \(batch 0, step 2\) is observed .*NaN"),
    "inf at an observed step": (lambda o, a, m: (_with(o, (1, 0, 0, 0, 0), math.inf), a, m), ValueError,
                                r"obs: frame \(batch 1, step 0\) is observed .*inf"),
    "mask above 1": (lambda o, a, m: (o, a, _with(m, (0, 0), 2.0)), ValueError, r"mask: expected values in \[0, 1\]"),
    "NaN mask": (lambda o, a, m: (o, a, _with(m, (0, 0), math.nan)), ValueError, r"mask: expected values in \[0, 1\]"),
    "mask of the wrong shape": (lambda o, a, m: (o, a, m[:, :-1]), ValueError, r"mask: expected shape"),
    "frames of the wrong size": (lambda o, a, m: (o[..., :-1], a, m), ValueError, r"obs: expected shape"),
    "actions of the wrong length": (lambda o, a, m: (o, a[:, :-1], m), ValueError, r"actions: expected shape"),
}


@pytest.mark.parametrize("entry", ["loss", "observe"])
@pytest.mark.parametrize("case", sorted(BAD_MODEL_INPUTS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_bad_model_inputs_raise_a_clear_error(name, case, entry):
    model = _model(name)
    obs, actions, mask = _inputs(model)
    make, error, pattern = BAD_MODEL_INPUTS[case]
    obs, actions, mask = make(obs, actions, mask)
    if entry == "loss":  # the loss names the batch's fields
        pattern = pattern.replace("obs:", r"(batch\.)?obs:").replace("actions:", r"(batch\.)?actions:")
        pattern = pattern.replace("mask: expected shape", r"(batch\.)?mask: expected shape")
    with pytest.raises(error, match=pattern):
        _call(model, entry, obs, actions, mask)


@pytest.mark.parametrize("entry", ["loss", "observe"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_nan_at_masked_steps_is_ignored(name, entry):
    """NaN/inf in missing frames give the same finite loss and belief as zeros there."""
    model = _model(name)
    obs, actions, mask = _inputs(model)
    zeros = obs.clone()
    zeros[mask == 0] = 0.0
    holes = obs.clone()
    holes[mask == 0] = math.nan
    holes[1, 1, 0, 0, 0] = math.inf  # (1, 1) is missing too
    ref = _call(model, entry, zeros, actions, mask)
    got = _call(model, entry, holes, actions, mask)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert torch.isnan(holes).any(), "the caller's tensor is left as it was"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_loss_without_observed_frames_is_refused(name):
    model = _model(name)
    obs, actions, mask = _inputs(model)
    with pytest.raises(ValueError, match=r"mask: .*no (frame|observed frame)"):
        model.loss(Batch(obs, actions, torch.zeros_like(mask)))


@pytest.mark.parametrize("name", ["kvae", "vaernn", "dkf", "dvbf"])
def test_observe_without_observed_frames_is_the_prior(name):
    """Filtering models accept a context with no observed frame: the belief is the prior's
    (finite, and the same whatever the unobserved frames hold)."""
    model = _model(name).eval()
    obs, actions, mask = _inputs(model)
    none = torch.zeros_like(mask)
    a = model.observe(obs, actions, none).features()
    b = model.observe(torch.rand_like(obs), actions, none).features()
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b)


def test_gtmsm_needs_an_observed_frame_in_every_memory():
    model = _model("gtmsm")
    obs, actions, mask = _inputs(model)
    mask[1, :3] = 0.0  # sequence 1 memorises nothing
    with pytest.raises(ValueError, match=r"mask: sequence 1 has no observed frame among the first 3 steps"):
        model.loss(Batch(obs, actions, mask))
    with pytest.raises(ValueError, match=r"mask: sequence 0 has no observed frame"):
        model.observe(obs, actions, _with(mask, 0, 0.0))


def test_check_frames_passes_clean_frames_through_and_converts_uint8():
    obs = torch.rand(2, 3, 1, 4, 4)
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert check_frames(obs, mask, torch.float32) is obs  # no copy when nothing needs cleaning
    assert check_frames(obs, mask.bool()) is obs
    raw = (obs * 255).to(torch.uint8)
    back = frames_to_float(raw)
    assert back.dtype == torch.float32 and check_frames(back, None) is back
    torch.testing.assert_close(back, raw.float() / 255)
    with pytest.raises(TypeError, match="uint8"):
        frames_to_float(back)
    with pytest.raises(ValueError, match=r"obs: expected shape \[B, T, \.\.\.\]"):
        check_frames(obs[:0], None)
    with pytest.raises(ValueError, match="min_observed"):
        check_frames(obs, mask, min_observed="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"mask: expected on obs's device cpu, got meta"):
        check_frames(obs, mask.to("meta"))


def test_check_frames_reads_one_value_back_from_the_device(monkeypatch):
    """The check costs one host-device sync per call: one ``tolist`` and no other conversion
    of a tensor to a Python value (``item``, ``bool``, ``int``, ``float``) on the valid path."""
    calls = []
    for method in ("tolist", "item", "__bool__", "__int__", "__float__", "__index__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _name=method, _original=original):
            calls.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, method, counted)
    obs = torch.rand(4, 5, 1, 8, 8)
    mask = torch.ones(4, 5)
    mask[:, 2] = 0.0
    obs[:, 2] = math.nan  # masked: cleaned, with no extra read-back
    out = check_frames(obs, mask, torch.float32, min_observed="sequence", observed_before=2)
    assert calls == ["tolist"]
    assert torch.isfinite(out).all()
