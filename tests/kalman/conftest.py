import pytest
import torch

from worldmodels.kalman import shared


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """The Kalman recursions run thousands of tiny ops; on a loaded 2-core machine intra-op
    threading makes them ~20x slower (OpenMP barriers), so these tests use one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    shared.COVARIANCE_CACHE.clear()          # every test starts without cached covariances
    yield
    torch.set_num_threads(old)
