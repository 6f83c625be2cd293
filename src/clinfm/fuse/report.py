"""MEDFuse's part of the run report: multi-label scores per model (F1 at the tuned thresholds, macro
AUROC) and each disease's AUROC, for ablations and for single train/evaluate runs."""

from __future__ import annotations

from collections.abc import Mapping

from clinfm.report import blocks
from clinfm.report.folder import RunFolder, dict_at, dig

KIND_INTROS = {
    "fuse-ablate": "This run trains MEDFuse and its ablations (each branch alone, plain concatenation, no "
    "mutual-information loss, no masked lab pre-training) on the same samples and scores each on the same "
    "held-out patients.",
    "fuse-train": "This run trains one lab + note fusion model for multi-label disease prediction and scores "
    "it on held-out patients.",
    "fuse-evaluate": "This run scores a trained lab + note fusion model at the thresholds chosen when it was "
    "trained.",
    "fuse-pretrain-labs": "This run pre-trains a lab-test encoder by masked lab-test modelling; it has no "
    "prediction task of its own, so there are no test metrics.",
}
OVERALL = (("f1_micro", "Micro F1"), ("f1_macro", "Macro F1"), ("auroc_macro", "Macro AUROC"))


def headline(folder: RunFolder) -> str:
    return blocks.headline(folder, KIND_INTROS.get(folder.kind, ""))


def caveats(folder: RunFolder) -> list[str]:
    return blocks.caveats(folder)


def section(folder: RunFolder) -> str:
    return blocks.join(fusion_section(folder), blocks.training_section(folder))


def fusion_section(folder: RunFolder) -> str:
    """Multi-label scores per model (F1 at tuned thresholds, AUROC) and each disease's AUROC."""
    models = _models(folder.metrics)
    if not models:
        return ""
    tables = blocks.join(_overall_table(models), _disease_table(models))
    return blocks.section("fusion", "Lab + note fusion", tables)


def _models(metrics: Mapping | None) -> dict[str, Mapping]:
    """label -> held-out scores: every ablation variant, or the one model of a train/evaluate run."""
    variants = dig(metrics, ("variants",))
    if isinstance(variants, Mapping):
        return {
            v.get("label", k): v.get("held_out", {}) for k, v in variants.items() if isinstance(v, Mapping)
        }
    scores = {k: v for k, v in (metrics or {}).items() if k != "data" and isinstance(v, Mapping)}
    return {f"Model ({split})": v for split, v in scores.items() if "f1_micro" in v}


def _overall_table(models: Mapping[str, Mapping]) -> str:
    rows = [
        blocks.row(
            blocks.escape(label),
            "".join(f"<td>{blocks.format_estimate(scores.get(key), 3)}</td>" for key, _ in OVERALL),
        )
        for label, scores in models.items()
    ]
    head = "<th>Model</th>" + "".join(f"<th>{name}</th>" for _, name in OVERALL)
    samples = next(iter(models.values())).get("samples")
    caption = (
        f"Scores on {blocks.count(samples)} samples not used for training; F1 at each disease's threshold "
        "chosen on the tuning split; brackets are bootstrap 95% intervals resampling patients."
    )
    return blocks.table(rows, head, blocks.escape(caption))


def _disease_table(models: Mapping[str, Mapping]) -> str:
    first = next(iter(models.values()))
    rows = []
    for disease in dict_at(first, "diseases"):
        positives = dig(first, ("diseases", disease, "positives"))
        cells = "".join(
            f"<td>{blocks.format_estimate(dig(scores, ('diseases', disease, 'auroc')), 3)}</td>"
            for scores in models.values()
        )
        rows.append(blocks.row(blocks.escape(disease), f"<td>{blocks.count(positives)}</td>{cells}"))
    head = "<th>Disease</th><th>Positives</th>" + "".join(f"<th>{blocks.escape(m)}</th>" for m in models)
    return blocks.table(rows, head, "AUROC per disease.")
