"""One self-contained HTML page per run: summary, metrics with confidence intervals, curves, config.

``write_report(run_dir)`` reads a run folder (``run.json`` and whichever of ``metrics.json``,
``efficiency.json``, ``predictions*.parquet`` and ``logs/**/metrics.csv`` exist) and writes
``run_dir/report.html``. The page loads nothing from the network, so results on health data can
be opened offline and shared as one file.

The package is shared by every system and imports none of them: it holds the page
(``templates/``, :mod:`~clinfm.report.html`), the plots, the run-folder reader
(:mod:`~clinfm.report.folder`) and the common blocks (:mod:`~clinfm.report.blocks`). Each system
writes its own section in its ``report`` module (``clinfm.ecg.report`` and so on), found by run
kind through :mod:`~clinfm.report.systems`.
"""

from __future__ import annotations

from clinfm.report.html import write_report

__all__ = ["write_report"]
