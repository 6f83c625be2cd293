"""The AUROC difference of two methods of one run on the same test patients, with a paired
patient-level bootstrap interval (both methods scored on each resample).

    python benchmarks/paired_difference.py RUN METHOD_A METHOD_B [--n-bootstrap 2000]

RUN is a run folder with ``predictions/<method>.parquet`` (the first seed at the largest label
share), e.g. a ``clinfm transfer`` run: ``text/shared ids/shared``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

from clinfm.evaluate.metrics import auroc, bootstrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    args = parser.parse_args()
    a, b = (pl.read_parquet(args.run / "predictions" / f"{m}.parquet") for m in (args.a, args.b))
    if not a.select("subject_id", "prediction_time").equals(b.select("subject_id", "prediction_time")):
        raise SystemExit("the two methods were not scored on the same samples")
    y = a["boolean_value"].to_numpy().astype(int)
    scores = np.column_stack([a["predicted_boolean_probability"], b["predicted_boolean_probability"]])

    def difference(labels, s):  # the labels twice: one resample draws the same rows for both methods
        return auroc(labels[:, 0], s[:, 0]) - auroc(labels[:, 1], s[:, 1])

    patients = a["subject_id"].to_numpy()
    labels = np.column_stack([y, y])
    estimate = bootstrap(difference, labels, scores, n_bootstrap=args.n_bootstrap, groups=patients)
    print(
        f"AUROC {args.a} - {args.b}: {estimate.value:+.3f} "
        f"(95% CI {estimate.low:+.3f} to {estimate.high:+.3f})"
    )


if __name__ == "__main__":
    main()
