"""The concept-embedding paper's protocol: findings tables, their vectors, the 1-D CNN, its training."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import numpy as np
import polars as pl
import pytest
import torch

from clinfm.concepts import findings as fx
from clinfm.concepts.cnn import PAPER_SEEDS, PAPER_TRAINING, PAPER_TUNING, CNNConfig, FindingsCNN
from clinfm.errors import InputError
from clinfm.train.engine import TrainConfig, fit, make_optimizer, parameter_groups
from clinfm.train.sampling import BucketBatchSampler

DIM = 16


class FakeEncoder:
    """A stand-in text encoder: a fixed unit vector per text (real encoders: test_concepts)."""

    name = "fake-encoder"
    dim = DIM

    def encode(self, texts, batch_size=64):
        rows = []
        for text in texts:
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            rows.append(np.random.default_rng(seed).normal(size=DIM))
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, DIM)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def _offline_encoder(monkeypatch, tmp_path):
    import clinfm.concepts

    monkeypatch.setattr(clinfm.concepts, "load_encoder", lambda spec=None: FakeEncoder())
    monkeypatch.setenv("CLINFM_CACHE", str(tmp_path / "embedding-cache"))


def _events() -> pl.DataFrame:
    t = datetime
    rows = [
        (1, t(2020, 1, 1), "ICD9CM/493.90", None),
        (1, t(2020, 1, 2), "LOCAL/cough", "absent"),
        (1, t(2020, 3, 1), "ICD9CM/780.60", None),  # after the first sample's prediction time
        (2, t(2020, 1, 1), "LOCAL/cough", "Negative"),
        (2, t(2020, 1, 3), "LOCAL/cough", None),  # mentioned present later: present wins
        (2, t(2020, 1, 1), "LOCAL/fever", "P"),  # an affirmed mention
        (2, t(2020, 1, 1), "LOCAL/rash", "unknown"),  # says nothing: missing
        (2, t(2020, 1, 1), "LOINC/1-1", None),
        (2, None, "GENDER/F", None),
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "code": pl.String,
            "text_value": pl.String,
        },
        orient="row",
    )
    return frame.with_columns(numeric_value=pl.when(pl.col("code") == "LOINC/1-1").then(1.0).cast(pl.Float32))


def _samples() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "subject_id": [1, 2, 1],
            "prediction_time": [datetime(2020, 2, 1), datetime(2020, 2, 1), datetime(2020, 4, 1)],
        }
    )


def test_findings_table_reads_present_absent_missing_as_of_prediction_time():
    findings = ["ICD9CM/493.90", "LOCAL/cough", "ICD9CM/780.60", "LOINC/1-1", "LOCAL/fever", "LOCAL/rash"]
    table = fx.findings_table(_events().lazy(), _samples(), findings)
    P, A, M = fx.PRESENT, fx.ABSENT, fx.MISSING
    assert table.tolist() == [
        [P, A, M, M, M, M],
        [M, P, M, M, P, M],  # labs (a numeric_value) are not findings
        [P, A, P, M, M, M],
    ]


def test_choose_findings_keeps_common_codes_seen_by_prediction_time():
    events = _events().lazy()
    train = _samples().head(2)  # both patients, on 2020-02-01
    assert fx.choose_findings(events, train, min_subjects=2, max_findings=10) == ["LOCAL/cough"]
    assert fx.choose_findings(events, train, min_subjects=1, max_findings=1) == ["LOCAL/cough"]
    diagnoses = fx.choose_findings(events, train, min_subjects=1, max_findings=10, prefixes=["ICD9CM/"])
    assert diagnoses == ["ICD9CM/493.90"]  # 780.60 is recorded after the prediction: never a column
    later = fx.choose_findings(events, _samples(), min_subjects=1, max_findings=10, prefixes=["ICD9CM/"])
    assert later == ["ICD9CM/493.90", "ICD9CM/780.60"]
    with pytest.raises(InputError, match="among codes starting ICD10CM/"):
        fx.choose_findings(events, train, min_subjects=1, max_findings=10, prefixes=["ICD10CM/"])
    with pytest.raises(InputError, match="no finding is seen in at least 3"):
        fx.choose_findings(events, train, min_subjects=3, max_findings=10)


def test_token_ids_map_missing_to_absent_or_to_zero():
    table = np.array([[fx.PRESENT, fx.ABSENT, fx.MISSING]], dtype=np.int8)
    assert fx.token_ids(table, "absent").tolist() == [[1, 4, 6]]  # the paper's "M to A"
    assert fx.token_ids(table, "zero").tolist() == [[1, 4, 0]]
    with pytest.raises(InputError):
        fx.token_ids(table, "unknown")


def test_text_vectors_read_finding_and_not_finding():
    vectors = fx.text_vectors(["LOCAL/wheezing"], FakeEncoder(), None)
    encoder = FakeEncoder()
    assert np.allclose(vectors[0], 0)  # row 0: the zero vector
    assert np.allclose(vectors[1], encoder.encode(["LOCAL/wheezing"])[0])
    assert np.allclose(vectors[2], encoder.encode(["Not LOCAL/wheezing"])[0])


def test_one_hot_vectors_cannot_read_another_sites_codes():
    vectors = fx.onehot_vectors(["ICD10CM/J45.909", "CPT4/99213"], space=["ICD9CM/493.90", "CPT4/99213"])
    assert vectors.shape == (5, 4)
    assert not vectors[1:3].any()  # the ICD-10 code is outside the ICD-9 site's space: zeros
    assert vectors[3].tolist() == [0, 0, 1, 0] and vectors[4].tolist() == [0, 0, 0, 1]


def test_paper_model_shapes_and_frozen_vectors():
    vectors = torch.randn(7, DIM)
    model = FindingsCNN(CNNConfig(dim=DIM), vectors)
    assert model.conv.weight.shape == (100, DIM, 1) and model.fc.weight.shape == (2, 100)
    assert model.dropout.p == 0.5
    assert all(p is not model.vectors for p in model.parameters())  # a buffer: never trained
    logits = model(torch.tensor([[1, 4, 6], [2, 3, 5]]))
    assert logits.shape == (2, 2)


def test_the_kernel_1_shortcut_is_the_convolution():
    torch.manual_seed(0)
    model = FindingsCNN(CNNConfig(dim=DIM), torch.randn(7, DIM)).eval()
    tokens = torch.tensor([[1, 4, 6], [2, 3, 0]])
    convolved = torch.relu(model.conv(model.vectors[tokens].permute(0, 2, 1))).amax(dim=2)
    assert torch.allclose(model(tokens), model.fc(convolved), atol=1e-5)


def test_the_best_seed_is_chosen_by_auroc_else_by_loss():
    from clinfm.claims.cross_site import _better
    from clinfm.train.engine import FitResult

    def result(score, monitor="val_auroc"):
        return FitResult(1, score, monitor, None, True)

    assert _better(result(0.7), result(0.6)) and not _better(result(0.6), result(0.7))
    assert _better(result(0.2, "val_loss"), result(0.3, "val_loss"))
    assert _better(result(0.5), result(None)) and not _better(result(None), result(0.5))


def test_the_cnn_does_not_depend_on_the_order_of_findings():
    model = FindingsCNN(CNNConfig(dim=DIM), torch.randn(7, DIM)).eval()
    tokens = torch.tensor([[1, 4, 6]])
    assert torch.allclose(model(tokens), model(tokens[:, [2, 0, 1]]))


def test_paper_optimizer_settings():
    model = FindingsCNN(CNNConfig(dim=DIM), torch.randn(3, DIM))
    optimizer = make_optimizer(parameter_groups(model, PAPER_TRAINING), PAPER_TRAINING)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        1e-3,
        0.9,
        True,
        1e-3,
    )
    assert (PAPER_TRAINING.batch_size, PAPER_TRAINING.max_epochs, PAPER_TRAINING.steps_per_epoch) == (
        32,
        50,
        100,
    )
    assert PAPER_TRAINING.drop_last and PAPER_TRAINING.patience is None
    assert PAPER_TUNING.lr == 1e-2 and PAPER_SEEDS == (215, 401, 114514)


def test_head_only_tuning_leaves_the_convolution_alone(tmp_path):
    rng = np.random.default_rng(0)
    tokens = 1 + 2 * np.arange(5)[None, :] + rng.integers(0, 2, size=(64, 5))
    labels = (tokens[:, 0] == 1).astype(np.float32)
    data = fx.FindingsData(tokens, labels)
    model = FindingsCNN(CNNConfig(dim=DIM), torch.randn(11, DIM))
    conv, fc = model.conv.weight.detach().clone(), model.fc.weight.detach().clone()
    config = PAPER_TUNING.replace(max_epochs=2, steps_per_epoch=3, logger="none", strategy="probe")
    fit(model, "classify", data, data, config, work_dir=tmp_path, resume=False)
    assert torch.equal(model.conv.weight, conv) and not torch.equal(model.fc.weight, fc)


def test_steps_per_epoch_continue_an_endless_stream_of_passes():
    sampler = BucketBatchSampler(np.ones(10), 4, seed=0, bucket=False, steps=5, drop_last=True)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler) == 5 and all(len(b) == 4 for b in epoch0)
    for first in (0, 2):  # each pass: two full batches, 8 distinct samples, 2 dropped
        assert len(set(epoch0[first] + epoch0[first + 1])) == 8
    epoch1 = list(sampler)  # the stream goes on: pass 2's second batch opens epoch 1
    again = BucketBatchSampler(np.ones(10), 4, seed=0, bucket=False, steps=5, drop_last=True)
    again.set_epoch(1)  # a resumed run
    assert list(again) == epoch1
    stream = BucketBatchSampler(np.ones(10), 4, seed=0, bucket=False, steps=10, drop_last=True)
    assert list(stream) == epoch0 + epoch1
    tiny = BucketBatchSampler(np.ones(3), 4, seed=0, bucket=False, drop_last=True)
    assert [len(b) for b in tiny] == [3]  # no full batch at all: the short one is kept
    with pytest.raises(InputError):
        TrainConfig(steps_per_epoch=0)


def test_findings_data_join_and_subset():
    a = fx.FindingsData(np.array([[1, 4], [2, 3]]), np.array([0, 1]))
    b = fx.FindingsData(np.array([[1, 3]]), np.array([1]))
    joined = a.joined(b)
    assert len(joined) == 3 and joined.label_values.tolist() == [0, 1, 1]
    assert joined.subset(np.array([2])).tokens.tolist() == [[1, 3]]
    batch = joined.collate([0, 2])
    assert batch["tokens"].dtype == torch.int64 and batch["label"].tolist() == [0.0, 1.0]


def test_the_paper_preset_runs_every_protocol_on_a_tiny_pair(site_icd9, site_icd10, tmp_path):
    from clinfm.claims.cross_site import PROTOCOLS, transfer

    out = transfer(
        site_icd9,
        site_icd10,
        "asthma_exacerbation_180d",
        tmp_path / "xfer",
        preset="paper",
        encoders=("one", "two"),
        fractions=(0.5, 1.0),
        seeds=(0,),
        settings=PAPER_TRAINING.replace(max_epochs=2, steps_per_epoch=5, logger="none"),
        min_subjects=5,
        max_findings=40,
        held_out=0.4,
        n_bootstrap=50,
    )
    record = json.loads((out / "run.json").read_text())
    methods = set(record["methods"])
    assert methods == {f"{e}/{p}" for e in ("ids", "text-one", "text-two") for p in PROTOCOLS}
    assert record["config"]["preset"] == "paper"
    assert record["config"]["transfer_training"]["lr"] == pytest.approx(
        10 * record["config"]["training"]["lr"]
    )
    assert "one-hot" in record["methods"]["ids/local"]
    page = (out / "report.html").read_text()
    assert "Protocols across sites" in page and "reach local" in page
    assert not (tmp_path / ".xfer.partial").exists()


def test_the_pooled_table_reads_both_sites_columns_in_order():
    from clinfm.claims.cross_site import FindingsTables, _pooled_vectors

    source, target = ["CPT4/99213", "ICD9CM/493.90"], ["CPT4/99213", "ICD10CM/J45.909"]
    both = ["CPT4/99213", "ICD9CM/493.90", "ICD10CM/J45.909"]
    tables = FindingsTables(source, target, both, {}, {}, {}, {})
    vectors = _pooled_vectors(
        lambda findings, space, data: fx.onehot_vectors(findings, space), tables, "a", "b"
    )
    assert np.array_equal(vectors, fx.onehot_vectors(both, both))
    assert (
        vectors.shape[0] == int(fx.token_ids(np.zeros((1, 3), np.int8)).max()) + 1
    )  # every token id has a row


def test_several_encoders_get_distinct_arm_labels(tmp_path):
    from clinfm.claims.cross_site import _plan

    plan = _plan(
        preset="paper",
        encoders=("st:x/m-2", "st:a/m", "st:b/m", "hf:c/m#cls"),
        code_embedding="projected",
        fractions=(1.0,),
        seeds=(0,),
        protocols=("local",),
        settings=None,
        min_subjects=10,
        held_out=None,
        max_findings=10,
        missing="absent",
        finding_prefixes=None,
        out=tmp_path / "run",
    )
    assert list(plan.embeddings) == ["ids", "text-m-2", "text-m", "text-m-3", "text-m-4"]
    assert len(set(plan.embeddings.values())) == 5
