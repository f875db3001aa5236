import os

import pytest
import torch

# Two cores on CI: keep intra-op threads low so parallel-ish tests do not oversubscribe.
torch.set_num_threads(int(os.environ.get("WM_TEST_THREADS", "2")))


@pytest.fixture
def tmp_run(tmp_path):
    """A fresh run folder for a test."""
    d = tmp_path / "run"
    d.mkdir()
    return d
