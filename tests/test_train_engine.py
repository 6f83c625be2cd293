"""The training engine on a toy model: strategies, loggers, monitors, and resume through a recipe."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from clinfm.errors import InputError
from clinfm.train.engine import TrainConfig, _monitor, fit, parameter_groups
from clinfm.train.sampling import BucketBatchSampler


class Toy(nn.Module):
    """Two 'layers' and a head, with the engine's model interface."""

    def __init__(self):
        super().__init__()
        self.embedding, self.block, self.head = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 1)

    def forward(self, batch):
        return self.head(torch.relu(self.block(self.embedding(batch["x"])))).squeeze(-1)

    def loss(self, batch, objective):
        return nn.functional.binary_cross_entropy_with_logits(self(batch), batch["label"]), {}

    @torch.no_grad()
    def predict(self, batch, objective):
        return torch.sigmoid(self(batch))

    def layer_groups(self):
        return [
            list(self.embedding.parameters()),
            list(self.block.parameters()),
            list(self.head.parameters()),
        ]


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, 3)).astype(np.float32)
        self.label_values = (self.x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
        self.lengths = np.ones(n, dtype=np.int64)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return index

    def collate(self, indices):
        rows = np.asarray(indices)
        return {"x": torch.from_numpy(self.x[rows]), "label": torch.from_numpy(self.label_values[rows])}


def test_probe_trains_only_the_heads_and_llrd_decays_by_layer():
    model = Toy()
    groups = parameter_groups(model, TrainConfig(strategy="probe", lr=0.01))
    assert [p for g in groups for p in g["params"]] == list(model.head.parameters())
    assert not any(p.requires_grad for p in model.embedding.parameters())
    decayed = parameter_groups(Toy(), TrainConfig(strategy="llrd", lr=0.01, llrd_decay=0.5))
    assert [g["lr"] for g in decayed] == pytest.approx([0.0025, 0.005, 0.01])


def test_a_classifier_is_selected_by_validation_auroc_when_it_can_be():
    assert _monitor("classify", ToyData(20)) == ("val_auroc", "max")
    one_class = ToyData(20)
    one_class.label_values[:] = 1.0
    assert _monitor("classify", one_class) == ("val_loss", "min")
    assert _monitor("pretrain", ToyData(20)) == ("val_loss", "min")


def test_fit_learns_and_keeps_the_best_epoch(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    config = TrainConfig(max_epochs=15, batch_size=32, optimizer="adam", lr=0.05, patience=3)
    result = fit(model, "classify", ToyData(256), ToyData(128, seed=1), config, tmp_path)
    assert result.monitor == "val_auroc" and result.best_score > 0.8
    test = ToyData(256, seed=2)
    scores = model.predict(test.collate(range(256)), "classify").numpy()
    from clinfm.evaluate.metrics import auroc

    assert auroc(test.label_values.astype(int), scores) > 0.85
    assert (tmp_path / "logs" / "train" / "metrics.csv").exists()


def test_linear_schedule_decays_the_learning_rate_to_zero_over_the_run(tmp_path):
    from lightning.pytorch.callbacks import Callback

    seen: list[float] = []

    class LearningRates(Callback):
        def on_train_batch_start(self, trainer, module, batch, index):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    config = TrainConfig(
        max_epochs=2, batch_size=8, optimizer="adamw", lr=0.1, schedule="linear", bucket=False
    )
    fit(Toy(), "classify", ToyData(32), None, config, tmp_path, callbacks=(LearningRates(),))
    # 4 batches an epoch, 8 steps: lr * (1 - step / 8), no warm-up
    assert seen == pytest.approx([0.1 * (1 - step / 8) for step in range(8)])
    with pytest.raises(InputError, match="schedule"):
        TrainConfig(schedule="cosine")


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed here")
def test_a_missing_logger_package_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"pip install 'clinfm\[mlflow\]'"):
        fit(Toy(), "classify", ToyData(16), None, TrainConfig(max_epochs=1, logger="mlflow"), tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs clinfm[tensorboard]")
def test_tensorboard_logs(tmp_path):
    fit(
        Toy(), "classify", ToyData(16), ToyData(16), TrainConfig(max_epochs=1, logger="tensorboard"), tmp_path
    )
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


def test_bucketed_batches_cover_every_sample_once_and_repeat_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 50, size=103)
    sampler = BucketBatchSampler(lengths, 10, seed=4)
    first = [i for batch in sampler for i in batch]
    assert sorted(first) == list(range(103))
    sampler.set_epoch(0)
    assert [i for batch in sampler for i in batch] == first
    spreads = [np.ptp(lengths[batch]) for batch in BucketBatchSampler(lengths, 10, seed=4, pool=11)]
    assert np.mean(spreads) < np.ptp(lengths) / 2  # similar lengths share a batch
