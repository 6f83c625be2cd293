"""PCLR's comparison models, all on the one encoder (:class:`~clinfm.ecg.model.ECGResNet`).

Diamant et al. (PAPERS.md section 5) compare PCLR with three pre-training baselines, built in
ml4h's ``model_zoo/PCLR/build_model.py`` on the same Ribeiro ResNet, and with training from scratch.
Every model here shares that encoder, so the features a probe reads are always the 320-d global
average pool (``representation``), and ``predict(batch, "embed")`` returns it from ``batch["ecg"]``.

- :class:`CLOCSModel`, CLOCS' "contrastive multi-segment coding" (Kiyasseh et al., ICML 2021):
  temporally adjacent, non-overlapping segments of one ECG are a positive pair. Here: the first
  and second halves of each window, NT-Xent with PCLR's projection head and temperature (ml4h:
  "same network and loss"). Departures: the halves are encoded at their own length and sampling
  rate (ml4h's CLOCS model takes 4,096-sample inputs, so its segments were presumably stretched; no
  time-stretching here); only an ECG's own halves are positives, while CLOCS also counts other
  segments of the same patient in the batch; PCLR's ResNet replaces CLOCS' small CNN. The
  representation is taken on the full 10-s window, as for PCLR.
- :class:`AutoencoderModel`, ml4h's "CAE": the encoder, then a decoder that mirrors it (for each
  unit in reverse: up-sample by its factor, convolve to the previous filter count, BN, activation),
  then a 1x1 convolution to the leads. By default, as in ml4h, the decoder starts from the
  representation (a linear map back to the last feature map's shape), so the GAP vector is the
  bottleneck; ``from_representation=False`` decodes the last feature map instead. Departures: ReLU,
  not swish; mean squared error, not log-cosh (ml4h reports MSE as its metric); nearest up-sampling
  and a "same" convolution instead of a strided transposed convolution (the same weight count).
- :class:`SupervisedModel`: the encoder trained from scratch with one linear output on the
  representation, binary ("classify", BCE) or continuous ("regress", MSE): the "from scratch"
  comparison, and a one-target stand-in for ml4h's Ribeiro-R (six rhythm and conduction labels,
  each a 2-way softmax).

ml4h's learning rates, for reference (not enforced): CLOCS Adam 1e-2, CAE Adam 1e-4, Ribeiro-R
Adam 1e-2. :func:`pretraining_model` builds a pre-training model by name; PCLR trains on
:class:`~clinfm.ecg.data.ECGPairs`, CLOCS and the autoencoder on
:class:`~clinfm.ecg.data.ECGWindows`.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from clinfm.ecg.model import (
    ECGResNet,
    PCLRModel,
    ResNetConfig,
    SameConv1d,
    batch_ecgs,
)
from clinfm.errors import InputError


def split_halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and second half along time of each ECG (batch x leads x samples): CLOCS' two views."""
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]


class CLOCSModel(PCLRModel):
    """PCLR's encoder, projection head and NT-Xent; the two views are the halves of each ECG."""

    def loss(self, batch: dict, objective: str = "pretrain") -> tuple[torch.Tensor, dict]:
        """NT-Xent between the halves' projections, both halves encoded in one pass (shared BN)."""
        x = batch_ecgs(batch)
        self.encoder.check(x)
        segment = 2 * self.encoder.downsampling
        if x.shape[-1] % segment:
            raise InputError(
                f"CLOCS encodes each half of an ECG, so samples must be a multiple of {segment}, "
                f"got shape {tuple(x.shape)}"
            )
        first, second = split_halves(x)
        return super().loss({"first": first, "second": second}, objective)


class UpBlock(nn.Sequential):
    """Up-sample by ``factor``, then a "same" convolution, BN and ReLU: one encoder unit undone."""

    def __init__(self, in_filters: int, out_filters: int, factor: int, kernel: int):
        upsample = nn.Upsample(scale_factor=factor, mode="nearest") if factor > 1 else nn.Identity()
        super().__init__(
            upsample, SameConv1d(in_filters, out_filters, kernel), nn.BatchNorm1d(out_filters), nn.ReLU()
        )


