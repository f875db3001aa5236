"""Small numpy rasterisers for the pixel environments (no pygame).

Coordinates: a scene of ``size x size`` pixels with continuous coordinates ``(x, y)`` in
``[0, size]``, ``x`` to the right and ``y`` *up* (as in pymunk). Pixel ``(row i, col j)`` has its
centre at ``(x, y) = (j + 0.5, size - i - 0.5)``. All functions return ``float32`` or ``bool``
arrays of shape ``[size, size]``; callers convert to ``uint8``.
"""

from __future__ import annotations

import numpy as np


class PixelGrid:
    """Pixel-centre coordinates of a square image, cached once per environment.

    Attributes:
        x, y: ``[size, size]`` float64 pixel-centre coordinates (y up).
        xf, yf: the same, flattened to ``[size * size]``.
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"size: expected a positive image size, got {size}")
        self.size = int(size)
        j = np.arange(size, dtype=np.float64) + 0.5
        self.x = np.broadcast_to(j[None, :], (size, size)).copy()
        self.y = np.broadcast_to((size - j)[:, None], (size, size)).copy()
        self.xf = self.x.ravel()
        self._col_x = j.copy()  # x of each column
        self._row_y = size - j  # y of each row
        self.yf = self.y.ravel()

    def disc(self, cx: float, cy: float, radius: float) -> np.ndarray:
        """Binary disc: ``True`` where the pixel centre lies within ``radius`` of ``(cx, cy)``."""
        dx2 = self._col_x - cx
        dx2 *= dx2
        dy2 = self._row_y - cy
        dy2 *= dy2
        return np.add.outer(dy2, dx2) <= radius * radius

    def capsule_coverage(self, ax: float, ay: float, bx: float, by: float, half_width: float) -> np.ndarray:
        """Anti-aliased thick segment from ``a`` to ``b`` with round caps, coverage in [0, 1].

        Coverage is ``clip(half_width + 0.5 - d, 0, 1)`` with ``d`` the distance from the pixel
        centre to the segment: a one-pixel linear ramp at the edge (a cheap box-filter estimate).
        """
        dx, dy = bx - ax, by - ay
        px = self.xf - ax
        py = self.yf - ay
        den = dx * dx + dy * dy
        if den > 0.0:
            t = (px * dx + py * dy) * (1.0 / den)
            np.clip(t, 0.0, 1.0, out=t)
            px -= t * dx
            py -= t * dy
        d = np.sqrt(px * px + py * py)
        cov = (half_width + 0.5) - d
        np.clip(cov, 0.0, 1.0, out=cov)
        return cov.reshape(self.size, self.size)


class RodRenderer:
    """Fast anti-aliased rod from the image centre (the pendulum), ``uint8 [size, size, 1]``.

    Same coverage as ``PixelGrid.capsule_coverage`` (round caps, one-pixel edge ramp), computed
    with a handful of vector ops on precomputed pixel offsets: the projection of each pixel on
    the rod direction, clipped to the rod, gives the squared distance
    ``|p|^2 - 2 t (p.d) + t^2``.
    """

    def __init__(self, size: int, length: float, half_width: float):
        g = PixelGrid(size)
        c = size / 2.0
        self.size = size
        self.length = float(length)
        self._p = np.stack([g.xf - c, g.yf - c], axis=1)  # [size*size, 2]
        self._r2 = (self._p**2).sum(axis=1)
        self._k0 = (half_width + 0.5) * 255.0 + 0.5
        self._buf = np.empty(size * size)

    def __call__(self, dx: float, dy: float) -> np.ndarray:
        """Rod along the unit vector ``(dx, dy)`` (y up) -> grey frame ``uint8 [size, size, 1]``."""
        proj = self._p @ np.array([dx, dy])
        t = np.maximum(proj, 0.0)  # ufuncs, not np.clip: its Python wrapper costs more than the maths
        np.minimum(t, self.length, out=t)
        b = self._buf
        np.multiply(proj, -2.0, out=b)
        b += t
        b *= t
        b += self._r2
        np.maximum(b, 0.0, out=b)
        np.sqrt(b, out=b)
        b *= -255.0
        b += self._k0
        np.maximum(b, 0.0, out=b)
        np.minimum(b, 255.0, out=b)
        return b.astype(np.uint8).reshape(self.size, self.size, 1)


def rasterize_segments(size: int, segments, samples_per_px: int = 4) -> np.ndarray:
    """One-pixel-wide lines through the given segments ``[(x0, y0, x1, y1), ...]``: ``bool [size, size]``.

    Every pixel that a segment passes through is set (dense sampling along the segment).
    """
    img = np.zeros((size, size), dtype=bool)
    for x0, y0, x1, y1 in segments:
        n = max(2, int(np.ceil(np.hypot(x1 - x0, y1 - y0) * samples_per_px)) + 1)
        t = np.linspace(0.0, 1.0, n)
        xs = x0 + t * (x1 - x0)
        ys = y0 + t * (y1 - y0)
        cols = np.floor(xs).astype(int)
        rows = np.floor(size - ys).astype(int)
        ok = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
        img[rows[ok], cols[ok]] = True
    return img
