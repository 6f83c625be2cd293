"""What frozen ECG representations keep of the synthetic patients' hidden traits.

    python benchmarks/ecg_synthetic_traits.py --synth syn --compare syn_compare

For a synthetic corpus (``clinfm ecg synth``) and a comparison run on its cohort (``clinfm ecg
compare``, which keeps its encoders under ``models/``): the traits the simulator drew for each
cohort patient (baseline heart rate, QRS width, two leads' amplitude scales, noise level) are
regenerated from the corpus' seed, and a ridge probe on every training patient of each encoder's
representation predicts them; R^2 on the held-out test patients (the probes' split, 25%).
docs/results.md uses it to ask why PCLR trails the autoencoder on heart-rate labels.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from clinfm.ecg.checkpoint import load_encoder
from clinfm.ecg.corpus import open_set, prepare
from clinfm.ecg.probes import probe_curve
from clinfm.ecg.recipes import representations
from clinfm.ecg.synth import synthetic_patients

TRAITS = {
    "baseline heart rate": lambda p: p.heart_rate,
    "QRS width": lambda p: p.qrs_width,
    "amplitude of lead I": lambda p: p.lead_scale[0],
    "amplitude of lead V2": lambda p: p.lead_scale[7],
    "noise level": lambda p: p.noise,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", type=Path, required=True, help="a folder from clinfm ecg synth")
    parser.add_argument("--compare", type=Path, required=True, help="a clinfm ecg compare run on its cohort")
    args = parser.parse_args()
    made = json.loads((args.synth / "run.json").read_text())
    total = sum(part["patients"] for part in made["results"].values())
    patients = {p.patient_id: p for p in synthetic_patients(total, seed=made["config"]["seed"])}
    for model in sorted((args.compare / "models").iterdir()):
        _, settings, _ = load_encoder(model)
        with tempfile.TemporaryDirectory() as tmp:
            prepare([args.synth / "cohort"], tmp, settings)
            cohort = open_set(tmp)
            vectors = representations(model, cohort)
            ids = cohort.patient_ids
            scores = []
            for name, trait in TRAITS.items():
                y = np.array([trait(patients[i]) for i in ids])
                point = probe_curve(
                    vectors, y, ids, task="regression", sizes=(None,), seeds=(0,), n_bootstrap=200
                )
                scores.append(f"{name} {point[0]['value']:.2f}")
        print(f"{model.name}: " + "; ".join(scores))


if __name__ == "__main__":
    main()
