"""Frames to pictures: tiling sequences into grids and writing mp4/gif with moviepy."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic_io import atomic_path

if TYPE_CHECKING:
    import torch


def to_uint8_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Normalise a clip to ``[T, H, W, 3]`` uint8.

    Accepts ``[T, H, W]``, ``[T, H, W, C]`` or ``[T, C, H, W]`` (C in {1, 3}), float in [0, 1]
    or uint8. Torch tensors are converted with ``.detach().cpu().numpy()``.
    """
    if not isinstance(frames, np.ndarray) and hasattr(frames, "detach"):
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


def tile_clips(rows: Sequence[Sequence[np.ndarray]], pad: int = 1, scale: int = 1,
               col_labels: Sequence[str] | None = None, row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Tile equal-length clips into one clip: ``rows[i][j]`` goes to grid cell (i, j).

    Each clip is anything ``to_uint8_frames`` accepts; all must share T, H and W.
    Returns ``[T, rows*(H+pad)+pad, cols*(W+pad)+pad, 3]`` uint8 upscaled by ``scale``, with a
    header strip naming the columns (``col_labels``) and a left strip naming the rows
    (``row_labels``) when given; labels are drawn after upscaling so they stay legible.
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
    if col_labels is not None:
        if len(col_labels) != n_cols:
            raise ValueError(f"col_labels: expected {n_cols} labels, got {len(col_labels)}")
        centres = [(pad + j * (W + pad) + W / 2) * scale for j in range(n_cols)]
        strip = _label_strip(out.shape[2], LABEL_HEIGHT, list(col_labels), centres)
        out = np.concatenate([np.broadcast_to(strip, (T, *strip.shape)), out], axis=1)
    if row_labels is not None:
        if len(row_labels) != n_rows:
            raise ValueError(f"row_labels: expected {n_rows} labels, got {len(row_labels)}")
        top = LABEL_HEIGHT if col_labels is not None else 0
        width = 6 * max(len(lab) for lab in row_labels) + 6
        strip = np.full((out.shape[1], width, 3), 255, np.uint8)
        for i, lab in enumerate(row_labels):
            y = top + int((pad + i * (H + pad) + H / 2) * scale) - LABEL_HEIGHT // 2
            strip[y : y + LABEL_HEIGHT] = _label_strip(width, LABEL_HEIGHT, [lab], [width / 2])[: out.shape[1] - y]
        out = np.concatenate([np.broadcast_to(strip, (T, *strip.shape)), out], axis=2)
    return np.ascontiguousarray(out)


#: height in pixels of a label strip drawn by `tile_clips`
LABEL_HEIGHT = 14


def _label_strip(width: int, height: int, labels: list[str], centres: list[float]) -> np.ndarray:
    """A white ``[height, width, 3]`` uint8 strip with each label centred at its x position."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for text, cx in zip(labels, centres):
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = max(0, min(width - (right - left), int(cx - (right - left) / 2)))
        draw.text((x, (height - (bottom - top)) // 2 - top), text, fill=(0, 0, 0), font=font)
    return np.asarray(img, dtype=np.uint8)


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
