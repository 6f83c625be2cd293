"""Multi-label scores of a fusion model: thresholds chosen on the tuning split, F1 and AUROC with CIs.

MEDFuse reports F1; a probability needs a threshold to become a diagnosis, and 0.5 is wrong for a
rare disease, so each disease gets the threshold that maximises its F1 on the tuning samples (0.5
when the tuning split lacks a class of it): :func:`clinfm.evaluate.metrics.tuned_threshold`, which
the claims recipes use too. Micro F1 pools every (sample, disease) decision, macro F1 averages the
diseases present; AUROC needs no threshold. Intervals: BCa bootstrap over patients (a patient's
samples are drawn together; see :mod:`clinfm.evaluate.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clinfm.evaluate.metrics import (
    DEFAULT_THRESHOLD,
    auroc,
    best_f1_threshold,
    bootstrap,
    f1_macro,
    f1_micro,
    macro_auroc,
    tuned_threshold,
)

#: The cut maximising a disease's F1 on (y, p); shared with every binary recipe.
best_threshold = best_f1_threshold


def choose_thresholds(Y: np.ndarray | None, P: np.ndarray | None, n_labels: int) -> np.ndarray:
    """Each disease's threshold on the tuning samples (0.5 without them, or where a class is absent)."""
    if Y is None or P is None or not len(Y):
        return np.full(n_labels, DEFAULT_THRESHOLD)
    return np.array([tuned_threshold(Y[:, k] > 0, P[:, k])[0] for k in range(n_labels)])


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
