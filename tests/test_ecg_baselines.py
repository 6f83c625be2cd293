"""PCLR's baselines on the shared encoder: CLOCS halves, the autoencoder, supervised from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfm.ecg.baselines import (
    OBJECTIVES,
    AutoencoderModel,
    CLOCSModel,
    SupervisedModel,
    pretraining_model,
    split_halves,
)
from clinfm.ecg.data import ECGWindows
from clinfm.ecg.model import PRESETS, PCLRModel
from clinfm.errors import InputError
from clinfm.train.engine import TrainConfig, fit

SMALL = PRESETS["small"]
QUICK = TrainConfig(max_epochs=4, batch_size=8, optimizer="adam", lr=1e-3, patience=None, logger="none")


def _waves(n: int, seed: int, amplitudes: np.ndarray | None = None) -> np.ndarray:
    """n ECGs, each one sine of its own frequency and lead gains over the whole window, plus noise."""
    rng = np.random.default_rng(seed)
    time = np.linspace(0, 1, SMALL.samples)
    frequency = rng.uniform(3, 30, size=(n, 1, 1))
    gains = rng.uniform(0.5, 1.5, size=(n, SMALL.leads, 1))
    if amplitudes is not None:
        gains = gains * amplitudes[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    noise = 0.1 * rng.normal(size=(n, SMALL.leads, SMALL.samples))
    return (gains * np.sin(2 * np.pi * frequency * time + phase) + noise).astype(np.float32)


def _windows(n: int, seed: int, labels=None, amplitudes=None) -> ECGWindows:
    return ECGWindows(_waves(n, seed, amplitudes), [f"p{i}" for i in range(n)], labels)


def _loss(model: torch.nn.Module, batch: dict, objective: str = "pretrain") -> float:
    model.eval()
    with torch.no_grad():
        return float(model.loss(batch, objective)[0])


def _every_group_has_gradients(model: torch.nn.Module, batch: dict, objective: str = "pretrain") -> bool:
    model.train()
    loss, parts = model.loss(batch, objective)
    assert parts == {} and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    return all(p.grad is not None for group in model.layer_groups() for p in group)


def test_clocs_views_are_the_two_halves_of_each_ecg():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)
    first, second = split_halves(x)
    assert first.shape == second.shape == (2, 3, 4)
    assert torch.equal(first, x[..., :4]) and torch.equal(second, x[..., 4:])
    assert torch.equal(torch.cat([first, second], dim=-1), x)


def test_clocs_loss_is_finite_and_reaches_every_layer():
    torch.manual_seed(0)
    model = CLOCSModel(SMALL)
    batch = _windows(6, seed=0).collate(range(6))
    assert _every_group_has_gradients(model, batch)
    assert len(model.layer_groups()) == 6
    assert model.predict(batch, "embed").shape == (6, SMALL.representation)


def test_clocs_needs_halves_the_encoder_accepts():
    model = CLOCSModel(SMALL)
    with pytest.raises(InputError, match="multiple of 512"):
        model.loss({"ecg": torch.randn(4, 12, 768)})
    with pytest.raises(InputError, match="lacks 'ecg'"):
        model.loss({"first": torch.randn(4, 12, 1024)})


def test_clocs_fit_through_the_engine_lowers_the_contrastive_loss(tmp_path):
    torch.manual_seed(0)
    model = CLOCSModel(SMALL)
    train, val = _windows(48, seed=0), _windows(16, seed=1)
    batch = val.collate(range(8))
    before = _loss(model, batch)
    fit(model, "pretrain", train, val, QUICK, tmp_path)
    assert _loss(model, batch) < before


@pytest.mark.parametrize("from_representation", [True, False])
@pytest.mark.parametrize("preset", ["small", "paper"])
def test_autoencoder_reconstructs_the_input_shape(preset, from_representation):
    torch.manual_seed(0)
    config = PRESETS[preset]
    model = AutoencoderModel(config, from_representation=from_representation).eval()
    x = torch.randn(2, config.leads, config.samples)
    with torch.no_grad():
        assert model.reconstruct(x).shape == x.shape
    encoder = sum(p.numel() for p in model.encoder.parameters())
    decoder = sum(p.numel() for p in model.decoder.parameters())
    print(f"{preset} autoencoder, from_representation={from_representation}: {encoder=} {decoder=}")
    assert decoder < encoder


def test_autoencoder_loss_reaches_every_layer_and_predicts_the_representation():
    torch.manual_seed(0)
    model = AutoencoderModel(SMALL)
    batch = _windows(4, seed=0).collate(range(4))
    assert _every_group_has_gradients(model, batch)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.predict(batch, "embed"), model.encoder.features(batch["ecg"]).mean(-1))
    with pytest.raises(InputError, match="1024-sample"):
        model.loss({"ecg": torch.randn(2, 12, 512)})


def test_autoencoder_fit_through_the_engine_lowers_the_reconstruction_error(tmp_path):
    torch.manual_seed(0)
    model = AutoencoderModel(SMALL)
    train, val = _windows(48, seed=0), _windows(16, seed=1)
    batch = val.collate(range(16))
    before = _loss(model, batch)
    fit(model, "pretrain", train, val, QUICK, tmp_path)
    assert _loss(model, batch) < before


def test_supervised_binary_learns_an_obvious_label_through_the_engine(tmp_path):
    torch.manual_seed(0)
    labels = {seed: np.arange(n) % 2 for seed, n in [(0, 48), (1, 16)]}
    # Class 1 has three times the amplitude: obvious to any encoder.
    train, val = (
        _windows(len(y), seed, labels=y, amplitudes=np.where(y == 1, 3.0, 1.0)) for seed, y in labels.items()
    )
    model = SupervisedModel(SMALL, task="binary")
    result = fit(model, "classify", train, val, QUICK.replace(max_epochs=6), tmp_path)
    assert result.monitor == "val_auroc"
    assert result.best_score > 0.9
    batch = val.collate(range(8))
    model.eval()
    with torch.no_grad():
        probability = model.predict(batch, "classify")
        assert probability.shape == (8,) and bool(((probability >= 0) & (probability <= 1)).all())
        assert model.predict(batch, "embed").shape == (8, SMALL.representation)


def test_supervised_regression_lowers_its_error():
    torch.manual_seed(0)
    target = np.linspace(1, 3, 8)
    batch = _windows(8, seed=0, labels=target, amplitudes=target).collate(range(8))
    model = SupervisedModel(SMALL, task="regression")
    assert _every_group_has_gradients(model, batch, "regress")
    before = _loss(model, batch, "regress")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(10):
        optimizer.zero_grad()
        model.loss(batch, "regress")[0].backward()
        optimizer.step()
    assert _loss(model, batch, "regress") < before
    with torch.no_grad():
        assert model.predict(batch, "regress").shape == (8,)


def test_supervised_rejects_other_tasks_objectives_and_unlabelled_batches():
    with pytest.raises(InputError, match="task must be one of binary, regression"):
        SupervisedModel(SMALL, task="multiclass")
    model = SupervisedModel(SMALL, task="binary")
    ecg = torch.randn(2, 12, 1024)
    with pytest.raises(InputError, match="objective 'classify', not 'regress'"):
        model.loss({"ecg": ecg, "label": torch.ones(2)}, "regress")
    with pytest.raises(InputError, match="lacks 'label'"):
        model.loss({"ecg": ecg}, "classify")


def test_pretraining_models_by_name():
    assert {name: type(pretraining_model(name, SMALL)) for name in OBJECTIVES} == {
        "pclr": PCLRModel,
        "clocs": CLOCSModel,
        "autoencoder": AutoencoderModel,
    }
    with pytest.raises(InputError, match="one of pclr, clocs, autoencoder, not 'simclr'"):
        pretraining_model("simclr", SMALL)


def test_every_model_embeds_batch_ecg_with_the_same_encoder_shape():
    x = torch.randn(3, 12, 1024)
    models = [*(pretraining_model(name, SMALL) for name in OBJECTIVES), SupervisedModel(SMALL)]
    for model in models:
        model.eval()
        with torch.no_grad():
            assert model.predict({"ecg": x}, "embed").shape == (3, SMALL.representation)
