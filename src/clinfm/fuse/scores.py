"""Multi-label scores of a fusion model: thresholds chosen on the tuning split, F1 and AUROC with CIs.

MEDFuse reports F1; a probability needs a threshold to become a diagnosis, and 0.5 is wrong for a
rare disease, so each disease gets the threshold that maximises its F1 on the tuning samples (0.5
when the tuning split has no positive of it). Micro F1 pools every (sample, disease) decision, macro
F1 averages the diseases present; AUROC needs no threshold. Intervals: percentile bootstrap over
patients (a patient's samples are drawn together).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clinfm.evaluate.metrics import auroc, bootstrap, f1_macro, f1_micro, macro_auroc

DEFAULT_THRESHOLD = 0.5


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The cut that maximises F1 of ``p >= cut`` on (y, p); midway between neighbouring scores."""
    if not y.any():
        return DEFAULT_THRESHOLD
    order = np.argsort(-p, kind="stable")
    ranked, hits = p[order], y[order].astype(np.float64)
    true_pos = np.cumsum(hits)
    predicted = np.arange(1, len(p) + 1)
    f1 = 2 * true_pos / (predicted + hits.sum())
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # cuts between distinct scores only
    k = last[np.argmax(f1[last])]
    return float((ranked[k] + ranked[k + 1]) / 2) if k + 1 < len(ranked) else float(ranked[k])


def choose_thresholds(Y: np.ndarray | None, P: np.ndarray | None, n_labels: int) -> np.ndarray:
    if Y is None or P is None or not len(Y):
        return np.full(n_labels, DEFAULT_THRESHOLD)
    return np.array([best_threshold(Y[:, k] > 0, P[:, k]) for k in range(n_labels)])


def decisions(P: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    return (np.asarray(P) >= np.asarray(thresholds)[None, :]).astype(np.float64)


def score(
    Y: np.ndarray,
    P: np.ndarray,
    thresholds: Sequence[float],
    names: Sequence[str],
    *,
    groups: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """micro / macro F1 at the thresholds, macro AUROC and each disease's AUROC, F1 and prevalence."""
    Y = np.asarray(Y).astype(np.int64)
    D = decisions(P, thresholds)
    common = {"groups": groups, "n_bootstrap": n_bootstrap, "seed": seed}
    out = {
        "samples": len(Y),
        "f1_micro": bootstrap(f1_micro, Y, D, **common).to_dict(),
        "f1_macro": bootstrap(f1_macro, Y, D, **common).to_dict(),
        "auroc_macro": bootstrap(macro_auroc, Y, P, **common).to_dict(),
        "diseases": {},
    }
    for k, name in enumerate(names):
        positives = int(Y[:, k].sum())
        entry = {"positives": positives, "threshold": float(thresholds[k])}
        if 0 < positives < len(Y):
            entry["auroc"] = bootstrap(auroc, Y[:, k], P[:, k], **common).to_dict()
        entry["f1"] = bootstrap(f1_micro, Y[:, [k]], D[:, [k]], **common).to_dict() if positives else None
        out["diseases"][name] = entry
    return out


__all__ = ["best_threshold", "choose_thresholds", "decisions", "score"]
