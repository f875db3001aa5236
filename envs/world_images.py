"""World images for image navigation: a seeded procedural generator and user image folders.

Every function returns RGB ``uint8`` images ``[size, size, 3]`` (HWC).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Image file suffixes read from a folder (``.npy`` with numpy, the others with Pillow).
IMAGE_SUFFIXES = (".npy", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


def _spectral_noise(rng: np.random.Generator, size: int, channels: int, beta: float) -> np.ndarray:
    """Gaussian noise with a ``1 / f^beta`` power spectrum, ``[channels, size, size]``, unit std."""
    f = np.fft.fftfreq(size)
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    fr[0, 0] = 1.0
    amp = fr ** (-beta / 2.0)
    amp[0, 0] = 0.0
    spec = (rng.standard_normal((channels, size, size)) + 1j * rng.standard_normal((channels, size, size))) * amp
    x = np.fft.ifft2(spec).real
    x -= x.mean(axis=(1, 2), keepdims=True)
    x /= x.std(axis=(1, 2), keepdims=True) + 1e-12
    return x


def procedural_world(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A random natural-looking RGB image ``uint8 [size, size, 3]``, a pure function of ``rng``.

    Coloured ``1/f^beta`` noise (beta ~ U(2.2, 3.2), channels mixed through a random colour
    matrix) under a few soft-edged ellipses and rectangles of random colours, contrast-stretched
    to the full range. Unlimited and varied, so each 8x8 view has local landmarks.
    """
    beta = rng.uniform(2.2, 3.2)
    noise = _spectral_noise(rng, size, 3, beta)  # [3, S, S]
    mix = rng.normal(0.0, 1.0, (3, 3)) * 0.5 + np.eye(3) * rng.uniform(0.3, 1.0)
    img = np.einsum("cd,dhw->hwc", mix, noise) * rng.uniform(0.15, 0.3) + rng.uniform(0.2, 0.8, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    for _ in range(rng.integers(2, 7)):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(2.0, size / 3, 2)
        color = rng.uniform(0.0, 1.0, 3)
        if rng.random() < 0.5:  # ellipse
            d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
            edge = (1.0 - d) * min(rx, ry)
        else:  # axis-aligned rectangle
            edge = np.minimum(rx - np.abs(xx - cx), ry - np.abs(yy - cy))
        alpha = np.clip(edge + 0.5, 0.0, 1.0)[..., None] * rng.uniform(0.6, 1.0)
        img = img * (1 - alpha) + color * alpha
    lo, hi = np.percentile(img, 1), np.percentile(img, 99)
    img = (img - lo) / max(hi - lo, 1e-6)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix averaging input pixels over each output pixel's footprint."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    w = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``img`` (``[H, W]``, ``[H, W, C]``) to a square and area-resample to ``size``.

    Returns RGB ``uint8 [size, size, 3]`` (grey is repeated, alpha dropped).
    """
    x = np.asarray(img)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[2] not in (1, 3, 4) or min(x.shape[:2]) < 1:
        raise ValueError(f"img: expected [H, W], [H, W, 1|3|4], got shape {x.shape}")
    x = x[..., :3] if x.shape[2] == 4 else x
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    if x.dtype != np.uint8:
        xf = x.astype(np.float64)
        x = xf * 255.0 if xf.max(initial=0.0) <= 1.0 else xf
    h, w = x.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = np.asarray(x[top : top + s, left : left + s], dtype=np.float64)
    wm = _area_weights(s, size)
    out = np.einsum("ih,hwc,jw->ijc", wm, x, wm)
    return (np.clip(out, 0.0, 255.0) + 0.5).astype(np.uint8)


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files in ``folder`` (not recursive).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no file with a suffix in ``IMAGE_SUFFIXES``.
    """
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"image folder {str(p)!r} does not exist or is not a directory")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {str(p)!r} holds no images (expected files ending in "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return files


def load_image(path: str | os.PathLike, size: int = 32) -> np.ndarray:
    """Read one image file and resize it to ``uint8 [size, size, 3]``.

    ``.npy`` files hold one ``[H, W(, C)]`` array; other formats are decoded with Pillow (an
    optional dependency, imported only here). Unreadable files raise ``ValueError`` naming them.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            try:
                from PIL import Image  # optional, only for user image folders
            except ImportError as e:  # pragma: no cover - Pillow ships with matplotlib
                raise ImportError(f"reading {path.name!r} needs Pillow (pip install pillow), "
                                  "or convert the images to .npy files") from e
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        return resize_square(arr, size)
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from e
