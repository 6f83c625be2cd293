"""The ``clinfm`` command (``python -m clinfm``)."""

from __future__ import annotations

import os

# Polars' allocator (jemalloc) keeps freed pages for a second by default, so the phases of a
# conversion add up instead of sharing memory. Returning them within 100 ms cuts peak memory by
# about 40% at no cost in time (docs/benchmarks.md). Set before Polars loads; a user's value wins.
ALLOCATOR = "dirty_decay_ms:100,muzzy_decay_ms:0"


def main() -> None:
    os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR)
    # PyTorch's OpenMP threads spin while they wait by default: on a machine whose cores other jobs
    # share, a training step then takes 100 times longer (docs/benchmarks.md). A user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from clinfm.cli import app

    app()


if __name__ == "__main__":
    main()
