"""Input validation shared by every public function: clear errors naming the argument."""

from __future__ import annotations

from typing import Sequence

import torch


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
