"""A run's working folder beside its output: where an interrupted run resumes from.

``<out>`` is written atomically when the run finishes; until then its state (the engine's resume
checkpoints, logs, cached points) lives in ``.<out>.partial/``, so rerunning the same command
continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from clinfm.errors import InputError
from clinfm.io import output_lock, write_json_atomic
from clinfm.train.engine import is_global_zero


def partial_dir(out: Path) -> Path:
    """Where a run writing ``out`` keeps its state until it finishes."""
    return out.parent / f".{out.name}.partial"


def now() -> str:
    """The time a run was created, for run.json (UTC, to the second)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_run(folder: Path, kind: str, title: str, config: dict, results: dict, notes: list[str]) -> None:
    """A finished run's ``run.json``: what it was, its settings, its results' summary and notes."""
    from clinfm import __version__

    write_json_atomic(
        folder / "run.json",
        {
            "kind": kind,
            "title": title,
            "created": now(),
            "clinfm_version": __version__,
            "config": config,
            "results": results,
            "notes": notes,
        },
    )


def resume_note(result) -> list[str]:
    if result.resumed_from_epoch is None:
        return []
    return [f"This run was interrupted and resumed from the end of epoch {result.resumed_from_epoch}."]


def copy_logs(work: Path, target: Path) -> None:
    """The training logs of a finished run go with its output."""
    if (work / "logs").exists():
        shutil.copytree(work / "logs", target / "logs", dirs_exist_ok=True)


@contextmanager
def work_dir(out: Path, settings: dict, resume: bool) -> Iterator[Path]:
    """The folder an interrupted run resumes from, beside ``out``; refused if it holds a run with
    other settings (its epochs and cached predictions would be mixed with the new ones). A run that
    fails before it has anything to resume from (bad settings, bad input) leaves nothing behind.
    ``out`` is held meanwhile (:func:`clinfm.io.output_lock`): two runs never train into one
    resume folder."""
    with output_lock(out) if is_global_zero() else nullcontext():  # DDP's other processes write nothing
        yield from _work_dir(out, settings, resume)


def _work_dir(out: Path, settings: dict, resume: bool) -> Iterator[Path]:
    work = partial_dir(out)
    if work.exists() and not resume:
        shutil.rmtree(work)
    record = work / "settings.json"
    wanted = json.loads(json.dumps(settings, default=str))
    if record.exists() and json.loads(record.read_text()) != wanted:
        raise InputError(
            "holds an interrupted run with other settings; rerun the same command to resume it, "
            "or pass --no-resume to start over",
            path=work,
        )
    if is_global_zero():
        work.mkdir(parents=True, exist_ok=True)
        write_json_atomic(record, wanted)
    try:
        yield work
    except BaseException:
        # A run's own resume state, finished parts of a run of several models (kept at any depth),
        # or a prepared ECG set (a corpus read once)
        finished = [
            *work.rglob("last.ckpt"),
            *work.glob("points/*"),
            *work.glob("models/*/run.json"),
            *work.rglob("ecg_set.json"),
        ]
        resumable = bool(finished)
        if is_global_zero() and not resumable:
            shutil.rmtree(work, ignore_errors=True)
        raise
