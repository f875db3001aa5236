"""Frames to pictures: tiling sequences into grids and writing mp4/gif with moviepy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic_io import atomic_path


def to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """Normalise a clip to ``[T, H, W, 3]`` uint8.

    Accepts ``[T, H, W]``, ``[T, H, W, C]`` or ``[T, C, H, W]`` (C in {1, 3}), float in [0, 1]
    or uint8. Torch tensors are converted with ``.detach().cpu().numpy()``.
    """
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    x = np.asarray(frames)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"frames: expected 3 or 4 dims [T, H, W(, C)], got shape {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = np.transpose(x, (0, 2, 3, 1))
    if x.dtype != np.uint8:
        x = (np.clip(x.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x


def tile_clips(rows: Sequence[Sequence[np.ndarray]], pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile equal-length clips into one clip: ``rows[i][j]`` goes to grid cell (i, j).

    Each clip is anything ``to_uint8_frames`` accepts; all must share T, H and W.
    Returns ``[T, rows*(H+pad)+pad, cols*(W+pad)+pad, 3]`` uint8 upscaled by ``scale``.
    """
    clips = [[to_uint8_frames(c) for c in row] for row in rows]
    T, H, W, _ = clips[0][0].shape
    n_rows, n_cols = len(clips), max(len(r) for r in clips)
    out = np.full((T, n_rows * (H + pad) + pad, n_cols * (W + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(clips):
        for j, c in enumerate(row):
            if c.shape != (T, H, W, 3):
                raise ValueError(f"clip ({i}, {j}): expected {(T, H, W, 3)}, got {c.shape}")
            y, x = pad + i * (H + pad), pad + j * (W + pad)
            out[:, y : y + H, x : x + W] = c
    if scale > 1:
        out = out.repeat(scale, axis=1).repeat(scale, axis=2)
    return out


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 10.0, scale: int = 1) -> Path:
    """Write a clip to ``path`` (``.mp4`` or ``.gif``) atomically; returns the path.

    ``frames`` is anything ``to_uint8_frames`` accepts; ``scale`` upsamples by pixel repetition
    (small frames such as 16x16 are unreadable otherwise). H.264 needs even sizes: the clip is
    padded by one white row/column where needed.
    """
    from moviepy import ImageSequenceClip  # moviepy imports slowly; keep it out of module import

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"path: expected a .mp4 or .gif file name, got {path.name!r}")
    x = to_uint8_frames(frames)
    if scale > 1:
        x = x.repeat(scale, axis=1).repeat(scale, axis=2)
    if suffix == ".mp4" and (x.shape[1] % 2 or x.shape[2] % 2):
        x = np.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)), constant_values=255)
    with atomic_path(path, suffix=suffix) as tmp:
        clip = ImageSequenceClip(list(x), fps=fps)
        if suffix == ".mp4":
            clip.write_videofile(str(tmp), codec="libx264", audio=False, logger=None, preset="medium",
                                 ffmpeg_params=["-pix_fmt", "yuv420p"])
        else:
            clip.write_gif(str(tmp), fps=fps, logger=None)
    return path
