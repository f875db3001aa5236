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
def one_thread():
    """One intra-op thread for the test, whatever WM_TEST_THREADS says (tiny tensors: more threads
    only add overhead on a busy 2-core machine); the previous count is restored after it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tmp_run(tmp_path):
    """A fresh run folder for a test."""
    d = tmp_path / "run"
    d.mkdir()
    return d
