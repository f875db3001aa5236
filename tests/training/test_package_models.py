"""Every world model of the package trains through the Trainer, round-trips through `load`, and
is scored by the evaluation tool (tiny configs, a few steps)."""

from __future__ import annotations

import pytest
import torch

from worldmodels.evaluation import EvalConfig, evaluate
from worldmodels.training import TrainConfig, Trainer, load


class Seqs(torch.utils.data.Dataset):
    def __init__(self, n=8, T=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.obs = (torch.rand(n, T, 1, 8, 8, generator=g) > 0.7).float()
        self.act = torch.nn.functional.one_hot(torch.randint(0, 2, (n, T), generator=g), 2).float()

    def __len__(self):
        return len(self.obs)

    def __getitem__(self, i):
        return {"obs": self.obs[i], "actions": self.act[i], "mask": torch.ones(self.obs.shape[1])}


def tiny(name):
    if name == "vae_rnn":
        from worldmodels.vae_rnn import VAERNN, VAERNNConfig

        return VAERNN(VAERNNConfig(obs_shape=(1, 8, 8), action_dim=2, latent_dim=2, hidden_dim=8, encoder="mlp",
                                   mlp_hidden=(16,)))
    if name == "kvae":
        from worldmodels.kvae import KVAE, KVAEConfig

        return KVAE(KVAEConfig(obs_shape=(1, 8, 8), action_dim=2, encoder="mlp", decoder="mlp", mlp_hidden=(16,),
                               dynamics_hidden=8))
    from worldmodels.gtmsm import GTMSM, GTMSMConfig

    return GTMSM(GTMSMConfig(obs_shape=(1, 8, 8), action_dim=2, tau=4, hidden=(16,), likelihood="bernoulli"))


@pytest.mark.parametrize("name", ["vae_rnn", "kvae", "gtmsm"])
def test_model_trains_loads_and_evaluates(name, tmp_run):
    torch.manual_seed(0)
    model = tiny(name)
    groups = model.parameter_groups()
    frozen = sorted(groups)[0]
    init = [p.detach().clone() for p in groups[frozen]]
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-2, freeze={frozen: 10}, progress=False, checkpoint_every=2,
                      val_every=2, tensorboard=False)
    summary = Trainer(model, cfg, tmp_run, Seqs(), Seqs(4, seed=1)).fit()
    assert summary["bad_steps"] == 0 and summary["steps"] == 4
    assert all(torch.equal(p, q) for p, q in zip(groups[frozen], init))  # the frozen group did not move
    loaded = load(tmp_run / "checkpoints" / "last.pt")
    assert type(loaded) is type(model)
    obs, act = Seqs(2, seed=3).obs, Seqs(2, seed=3).act
    model.load_state_dict(loaded.state_dict())
    torch.manual_seed(1)
    a = model.eval().predict(obs, act, 5)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.predict(obs, act, 5), a)
    res = evaluate(loaded, Seqs(4, seed=4), tmp_run / "eval", EvalConfig(context=5, horizon=3), video=False)
    assert len(res["prediction"]["metrics"]["mse"]["mean"]) == 3
