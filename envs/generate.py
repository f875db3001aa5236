"""Sharded sequence datasets: ``<root>/manifest.json`` + ``<root>/<split>/shard_NNNNN.npz``.

Shard arrays (``N`` sequences of ``T`` frames):

* ``obs``      uint8   ``[N, T, H, W, C]`` (channel-last, as the environment returns them)
* ``actions``  float32 ``[N, T, A]``; discrete actions one-hot. ``actions[:, t]`` is taken after
  seeing ``obs[:, t]``.
* ``rewards``  float32 ``[N, T]``; what ``env.step(actions[:, t])`` returned.
* ``states``   float32 ``[N, T, S]``; ``info["state"]`` at ``obs[:, t]``.

Every sequence is seeded from ``(spec.seed, split, sequence index)`` alone, so a dataset does
not depend on the number of workers or on interruptions. Shards are written atomically (temp
file, fsync, rename) and the manifest records each finished shard (size and sha256), so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import worldmodels.envs as envs  # noqa: F401  (registers the ids)
from worldmodels.atomic_io import atomic_write
from worldmodels.envs.gym_pixels import (
    EnvNotSupported,
    check_frame_size,
    check_frame_skip,
    check_registered,
    make_pixel_env,
)
from worldmodels.envs.policies import POLICIES, make_policy

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
FORMAT = "worldmodels-sequences"
FORMAT_VERSION = 1
_MAX_ATTEMPTS = 100
MAX_SEQ_LEN = 100_000
MAX_SPLIT_SIZE = 10_000_000  # sequences per split


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class DatasetSpec:
    """What to generate: environment, exploration policy, sequence length and split sizes.

    Attributes:
        name: dataset name (a preset name or your own).
        env_id: a registered Gymnasium id: the package's own (e.g. ``"worldmodels/BouncingBall-v0"``,
            whose observations are frames) or any other that renders ``rgb_array`` frames (e.g.
            ``"CartPole-v1"``), whose renders become the observations (``gym_pixels``).
        seq_len: frames per sequence T, at most 100 000.
        splits: split name (``train``, ``valid``, ``test``) -> number of sequences (at most 10^7).
        env_kwargs: keyword arguments for ``gymnasium.make``.
        policy: exploration policy name (``zero``, ``uniform``, ``poisson_repeat``, ``random``).
        policy_kwargs: its options.
        shard_size: sequences per shard file.
        seed: root seed of the whole dataset (an integer >= 0).
        compress: deflate the shards (True) or store them uncompressed.
        description: a line for humans.
        frame_size: ``[height, width]`` of the frames of an env outside ``worldmodels/`` (area
            resizing of its renders), or None for the render's own size.
        grayscale: one grey channel instead of RGB (envs outside ``worldmodels/``).
        frame_skip: repeat each action this many steps, summing the rewards and keeping the last
            frame (envs outside ``worldmodels/``).

    The last three are recorded in the manifest only when they differ from their defaults.
    """

    name: str
    env_id: str
    seq_len: int
    splits: dict[str, int]
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: str = "zero"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    shard_size: int = 250
    seed: int = 0
    compress: bool = True
    description: str = ""
    frame_size: tuple[int, int] | None = None
    grayscale: bool = False
    frame_skip: int = 1

    def __post_init__(self):
        if not isinstance(self.env_id, str):
            raise ValueError(f"env_id: expected a registered Gymnasium id, got {self.env_id!r}")
        if self.env_id not in envs.ENV_IDS:
            try:
                check_registered(self.env_id)
            except EnvNotSupported as e:
                raise ValueError(f"env_id: {e}") from e
        if self.frame_size is not None:
            self.frame_size = check_frame_size("frame_size", self.frame_size)
        if not isinstance(self.grayscale, bool):
            raise ValueError(f"grayscale: expected True or False, got {self.grayscale!r}")
        check_frame_skip("frame_skip", self.frame_skip)
        if self.is_native and self.pixel_options():
            raise ValueError(f"frame_size/grayscale/frame_skip: apply to Gymnasium envs outside worldmodels/; "
                             f"{self.env_id} makes its own frames (got {self.pixel_options()})")
        if not _is_int(self.seq_len) or not 1 <= self.seq_len <= MAX_SEQ_LEN:
            raise ValueError(f"seq_len: expected an integer in [1, {MAX_SEQ_LEN}], got {self.seq_len!r}")
        if not isinstance(self.splits, dict) or not self.splits or set(self.splits) - set(SPLITS):
            raise ValueError(f"splits: expected a non-empty dict with keys among {SPLITS}, got {self.splits!r}")
        for k, n in self.splits.items():
            if not _is_int(n) or not 1 <= n <= MAX_SPLIT_SIZE:
                raise ValueError(f"splits[{k!r}]: expected an integer in [1, {MAX_SPLIT_SIZE}], got {n!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")
        for name in ("env_kwargs", "policy_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: expected a dict of options, got {getattr(self, name)!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy: expected one of {sorted(POLICIES)}, got {self.policy!r}")
        if not _is_int(self.shard_size) or self.shard_size < 1:
            raise ValueError(f"shard_size: expected a positive integer, got {self.shard_size!r}")

    @property
    def is_native(self) -> bool:
        """Whether ``env_id`` is one of the package's own pixel environments."""
        return self.env_id in envs.ENV_IDS

    def pixel_options(self) -> dict[str, Any]:
        """``frame_size``, ``grayscale`` and ``frame_skip`` where they differ from the defaults."""
        defaults = {"frame_size": None, "grayscale": False, "frame_skip": 1}
        return {k: getattr(self, k) for k, v in defaults.items() if getattr(self, k) != v}

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (JSON-ready), the pixel options only where they are not the
        defaults (so the package's own datasets keep their manifests); ``from_dict`` inverts it."""
        d = asdict(self)
        for k in ("frame_size", "grayscale", "frame_skip"):
            if k not in self.pixel_options():
                del d[k]
        if d.get("frame_size") is not None:
            d["frame_size"] = list(d["frame_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        """Inverse of ``dataclasses.asdict``; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"DatasetSpec: unknown field(s) {sorted(unknown)}; expected among {sorted(names)}")
        d = dict(d)
        if isinstance(d.get("frame_size"), list):
            d["frame_size"] = tuple(d["frame_size"])
        return cls(**d)


def _presets() -> dict[str, DatasetSpec]:
    ball = "worldmodels/BouncingBall-v0"
    big = {"train": 5000, "valid": 500, "test": 1000}
    small = {"train": 256, "valid": 32, "test": 32}
    specs = [
        DatasetSpec("bouncing_ball", ball, 20, dict(big), description="KVAE box: passive ball, 32x32 binary"),
        DatasetSpec("bouncing_ball_gravity", "worldmodels/BouncingBallGravity-v0", 20, dict(big), seed=1,
                    description="KVAE box with gravity"),
        DatasetSpec("bouncing_ball_polygon", "worldmodels/BouncingBallPolygon-v0", 20, dict(big), seed=2,
                    description="KVAE irregular polygon walls"),
        DatasetSpec("bouncing_ball_pong", "worldmodels/BouncingBallPong-v0", 20, dict(big), seed=3,
                    description="KVAE pong-like paddles"),
        DatasetSpec("bouncing_ball_forces", ball, 20, dict(big), policy="uniform", seed=4,
                    description="box with uniform random forces (for action-conditioned models)"),
        DatasetSpec("pendulum", "worldmodels/Pendulum-v0", 15, {"train": 500, "valid": 500, "test": 500},
                    policy="uniform", shard_size=100, seed=5,
                    description="Pendulum-v1 dynamics, 16x16 frames, uniform random torques"),
        DatasetSpec("image_navigation", "worldmodels/ImageNavigation-v0", 512,
                    {"train": 2000, "valid": 100, "test": 100}, policy="poisson_repeat",
                    policy_kwargs={"rate": 2.0}, shard_size=50, seed=6,
                    description="GTM-SM: 256 memorise + 256 predict steps on procedural 32x32 worlds"),
        DatasetSpec("image_navigation_obstacles", "worldmodels/ImageNavigation-v0", 512,
                    {"train": 2000, "valid": 100, "test": 100}, env_kwargs={"obstacles": True},
                    policy="poisson_repeat", policy_kwargs={"rate": 2.0}, shard_size=50, seed=7,
                    description="GTM-SM with random obstacles (thesis 7.10.1)"),
        DatasetSpec("bouncing_ball_small", ball, 20, dict(small), shard_size=64, seed=100,
                    description="small passive ball set for demos and tests"),
        DatasetSpec("bouncing_ball_forces_small", ball, 20, dict(small), policy="uniform", shard_size=64,
                    seed=104, description="small ball set with random forces"),
        DatasetSpec("pendulum_small", "worldmodels/Pendulum-v0", 15, dict(small), policy="uniform",
                    shard_size=64, seed=105, description="small pendulum set for demos and tests"),
        DatasetSpec("image_navigation_small", "worldmodels/ImageNavigation-v0", 96,
                    {"train": 64, "valid": 16, "test": 16}, policy="poisson_repeat",
                    policy_kwargs={"rate": 2.0}, shard_size=16, seed=106,
                    description="small image navigation set (64 memorise + 32 predict steps)"),
    ]
    return {s.name: s for s in specs}


#: Named dataset specs: the papers' sets and small ones that generate in seconds.
PRESETS: dict[str, DatasetSpec] = _presets()


def get_spec(spec: DatasetSpec | str) -> DatasetSpec:
    """A ``DatasetSpec`` as given, or the preset of that name (``ValueError`` if unknown)."""
    if isinstance(spec, DatasetSpec):
        return spec
    if isinstance(spec, str) and spec in PRESETS:
        return dataclasses.replace(PRESETS[spec])
    raise ValueError(f"spec: expected a DatasetSpec or a preset name among {sorted(PRESETS)}, got {spec!r}")


# ---------------------------------------------------------------------------------- files
def save_npz(f, arrays: dict[str, np.ndarray], compress: bool = True, level: int = 3) -> None:
    """Write ``arrays`` as an ``.npz`` (readable by ``np.load``) to the open binary file ``f``.

    Like ``np.savez_compressed`` but with a fast deflate level (3: about 2x faster than
    numpy's default and within 40 % of its size on binary frames). Same arrays, same bytes.
    """
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(f, "w", mode) as z:
        for k, v in arrays.items():
            # a fixed timestamp makes the bytes (and the manifest's sha256) reproducible
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = mode
            info._compresslevel = level if compress else None  # pyright: ignore[reportAttributeAccessIssue]  (compress_level in 3.13+)
            with z.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(v), allow_pickle=False)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(root: Path, manifest: dict) -> None:
    data = json.dumps(manifest, indent=2).encode()
    atomic_write(root / MANIFEST, lambda f: f.write(data))


# ---------------------------------------------------------------------------------- rollouts
def make_env(spec: DatasetSpec) -> gym.Env:
    """The raw (unwrapped) environment of ``spec``: the package's own, or another Gymnasium id
    wrapped by ``gym_pixels.make_pixel_env`` (its renders as observations). Bad ``env_kwargs``
    (unknown names, values out of range) raise ``ValueError``; an id that cannot be used raises
    ``gym_pixels.EnvNotSupported`` (a ``ValueError``)."""
    try:
        if not spec.is_native:
            return make_pixel_env(spec.env_id, spec.env_kwargs, spec.frame_size, spec.grayscale, spec.frame_skip)
        return gym.make(spec.env_id, disable_env_checker=True, **spec.env_kwargs).unwrapped
    except EnvNotSupported:
        raise
    except TypeError as e:
        raise ValueError(f"env_kwargs: bad options {spec.env_kwargs} for {spec.env_id}: {e}") from e
    except ValueError as e:
        raise ValueError(f"env_kwargs of {spec.env_id}: {e}") from e


def env_layout(env: gym.Env) -> dict[str, Any]:
    """Shapes the manifest records: obs ``[H, W, C]``, action dim/type, state dim."""
    a, o = env.action_space, env.observation_space
    state_dim = getattr(env, "state_dim", None)
    if o.shape is None or len(o.shape) != 3 or not (isinstance(a, spaces.Discrete) or a.shape is not None):
        raise ValueError(f"env: expected image observations [H, W, C] and a Discrete or Box action space, "
                         f"got {o} and {a}")
    if not isinstance(state_dim, int) or state_dim < 0:
        raise ValueError(f"env: expected a state_dim attribute (integer >= 0), got {state_dim!r}")
    discrete = isinstance(a, spaces.Discrete)
    return {
        "obs_shape": list(o.shape),
        "action_dim": int(a.n) if isinstance(a, spaces.Discrete) else int(np.prod(a.shape or ())),
        "action_type": "discrete" if discrete else "continuous",
        "state_dim": state_dim,
    }


def _split_code(split: str) -> int:
    return SPLITS.index(split)


def rollout_sequences(spec: DatasetSpec, split: str, start: int, count: int, env: gym.Env | None = None
                      ) -> dict[str, np.ndarray]:
    """Generate sequences ``start .. start+count-1`` of ``split``: the shard arrays (module docstring).

    Sequence ``i`` depends only on ``(spec.seed, split, i)``. An episode that terminates before
    ``seq_len`` frames (the ball leaving the pong scene) is redrawn with the next attempt's seed.
    """
    env = env if env is not None else make_env(spec)
    lay = env_layout(env)
    T, A = spec.seq_len, lay["action_dim"]
    discrete = lay["action_type"] == "discrete"
    obs_buf = np.empty((count, T, *lay["obs_shape"]), dtype=np.uint8)
    act_buf = np.zeros((count, T, A), dtype=np.float32)
    rew_buf = np.empty((count, T), dtype=np.float32)
    st_buf = np.empty((count, T, lay["state_dim"]), dtype=np.float32)
    policy = make_policy(spec.policy, env.action_space, **spec.policy_kwargs)
    start_index = int(getattr(env.action_space, "start", 0))  # Discrete(n, start): index a - start
    for n in range(count):
        i = start + n
        for attempt in range(_MAX_ATTEMPTS):
            ss = np.random.SeedSequence([spec.seed, _split_code(split), i, attempt])
            env_seed, pol_seed = ss.generate_state(2)
            obs, info = env.reset(seed=int(env_seed))
            policy.reset(np.random.default_rng(int(pol_seed)))
            act_buf[n] = 0.0
            ok = True
            for t in range(T):
                obs_buf[n, t] = obs
                st_buf[n, t] = info["state"]
                a = policy(obs, info)
                if discrete:
                    act_buf[n, t, int(a) - start_index] = 1.0
                else:
                    act_buf[n, t] = np.asarray(a).reshape(A)
                obs, r, terminated, truncated, info = env.step(a)
                rew_buf[n, t] = r
                if terminated and t < T - 1:
                    ok = False
                    break
            if ok:
                break
        else:
            raise RuntimeError(f"{spec.env_id}: every one of {_MAX_ATTEMPTS} episodes for sequence {i} "
                               f"ended before {T} frames (choose a shorter seq_len)")
    return {"obs": obs_buf, "actions": act_buf, "rewards": rew_buf, "states": st_buf}


def _generate_shard(task: tuple) -> tuple[str, int, dict]:
    """Worker: generate one shard and write it atomically; returns its manifest entry."""
    spec_dict, split, index, start, count, path = task
    spec = DatasetSpec.from_dict(spec_dict)
    arrays = rollout_sequences(spec, split, start, count)
    entry = {"file": f"{split}/{Path(path).name}", "num_sequences": count, "start": start,
             **_write_shard(Path(path), arrays, spec.compress), "done": True}
    return split, index, entry


def _write_shard(path: Path, arrays: dict[str, np.ndarray], compress: bool) -> dict[str, Any]:
    """Write the shard ``arrays`` (module docstring) atomically to ``path``; returns the
    manifest fields that describe the file: ``bytes`` and ``sha256``."""
    atomic_write(path, lambda f: save_npz(f, arrays, compress))
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


# ---------------------------------------------------------------------------------- driver
def _plan(spec: DatasetSpec) -> dict[str, list[dict]]:
    plan = {}
    for split in SPLITS:
        n = spec.splits.get(split, 0)
        plan[split] = [
            {"file": f"{split}/shard_{k:05d}.npz", "num_sequences": min(spec.shard_size, n - s), "start": s,
             "done": False}
            for k, s in enumerate(range(0, n, spec.shard_size))
        ] if n else []
    return {s: p for s, p in plan.items() if p}


def _shard_ok(root: Path, entry: dict) -> bool:
    if not isinstance(entry.get("file"), str):
        return False
    p = root / entry["file"]
    return bool(entry.get("done")) and p.is_file() and p.stat().st_size == entry.get("bytes")


def _clean_temp_files(root: Path) -> None:
    for split in SPLITS:
        d = root / split
        if d.is_dir():
            for f in d.glob(".*.tmp"):
                f.unlink(missing_ok=True)
    for f in root.glob(f".{MANIFEST}.*.tmp"):
        f.unlink(missing_ok=True)


def generate_dataset(spec: DatasetSpec | str, out_dir: str | os.PathLike, num_workers: int | None = None,
                     resume: bool = True, progress: bool = True) -> Path:
    """Generate the dataset ``spec`` (a ``DatasetSpec`` or a preset name) into ``out_dir``.

    Shards run in ``num_workers`` processes (default: the CPU count, at most one per shard;
    ``1`` runs in this process). With ``resume=True`` shards already recorded as finished in an
    existing manifest of the *same* spec are kept; a manifest of a different spec raises
    ``ValueError`` (pass ``resume=False`` to regenerate everything). Shows a tqdm bar over
    sequences when ``progress``. Returns the path of ``manifest.json``.
    """
    spec = get_spec(spec)
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
        raise ValueError(f"num_workers: expected a positive integer or None, got {num_workers!r}")
    root = Path(out_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"out_dir: {str(root)!r} exists and is not a directory")
    layout = env_layout(make_env(spec))  # validates env_kwargs before any file is touched
    policy_probe = make_policy(spec.policy, make_env(spec).action_space, **spec.policy_kwargs)
    del policy_probe
    root.mkdir(parents=True, exist_ok=True)
    with _folder_lock(root):
        return _generate_locked(spec, root, layout, num_workers, resume, progress)


@contextlib.contextmanager
def _folder_lock(root: Path):
    """Exclusive lock on ``root`` (``fcntl.flock`` where available): a second generator of the
    same folder waits, then finds the shards done and only rewrites the manifest."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    with open(root / ".generate.lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _check_old_manifest(path: Path, old: Any) -> None:
    """The parts of an existing manifest that resuming reads: ``spec`` and ``splits`` with lists
    of shard entries (objects); ``ValueError`` naming the file and the key otherwise."""
    if not isinstance(old, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(old).__name__}; pass resume=False to regenerate")
    if not isinstance(old.get("spec"), dict) or not isinstance(old.get("splits", {}), dict):
        raise ValueError(f"{path}: 'spec' or 'splits' is missing or not an object; pass resume=False to regenerate")
    for split, info in old.get("splits", {}).items():
        shards = info.get("shards", []) if isinstance(info, dict) else None
        if not isinstance(shards, list) or not all(isinstance(e, dict) for e in shards):
            raise ValueError(f"{path}: splits[{split!r}].shards is not a list of shard entries; "
                             "pass resume=False to regenerate")


def _generate_locked(spec: DatasetSpec, root: Path, layout: dict, num_workers: int | None, resume: bool,
                     progress: bool) -> Path:
    _clean_temp_files(root)
    spec_dict = spec.to_dict()
    plan = _plan(spec)
    mpath = root / MANIFEST
    if mpath.exists() and resume:
        try:
            old = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{mpath}: unreadable manifest ({e}); pass resume=False to regenerate") from e
        _check_old_manifest(mpath, old)
        if old.get("spec") != json.loads(json.dumps(spec_dict)):
            raise ValueError(f"out_dir {str(root)!r} holds a different dataset ({old.get('spec', {}).get('name')!r});"
                             " use another folder or resume=False to overwrite it")
        for split, entries in plan.items():
            for k, e in enumerate(old.get("splits", {}).get(split, {}).get("shards", [])[: len(entries)]):
                if _shard_ok(root, e) and e.get("start") == entries[k]["start"] and e.get("file") == entries[k]["file"]:
                    entries[k] = e
        if old.get("complete") and all(e.get("done") for p in plan.values() for e in p):
            return mpath  # nothing to do: leave the manifest untouched for concurrent readers
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "name": spec.name, "spec": spec_dict,
        "env_id": spec.env_id, "seq_len": spec.seq_len, **layout,
        "obs_layout": "NTHWC uint8", "discrete_actions": "one-hot float32",
        "splits": {s: {"num_sequences": spec.splits[s], "shards": p} for s, p in plan.items()},
        "complete": False, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for split in plan:
        (root / split).mkdir(exist_ok=True)
    if not resume:  # drop shard files a previous, different dataset left behind
        planned = {e["file"] for p in plan.values() for e in p}
        for split in SPLITS:
            for f in (root / split).glob("shard_*.npz") if (root / split).is_dir() else []:
                if f"{split}/{f.name}" not in planned:
                    f.unlink()
    _write_manifest(root, manifest)
    todo = [(spec_dict, split, k, e["start"], e["num_sequences"], str(root / e["file"]))
            for split, p in plan.items() for k, e in enumerate(p) if not e.get("done")]
    total = sum(spec.splits.values())
    done_seqs = total - sum(t[4] for t in todo)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=done_seqs, unit="seq", desc=f"generate {spec.name}", file=sys.stderr)
    workers = min(num_workers or os.cpu_count() or 1, max(len(todo), 1))
    pool = None
    try:
        if workers <= 1:
            results = map(_generate_shard, todo)
        else:
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(workers)
            results = pool.imap_unordered(_generate_shard, todo)
        for split, k, entry in results:
            manifest["splits"][split]["shards"][k] = entry
            _write_manifest(root, manifest)
            if bar is not None:
                bar.update(entry["num_sequences"])
        manifest["complete"] = True
        _write_manifest(root, manifest)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
        _clean_temp_files(root)
    return mpath
