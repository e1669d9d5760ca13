"""Batches of faust events: apply many events, write each touched table key once.

Why: faust's per-write cost (RocksDB put, changelog message, persisted-offset write on
the changelog ack) is most of the worker's time when every event writes its account.
Within a batch the ledger applies events to in-memory records and writes each touched
key once, in the context of the last event of that key's partition: faust's RocksDB
store and changelog pick the partition from the *current event*, so the write must run
with an event of the right partition as current.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from faust.streams import _current_event


@contextmanager
def in_event_context(event) -> Iterator[None]:
    """Make `event` faust's current event for table writes inside the block."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
