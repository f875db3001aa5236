import pytest
import torch

from worldmodels.base import Batch
from worldmodels.checks import check_shape


def test_check_shape_names_argument_and_shapes():
    with pytest.raises(ValueError, match=r"obs: expected shape \[B, T, 3\], got \[2, 5, 4\]"):
        check_shape("obs", torch.zeros(2, 5, 4), ("B", "T", 3))
    check_shape("obs", torch.zeros(2, 5, 3), ("B", "T", 3))


def test_batch_to_casts_only_floats():
    b = Batch(obs=torch.zeros(2, 3, 1, 4, 4), actions=torch.zeros(2, 3, 1),
              mask=torch.ones(2, 3, dtype=torch.bool))
    b64 = b.to("cpu", torch.float64)
    assert b64.obs.dtype == torch.float64 and b64.mask.dtype == torch.bool
    assert b64.rewards is None and b64.num_frames() == 6
