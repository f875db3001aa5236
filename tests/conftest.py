import os

import pytest
import torch

# Tiny models run fastest single-threaded (thread start-up dominates), and CI has 2 cores.
TEST_THREADS = int(os.environ.get("WM_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def restore_threads():
    """Commands under test may set their own thread count; every test starts from the default."""
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture
def tmp_run(tmp_path):
    """A fresh run folder for a test."""
    d = tmp_path / "run"
    d.mkdir()
    return d
