"""Training machinery shared by every world model: `Trainer`, `TrainConfig`, checkpoints, `load`.

>>> from worldmodels.training import Trainer, TrainConfig, load
>>> summary = Trainer(model, TrainConfig(steps=1000), "runs/x", "runs/data/bouncing_ball").fit()
>>> model = load("runs/x/checkpoints/best.pt", device="cuda")
"""

from .checkpoint import CheckpointError, load, read_checkpoint, save_checkpoint
from .config import TrainConfig, config_from_dict, config_to_dict
from .metrics_log import MetricsLogger, read_metrics
from .run_dir import RunExistsError, run_state
from .schedules import lr_at, make_scheduler
from .trainer import Trainer, TrainingDiverged

__all__ = ["Trainer", "TrainConfig", "TrainingDiverged", "CheckpointError", "RunExistsError", "run_state", "load",
           "read_checkpoint", "save_checkpoint", "config_from_dict", "config_to_dict", "MetricsLogger", "read_metrics",
           "lr_at", "make_scheduler"]
