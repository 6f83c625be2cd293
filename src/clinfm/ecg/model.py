"""PCLR's encoder: the modified Ribeiro et al. 1-D ResNet, a projection head, and the NT-Xent model.

Diamant et al., PCLR (PAPERS.md section 5). A 12-lead, 4,096-sample ECG in millivolts goes through

    Conv1d(12 -> 64, kernel 16, no bias) -> BN -> ReLU
    4 pre-activation residual units, (output samples, filters) = (1024,128) (256,196) (64,256) (16,320)
    global average pooling -> the 320-d representation (the released model's "embed" layer)

and, for pre-training only, a projection head Linear(320, 320) -> ReLU -> Linear(320, 320) whose
outputs enter the NT-Xent loss (:mod:`clinfm.ecg.contrastive`). Probes use the representation, not
the projection, as the released model does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clinfm.checks import (
    MAX_FEED_FORWARD,
    MAX_LAYERS,
    MAX_LENGTH,
    MAX_WIDTH,
    config_from,
    each,
    integer,
    number,
    pair,
)
from clinfm.ecg.contrastive import PAPER_TEMPERATURE, nt_xent
from clinfm.errors import InputError


@dataclass(frozen=True)
class ResNetConfig:
    """The encoder's shape; ``units`` lists each residual unit's (output samples, filters)."""

    leads: int = 12
    samples: int = 4096
    stem_filters: int = 64
    kernel: int = 16
    units: tuple[tuple[int, int], ...] = ((1024, 128), (256, 196), (64, 256), (16, 320))
    dropout: float = 0.0  # PCLR trains without dropout
    projection: int = 320
    temperature: float = PAPER_TEMPERATURE

    def __post_init__(self) -> None:
        previous = self.samples
        for samples, _ in self.units:
            if samples <= 0 or previous % samples:
                raise InputError(
                    f"unit output length {samples} does not divide the previous length {previous}"
                )
            previous = samples

    @property
    def representation(self) -> int:
        """Width of the representation: the last unit's filters."""
        return self.units[-1][1]

    @classmethod
    def from_dict(cls, values: dict, *, where: object = None, section: str | None = None) -> ResNetConfig:
        """A config read from a file (``where``): every field checked before an encoder is built."""
        return config_from(
            cls,
            values,
            RESNET_RULES,
            where,
            section=section,
            convert={"units": lambda units: tuple(map(tuple, units))},
        )


#: What each field of a saved ResNetConfig may hold (clinfm.checks).
RESNET_RULES = {
    "leads": integer(1, 1024),
    "samples": integer(1, MAX_LENGTH),
    "stem_filters": integer(1, MAX_WIDTH),
    "kernel": integer(1, 1024),
    "units": each(pair(integer(1, MAX_LENGTH), integer(1, MAX_WIDTH)), 1, MAX_LAYERS),
    "dropout": number(0, 1, below=True),
    "projection": integer(1, MAX_FEED_FORWARD),
    "temperature": number(1e-4, 100),
}


PRESETS = {
    "paper": ResNetConfig(),
    # The paper's structure, narrower and on a quarter of the input length: for tests and CPU runs.
    "small": ResNetConfig(
        samples=1024, stem_filters=16, units=((256, 32), (64, 48), (16, 64), (4, 80)), projection=80
    ),
}


