"""clinfm: pre-train models on large unlabeled health data; transfer them to small cohorts and other sites.

The Python API is the product; the ``clinfm`` command line is a thin layer over it::

    import clinfm
    clinfm.synthesize("site_a", patients=5000, site="site_a", coding="icd9")
    clinfm.validate("site_a").raise_for_errors()
    events = clinfm.scan_events("site_a")          # a lazy Polars frame of MEDS events
    labels = clinfm.read_labels("site_a/tasks/asthma_exacerbation_180d.parquet")
    visible = clinfm.events_as_of(events, labels)  # exactly what a model may see per label
"""

import os as _os

# Polars' allocator (jemalloc) keeps freed pages for a second by default, so the phases of a
# conversion add up instead of sharing memory. Returning them within 100 ms cuts peak memory by
# 40% at no cost in time (docs/benchmarks.md). Only takes effect if Polars is not imported yet; a
# user's own setting wins.
_os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:100,muzzy_decay_ms:0")

__version__ = "0.1.0"

from clinfm.demo import demo
from clinfm.errors import InputError
from clinfm.events.convert.csv_mapping import convert_csv, load_mapping
from clinfm.events.convert.mimic3 import convert_mimic3
from clinfm.events.convert.omop import convert_omop
from clinfm.events.convert.to_mimic3 import export_mimic3
from clinfm.events.describe import DatasetDescription, describe
from clinfm.events.labels import events_as_of
from clinfm.events.meds import (
    read_codes,
    read_dataset_metadata,
    read_labels,
    read_splits,
    scan_events,
    task_files,
    write_dataset,
    write_labels,
)
from clinfm.events.splits import assign_splits
from clinfm.events.synth import synthesize
from clinfm.events.validate import ValidationReport, validate
from clinfm.vocab.vocabulary import Vocabulary

__all__ = [
    "DatasetDescription",
    "InputError",
    "ValidationReport",
    "Vocabulary",
    "__version__",
    "assign_splits",
    "convert_csv",
    "convert_mimic3",
    "convert_omop",
    "demo",
    "describe",
    "events_as_of",
    "export_mimic3",
    "load_mapping",
    "read_codes",
    "read_dataset_metadata",
    "read_labels",
    "read_splits",
    "scan_events",
    "synthesize",
    "task_files",
    "validate",
    "write_dataset",
    "write_labels",
]
