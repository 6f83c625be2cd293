"""Reading a run folder: ``run.json`` (required) and whichever optional files exist.

A missing or unreadable ``run.json`` is an :class:`~clinfm.errors.InputError`; a broken optional
JSON file is one too (a blank section would hide it), while an unreadable prediction file or
training log costs only its curve and is listed in :attr:`RunFolder.problems`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from clinfm.errors import InputError
from clinfm.report import plots

MIN_CLASS_PATIENTS = 10  # test patients needed with the outcome and without it before methods are compared
MAX_EXTRA_LOGS = 4  # efficiency runs write dozens of logs; the page shows the main ones and a sample
_SEED_OR_FRACTION = re.compile(r"-[fs]\d")


@dataclass
class RunFolder:
    """Everything the page draws on, read once from the run folder."""

    path: Path
    run: dict
    metrics: dict | None = None
    efficiency: dict | None = None
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    logs: list[tuple[str, pl.DataFrame]] = field(default_factory=list)
    logs_left_out: int = 0
    problems: list[str] = field(default_factory=list)  # optional files that could not be used
    min_class_patients: int = MIN_CLASS_PATIENTS

    @property
    def kind(self) -> str:
        return self.run["kind"]

    @property
    def primary(self) -> str:
        """The method the summary leads with: as named, else the pre-trained one, else the first listed."""
        if isinstance(self.run.get("primary_method"), str):
            return self.run["primary_method"]
        listed = list(dict_at(self.metrics, "methods")) or list(dict_at(self.run, "methods"))
        return "pretrained" if "pretrained" in listed or not listed else listed[0]

    def methods(self) -> list[str]:
        """Every method named anywhere in the run, the primary first."""
        found = list(dict_at(self.run, "methods"))
        found += list(dict_at(self.metrics, "methods"))
        found += [p.get("method") for p in efficiency_points(self.efficiency) if p.get("method")]
        found += list(self.predictions)
        unique = list(dict.fromkeys(found))
        order = [*plots.KNOWN_ORDER]
        unique.sort(key=lambda m: (m != self.primary, order.index(m) if m in order else len(order)))
        return unique


# ----------------------------------------------------------------------------- reading


def read_run_folder(run_dir: str | os.PathLike, *, min_class_patients: int = MIN_CLASS_PATIENTS) -> RunFolder:
    """Read run.json (required) and whichever optional files exist. A test set with fewer than
    ``min_class_patients`` patients with (or without) the outcome names no better method."""
    path = Path(run_dir)
    run = _read_run_json(path / "run.json")
    folder = RunFolder(path=path, run=run, min_class_patients=min_class_patients)
    folder.metrics = _read_optional_json(path / "metrics.json")
    folder.efficiency = _read_optional_json(path / "efficiency.json")
    folder.predictions = _read_predictions(folder)
    folder.logs, folder.logs_left_out = _read_logs(folder)
    return folder


def _read_run_json(path: Path) -> dict:
    run = _read_json(path, missing="not found; is this a clinfm run folder?")
    if not isinstance(run, dict):
        raise InputError("must hold a JSON object with at least 'kind' and 'title'", path=path)
    for key in ("kind", "title"):
        if not isinstance(run.get(key), str):
            raise InputError(f'needs a string \'{key}\' (e.g. "kind": "finetune")', path=path)
    return run


def _read_optional_json(path: Path) -> dict | None:
    """An optional JSON file: None when absent; present but broken is an error, not a blank section."""
    if not path.exists():
        return None
    payload = _read_json(path, missing="not found")
    if not isinstance(payload, dict):
        raise InputError("must hold a JSON object", path=path)
    return payload


def _read_json(path: Path, missing: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(missing, path=path) from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})", path=path
        ) from None
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", path=path) from None
    except OSError as error:
        raise InputError(f"cannot be read ({error.strerror})", path=path) from None


def _read_predictions(folder: RunFolder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Outcome and predicted probability per method: predictions/<method>.parquet, plus the primary's."""
    files = {p.stem: p for p in sorted((folder.path / "predictions").glob("*.parquet"))}
    if (folder.path / "predictions.parquet").exists():
        files.setdefault(folder.primary, folder.path / "predictions.parquet")
    predictions = {}
    for method, path in files.items():
        try:
            frame = pl.read_parquet(path, columns=["boolean_value", "predicted_boolean_probability"])
        except Exception as error:  # a bad optional file costs its curve, not the whole report
            folder.problems.append(
                f"{path.relative_to(folder.path)} could not be read ({_first_line(error)})."
            )
            continue
        frame = frame.drop_nulls().filter(pl.col("predicted_boolean_probability").is_not_nan())
        if frame.height:
            predictions[method] = (
                frame["boolean_value"].to_numpy().astype(bool),
                frame["predicted_boolean_probability"].to_numpy().astype(float),
            )
    return predictions


def _read_logs(folder: RunFolder) -> tuple[list[tuple[str, pl.DataFrame]], int]:
    """Lightning CSV logs with a loss column: the main ones plus a few, and how many were left out."""
    logs = []
    for path in sorted((folder.path / "logs").glob("**/metrics.csv")):
        try:
            frame = pl.read_csv(path, infer_schema_length=None)
        except Exception as error:
            folder.problems.append(
                f"{path.relative_to(folder.path)} could not be read ({_first_line(error)})."
            )
            continue
        if plots.loss_columns(frame.columns):
            logs.append((_log_title(path), frame))
    main = [log for log in logs if not _SEED_OR_FRACTION.search(log[0])]
    others = sorted((log for log in logs if _SEED_OR_FRACTION.search(log[0])), key=_log_priority(folder))
    return main + others[:MAX_EXTRA_LOGS], max(len(others) - MAX_EXTRA_LOGS, 0)


def _log_priority(folder: RunFolder):
    """Sort key for per-point logs: the primary method's first, then the largest label fraction
    (the models the metrics table reports), then by name."""
    primary = folder.primary

    def key(log: tuple[str, pl.DataFrame]) -> tuple:
        name = log[0]
        fraction = re.search(r"-f([0-9.]+)-s", name)
        return (f"-{primary}-" not in name, -float(fraction.group(1)) if fraction else 0.0, name)

    return key


def _log_title(path: Path) -> str:
    """The run's folder name; CSVLogger's ``version_N`` level is skipped (N > 0 is kept as a suffix)."""
    parent = path.parent
    match = re.fullmatch(r"version_(\d+)", parent.name)
    if not match:
        return parent.name
    return parent.parent.name if match.group(1) == "0" else f"{parent.parent.name} ({parent.name})"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# ----------------------------------------------------------------------------- looking things up


def dict_at(payload: Mapping | None, key: str) -> dict:
    """``payload[key]`` when it is a dict, else an empty one: run files are read, never trusted."""
    value = (payload or {}).get(key)
    return value if isinstance(value, dict) else {}


def dig(payload: object, path: Sequence[str]) -> object:
    """``payload[a][b]...`` along ``path``, or None where any step is missing or not a mapping."""
    for key in path:
        payload = payload.get(key) if isinstance(payload, Mapping) else None
    return payload


def efficiency_points(efficiency: Mapping | None) -> list[dict]:
    """The label-efficiency points of efficiency.json (each a dict), or none."""
    points = (efficiency or {}).get("points")
    return [p for p in points if isinstance(p, dict)] if isinstance(points, list) else []
