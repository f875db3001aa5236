import os

import pytest
import torch

# Tiny models run fastest single-threaded (thread start-up dominates), and CI has 2 cores.
torch.set_num_threads(int(os.environ.get("WM_TEST_THREADS", "1")))


@pytest.fixture
def tmp_run(tmp_path):
    """A fresh run folder for a test."""
    d = tmp_path / "run"
    d.mkdir()
    return d
