"""clinfm: pre-train models on large unlabeled health data; transfer them to small cohorts and other sites.

The Python API is the product; the ``clinfm`` command line is a thin layer over it::

    import clinfm
    clinfm.synthesize("site_a", patients=5000, site="site_a", coding="icd9")
    clinfm.validate("site_a").raise_for_errors()
    events = clinfm.scan_events("site_a")          # a lazy Polars frame of MEDS events
    labels = clinfm.read_labels("site_a/tasks/asthma_exacerbation_180d.parquet")
    visible = clinfm.events_as_of(events, labels)  # exactly what a model may see per label

    clinfm.pretrain("site_a", "ckpt")                # Claim-PT, paper preset
    clinfm.efficiency("site_a", "site_a/tasks/asthma_exacerbation_180d.parquet", "ckpt", "run")
"""

import importlib

__version__ = "0.1.0"

# Public name -> its module. Modules load on first use, so `import clinfm` is light and the CLI
# can configure Polars before Polars loads.
_API = {
    "demo": "clinfm.demo",
    "ClaimsModel": "clinfm.claims.checkpoint",
    "efficiency": "clinfm.claims.recipes",
    "embed": "clinfm.claims.recipes",
    "finetune": "clinfm.claims.recipes",
    "next_visit": "clinfm.claims.recipes",
    "predict_labels": "clinfm.claims.recipes",
    "pretrain": "clinfm.claims.recipes",
    "write_report": "clinfm.report",
    "TrainConfig": "clinfm.train.engine",
    "InputError": "clinfm.errors",
    "convert_csv": "clinfm.events.convert.csv_mapping",
    "load_mapping": "clinfm.events.convert.csv_mapping",
    "convert_mimic3": "clinfm.events.convert.mimic3",
    "convert_omop": "clinfm.events.convert.omop",
    "export_mimic3": "clinfm.events.convert.to_mimic3",
    "DatasetDescription": "clinfm.events.describe",
    "describe": "clinfm.events.describe",
    "events_as_of": "clinfm.events.labels",
    "read_codes": "clinfm.events.meds",
    "read_dataset_metadata": "clinfm.events.meds",
    "read_labels": "clinfm.events.meds",
    "read_splits": "clinfm.events.meds",
    "scan_events": "clinfm.events.meds",
    "task_files": "clinfm.events.meds",
    "write_dataset": "clinfm.events.meds",
    "write_labels": "clinfm.events.meds",
    "assign_splits": "clinfm.events.splits",
    "synthesize": "clinfm.events.synth",
    "ValidationReport": "clinfm.events.validate",
    "validate": "clinfm.events.validate",
    "Vocabulary": "clinfm.vocab.vocabulary",
}
__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'clinfm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
