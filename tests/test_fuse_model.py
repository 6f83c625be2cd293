"""The fusion model: each ablation switch, missing modalities, the MI penalty's alternating q."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfm.errors import InputError
from clinfm.fuse.data import FusionSamples, NoteVectors
from clinfm.fuse.labs import LabEncoderConfig, MaskedLabModel
from clinfm.fuse.model import FUSIONS, FusionConfig, FusionModel
from clinfm.train.engine import TrainConfig, fit, parameter_groups, predict

N_ITEMS, NOTE_DIM, N_LABELS = 6, 12, 3


class _Labs:
    """A minimal stand-in for LabTokens with fixed tokens per sample."""

    def __init__(self, items: list[list[int]], values: list[list[float]]):
        self.items, self.values = items, values
        self.lengths = np.array([len(i) for i in items], np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def collate(self, indices):
        width = max(1, max(self.lengths[i] for i in indices))
        item = torch.zeros(len(indices), width, dtype=torch.long)
        value = torch.zeros(len(indices), width)
        for row, i in enumerate(indices):
            item[row, : self.lengths[i]] = torch.tensor(self.items[i])
            value[row, : self.lengths[i]] = torch.tensor(self.values[i])
        observed = torch.arange(width)[None, :] < torch.tensor(self.lengths[list(indices)])[:, None]
        return {"item": item, "value": value, "observed": observed}


def _samples(n: int, seed: int = 0, *, no_labs: int = 0, no_notes: int = 0):
    """Label 0 from a lab value, label 1 from the note vector, label 2 from both (an AND)."""
    rng = np.random.default_rng(seed)
    items, values = [], []
    lab_signal, note_signal = rng.normal(size=n), rng.normal(size=n)
    for i in range(n):
        count = 0 if i < no_labs else int(rng.integers(2, 5))
        others = rng.choice(np.arange(3, N_ITEMS), size=max(0, count - 1), replace=False)
        items.append([2, *others.tolist()][:count])  # item 2 carries the signal
        values.append([lab_signal[i], *rng.normal(size=len(others)).tolist()][:count])
    direction = np.random.default_rng(99).normal(size=NOTE_DIM)  # the same for every draw
    direction /= np.linalg.norm(direction)
    vectors = rng.normal(size=(n, NOTE_DIM)) * 0.3 + note_signal[:, None] * direction
    has_note = (np.arange(n) < no_labs) | (np.arange(n) >= no_labs + no_notes)
    labs_known = np.array([len(i) > 0 for i in items])
    labels = np.stack(
        [
            (lab_signal > 0) & labs_known,
            (note_signal > 0) & has_note,
            (lab_signal > 0) & (note_signal > 0) & labs_known & has_note,
        ],
        axis=1,
    )
    notes = NoteVectors.pooled(vectors.astype(np.float32), has_note)
    return FusionSamples(_Labs(items, values), notes, labels)


def _model(fusion: str = "disentangled", **changes) -> FusionModel:
    torch.manual_seed(0)
    lab_model = MaskedLabModel(N_ITEMS, LabEncoderConfig.small())
    return FusionModel(lab_model, NOTE_DIM, N_LABELS, FusionConfig.small(fusion=fusion, **changes))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_gives_probabilities_and_a_finite_loss(fusion):
    data = _samples(8)
    model = _model(fusion)
    batch = data.collate(list(range(8)))
    loss, parts = model.loss(batch, "multilabel")
    assert torch.isfinite(loss) and "bce" in parts
    assert ("club" in parts) == (fusion == "disentangled")
    probabilities = model.predict(batch, "multilabel")
    assert probabilities.shape == (8, N_LABELS)
    assert bool(((probabilities > 0) & (probabilities < 1)).all())
    width = {"disentangled": 3, "concat": 2, "labs": 1, "notes": 1}[fusion]
    assert model.predict(batch, "represent").shape == (8, width * model.config.dim)


def test_single_branch_models_ignore_the_other_modality():
    data = _samples(6)
    batch = data.collate(list(range(6)))
    labs_only, notes_only = _model("labs").eval(), _model("notes").eval()
    assert labs_only.note_encoder is None and not hasattr(labs_only, "notes")
    assert notes_only.lab_model is None and not hasattr(notes_only, "labs")
    changed = {**batch, "note_vectors": torch.randn_like(batch["note_vectors"])}
    assert torch.equal(labs_only.predict(batch, "multilabel"), labs_only.predict(changed, "multilabel"))
    changed = {**batch, "value": torch.randn_like(batch["value"])}
    assert torch.equal(notes_only.predict(batch, "multilabel"), notes_only.predict(changed, "multilabel"))


def test_samples_missing_a_modality_still_get_finite_predictions_from_what_is_there():
    data = _samples(10, no_labs=3, no_notes=3)
    batch = data.collate(list(range(10)))
    assert not batch["observed"][:3].any() and not batch["note_valid"][3:6].any()
    model = _model().eval()
    probabilities = model.predict(batch, "multilabel")
    assert torch.isfinite(probabilities).all()
    # A sample without labs: whatever sits in its padded lab slots is never read.
    junk = {**batch, "value": batch["value"].clone(), "item": batch["item"].clone()}
    junk["value"][:3] = 7.0
    junk["item"][:3] = 3
    assert torch.allclose(model.predict(junk, "multilabel")[:3], probabilities[:3])
    # ... and the notes of a sample with notes still move its prediction.
    moved = {**batch, "note_vectors": batch["note_vectors"].clone()}
    moved["note_vectors"][:3] += 1.0
    assert not torch.allclose(model.predict(moved, "multilabel")[:3], probabilities[:3])


def test_the_mi_penalty_trains_q_alternately_and_the_engine_never_moves_q():
    data = _samples(16)
    batch = data.collate(list(range(16)))
    model = _model()
    groups = parameter_groups(model, TrainConfig())
    engine_parameters = {id(p) for g in groups for p in g["params"]}
    assert not engine_parameters & {id(p) for p in model.club.parameters()}
    assert {id(p) for p in model.lab_model.decoder.parameters()}.isdisjoint(engine_parameters)
    before = [p.detach().clone() for p in model.club.parameters()]
    model.train()
    loss, parts = model.loss(batch, "multilabel")
    assert any(not torch.equal(b, p) for b, p in zip(before, model.club.parameters(), strict=True))
    loss.backward()
    assert all(p.grad is None for p in model.club.parameters()), "the model's loss reached q"
    assert model.labs.projection.weight.grad is not None
    # In evaluation q stays put and the loss is the BCE alone (model selection on the classifier).
    model.eval()
    now = [p.detach().clone() for p in model.club.parameters()]
    loss, parts = model.loss(batch, "multilabel")
    assert float(loss) == pytest.approx(parts["bce"])
    assert all(torch.equal(a, b) for a, b in zip(now, model.club.parameters(), strict=True))


def test_switching_the_mi_loss_off_removes_q():
    assert _model(mi_weight=0.0).club is None
    assert _model("concat").club is None
    with pytest.raises(InputError, match="fusion must be one of"):
        FusionConfig(fusion="sum")
    with pytest.raises(InputError, match="needs a lab model"):
        FusionModel(None, NOTE_DIM, N_LABELS, FusionConfig.small())
    assert FusionModel(None, NOTE_DIM, N_LABELS, FusionConfig.small(fusion="notes")).lab_model is None


def test_the_engine_fits_the_fusion_model_and_both_modalities_are_used(tmp_path):
    train, held_out = _samples(240, seed=1), _samples(120, seed=2)
    model = _model()
    config = TrainConfig(
        max_epochs=25, batch_size=32, optimizer="adamw", lr=3e-3, patience=None, logger="none"
    )
    fit(model, "multilabel", train, None, config, tmp_path)
    probabilities = predict(model, held_out, "multilabel").numpy()
    from clinfm.evaluate.metrics import auroc

    scores = [auroc(held_out.labels[:, k].astype(int), probabilities[:, k]) for k in range(N_LABELS)]
    assert min(scores) > 0.8, scores


def test_the_penalty_is_never_negative_so_the_model_cannot_exploit_a_lagging_q(monkeypatch):
    data = _samples(16)
    batch = data.collate(list(range(16)))
    model = _model(mi_weight=0.1).train()
    # q lagging behind the model can give an estimate below 0; it must not lower the loss.
    monkeypatch.setattr(model.club, "mi_penalty", lambda x, y: (x.sum() + y.sum()) * 0 - 1.5)
    loss, logged = model.loss(batch, "multilabel")
    assert logged["club"] == 0.0 and float(loss) == pytest.approx(logged["bce"])
