"""Video grids: clips land in their cells, and labelled columns/rows carry readable text strips."""

from __future__ import annotations

import numpy as np
import pytest

from worldmodels.video import LABEL_HEIGHT, tile_clips


def clips(rows: int, cols: int, T: int = 3, size: int = 8) -> list[list[np.ndarray]]:
    return [[np.full((T, 1, size, size), (i * cols + j + 1) / (rows * cols + 1)) for j in range(cols)]
            for i in range(rows)]


def test_cells_hold_their_clips_and_labels_add_strips_without_moving_them():
    plain = tile_clips(clips(2, 3), pad=1, scale=2)
    labelled = tile_clips(clips(2, 3), pad=1, scale=2, col_labels=["truth", "prediction", "|error|"],
                          row_labels=["a", "b"])
    T, Hp, Wp, _ = plain.shape
    assert labelled.shape[0] == T and labelled.shape[1] == Hp + LABEL_HEIGHT and labelled.shape[2] > Wp
    left = labelled.shape[2] - Wp
    assert np.array_equal(labelled[:, LABEL_HEIGHT:, left:], plain)  # the grid itself is unchanged
    header = labelled[0, :LABEL_HEIGHT, left:]
    for j in range(3):  # each column's header has dark text pixels above that column
        x0, x1 = (1 + j * 9) * 2, (1 + j * 9 + 8) * 2
        assert (header[:, x0:x1] < 100).any(), f"no label drawn above column {j}"
    assert (labelled[0, LABEL_HEIGHT:, :left] < 100).any()  # row labels drawn


def test_wrong_number_of_labels_is_refused():
    with pytest.raises(ValueError, match="col_labels: expected 3"):
        tile_clips(clips(1, 3), col_labels=["a", "b"])
    with pytest.raises(ValueError, match="row_labels: expected 2"):
        tile_clips(clips(2, 1), row_labels=["a"])
