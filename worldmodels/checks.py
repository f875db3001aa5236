"""Input validation shared by every public function: clear errors naming the argument."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from worldmodels.base import Batch


def check_shape(name: str, x: torch.Tensor, expected: Sequence[int | str | None]) -> None:
    """Raise ``ValueError`` unless ``x`` has ``len(expected)`` dims matching ``expected``.

    Entries of ``expected`` are ints (exact size), or strings/None (any size; strings are
    only labels that appear in the message, e.g. ``("B", "T", 3, 32, 32)``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    shape = tuple(x.shape)
    ok = len(shape) == len(expected) and all(
        e is None or isinstance(e, str) or s == e for s, e in zip(shape, expected)
    )
    if not ok:
        want = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
        raise ValueError(f"{name}: expected shape {want}, got {list(shape)}")


def frame_shape(shape: Sequence[int], name: str = "obs_shape") -> tuple[int, int, int]:
    """``shape`` as a frame shape ``(C, H, W)`` of ints; ``ValueError`` naming ``name`` unless it
    has three entries."""
    s = tuple(int(v) for v in shape)
    if len(s) != 3:
        raise ValueError(f"{name}: expected (C, H, W), got {s}")
    return s[0], s[1], s[2]


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or inf."""
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")


def check_sequences(obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None,
                    obs_shape: Sequence[int], action_dim: int) -> torch.Tensor:
    """Validate a model's inputs ``obs [B, T, *obs_shape]``, ``actions [B, T, action_dim]`` and
    ``mask [B, T]`` (None: all observed); returns the mask as a float tensor of ``obs``'s dtype."""
    check_shape("obs", obs, ("B", "T", *obs_shape))
    B, T = obs.shape[:2]
    check_shape("actions", actions, (B, T, action_dim))
    if mask is None:
        return obs.new_ones(B, T)
    check_shape("mask", mask, (B, T))
    return mask.to(obs.dtype)


MinObserved = Literal["none", "batch", "sequence"]


def model_dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s first floating parameter or buffer (the dtype its
    inputs must have); ``torch.get_default_dtype()`` for a module without any."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def model_method(model: torch.nn.Module, name: str) -> Callable[..., Any]:
    """``model.<name>``, a method that a model may offer beyond ``nn.Module`` (``loss``,
    ``predict``, ``impute``...); a ``TypeError`` naming the model when it has none."""
    fn: Callable[..., Any] | None = getattr(model, name, None)
    if not callable(fn):
        raise TypeError(f"model: {type(model).__name__} has no {name}() method")
    return fn


def frames_to_float(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Frames stored as 8-bit integers (0-255, any shape) as floats in [0, 1] of ``dtype``."""
    if frames.dtype != torch.uint8:
        raise TypeError(f"frames: expected dtype torch.uint8 (values 0-255), got {frames.dtype}")
    return frames.to(dtype).div_(255.0)


def _frame_error(name: str, bad: torch.Tensor, lo: torch.Tensor,
                 hi: torch.Tensor, value_range: tuple[float, float] | None) -> ValueError:
    """The ``ValueError`` for the first observed frame in ``bad [B, T]`` (error path only)."""
    b, t = (int(i) for i in bad.nonzero()[0])
    where = f"frame (batch {b}, step {t}) is observed (mask > 0)"
    low, high = float(lo[b, t]), float(hi[b, t])
    if not (math.isfinite(low) and math.isfinite(high)):
        return ValueError(f"{name}: {where} but holds NaN or inf; give missing frames mask 0 "
                          "(their values are then ignored)")
    r0, r1 = value_range  # type: ignore[misc]
    hint = (" (frames stored as 0-255 need dividing by 255: worldmodels.checks.frames_to_float)"
            if high > r1 and high <= 255.0 and low >= 0.0 else "")
    return ValueError(f"{name}: values must lie in [{r0:g}, {r1:g}] at observed steps; {where} "
                      f"and spans [{low:g}, {high:g}]{hint}")


def check_frames(obs: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype | None = None,
                 name: str = "obs", *, min_observed: MinObserved = "none",
                 observed_before: int | None = None,
                 value_range: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """Validate a model's frames ``obs [B, T, ...]`` against ``mask [B, T]`` (None: all observed)
    and return them with NaN/inf at masked steps replaced by zeros.

    Raises ``TypeError`` unless ``obs`` is a floating tensor of ``dtype`` (the model's: see
    ``model_dtype``; uint8 frames point to ``frames_to_float``), ``ValueError`` if ``mask``
    is not ``[B, T]`` with values in [0, 1], if an observed frame (mask > 0) holds NaN/inf or a
    value outside ``value_range`` (None: any finite value), or if too few frames are observed:
    ``min_observed`` "batch" needs one observed frame in the batch, "sequence" one per sequence,
    among the first ``observed_before`` steps when given. Values at masked steps are never
    checked; non-finite ones become 0, so the result equals the same input with zeros there.

    Cost: one pass over ``obs`` (a per-frame min/max) and one device sync per call.
    """
    if not isinstance(obs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(obs).__name__}")
    want = "a floating dtype" if dtype is None else f"dtype {dtype} (the model's)"
    if obs.dtype == torch.uint8:
        raise TypeError(f"{name}: expected {want} with values in [0, 1], got torch.uint8; "
                        "divide by 255 first (worldmodels.checks.frames_to_float)")
    if not obs.is_floating_point():
        raise TypeError(f"{name}: expected {want} with values in [0, 1], got {obs.dtype}")
    if dtype is not None and obs.dtype != dtype:
        raise TypeError(f"{name}: expected {want}, got {obs.dtype}; cast the frames with "
                        f".to({dtype}) or the model with .to({obs.dtype})")
    if obs.dim() < 3 or obs.shape[0] == 0 or obs.shape[1] == 0:
        raise ValueError(f"{name}: expected shape [B, T, ...] with B, T >= 1, got {list(obs.shape)}")
    B, T = obs.shape[:2]
    if mask is not None:
        check_shape("mask", mask, (B, T))
        if mask.device != obs.device:
            raise ValueError(f"mask: expected on {name}'s device {obs.device}, got {mask.device}")
    observed = torch.ones(B, T, dtype=torch.bool, device=obs.device) if mask is None else mask != 0
    lo, hi = torch.aminmax(obs.reshape(B, T, -1), dim=-1)  # [B, T]; NaN propagates
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    ok = finite if value_range is None else (lo >= value_range[0]) & (hi <= value_range[1])
    bad = observed & ~ok
    counted = observed if observed_before is None else observed[:, :observed_before]
    flags = {"bad": bad.any(), "nonfinite": (~finite).any()}
    if mask is not None and mask.dtype != torch.bool:
        flags["mask"] = ~((mask >= 0) & (mask <= 1)).all()  # NaN fails both comparisons
    if min_observed == "batch":
        flags["none_observed"] = ~counted.any()
    elif min_observed == "sequence":
        flags["none_observed"] = ~counted.any(dim=1).all()
    elif min_observed != "none":
        raise ValueError(f"min_observed: expected 'none', 'batch' or 'sequence', got {min_observed!r}")
    found = dict(zip(flags, torch.stack(list(flags.values())).tolist()))  # the one sync
    if found.get("mask"):
        raise ValueError("mask: expected values in [0, 1] (1 = observed, 0 = missing)")
    if found["bad"]:
        raise _frame_error(name, bad, lo, hi, value_range)
    if found.get("none_observed"):
        steps = "" if observed_before is None else f" among the first {observed_before} steps"
        if min_observed == "batch":
            raise ValueError(f"mask: no frame of the batch is observed{steps} (mask is all 0); "
                             "the model needs at least one observed frame")
        b = int((~counted.any(dim=1)).nonzero()[0, 0])
        raise ValueError(f"mask: sequence {b} has no observed frame{steps} (mask is all 0 there); "
                         "the model needs at least one observed frame in every sequence")
    return torch.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0) if found["nonfinite"] else obs


def check_batch_frames(batch: Batch, dtype: torch.dtype | None = None, *,
                       min_observed: MinObserved = "batch",
                       value_range: tuple[float, float] | None = (0.0, 1.0)) -> Batch:
    """``check_frames`` on ``batch.obs`` and ``batch.mask`` of a ``worldmodels.base.Batch``
    (for losses: at least one observed frame by default); the batch with the cleaned frames."""
    obs = check_frames(batch.obs, batch.mask, dtype, "batch.obs", min_observed=min_observed,
                       value_range=value_range)
    return batch if obs is batch.obs else dataclasses.replace(batch, obs=obs)
