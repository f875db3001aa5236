"""experiments.gtmsm_navigation: several training seeds of every model in config-hashed, resumable
run folders; predictions scored against the right frames; claims read the right way round."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments import gtmsm_navigation as nav
from experiments import tables
from experiments.protocol import ConfigMismatchError, Protocol


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    generate = pytest.importorskip("worldmodels.envs.generate")
    root = tmp_path_factory.mktemp("data") / "image_navigation_small"
    generate.generate_dataset("image_navigation_small", root, num_workers=1, progress=False)
    return root


def quick(tmp_path, small_data, *extra: str) -> list[str]:
    return ["--quick", "--data-dir", str(small_data), "--run-dir", str(tmp_path / "run"),
            "--out-dir", str(tmp_path / "res"), "--no-progress", *extra]


def test_quick_run_reports_every_model_per_seed_and_resumes(tmp_path, small_data, one_thread):
    assert nav.main(quick(tmp_path, small_data)) == 0
    rec = json.loads((tmp_path / "res" / "gtmsm_navigation.json").read_text())
    res, proto = rec["results"], Protocol.from_json(rec["protocol"])
    assert proto.training_seeds == (0, 1, 2) and proto.is_headline
    assert proto.tuning is not None and proto.tuning.namespace == "image_navigation_small/valid sequence"
    assert proto.evaluation.namespace == "image_navigation_small/test sequence"
    assert proto.evaluation.seeds == tuple(range(6))
    methods = res["headline"]["per_method"]
    assert set(methods) == {nav.LABELS[k] for k in (*nav.MODELS, "mean_frame", "floor")}
    for s in ("0", "1", "2"):
        scores = res["per_seed"][s]
        assert scores["n_sequences"] == 6
        assert all(len(curve) == 32 for curve in scores["per_step"].values())  # --test-predict of --quick
        # the headline is the per-seed mean of the per-step curve
        for k, v in scores["mse"].items():
            assert v == pytest.approx(float(np.mean(scores["per_step"][k])), rel=1e-5)
        assert set(scores["r2_memorised_states"]) == {"gtmsm", "gtmsm_frames", "ssm_learned_prior"}
        for k in nav.MODELS:
            folder = tmp_path / "run" / f"seed_{s}" / k
            assert (folder / "config_hash.txt").is_file() and (folder / "checkpoints" / "last.pt").is_file()
    # the seeds train different models
    assert len({res["per_seed"][s]["mse"]["gtmsm"] for s in ("0", "1", "2")}) == 3
    assert rec["results"]["budget"]["scale_vs_paper"] == pytest.approx(3 * 4 / (50000 * 16))

    # the results page shows the R^2 of the states beside the headline
    page = "\n".join(tables.headline_section("gtmsm_navigation", rec))
    assert "R^2 of the affine map from memorised states" in page and "R^2 of the affine map from predicted" in page
    assert page.count(f"| {nav.LABELS['ssm_learned_prior']} |") == 3

    # a second run reuses the trained folders (no update is made) and scores the same
    ckpt = tmp_path / "run" / "seed_1" / "vae_rnn" / "checkpoints" / "last.pt"
    before = ckpt.stat().st_mtime_ns
    assert nav.main(quick(tmp_path, small_data)) == 0
    again = json.loads((tmp_path / "res" / "gtmsm_navigation.json").read_text())["results"]
    assert ckpt.stat().st_mtime_ns == before
    assert again["per_seed"] == res["per_seed"]
    # a folder trained under another configuration is never reused silently
    with pytest.raises(ConfigMismatchError):
        nav.main(quick(tmp_path, small_data, "--lr", "1e-3"))


class _Shifted:
    """A predictor returning the true frames ``lag`` steps late (0: a perfect predictor)."""

    def __init__(self, lag: int) -> None:
        self.lag = lag

    def predict(self, obs: torch.Tensor, actions: torch.Tensor, tau: int) -> torch.Tensor:
        return obs[:, tau - self.lag:obs.shape[1] - self.lag]


def test_evaluation_scores_the_frames_after_the_memorised_ones(small_data, one_thread):
    test = nav.ShardSequences(small_data, "test")
    torch.manual_seed(0)
    gtmsm = nav.GTMSM(nav.GTMSMConfig(tau=64, predict_steps=16)).eval()
    mean_frame = nav.ShardSequences(small_data, "train").mean_frame()
    models = {"gtmsm": gtmsm, "exact": _Shifted(0), "late": _Shifted(1)}
    scores, examples = nav.evaluate_seed(models, test, 64, 32, 5, 2, "cpu", mean_frame)  # type: ignore[arg-type]
    assert scores["n_sequences"] == 5
    assert scores["mse"]["exact"] == 0.0 and scores["mse"]["late"] > 0
    truth = test.batch(range(5)).obs[:, 64:96]
    want = float(((mean_frame - truth) ** 2).mean())
    assert scores["mse"]["mean_frame"] == pytest.approx(want, rel=1e-5)
    assert examples["truth"].shape == (2, 32, 3, 8, 8)
    assert -1.0 <= scores["r2_memorised_states"]["gtmsm"] <= 1.0


def _per_seed(gtmsm, mean_frame, floor, vae_rnn, ssm):
    out = {}
    for i in range(3):
        mse = {"gtmsm": gtmsm[i], "mean_frame": mean_frame[i], "floor": floor[i], "vae_rnn": vae_rnn[i],
               "ssm_learned_prior": ssm[i]}
        out[i] = {"mse": mse, "per_step": {k: [v, v] for k, v in mse.items()},
                  "r2_memorised_states": {"gtmsm": 0.9, "ssm_learned_prior": 0.5},
                  "r2_predicted_states": {"gtmsm": 0.8, "ssm_learned_prior": 0.4}}
    return out


def test_claims_compare_gtmsm_with_the_baselines_the_right_way_round():
    names = ["gtmsm", "vae_rnn", "ssm_learned_prior", "mean_frame", "floor"]
    good = nav.summarize_seeds(_per_seed([0.010, 0.011, 0.012], [0.05] * 3, [0.009, 0.0095, 0.010],
                                         [0.040, 0.045, 0.050], [0.030, 0.031, 0.029]), names)
    verdicts = {c["statement"]: c["verdict"] for c in good["claims"]}
    assert all(v == "holds" for v in verdicts.values()), verdicts
    assert len(verdicts) == 5  # no variant claim without the variant
    bad = nav.summarize_seeds(_per_seed([0.060, 0.061, 0.062], [0.05] * 3, [0.009, 0.0095, 0.010],
                                        [0.040, 0.045, 0.050], [0.030, 0.031, 0.029]), names)
    assert all(c["verdict"] == "does not hold" for c in bad["claims"])
    assert good["headline"]["lower_is_better"]
    r2 = {m["metric"]: m["per_method"] for m in good["secondary"]}
    assert all(set(v) == {nav.LABELS["gtmsm"], nav.LABELS["ssm_learned_prior"]} for v in r2.values())
