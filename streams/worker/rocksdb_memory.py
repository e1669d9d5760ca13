"""One memory budget for all of a worker's RocksDB databases (faust opens one per table partition).

faust's defaults give every partition's database three 64 MiB memtables and a 2 GiB
block cache: a 10-minute soak grew the worker from 410 to 888 MiB. Bounding each
database instead (two 8 MiB memtables) held memory but cost throughput: a database
whose two small memtables are both full stalls its writer until a flush ends, and
flushes share the 2 cores with the worker.

So the bound is shared, as RocksDB intends (its WriteBufferManager): one manager caps
the memtables of every database of the process together and flushes the largest when
the total nears the cap, and one block cache serves every database. Each database keeps
faust's large per-memtable size, so it never fills its own memtables before the shared
cap asks it to flush, and no writer stalls on its own (`allow_stall` off).

Point lookups that miss (the ledger asks for every usage event's id, and a new id is
not there) cost a search of the large memtables: ~3.2 us each. A memtable bloom filter
(`memtable_bloom_ratio` of the memtable size, whole keys) answers most misses in ~0.4-0.5
us, for ~1.5 MiB per database at the accounts table's ratio (MEMTABLE_BLOOM_RATIO).

Index and filter blocks live in that cache too, partitioned (two-level index,
partitioned filters): RocksDB otherwise keeps every SST file's whole index and bloom
filter in memory outside any bound, ~1.8 MB per million keys, and the dedupe window's ids
(35 days of them) are most keys. Measured on 6 million id keys: a missing key's lookup
4.9 -> 7.0 us, the memory bounded by the cache.

`STORE_URL` names the store class below as the app's `store` (a table's own `store=`
URL is ignored by faust when it has no host, and a host would make the database path
absolute); `register` (called by the composition root) makes faust's store registry
resolve it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust.stores
import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksStore

__all__ = ["STORE_URL", "SharedMemory", "SharedMemoryOptions", "Store", "register", "table_options"]

#: The store URL of tables whose databases share the worker's memory budget.
STORE_URL = "tokenplan-rocksdb://"
_SCHEME = STORE_URL.split(":", 1)[0]
#: The size of one memtable of one database (faust's default): large, so only the shared
#: manager's cap decides when a database flushes.
MEMTABLE_BYTES = 64 * 1024 * 1024
#: Memtables per database before its writes would stall (faust's default).
MEMTABLES_MAX = 3
#: The memtable bloom filter of the accounts table, as a share of MEMTABLE_BYTES (~10
#: bits per id key): measured, a missing key's lookup 3.5 -> 0.5 us, 1.5 MiB per database.
MEMTABLE_BLOOM_RATIO = 0.02


@dataclass(eq=False)
class SharedMemory:
    """The process's one block cache and one write-buffer manager (built once per worker)."""

    memtables_bytes: int
    block_cache_bytes: int
    cache: rocksdict.Cache = field(init=False)
    manager: rocksdict.WriteBufferManager = field(init=False)

    def __post_init__(self) -> None:
        self.cache = rocksdict.Cache(self.block_cache_bytes)
        self.manager = rocksdict.WriteBufferManager(self.memtables_bytes, False)


class SharedMemoryOptions(RocksDBOptions):
    """faust's rocksdict options, with the shared cache and write-buffer manager in place of
    a cache and memtable budget of each database's own."""

    def as_options(self) -> rocksdict.Options:
        memory: SharedMemory = self.extra_options["memory"]
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(memory.manager)
        bloom_ratio = self.extra_options.get("memtable_bloom_ratio", 0.0)
        if bloom_ratio:
            options.set_memtable_prefix_bloom_ratio(bloom_ratio)
            options.set_memtable_whole_key_filtering(True)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(memory.cache)
        # Index and filter blocks in the shared cache, in partitions loaded on demand (only
        # each file's top level pinned): otherwise every SST file's whole index and filter
        # stay in memory outside any bound, and the ids of the dedupe window grow them.
        table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        return options


class Store(FaustRocksStore):
    """faust's RocksDB store, opening its databases with `SharedMemoryOptions`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "memory" not in self.options:
            raise ValueError(f"a {STORE_URL} table needs options=table_options(SharedMemory(...))")
        self.rocksdb_options = SharedMemoryOptions(**self.options, use_rocksdict=True)


def table_options(memory: SharedMemory, memtable_bloom_ratio: float = 0.0) -> dict[str, Any]:
    """`app.Table(..., options=table_options(memory))` in an app whose store is STORE_URL;
    `memtable_bloom_ratio` > 0 for a table whose lookups often miss."""
    return {"memory": memory, "write_buffer_size": MEMTABLE_BYTES, "max_write_buffer_number": MEMTABLES_MAX,
            "memtable_bloom_ratio": memtable_bloom_ratio}


def register() -> None:
    """Let faust resolve STORE_URL to `Store` (idempotent)."""
    faust.stores.STORES.aliases[_SCHEME] = f"{__name__}:Store"
