"""What every clinfm command shares: one-line errors with exit code 2, progress bars, and the
Lightning training options (devices, DDP, precision, loggers). Each system's sub-commands import it."""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from enum import StrEnum

import typer
from rich.console import Console
from rich.markup import escape

from clinfm import progress
from clinfm.errors import InputError, Terminated

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command ended by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


def user_facing(command):
    """Run a command with progress shown; bad input becomes one line and exit code 2, Ctrl-C (or
    SIGTERM) one line saying how to go on and exit code 130 (143)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        import polars as pl
        import pyarrow as pa

        progress.enable()
        _log_to_display()
        before = _terminate_gracefully()
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            progress.stop()
            error_console.print(f"[bold yellow]interrupted:[/] {_after_interrupt(kwargs)}", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            progress.stop()
            error_console.print(f"[bold yellow]terminated:[/] {_after_interrupt(kwargs)}", highlight=False)
            raise typer.Exit(EXIT_TERMINATED) from None
        except (InputError, pl.exceptions.PolarsError, pa.ArrowException, OSError) as err:
            if os.environ.get("CLINFM_DEBUG"):
                raise
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        finally:
            if before is not None:  # a command run inside another program (a test, a notebook)
                signal.signal(signal.SIGTERM, before)

    return run


def _terminate_gracefully():
    """SIGTERM raises :class:`Terminated` where the program is, as Ctrl-C raises KeyboardInterrupt,
    instead of ending the process on the spot: the run then keeps its resumable state, removes its
    half-written output and says how to go on. (Lightning, while it trains, calls this handler
    after noting the signal itself.) Returns the handler it replaced, None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _log_to_display() -> None:
    """Log records (INFO and up) as lines of clinfm's display, never through its live rows."""
    root = logging.getLogger()
    if not any(isinstance(handler, progress.LogToDisplay) for handler in root.handlers):
        handler = progress.LogToDisplay()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def _after_interrupt(options: dict) -> str:
    """What an interrupted command left and how to go on: resumable runs keep finished work."""
    if options.get("resume") is not None:
        return (
            "finished epochs and models are kept beside the output (.<out>.partial); rerun the same "
            "command to resume, or add --no-resume to start over"
        )
    return "nothing was written; rerun the command to start again"


class Logger(StrEnum):
    csv = "csv"
    tensorboard = "tensorboard"
    mlflow = "mlflow"
    none = "none"


OVERWRITE_OPTION = typer.Option(False, help="Replace OUT if it exists (only once the new one is complete).")
RESUME_OPTION = typer.Option(
    True, help="Continue an interrupted run of the same command (--no-resume: start over)."
)


def training_settings(
    defaults,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    seed: int,
    accelerator: str,
    devices: str,
    num_nodes: int,
    distributed: str,
    precision: str,
    logger: Logger,
):
    """A recipe's training settings with the user's choices on top."""
    changes = {"seed": seed, "accelerator": accelerator, "num_nodes": num_nodes, "distributed": distributed}
    changes |= {"precision": precision, "logger": logger.value, "devices": devices_value(devices)}
    changes |= {
        k: v for k, v in (("max_epochs", epochs), ("batch_size", batch_size), ("lr", lr)) if v is not None
    }
    return defaults.replace(**changes)


def devices_value(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def training_options(command):
    """Add the Lightning options every training command shares (devices, DDP, precision, logs)."""
    import inspect

    options = {
        "epochs": (
            int | None,
            typer.Option(None, min=1, help="Maximum epochs of every model trained (default: each recipe's)."),
        ),
        "batch_size": (
            int | None,
            typer.Option(None, min=1, help="Samples per batch (default: the recipe's)."),
        ),
        "lr": (
            float | None,
            typer.Option(
                None,
                min=0.0,
                help="Learning rate of the model trained or fine-tuned (not the from-scratch baselines).",
            ),
        ),
        "seed": (int, typer.Option(0, help="Random seed.")),
        "accelerator": (str, typer.Option("auto", help="cpu, gpu, mps or auto.")),
        "devices": (str, typer.Option("auto", help="Devices per node: a number or auto.")),
        "num_nodes": (int, typer.Option(1, min=1, help="Machines to train on (DDP).")),
        "distributed": (str, typer.Option("auto", help="Lightning strategy: auto, ddp, fsdp, ...")),
        "precision": (str, typer.Option("auto", help="auto (bf16/16 mixed on CUDA, else 32), 32-true, ...")),
        "logger": (
            Logger,
            typer.Option(Logger.csv, help="Training logs: csv (default), tensorboard, mlflow."),
        ),
    }
    signature = inspect.signature(command)
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, (kind, default) in options.items()
    ]
    named = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=[*named, *extra])  # they arrive in **training
    return command
