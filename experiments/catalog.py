"""The experiments this package ships: one entry per script, with what it measures and its cost.

``python -m experiments`` prints this list; ``python -m experiments.<name>`` runs one from scratch
and ``python -m experiments.<name> --quick`` runs its smoke size (what CI runs). Times are wall
clock on a 2-core CPU, one thread per process; quick times were measured with the CPU shared by
other jobs (an idle CPU is faster). The full sizes of the training experiments are dominated by
training and scale with ``--steps`` and the number of ``--seeds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Experiment:
    """One experiment script.

    Attributes:
        name: module name under ``experiments`` (``python -m experiments.<name>``).
        description: one line: what it measures.
        full_time: wall time of the default (full) size, in words.
        quick_time: wall time of ``--quick``, in words.
        kind: ``"headline"`` (a number the README reports, under the evaluation protocol),
            ``"study"`` (a supporting experiment) or ``"benchmark"`` (speed).
        run_dir: whether the script takes ``--run-dir`` (it trains or caches something).
        quick_args: extra arguments of the quick size beyond ``--quick`` (CI adds output folders).
    """

    name: str
    description: str
    full_time: str
    quick_time: str
    kind: Literal["headline", "study", "benchmark"]
    run_dir: bool = True
    quick_args: tuple[str, ...] = ()


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("kvae_imputation", "KVAE imputation (thesis fig. 6.3): smoothing, filtering vs VAE-RNN, AE-RNN, "
               "mean frame; 3 training seeds", "~40 min per training seed (3 seeds; ~3 h each on a loaded CPU)",
               "~1 min", "headline"),
    Experiment("kvae_pendulum_elbo", "pendulum test ELBO (thesis table 6.1): KVAE CNN/MLP vs DVBF vs DMM; "
               "3 training seeds", "~30 min per training seed (3 seeds; ~75 min each on a loaded CPU)", "~30 s",
               "headline"),
    Experiment("gtmsm_navigation", "GTM-SM 256-step prediction in image navigation (thesis 7.4.1): the thesis "
               "model and the frames-posterior variant vs a trained VAE-RNN, a trained memoryless state-space "
               "model, the mean frame and the reconstruction floor; 3 training seeds",
               "~65 min (3 seeds x 4 models x 2000 updates, one thread; ~90 min on a heavily loaded CPU)", "~10 s",
               "headline"),
    Experiment("pendulum_swingup", "pendulum swing-up from pixels with latent MPC, normalised score vs the "
               "oracle on held-out starts; 3 training seeds", "~1.5 h (estimate)", "~30 s", "headline"),
    Experiment("sb3_in_model", "Stable-Baselines3 SAC trained only inside the pendulum KVAE, evaluated from pixels "
               "on held-out starts vs random torques and SAC on the real env for the same wall time; 3 training "
               "seeds", "~25 min per training seed on a loaded CPU (~12 min when pendulum_swingup's models are "
               "reused)", "~30 s", "headline"),
    Experiment("navigation_goal", "image-navigation goal rate with GTM-SM's memory vs a random walk and an "
               "oracle on held-out episodes; 3 training seeds (gtmsm_navigation's thesis models)",
               "~4 min after gtmsm_navigation (its models are reused), ~20 min alone", "~5 s", "headline"),
    Experiment("navigation_actor", "image-navigation goal rate of a goal-conditioned discrete actor trained only "
               "in GTM-SM's imagination vs GTM-SM's CEM planner, a random walk and an oracle on navigation_goal's "
               "held-out episodes, with decisions/s; 3 training seeds",
               "~20 min after gtmsm_navigation (its models are reused)", "~10 s", "headline"),
    Experiment("demo_robustness", "the demo's swing-up recipe over training seeds x RL rounds x horizons "
               "(chosen on tuning starts, reported on held-out ones)", "~3 h", "~30 s", "study"),
    Experiment("kvae_scenes", "KVAE on the gravity and polygon scenes (thesis 6.5.3): alpha maps, "
               "generations, smoothing vs filtering", "~1 h", "~30 s", "study"),
    Experiment("ball_to_target", "bouncing ball pushed to a target by latent MPC vs an oracle and random "
               "forces", "~1 h", "~20 s", "study"),
    Experiment("vaernn_init_check", "whether the VAE-RNN baseline collapses under an initialisation",
               "~20 min", "~5 s", "study"),
    Experiment("bench_kvae_epoch", "KVAE training epoch time vs the VAE alone", "~5 min", "~30 s",
               "benchmark", run_dir=False),
    Experiment("bench_kalman", "batched Kalman smoother timings vs dynamax and pykalman", "~5 min", "~2 s",
               "benchmark", run_dir=False),
    Experiment("bench_dnd", "DND reads/s vs one faiss index per memory", "~3 min", "~2 s", "benchmark",
               run_dir=False),
    Experiment("bench_envs", "environment step/render rates and dataset generation time", "~3 min", "~3 s",
               "benchmark", run_dir=False),
    Experiment("bench_model_env", "imagined env-steps/s of the model-as-environment wrapper (stepwise vs "
               "re-imagining)", "~5 min", "~10 s", "benchmark", run_dir=False),
    Experiment("gpu_check", "the GPU path end to end: AMP training, evaluation, planning, DDP, parallel Kalman "
               "(--device cpu on a CPU)", "~5 min on a GPU", "~1.5 min", "benchmark", run_dir=False,
               quick_args=("--device", "cpu")),
    Experiment("bench_planning", "latent MPC decisions per second, the time split by stage and the ratio to "
               "the compute floor (FLOPs per decision over the measured matmul peak)",
               "~5 min", "~3 s", "benchmark", run_dir=False),
)

HEADLINES: tuple[str, ...] = tuple(e.name for e in EXPERIMENTS if e.kind == "headline")


def get(name: str) -> Experiment:
    """The catalog entry ``name``; ``KeyError`` naming the known ones otherwise."""
    for e in EXPERIMENTS:
        if e.name == name:
            return e
    raise KeyError(f"unknown experiment {name!r}; known: {', '.join(e.name for e in EXPERIMENTS)}")
