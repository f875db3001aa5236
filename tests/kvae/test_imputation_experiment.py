"""The imputation experiment's scoring helpers: wall-contact detection and the error split."""

import torch

from experiments.kvae_common import wrong_pixel_fraction, wrong_pixels_per_frame
from experiments.kvae_imputation import bounce_frames, error_near_bounces


def test_bounce_frames_flags_the_frame_after_a_velocity_sign_flip():
    T = 6
    states = torch.zeros(2, T, 4)
    states[:, :, 2] = 1.0
    states[:, :, 3] = -1.0
    states[0, 3:, 2] = -1.0  # left wall between frames 2 and 3
    states[1, 5, 3] = 1.0  # floor between frames 4 and 5
    expected = torch.zeros(2, T, dtype=torch.bool)
    expected[0, 3] = True
    expected[1, 5] = True
    assert torch.equal(bounce_frames(states), expected)


class _Data:
    """Minimal stand-in for `SequenceTensors` (obs, actions, states, batch)."""

    def __init__(self, obs, states):
        self.obs, self.states = obs, states
        self.actions = torch.zeros(*obs.shape[:2], 1)

    def __len__(self):
        return self.obs.shape[0]

    def batch(self, idx):
        class B:  # noqa: D401 - tiny record
            pass
        b = B()
        b.obs, b.actions = self.obs[idx], self.actions[idx]
        return b


class _WrongAfterBounces:
    """Imputes every frame exactly, except the frames after a wall contact (all pixels flipped)."""

    def __init__(self, bounce):
        self.bounce = bounce

    def impute(self, obs, actions, mask, method="filter"):
        flip = self.bounce[: obs.shape[0], :, None, None, None].float()
        return obs * (1 - flip) + (1 - obs) * flip


def test_error_near_bounces_splits_the_error_by_frame_kind():
    g = torch.Generator().manual_seed(0)
    obs = (torch.rand(3, 8, 1, 4, 4, generator=g) > 0.5).float()
    states = torch.ones(3, 8, 4)
    states[:, 4:, 2] = -1.0  # every sequence bounces into frame 4
    bounce = bounce_frames(states)
    masks = torch.zeros(3, 8)
    masks[:, :2] = 1
    out = error_near_bounces({"m": (_WrongAfterBounces(bounce), "filter")}, _Data(obs, states),
                             masks, batch=2)
    assert out["m"] == {"bounce": 1.0, "free": 0.0}
    assert out["frames"] == {"bounce": 3.0, "free": 15.0}


def test_wrong_pixel_fraction_counts_only_unobserved_frames():
    truth = torch.zeros(1, 3, 1, 2, 2)
    pred = truth.clone()
    pred[0, 0] = 1.0  # observed frame, all wrong: ignored
    pred[0, 2, 0, 0, 0] = 1.0  # one of 4 pixels wrong in an unobserved frame
    mask = torch.tensor([[1.0, 0.0, 0.0]])
    assert wrong_pixels_per_frame(pred, truth).tolist() == [[1.0, 0.0, 0.25]]
    assert wrong_pixel_fraction(pred, truth, mask) == 0.125


def test_imputation_experiment_builds_the_vaernn_with_xavier_init_by_default():
    """PyTorch's init collapsed the 6000-update VAE-RNN (session 4); the experiment defaults to xavier."""
    from experiments.kvae_imputation import build_vaernn, parse_args

    args = parse_args([])
    assert args.vaernn_init == "xavier"
    model = build_vaernn((1, 32, 32), 2, args.vaernn_init)
    assert model.config.init == "xavier"
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    assert biases and all(float(b.abs().max()) == 0.0 for b in biases)  # Glorot weights, zero conv biases
    torch_init = build_vaernn((1, 32, 32), 2, parse_args(["--vaernn-init", "torch"]).vaernn_init)
    assert any(float(m.bias.abs().max()) > 0 for m in torch_init.modules() if isinstance(m, torch.nn.Conv2d))


def test_scores_of_a_seed_are_kept_and_reused_only_for_the_same_runs(tmp_path, monkeypatch, one_thread):
    import json

    from experiments import kvae_imputation as exp

    argv = ["--quick", "--seeds", "0", "--run-dir", str(tmp_path / "run"), "--out-dir", str(tmp_path / "out")]
    assert exp.main(argv) == 0
    saved = tmp_path / "run" / "seed_0" / exp.SCORES_FILE
    first = json.loads((tmp_path / "out" / "kvae_imputation.json").read_text())["results"]["per_seed"]["0"]
    assert json.loads(saved.read_text())["scores"]["headline"] == first["headline"]

    def no_scoring(*a, **k):
        raise AssertionError("scored again although the runs did not change")

    monkeypatch.setattr(exp, "score_seed", no_scoring)
    assert exp.main(argv) == 0  # a resumed run reads the kept scores
    again = json.loads((tmp_path / "out" / "kvae_imputation.json").read_text())["results"]["per_seed"]["0"]
    assert again["headline"] == first["headline"]
    # scores of other runs (another config hash) are not reused
    key = json.loads(saved.read_text())
    key["key"]["runs"]["kvae"] = "0" * 16
    saved.write_text(json.dumps(key))
    assert exp.cached_scores(saved.parent, exp.parse_args(argv), 16) is None