class ECGDecoder(nn.Module):
    """The encoder in reverse: last feature map (or the representation) -> leads x samples.

    With ``from_representation`` a linear layer first maps the representation to the last feature
    map's shape (filters x samples / down-sampling at the configured length), as ml4h's CAE does.
    """

    def __init__(self, config: ResNetConfig, *, from_representation: bool = True):
        super().__init__()
        last_samples, last_filters = config.units[-1]
        self.feature_shape = (last_filters, last_samples)
        self.expand = nn.Linear(last_filters, last_filters * last_samples) if from_representation else None
        # (samples, filters) after the stem and after each unit; each unit is undone in reverse.
        shapes = [(config.samples, config.stem_filters), *config.units]
        blocks = [
            UpBlock(filters, previous_filters, previous_samples // samples, config.kernel)
            for (previous_samples, previous_filters), (samples, filters) in pairwise(shapes)
        ]
        self.blocks = nn.Sequential(*reversed(blocks))
        self.out = nn.Conv1d(config.stem_filters, config.leads, 1)  # linear output in mV, with offsets

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.expand is not None:
            h = self.expand(h).view(-1, *self.feature_shape)
        return self.out(self.blocks(h))


class AutoencoderModel(nn.Module):
    """The encoder and a mirrored decoder, trained to reconstruct the ECG (mean squared error, mV)."""

    def __init__(self, config: ResNetConfig | None = None, *, from_representation: bool = True):
        super().__init__()
        self.config = config or ResNetConfig()
        self.encoder = ECGResNet(self.config)
        self.decoder = ECGDecoder(self.config, from_representation=from_representation)
        for module in self.decoder.modules():
            if isinstance(module, SameConv1d):  # as the encoder: he_normal fan-in
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's estimate of ``x`` (same shape), in the input's units."""
        features = self.encoder.features(x)
        if self.decoder.expand is not None:
            return self.decoder(features.mean(dim=-1))
        return self.decoder(features)

    def loss(self, batch: dict, objective: str = "pretrain") -> tuple[torch.Tensor, dict]:
        x = batch_ecgs(batch)
        self.encoder.check(x)
        if x.shape[-1] != self.config.samples:
            raise InputError(
                f"the autoencoder reconstructs {self.config.samples}-sample ECGs, got shape {tuple(x.shape)}"
            )
        return F.mse_loss(self.reconstruct(x), x), {}

    def predict(self, batch: dict, objective: str = "embed") -> torch.Tensor:
        """The representation of ``batch["ecg"]``, whatever the objective."""
        return self.representation(batch_ecgs(batch))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Stem, each residual unit, then the whole decoder."""
        return [*self.encoder.layer_groups(), list(self.decoder.parameters())]


#: The supervised tasks and the engine objective each trains under.
TASK_OBJECTIVES = {"binary": "classify", "regression": "regress"}


class SupervisedModel(nn.Module):
    """The encoder from scratch with ``Linear(representation, 1)``: a probability or a value.

    ``task="binary"`` trains on objective "classify" (BCE with logits on ``batch["label"]`` in
    {0, 1}; ``predict`` gives the probability, so the engine's validation AUROC applies);
    ``task="regression"`` on "regress" (MSE; ``predict`` gives the value). ``predict(batch,
    "embed")`` gives the representation.
    """

    def __init__(self, config: ResNetConfig | None = None, task: str = "binary"):
        super().__init__()
        if task not in TASK_OBJECTIVES:
            raise InputError(f"task must be one of {', '.join(TASK_OBJECTIVES)}, not {task!r}")
        self.config = config or ResNetConfig()
        self.task = task
        self.encoder = ECGResNet(self.config)
        self.output = nn.Linear(self.config.representation, 1)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def _output(self, batch: dict) -> torch.Tensor:
        return self.output(self.representation(batch_ecgs(batch))).squeeze(-1)

    def _check_objective(self, objective: str) -> None:
        expected = TASK_OBJECTIVES[self.task]
        if objective != expected:
            raise InputError(
                f"a {self.task} SupervisedModel trains on objective {expected!r}, not {objective!r}"
            )

    def loss(self, batch: dict, objective: str) -> tuple[torch.Tensor, dict]:
        self._check_objective(objective)
        if "label" not in batch:
            raise InputError("supervised batch lacks 'label'; build the dataset with labels")
        output, label = self._output(batch), batch["label"].to(torch.float32)
        if self.task == "binary":
            return F.binary_cross_entropy_with_logits(output.float(), label), {}
        return F.mse_loss(output.float(), label), {}

    def predict(self, batch: dict, objective: str) -> torch.Tensor:
        """The representation for "embed"; else the probability (binary) or the value (regression)."""
        if objective == "embed":
            return self.representation(batch_ecgs(batch))
        self._check_objective(objective)
        output = self._output(batch)
        return torch.sigmoid(output) if self.task == "binary" else output

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Stem, each residual unit, then the output layer."""
        return [*self.encoder.layer_groups(), list(self.output.parameters())]


#: Pre-training objectives by name; each model's representation is the encoder's GAP output.
OBJECTIVES: dict[str, type[nn.Module]] = {
    "pclr": PCLRModel,
    "clocs": CLOCSModel,
    "autoencoder": AutoencoderModel,
}


def pretraining_model(objective: str, config: ResNetConfig | None = None) -> nn.Module:
    """A fresh pre-training model for ``objective`` (one of :data:`OBJECTIVES`)."""
    if objective not in OBJECTIVES:
        raise InputError(f"pre-training objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    return OBJECTIVES[objective](config)
