"""Which system writes a run's section: run kind -> the system's report module, imported on demand.

The report package is shared, so it names systems only as module paths, never imports them at
module level (see docs' design rule: shared packages never import a system). A system's report
module provides:

- ``KIND_INTROS``: run kind -> the sentence that opens the headline ("This run fine-tunes ...");
- ``headline(folder) -> str``: the headline paragraph, as HTML, usually ``blocks.headline(...)``;
- ``caveats(folder) -> list[str]``: plain-text caveats, usually ``blocks.caveats(...)``;
- ``section(folder) -> str``: the system's sections, as HTML built from ``clinfm.report.blocks``;
- optionally ``processing(folder) -> str``: its part of the folded data-processing details (HTML);

and registers its method names with ``blocks.add_method_labels`` when imported.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Run-kind prefix -> report module; the first prefix that matches wins, ``DEFAULT`` otherwise.
SYSTEMS = {
    "ecg-": "clinfm.ecg.report",
    "ner-": "clinfm.ner.report",
    "fuse-": "clinfm.fuse.report",
}
#: Claim-PT's kinds (finetune, efficiency, pretrain, nextvisit; cross-site transfer runs are
#: efficiency runs) predate the prefixes, so claims takes every kind no other system claims.
DEFAULT = "clinfm.claims.report"


def module_for(kind: str) -> str:
    """The dotted path of the report module that writes runs of ``kind``."""
    return next((module for prefix, module in SYSTEMS.items() if kind.startswith(prefix)), DEFAULT)


def system_for(kind: str) -> ModuleType:
    """The report module that writes runs of ``kind``, imported now (and cached by Python after)."""
    return importlib.import_module(module_for(kind))
