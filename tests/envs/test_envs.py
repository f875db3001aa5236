"""Environments: Gymnasium compliance, determinism, Pendulum-v1 equivalence, bad inputs."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from worldmodels import envs
from worldmodels.envs.bouncing_ball import BouncingBallEnv
from worldmodels.envs.image_navigation import ImageNavigationEnv
from worldmodels.envs.pendulum import PixelPendulumEnv

IDS = sorted(envs.ENV_IDS)


def _rollout(env_id, seed, steps=25, **kwargs):
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames, states, rewards = [obs], [info["state"]], []
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        frames.append(obs)
        states.append(info["state"])
        rewards.append(r)
        if term or trunc:
            break
    return np.stack(frames), np.stack(states), np.array(rewards)


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == env.observation_space.shape
    assert info["state"].dtype == np.float32 and info["state"].shape == (env.unwrapped.state_dim,)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_rollout_and_different_seed_differs(env_id):
    f1, s1, r1 = _rollout(env_id, 7)
    f2, s2, r2 = _rollout(env_id, 7)
    f3, s3, _ = _rollout(env_id, 8)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(s1[: len(s3)], s3[: len(s1)])
    assert f1.std() > 0  # frames are not blank


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pendulum_matches_gymnasium_pendulum_v1(seed):
    ours, ref = gym.make("worldmodels/Pendulum-v0"), gym.make("Pendulum-v1")
    _, info = ours.reset(seed=seed)
    ref_obs, _ = ref.reset(seed=seed)
    np.testing.assert_allclose(info["state"], ref_obs, atol=1e-6)
    rng = np.random.default_rng(seed)
    steps = 0
    while True:
        u = rng.uniform(-3.0, 3.0, (1,)).astype(np.float32)  # beyond the bounds: clipping must agree too
        _, r, term, trunc, info = ours.step(u)
        ref_obs, ref_r, ref_term, ref_trunc, _ = ref.step(u)
        steps += 1
        np.testing.assert_allclose(ours.unwrapped.state, ref.unwrapped.state, atol=1e-6, rtol=0)
        np.testing.assert_allclose(info["state"], ref_obs, atol=1e-6)
        assert abs(r - ref_r) < 1e-6
        assert (term, trunc) == (ref_term, ref_trunc)
        if term or trunc:
            break
    assert steps == 200


def test_pendulum_reset_options_match_pendulum_v1():
    options = {"x_init": 0.3, "y_init": 0.2}
    ours, ref = gym.make("worldmodels/Pendulum-v0"), gym.make("Pendulum-v1")
    _, info = ours.reset(seed=3, options=options)
    ref_obs, _ = ref.reset(seed=3, options=options)
    np.testing.assert_allclose(info["state"], ref_obs, atol=1e-6)
    assert abs(ours.unwrapped.state[0]) <= 0.3 and abs(ours.unwrapped.state[1]) <= 0.2
    with pytest.raises(ValueError, match="x_init"):
        ours.reset(seed=0, options={"x_init": float("nan")})
    with pytest.raises(ValueError, match="y_init"):
        ours.reset(seed=0, options={"y_init": "fast"})


def test_pendulum_frames_antialiased_and_follow_angle():
    env = PixelPendulumEnv(size=32)
    env.reset(seed=0)
    env.state = np.array([0.0, 0.0])  # upright
    env._frame = None
    up = env._observation()[:, :, 0].astype(float)
    assert up[:16].sum() > 5 * up[16:].sum()  # rod above the pivot (row 0 is the top)
    assert ((up > 0) & (up < 255)).sum() > 10  # grey edge pixels: anti-aliased
    env.state = np.array([np.pi / 2, 0.0])  # theta = pi/2 points left
    env._frame = None
    left = env._observation()[:, :, 0].astype(float)
    assert left[:, :16].sum() > 5 * left[:, 16:].sum()


def test_pendulum_sizes():
    for s in (16, 32, 64):
        obs, _ = gym.make("worldmodels/Pendulum-v0", size=s).reset(seed=0)
        assert obs.shape == (s, s, 1)
    with pytest.raises(ValueError, match="size"):
        PixelPendulumEnv(size=20)


def test_bouncing_ball_passive_motion_is_elastic_and_drawn():
    env = BouncingBallEnv()
    _, info = env.reset(seed=3)
    speed0 = np.hypot(*info["state"][2:])
    assert 10 <= speed0 <= 15
    for _ in range(60):  # long enough to hit walls
        obs, _, _, _, info = env.step(np.zeros(2, np.float32))
        x, y = info["state"][:2]
        assert 5.0 <= x <= 27.0 and 5.0 <= y <= 27.0  # radius 3 inside walls at 2.5 / 29.5
    assert abs(np.hypot(*info["state"][2:]) - speed0) < 0.05 * speed0  # elastic collisions
    img = obs[:, :, 0] > 0
    assert img[2, 2:30].all() and img[29, 2:30].all() and img[2:30, 2].all() and img[2:30, 29].all()
    # ball pixels: a disc of radius 3 around the state (row = 32 - y)
    r, c = 32 - y, x
    rows, cols = np.nonzero(img[3:29, 3:29])
    assert np.allclose([rows.mean() + 3.5, cols.mean() + 3.5], [r, c], atol=1.0)


def test_bouncing_ball_force_and_reward():
    env = BouncingBallEnv()
    env.reset(seed=0, options={"position": (16.0, 16.0), "velocity": (0.0, 0.0)})
    _, r0, _, _, info = env.step(np.array([1.0, 0.0], np.float32))
    assert info["state"][2] > 1.0 and abs(info["state"][3]) < 1e-9  # pushed right
    assert r0 == pytest.approx(-abs(info["state"][0] - 16.0) / 32, abs=1e-6)
    env2 = BouncingBallEnv(target=(8.0, 9.0))
    env2.reset(seed=0, options={"position": (8.0, 9.0), "velocity": (0.0, 0.0)})
    assert env2.step(np.zeros(2))[1] == pytest.approx(0.0, abs=1e-9)


def test_bouncing_ball_variants():
    g = BouncingBallEnv("gravity")
    g.reset(seed=0, options={"position": (16.0, 16.0), "velocity": (0.0, 0.0)})
    for _ in range(3):
        _, _, _, _, info = g.step(np.zeros(2))
    assert info["state"][3] < -2.0  # falling
    p = BouncingBallEnv("polygon")
    for seed in range(5):
        _, info = p.reset(seed=seed)
        for _ in range(40):
            _, _, _, _, info = p.step(np.zeros(2))
        assert p._inside_polygon(*info["state"][:2], margin=2.0)
    pong = BouncingBallEnv("pong")
    _, info = pong.reset(seed=0)
    assert info["state"].shape == (6,)
    for _ in range(20):
        obs, _, term, _, info = pong.step(np.zeros(2))
        if term:
            break
    assert abs(info["state"][4] - info["state"][1]) < 6 or term  # the paddles follow the ball


def test_image_navigation_moves_walls_and_crop():
    env = ImageNavigationEnv(goal="position")
    obs, info = env.reset(seed=0, options={"start": (0, 0), "goal": (0, 2)})
    np.testing.assert_array_equal(obs, env.world[0:8, 0:8])
    obs, r, _, _, info = env.step(0)  # up: wall, stays
    assert tuple(info["state"]) == (0, 0) and r == 0.0
    assert info["action_mask"].tolist() == [0, 1, 0, 1, 1]
    obs, r, _, _, info = env.step(3)  # right
    assert tuple(info["state"]) == (0, 1)
    np.testing.assert_array_equal(obs, env.world[0:8, 3:11])
    obs, r, _, _, info = env.step(np.eye(5)[3])  # one-hot right reaches the goal
    assert tuple(info["state"]) == (0, 2) and r == 1.0
    for _ in range(10):
        _, _, _, _, info = env.step(1)
    assert tuple(info["state"]) == (8, 2)  # 9 positions per axis
    assert env.n_pos == 9


def test_image_navigation_goal_view_and_obstacles():
    env = ImageNavigationEnv(goal="view", terminate_on_goal=True)
    _, info = env.reset(seed=1, options={"start": (4, 4), "goal": (4, 5)})
    assert info["goal_view"].shape == (8, 8, 3)
    _, r, term, _, _ = env.step(3)
    assert r == 1.0 and term
    ob = ImageNavigationEnv(obstacles=True, num_obstacles=2, obstacle_cells=2)
    for seed in range(5):
        _, info = ob.reset(seed=seed)
        assert ob.blocked.sum() >= 4 and not ob.blocked[4, 4]
        assert (ob.world == 128).all(axis=2).sum() >= 16  # drawn as grey squares
        rng = np.random.default_rng(seed)
        for _ in range(100):
            _, _, _, _, info = ob.step(int(rng.integers(5)))
            r, c = info["state"].astype(int)
            assert not ob.blocked[r, c]
    # a move into an obstacle leaves the agent in place
    r, c = np.argwhere(ob.blocked)[0]
    free = [(r + dr, c + dc, a) for dr, dc, a in ((1, 0, 0), (-1, 0, 1), (0, 1, 2), (0, -1, 3))
            if 0 <= r + dr < 9 and 0 <= c + dc < 9 and not ob.blocked[r + dr, c + dc]]
    rr, cc, a = free[0]
    ob.pos = np.array([rr, cc])
    _, _, _, _, info = ob.step(a)
    assert tuple(info["state"].astype(int)) == (rr, cc) and info["action_mask"][a] == 0


def test_procedural_worlds_are_varied_and_seeded():
    a = ImageNavigationEnv().reset(seed=0)[0]
    b = ImageNavigationEnv().reset(seed=0)[0]
    c = ImageNavigationEnv().reset(seed=1)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    env = ImageNavigationEnv()
    env.reset(seed=3)
    views = {env._crop(np.array([i, j])).tobytes() for i in range(9) for j in range(9)}
    assert len(views) == 81  # every position has its own view
    assert env.world.std() > 20


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(tmp_path / f"img{i}.npy", rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "notes.txt").write_text("not an image")
    env = ImageNavigationEnv(image_folder=tmp_path)
    assert len(env.image_files) == 4
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8, 8, 3) and env.world.shape == (32, 32, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageNavigationEnv(image_folder=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        ImageNavigationEnv(image_folder=empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        ImageNavigationEnv(image_folder=bad).reset(seed=0)


def test_bad_inputs_raise_clear_errors():
    ball = BouncingBallEnv()
    ball.reset(seed=0)
    with pytest.raises(ValueError, match=r"action: expected shape \(2,\)"):
        ball.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        ball.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="variant"):
        BouncingBallEnv("hexagon")
    with pytest.raises(ValueError, match="unknown reset option"):
        ball.reset(seed=0, options={"speed": 3})
    with pytest.raises(TypeError):
        gym.make("worldmodels/BouncingBall-v0", colour="red")
    pend = PixelPendulumEnv()
    pend.reset(seed=0)
    with pytest.raises(ValueError, match=r"action: expected shape \(1,\)"):
        pend.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        pend.step(np.array([np.nan], np.float32))
    nav = ImageNavigationEnv()
    nav.reset(seed=0)
    for bad in (5, -1, 1.5, np.nan, np.zeros(4)):
        with pytest.raises(ValueError, match="action"):
            nav.step(bad)
    with pytest.raises(ValueError, match="goal"):
        ImageNavigationEnv(goal="treasure")
    with pytest.raises(ValueError, match="start"):
        nav.reset(options={"start": (9, 0)})


@pytest.mark.parametrize("vector_cls", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_vector_envs(vector_cls):
    ids = ["worldmodels/BouncingBall-v0", "worldmodels/Pendulum-v0", "worldmodels/ImageNavigation-v0"]
    for env_id in ids if vector_cls is gym.vector.SyncVectorEnv else ids[2:]:
        venv = vector_cls([lambda env_id=env_id: gym.make(env_id) for _ in range(2)])
        obs, info = venv.reset(seed=[1, 2])
        assert obs.shape == (2, *venv.single_observation_space.shape)
        obs, r, term, trunc, info = venv.step(venv.action_space.sample())
        assert obs.shape[0] == 2 and r.shape == (2,) and info["state"].shape[0] == 2
        venv.close()


def test_fast_rod_renderer_matches_reference_capsule():
    from worldmodels.envs.rendering import PixelGrid, RodRenderer

    for size in (16, 64):
        grid, rod = PixelGrid(size), RodRenderer(size, 0.42 * size, 0.08 * size)
        c = size / 2
        for th in np.linspace(-4.0, 4.0, 9):
            dx, dy = -np.sin(th), np.cos(th)
            ref = grid.capsule_coverage(c, c, c + 0.42 * size * dx, c + 0.42 * size * dy, 0.08 * size)
            got = rod(dx, dy)[:, :, 0].astype(int)
            assert np.abs((ref * 255 + 0.5).astype(np.uint8).astype(int) - got).max() <= 1
            # coverage sums to the rod's area (in pixels): width * length + a disc at each end
            area = 2 * 0.08 * size * 0.42 * size + np.pi * (0.08 * size) ** 2
            assert abs(got.sum() / 255 - area) < 0.1 * area


@pytest.mark.parametrize("env_id, kwargs", [
    ("worldmodels/ImageNavigation-v0", {"obstacles": True, "goal": "view", "random_start": True}),
    ("worldmodels/ImageNavigation-v0", {"goal": None}),
    ("worldmodels/Pendulum-v0", {"size": 64}),
    ("worldmodels/BouncingBall-v0", {"target": (8.0, 20.0), "gravity": (0.0, -3.0)}),
])
def test_check_env_passes_with_options(env_id, kwargs):
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    f1, s1, r1 = _rollout(env_id, 5, **kwargs)
    f2, s2, r2 = _rollout(env_id, 5, **kwargs)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(r1, r2)