class SameConv1d(nn.Conv1d):
    """Conv1d with Keras "same" padding: output length = ceil(input / stride), for any kernel.

    The total padding ``(out - 1) * stride + kernel - n`` is split with the extra sample on the right
    (for kernel 16 and stride 1: 7 left, 8 right), as Keras, which the original model used, does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, stride, kernel = x.shape[-1], self.stride[0], self.kernel_size[0]
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        return super().forward(F.pad(x, (total // 2, total - total // 2)))


class ResidualUnit(nn.Module):
    """One Ribeiro pre-activation unit, downsampling by ``downsample`` and changing the filters.

    Ribeiro's Keras code passes two streams between units: ``x``, already batch-normed and activated
    (the pre-activation), and ``y``, the raw sum of the previous unit (the skip stream). Here:

        skip = maxpool(y) [+ 1x1 conv if channels change]
        y'   = conv_s(dropout(relu(bn(conv(x))))) + skip      (the residual sum)
        x'   = dropout(relu(bn(y')))                          (the next unit's pre-activation)

    and ``forward`` returns ``(x', y')``. After the stem both streams are the stem's output.
    """

    def __init__(self, in_filters: int, out_filters: int, downsample: int, kernel: int, dropout: float):
        super().__init__()
        self.conv1 = SameConv1d(in_filters, out_filters, kernel)
        self.bn1 = nn.BatchNorm1d(out_filters)
        self.conv2 = SameConv1d(out_filters, out_filters, kernel, stride=downsample)
        self.pool = nn.MaxPool1d(downsample) if downsample > 1 else nn.Identity()
        self.skip = nn.Conv1d(in_filters, out_filters, 1, bias=False) if in_filters != out_filters else None
        self.bn2 = nn.BatchNorm1d(out_filters)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.pool(y)
        if self.skip is not None:
            skip = self.skip(skip)
        main = self.dropout(F.relu(self.bn1(self.conv1(x))))
        y = self.conv2(main) + skip
        x = self.dropout(F.relu(self.bn2(y)))
        return x, y


class ECGResNet(nn.Module):
    """The PCLR encoder: ECG (batch x leads x samples) -> representation (batch x last filters)."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(
            SameConv1d(config.leads, config.stem_filters, config.kernel),
            nn.BatchNorm1d(config.stem_filters),
            nn.ReLU(),
        )
        units, filters, samples = [], config.stem_filters, config.samples
        for out_samples, out_filters in config.units:
            units.append(
                ResidualUnit(filters, out_filters, samples // out_samples, config.kernel, config.dropout)
            )
            filters, samples = out_filters, out_samples
        self.units = nn.ModuleList(units)
        for module in self.modules():
            if isinstance(module, nn.Conv1d):  # Keras' he_normal: fan-in, gain sqrt(2)
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    @property
    def downsampling(self) -> int:
        """Total down-sampling from input to the last unit (256 for both presets)."""
        return self.config.samples // self.config.units[-1][0]

    def check(self, x: torch.Tensor) -> None:
        """Raise InputError unless ``x`` is batch x leads x samples, samples a multiple of the down-sampling.

        Any such length maps onto whole samples at every unit, so shorter segments (CLOCS' half
        windows) encode with the same weights; the representation is still a mean over time.
        """
        leads, factor = self.config.leads, self.downsampling
        if x.ndim != 3 or x.shape[1] != leads or x.shape[2] == 0 or x.shape[2] % factor:
            raise InputError(
                f"ECG batch must be batch x {leads} leads x samples, samples a positive multiple of "
                f"{factor} (trained on {self.config.samples}), got shape {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last unit's activated output: batch x last filters x (samples / down-sampling)."""
        self.check(x)
        x = self.stem(x)
        y = x
        for unit in self.units:
            x, y = unit(x, y)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation: global average pool of :meth:`features` over time."""
        return self.features(x).mean(dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward`: the representation probes use."""
        return self(x)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The stem, then each residual unit (input to output)."""
        return [list(self.stem.parameters())] + [list(unit.parameters()) for unit in self.units]


def batch_ecgs(batch: dict) -> torch.Tensor:
    """``batch["ecg"]``, the single ECGs every model's ``predict`` reads, or one clear error."""
    if "ecg" not in batch:
        raise InputError(f"batch lacks 'ecg' (batch x leads x samples); it has {sorted(batch)}")
    return batch["ecg"]


class ProjectionHead(nn.Module):
    """PCLR's projection head: Dense(ReLU) -> Dense(linear), used only by the contrastive loss."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.hidden = nn.Linear(config.representation, config.projection)
        self.out = nn.Linear(config.projection, config.projection)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(h)))


class PCLRModel(nn.Module):
    """Encoder plus projection head, trained with NT-Xent on pairs of ECGs of the same patient.

    Follows the training engine's protocol: ``loss(batch, objective)`` with ``batch = {"first": B x L
    x S, "second": B x L x S}`` (row i of each is one patient's pair, as :class:`~clinfm.ecg.data.ECGPairs`
    batches); ``predict`` gives the representation of ``batch["ecg"]``, the single-ECG key every ECG
    model reads (:class:`~clinfm.ecg.data.ECGWindows`). There is one objective, so ``objective`` is
    not consulted.
    """

    def __init__(self, config: ResNetConfig | None = None):
        super().__init__()
        self.config = config or ResNetConfig()
        self.encoder = ECGResNet(self.config)
        self.head = ProjectionHead(self.config)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The GAP output: what linear probes use, as in the released model."""
        return self.encoder(x)

    def projection(self, x: torch.Tensor) -> torch.Tensor:
        """The head's output, which enters the contrastive loss."""
        return self.head(self.encoder(x))

    @staticmethod
    def _views(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [key for key in ("first", "second") if key not in batch]
        if missing:
            raise InputError(f"contrastive batch lacks {missing}; expected keys 'first' and 'second'")
        return batch["first"], batch["second"]

    def loss(self, batch: dict, objective: str = "contrastive") -> tuple[torch.Tensor, dict]:
        """NT-Xent of the two views' projections, both encoded in one pass (shared batch norm)."""
        first, second = self._views(batch)
        if first.shape != second.shape:
            raise InputError(
                f"'first' {tuple(first.shape)} and 'second' {tuple(second.shape)} differ in shape"
            )
        z = self.projection(torch.cat([first, second]))
        a, b = z.chunk(2)
        return nt_xent(a, b, self.config.temperature), {}

    def predict(self, batch: dict, objective: str = "embed") -> torch.Tensor:
        """The representation of ``batch["ecg"]``, whatever the objective."""
        return self.representation(batch_ecgs(batch))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Stem, each residual unit, then the projection head (input to output)."""
        return [*self.encoder.layer_groups(), list(self.head.parameters())]
