"""How a serving process treats its heap once everything long-lived is loaded."""

from __future__ import annotations

import gc

# Young-generation collections run every this many net allocations (CPython's default is
# 700, which a single request's objects cross several times over).
YOUNG_COLLECTION_ALLOCATIONS = 50_000


def freeze_long_lived() -> None:
    """Move everything loaded so far (models, tables, modules) out of the cyclic
    collector's scans, whose full passes otherwise show up as latency spikes, and collect
    the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, 20, 20)
