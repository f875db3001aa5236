"""The dataset loader: shapes, batches, samplers and corrupt files."""

import json

import numpy as np
import pytest
import torch

from worldmodels.base import Batch
from worldmodels.data import SequenceDataset, collate_batch, make_dataloader
from worldmodels.envs.generate import DatasetSpec, generate_dataset


@pytest.fixture(scope="module")
def ball_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "ball"
    spec = DatasetSpec("t", "worldmodels/BouncingBall-v0", 5, {"train": 9, "valid": 2}, shard_size=4,
                       policy="uniform")
    generate_dataset(spec, root, num_workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def nav_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "nav"
    spec = DatasetSpec("n", "worldmodels/ImageNavigation-v0", 7, {"train": 3}, policy="poisson_repeat")
    generate_dataset(spec, root, num_workers=1, progress=False)
    return root


def test_items_and_attributes(ball_root):
    ds = SequenceDataset(ball_root, "train")
    assert len(ds) == 9 and ds.obs_shape == (1, 32, 32) and ds.action_dim == 2 and ds.seq_len == 5
    it = ds[3]
    assert it["obs"].shape == (5, 1, 32, 32) and it["obs"].dtype == torch.float32
    assert set(torch.unique(it["obs"]).tolist()) == {0.0, 1.0}  # binary frames
    assert it["actions"].shape == (5, 2) and it["mask"].tolist() == [1.0] * 5
    assert it["rewards"].shape == (5,) and it["states"].shape == (5, 4)
    raw = np.load(ball_root / "train/shard_00000.npz")["obs"][3]  # [T, H, W, C]
    np.testing.assert_allclose(it["obs"].permute(0, 2, 3, 1).numpy(), raw / 255.0)
    assert len(SequenceDataset(ball_root, "valid")) == 2


def test_discrete_actions_one_hot_and_rgb(nav_root):
    ds = SequenceDataset(nav_root)
    it = ds[0]
    assert ds.obs_shape == (3, 8, 8) and ds.action_dim == 5
    assert it["obs"].shape == (7, 3, 8, 8) and torch.all(it["actions"].sum(-1) == 1)


def test_dataloader_batches_and_seeded_shuffle(ball_root):
    dl = make_dataloader(ball_root, "train", batch_size=4, shuffle=True, seed=3)
    batches = list(dl)
    assert [b.batch_size for b in batches] == [4, 4, 1]
    b = batches[0]
    assert isinstance(b, Batch) and b.obs.shape == (4, 5, 1, 32, 32) and b.actions.shape == (4, 5, 2)
    assert b.mask.shape == (4, 5) and b.rewards.shape == (4, 5) and b.states.shape == (4, 5, 4)
    again = [x.states for x in make_dataloader(ball_root, "train", batch_size=4, shuffle=True, seed=3)]
    assert all(torch.equal(x.states, y) for x, y in zip(batches, again))
    ordered = torch.cat([x.states for x in make_dataloader(ball_root, "train", batch_size=4, shuffle=False)])
    shuffled = torch.cat([x.states for x in batches])
    assert not torch.equal(ordered, shuffled) and torch.equal(ordered.sort(0).values, shuffled.sort(0).values)
    assert len(list(make_dataloader(ball_root, "train", batch_size=4, drop_last=True))) == 2


def test_distributed_sampler_splits_data(ball_root):
    ds = SequenceDataset(ball_root)
    from torch.utils.data import DataLoader, DistributedSampler

    seen = []
    for rank in range(2):
        s = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(ds, batch_size=3, sampler=s, collate_fn=collate_batch)
        seen += [x for b in loader for x in b.states[:, 0, 0].tolist()]
    assert len(seen) == 10  # 9 padded to 10 by DistributedSampler
    assert set(seen) == set(ds._states[:, 0, 0].tolist())


def test_corrupt_or_missing_inputs(ball_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(ball_root, root)
    p = root / "train/shard_00001.npz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="shard_00001.npz.*truncated or corrupt"):
        SequenceDataset(root)
    p.write_bytes(data[:100] + bytes(len(data) - 100))  # same size, corrupt content
    with pytest.raises(ValueError, match="shard_00001.npz.*corrupt"):
        SequenceDataset(root)
    with pytest.raises(ValueError, match="shard_00001.npz.*corrupt"):
        SequenceDataset(root, verify=False)  # without the checksum the zip reader catches it
    with pytest.raises(ValueError, match="split"):
        SequenceDataset(ball_root, "test")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        SequenceDataset(tmp_path / "nothing")
    m = json.loads((ball_root / "manifest.json").read_text())
    m["complete"] = False
    inc = tmp_path / "inc"
    shutil.copytree(ball_root, inc)
    (inc / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="incomplete"):
        SequenceDataset(inc)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataloader(ball_root, batch_size=0)
    with pytest.raises(ValueError, match="items"):
        collate_batch([])
