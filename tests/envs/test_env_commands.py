"""The ``generate`` and ``video`` commands of the ``worldmodels`` console script."""

import json

import pytest

from worldmodels.agents.cli import main


def test_generate_command_with_overrides_then_video(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["generate", "pendulum_small", "--out", str(out), "--train", "6", "--valid", "0", "--test", "2",
               "--seq-len", "4", "--workers", "1", "--no-progress", "--env-kwargs", '{"size": 32}'])
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and set(m["splits"]) == {"train", "test"} and m["obs_shape"] == [32, 32, 1]
    assert m["seq_len"] == 4 and m["splits"]["train"]["num_sequences"] == 6
    gif = tmp_path / "v.gif"
    assert main(["video", "--dataset", str(out), "--split", "train", "--num", "3", "--out", str(gif)]) == 0
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.size[0] > 3 * 32
    assert main(["generate", "--list"]) == 0
    assert "image_navigation_small" in capsys.readouterr().out


def test_video_from_env_render(tmp_path):
    gif = tmp_path / "nav.gif"
    rc = main(["video", "--env", "worldmodels/ImageNavigation-v0", "--render", "--num", "2", "--steps", "5",
               "--scale", "1", "--out", str(gif)])
    assert rc == 0
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == (2 * 129 + 1, 130)  # two 128-px renders, 1-px padding


@pytest.mark.parametrize("argv, msg, code", [
    (["generate", "nope", "--out", "x"], "preset", 2),
    (["generate", "bouncing_ball_small", "--env-kwargs", "{bad json", "--out", "x"], "--env-kwargs", 2),
    (["generate", "bouncing_ball_small", "--env-kwargs", '{"colour": 1}', "--out", "x"], "colour", 2),
    (["generate", "bouncing_ball_small", "--env-kwargs", '{"force_scale": NaN}', "--out", "x"], "force_scale", 2),
    (["video", "--env", "CartPole-v1", "--out", "x.gif"], "--env", 2),
    (["video", "--env", "worldmodels/Pendulum-v0", "--out", "x.avi"], "--out", 2),
    (["video", "--dataset", "no_such_folder", "--out", "x.gif"], "no_such_folder", 1),  # runtime: no such file
])
def test_bad_arguments_name_the_problem(argv, msg, code, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == code
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written
