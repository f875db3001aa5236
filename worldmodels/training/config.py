"""The trainer's configuration dataclass and (de)serialisation of config dataclasses."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SCHEDULES = ("constant", "staircase", "linear")
OPTIMIZERS = ("adam", "adamw")


@dataclass
class TrainConfig:
    """Everything the `Trainer` needs besides the model and the data.

    Units: ``steps`` are optimiser updates; an epoch is one pass over the training set.
    ``batch_size`` is the *global* number of sequences per update, summed over DDP ranks and
    gradient-accumulation micro-steps (micro-batch = batch_size / (world_size * grad_accum)).
    """

    # length of training: give steps or epochs (steps wins when both are given)
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 32

    # optimiser
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    # learning-rate schedule: constant | staircase | linear
    schedule: str = "constant"
    decay_rate: float = 0.85  # staircase: lr *= decay_rate every `decay_every` units
    decay_every: int = 20
    decay_unit: str = "epochs"  # epochs | steps
    final_lr: float = 5e-5  # linear: lr goes linearly from `lr` to `final_lr` ...
    anneal_steps: int | None = None  # ... over this many updates (None: the whole run), then stays

    # parameter-group name (from model.parameter_groups()) -> epochs it stays frozen
    freeze: dict[str, int] = field(default_factory=dict)

    grad_clip: float | None = None  # max global gradient norm (None: no clipping)
    grad_accum: int = 1  # micro-steps per update
    amp: bool = False  # mixed precision (CUDA only; ignored on CPU)
    amp_dtype: str = "bfloat16"  # bfloat16 | float16 (float16 uses a GradScaler)

    # validation and early stopping
    val_every: int | None = None  # updates between validations (None: once per epoch)
    val_batches: int | None = None  # cap on validation batches (None: whole split)
    val_batch_size: int | None = None  # None: same as the micro-batch
    early_stopping_metric: str = "val/loss"
    early_stopping_mode: str = "min"  # min | max
    early_stopping_patience: int | None = None  # validations without improvement (None: off)
    restore_best: bool = True  # load the best weights into the model at the end of fit()

    # robustness
    max_bad_steps: int = 10  # consecutive non-finite steps before the run stops

    # reproducibility and hardware
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    # flush denormal floats to zero (process-wide, CPU): trained KVAEs produce denormals that make
    # CPU updates ~5x slower; the numerical effect is below float32 resolution of normal values
    flush_denormal: bool = True
    num_workers: int = 0
    ddp_find_unused_parameters: bool = False

    # logging and checkpoints
    log_every: int = 10
    checkpoint_every: int | None = 500
    progress: bool = True
    tensorboard: bool = True  # used when the tensorboard package is installed

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            raise ValueError("TrainConfig: give steps or epochs")
        for name in ("steps", "epochs"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"TrainConfig.{name}: expected >= 0, got {v}")
        if self.batch_size < 1:
            raise ValueError(f"TrainConfig.batch_size: expected >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        if self.decay_unit not in ("epochs", "steps"):
            raise ValueError(f"TrainConfig.decay_unit: expected 'epochs' or 'steps', got {self.decay_unit!r}")
        if self.decay_every < 1:
            raise ValueError(f"TrainConfig.decay_every: expected >= 1, got {self.decay_every}")
        if self.grad_accum < 1:
            raise ValueError(f"TrainConfig.grad_accum: expected >= 1, got {self.grad_accum}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"TrainConfig.amp_dtype: expected 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.early_stopping_mode not in ("min", "max"):
            raise ValueError("TrainConfig.early_stopping_mode: expected 'min' or 'max', "
                             f"got {self.early_stopping_mode!r}")
        if self.log_every < 1:
            raise ValueError(f"TrainConfig.log_every: expected >= 1, got {self.log_every}")
        if self.max_bad_steps < 1:
            raise ValueError(f"TrainConfig.max_bad_steps: expected >= 1, got {self.max_bad_steps}")
        for name in ("val_every", "val_batches", "val_batch_size", "checkpoint_every", "early_stopping_patience"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"TrainConfig.{name}: expected >= 1 or None, got {v}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"TrainConfig.grad_clip: expected > 0 or None, got {self.grad_clip}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.freeze = {str(k): int(v) for k, v in dict(self.freeze).items()}


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict of plain Python values (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config: expected a dataclass instance, got {type(config).__name__}")

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(config)


def _coerce(tp: Any, value: Any) -> Any:
    """Convert a plain value back to the annotated type (nested dataclasses, tuples)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                continue
            if isinstance(a, type) and dataclasses.is_dataclass(a) and isinstance(value, dict):
                return config_from_dict(a, value)
            if typing.get_origin(a) is tuple and isinstance(value, (list, tuple)):
                return _coerce(a, value)
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return config_from_dict(tp, value)
    if (origin is tuple or tp is tuple) and isinstance(value, (list, tuple)):
        if args and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v) for a, v in zip(args, value))
        return tuple(value)
    return value


def config_from_dict(cls: type, values: dict[str, Any], strict: bool = True) -> Any:
    """Rebuild config dataclass ``cls`` from ``values`` (inverse of `config_to_dict`).

    Unknown keys raise ``ValueError`` naming them when ``strict``; missing keys take defaults.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls: expected a dataclass type, got {cls!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown and strict:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: keep values as they are
        hints = {}
    kwargs = {k: _coerce(hints.get(k, Any), v) for k, v in values.items() if k in names}
    return cls(**kwargs)
