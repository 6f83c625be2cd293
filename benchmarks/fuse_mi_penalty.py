"""What the CLUB mutual-information penalty does to the fusion model during training.

Trains the disentangled fusion model with and without the penalty on the same samples and prints,
per epoch, the training BCE, the (clamped, weighted) penalty, the gradient norms of both on the
model's parameters, q's mean log-variance, and the spread across the batch (mean per-dimension SD)
of the lab-specific, note-specific and shared representations.

    python benchmarks/fuse_mi_penalty.py --data syn3000 --labs-model labs --epochs 8
"""

from __future__ import annotations

import argparse
import platform
from datetime import date

import numpy as np
import torch
import torch.nn.functional as F

from clinfm.fuse.recipes import (
    InputSettings,
    build_model,
    datasets,
    fusion_preset,
    load_lab_branch,
    prepare_notes,
    read_cohort,
)
from clinfm.train.engine import TrainConfig, make_loader, parameter_groups


def _norm(grads) -> float:
    present = [g for g in grads if g is not None]
    return float(torch.sqrt(sum((g**2).sum() for g in present))) if present else 0.0


def _probe(model, params, batch, weight: float) -> list[float]:
    model.train()
    parts = model.represent(batch)
    bce = F.binary_cross_entropy_with_logits(model.classifier(parts["features"]), batch["labels"])
    spread = [float(parts[k].std(0).mean()) for k in ("labs", "notes", "shared")]
    if model.club is None:
        return [
            float(bce),
            0.0,
            _norm(torch.autograd.grad(bce, params, allow_unused=True)),
            0.0,
            0.0,
            *spread,
        ]
    specific = torch.cat([parts["labs"], parts["notes"]], 1)
    penalty = weight * model.club.mi_penalty(specific, parts["shared"]).clamp(min=0)
    bce_grad = _norm(torch.autograd.grad(bce, params, retain_graph=True, allow_unused=True))
    penalty_grad = (
        _norm(torch.autograd.grad(penalty, params, allow_unused=True)) if float(penalty) > 0 else 0.0
    )
    logvar = float(model.club.conditional(specific.detach())[1].mean())
    return [float(bce), float(penalty.detach()), bce_grad, penalty_grad, logvar, *spread]


def run(cohort, branch, weight: float, epochs: int, seed: int) -> None:
    torch.manual_seed(seed)
    config = fusion_preset("small", mi_weight=weight)
    model = build_model(cohort.settings, branch, config, len(cohort.names), cohort.note_dim)
    params = [p for g in parameter_groups(model, TrainConfig()) for p in g["params"]]
    optimizer = torch.optim.AdamW(params, lr=5e-4)
    loader = make_loader(
        datasets(cohort, branch, config)["train"], TrainConfig(batch_size=64, seed=seed), train=True
    )
    print(f"\n### MI weight {weight}\n")
    print("| epoch | BCE | penalty | grad BCE | grad penalty | q log-var | SD labs | SD notes | SD shared |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for epoch in range(epochs):
        rows = []
        for step, batch in enumerate(loader):
            if step % 10 == 0:
                rows.append(_probe(model, params, batch, weight))
            model.train()
            optimizer.zero_grad()
            model.loss(batch, "multilabel")[0].backward()
            optimizer.step()
        values = np.mean(rows, axis=0)
        print(
            f"| {epoch} | "
            + " | ".join(f"{v:.4f}" if i < 2 else f"{v:.3f}" for i, v in enumerate(values))
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="A MEDS dataset with the diseases task.")
    parser.add_argument("--labs-model", required=True, help="A lab encoder from clinfm fuse pretrain-labs.")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--weights", default="0.1,0", help="MI weights to compare.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, {date.today()}")
    cohort = read_cohort(args.data, "diseases", InputSettings())
    branch = load_lab_branch(args.labs_model)[0]
    prepare_notes(cohort, branch)
    for weight in (float(w) for w in args.weights.split(",")):
        run(cohort, branch, weight, args.epochs, args.seed)


if __name__ == "__main__":
    main()
