"""The worker's RocksDB databases share one memtable budget and one block cache (real RocksDB, in a temp dir)."""
from __future__ import annotations

import os
import time

import pytest

from streams.config import Settings
from streams.worker.main import build
from streams.worker.rocksdb_memory import (MEMTABLE_BLOOM_RATIO, MEMTABLE_BYTES, SharedMemory, SharedMemoryOptions,
                                           Store, table_options)

MIB = 1024 * 1024


def _open(memory: SharedMemory, path):
    return SharedMemoryOptions(**table_options(memory), use_rocksdict=True).open(path)


def _settled_usage(memory: SharedMemory, cap: int, patience_s: float = 60.0) -> int:
    """The manager's usage once background flushes catch up (or after `patience_s`).

    The cap is soft (`allow_stall` off): a write past it asks for a flush and goes on, so
    how far usage overshoots while writing depends on how fast this machine flushes (CI
    saw 19 MiB over an 8 MiB cap). What the cap promises is that the flushes happen and
    usage comes back under it.
    """
    deadline = time.monotonic() + patience_s
    while memory.manager.get_usage() > cap and time.monotonic() < deadline:
        time.sleep(0.05)
    return memory.manager.get_usage()


def test_the_databases_memtables_stay_under_the_one_shared_cap_and_nothing_is_lost(tmp_path):
    cap = 8 * MIB
    memory = SharedMemory(memtables_bytes=cap, block_cache_bytes=2 * MIB)
    databases = [_open(memory, tmp_path / f"p{n}.db") for n in range(4)]
    value = os.urandom(1024)
    written = 48_000  # ~48 MiB over 4 databases: six times the cap
    for n in range(written):
        databases[n % 4][f"key-{n}".encode()] = value
    # Without the shared cap all 48 MiB would stay in the four databases' own 64 MiB memtables.
    assert 0 < _settled_usage(memory, cap) <= cap, "one cap for all four databases"
    assert any(name.endswith(".sst") for n in range(4) for name in os.listdir(tmp_path / f"p{n}.db")), \
        "the cap made them flush long before their own 64 MiB memtables filled"
    for n in range(0, written, 997):
        assert databases[n % 4][f"key-{n}".encode()] == value
    for database in databases:
        database.close()


def test_the_worker_tables_use_the_shared_store(tmp_path):
    settings = Settings.from_env({"TOKENPLAN_TOPIC_PREFIX": "rocks.", "TOKENPLAN_APP_ID": "rocks",
                                  "TOKENPLAN_DATA_DIR": str(tmp_path),
                                  "TOKENPLAN_ROCKSDB_WRITE_BUFFER_BYTES": str(48 * MIB)})
    wiring = build(settings).wiring
    stores = [wiring.accounts_table.data, wiring.policy_table.data]
    assert all(isinstance(store, Store) for store in stores)
    first, second = (store.rocksdb_options for store in stores)
    assert first.extra_options["memory"] is second.extra_options["memory"], "one budget per worker"
    assert first.extra_options["memory"].manager.get_buffer_size() == 48 * MIB
    assert first.write_buffer_size == MEMTABLE_BYTES
    # The accounts table's lookups of new ids miss: a memtable bloom filter answers them.
    assert first.extra_options["memtable_bloom_ratio"] == MEMTABLE_BLOOM_RATIO > 0
    assert second.extra_options["memtable_bloom_ratio"] == 0
    bloomed = SharedMemoryOptions(**table_options(SharedMemory(8 * MIB, 2 * MIB), MEMTABLE_BLOOM_RATIO),
                                  use_rocksdict=True).open(tmp_path / "bloomed.db")
    bloomed[b"i:present"] = b"x"
    assert bloomed.get(b"i:present") == b"x" and bloomed.get(b"i:absent") is None
    bloomed.close()


def test_a_shared_store_without_its_budget_is_refused(tmp_path):
    with pytest.raises(ValueError, match="table_options"):
        Store("tokenplan-rocksdb://", app=build(Settings.from_env({"TOKENPLAN_DATA_DIR": str(tmp_path)})).wiring.app,
              table=None, table_name="x")
