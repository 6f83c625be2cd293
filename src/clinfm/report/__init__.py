"""One self-contained HTML page per run: summary, metrics with confidence intervals, curves, config.

``write_report(run_dir)`` reads a run folder (``run.json`` and whichever of ``metrics.json``,
``efficiency.json``, ``predictions*.parquet`` and ``logs/**/metrics.csv`` exist) and writes
``run_dir/report.html``. The page loads nothing from the network, so results on health data can
be opened offline and shared as one file.
"""

from __future__ import annotations

from clinfm.report.html import write_report

__all__ = ["write_report"]
