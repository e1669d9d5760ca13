"""One partition's keyed state: account records, the partition record, and the event memory.

All of it lives in one faust table (`accounts`), so every write of a unit of work goes
to one changelog partition, in order: a write torn by a crash is a prefix of it. Keys:

| key | value |
|---|---|
| `a:` account_id | the account record (`records.AccountRecord`, ~0.3-0.6 KB) |
| `p:` partition | the partition record (`records.PartitionRecord`) |
| `i:` h16(account, event_id) | an applied event id: fingerprint (8 B), day (4 B), ledger-log offset (8 B) |
| `x:` day (4 B) + first and last offset (8 B each) | the h16 of the ids a unit of work first remembered under that day |
| `u:` h16(account, package) + offset (8 B) | usage entries appended by that record: `us,micro;...` |

`i:` and `u:` keys are written once and never rewritten (each record appends new keys);
a whole day of ids is dropped when it leaves the dedupe window (`x:` lists them).
Values carry the ledger-log offset of the record that wrote them; a unit of work
starting at offset O (one record, or several consecutive records of the partition)
ignores stored memory at or after O: only a torn earlier try can have written it, and
that try may have cut its units elsewhere, so each `u:` chunk holds one record's entries
and is rewritten under the same key when that record is applied again.

`PartitionState` reads through a `Backend` (RocksDB in the worker, dicts in replays and
tests) and collects a record's writes in a `Writes` overlay; the worker delivers them
to the changelog, then writes them locally (streams.worker.applier).
"""
from __future__ import annotations

import bisect
import hashlib
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Protocol

from streams.processing.records import AccountRecord, PartitionRecord
from streams.ledger import Limits
from streams.ledger.memory import day_of
from streams.ledger.packages import Entries

__all__ = ["Backend", "DictBackend", "PartitionState", "RecordCache", "Writes", "account_key"]

_ID = struct.Struct(">8sIq")
_DAY_OFFSETS = struct.Struct(">Iqq")
_OFFSET = struct.Struct(">q")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _h16(*parts: str) -> bytes:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).digest()


def account_key(account_id: str) -> bytes:
    return b"a:" + account_id.encode("utf-8")


def partition_key(partition: int) -> bytes:
    return b"p:%d" % partition


class Backend(Protocol):
    """Read access to one partition's committed keys."""

    def get(self, key: bytes) -> bytes | None: ...
    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class DictBackend:
    """Committed keys in a dict, with the prefix indexes the scans need (replays, tests)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self._groups: dict[bytes, set[bytes]] = {}

    @staticmethod
    def _group(key: bytes) -> bytes:
        if key.startswith(b"u:"):
            return key[:18]
        if key.startswith(b"x:"):
            return key[:6]
        return key[:2]

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self._groups.get(self._group(prefix), ())):
            if key.startswith(prefix):
                yield key, self.data[key]

    def write(self, writes: "Writes") -> None:
        for key, value in writes.items():
            group = self._groups.setdefault(self._group(key), set())
            if value is None:
                self.data.pop(key, None)
                group.discard(key)
            else:
                self.data[key] = value
                group.add(key)


class RecordCache:
    """Decoded account records, least recently used first out past `capacity` (named bound)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._records: OrderedDict[bytes, AccountRecord] = OrderedDict()

    def get(self, key: bytes) -> AccountRecord | None:
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
        return record

    def put(self, key: bytes, record: AccountRecord) -> None:
        self._records[key] = record
        self._records.move_to_end(key)
        if len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def clear(self) -> None:
        self._records.clear()

    def __len__(self) -> int:
        return len(self._records)


class Writes(dict):
    """The keys one unit of work writes (None: delete), in write order (a dict keeps it)."""

    def ordered(self) -> list[tuple[bytes, bytes | None]]:
        """Event memory first, then accounts, the partition record last: a torn (prefix)
        write never holds an account record without the memory its record wrote."""
        memory: list[tuple[bytes, bytes | None]] = []
        accounts: list[tuple[bytes, bytes | None]] = []
        partition: list[tuple[bytes, bytes | None]] = []
        for item in self.items():
            prefix = item[0][:2]
            (accounts if prefix == b"a:" else partition if prefix == b"p:" else memory).append(item)
        return memory + accounts + partition


class PartitionState:
    """The store `Processor` works on for one partition and one unit of work (see module doc).

    `offset` is the ledger-log offset of the unit's first record (None for a clock
    tick): memory values written at or after it are leftovers of a torn earlier try.
    `record_offset` is the offset of the record being applied (set by the processor):
    what it writes is tagged with it.
    """

    def __init__(self, backend: Backend, partition: int, limits: Limits, cache: RecordCache | None = None,
                 offset: int | None = None) -> None:
        self.backend = backend
        self.partition = partition
        self.limits = limits
        self.cache = cache
        self.offset = offset
        self.record_offset = offset
        self.writes = Writes()
        self._records: dict[bytes, AccountRecord] = {}
        self._ids: dict[bytes, str] = {}
        self._new_ids: dict[int, list[bytes]] = {}
        #: (u: prefix, record offset) -> entries (micros since the epoch, micro-credits).
        self._entries: dict[tuple[bytes, int], list[tuple[int, int]]] = {}
        self._partition: PartitionRecord | None = None
        #: (event_id, account_id, its i: key) of the last id looked up (`_id_key`).
        self._last_id: tuple[str, str, bytes] = ("", "", b"")
        self._chunk_prefixes: dict[tuple[str, str], bytes] = {}
        #: Input events in the unit (set by the processor; /health counts them).
        self.events_count = 0

    # ------------------------------------------------------------ accounts

    def get(self, account_id: str) -> AccountRecord | None:
        """The account record (this unit's version when it wrote one)."""
        key = account_key(account_id)
        record = self._records.get(key)
        if record is not None:
            return record
        return self.stored(account_id)

    def stored(self, account_id: str) -> AccountRecord | None:
        """The committed record, ignoring this unit's writes."""
        key = account_key(account_id)
        record = self.cache.get(key) if self.cache is not None else None
        if record is None:
            raw = self.backend.get(key)
            if raw is None:
                return None
            record = AccountRecord.from_bytes(raw, self.limits)
            if self.cache is not None:
                self.cache.put(key, record)
        return record

    def put(self, account_id: str, record: AccountRecord) -> None:
        self._records[account_key(account_id)] = record

    def account_ids(self) -> list[str]:
        """Every account of the partition (committed or written by this unit)."""
        ids = {key[2:].decode("utf-8") for key, _ in self.backend.scan(b"a:")}
        ids.update(key[2:].decode("utf-8") for key in self._records)
        return sorted(ids)

    # ------------------------------------------------------------ the partition record

    def get_partition(self) -> PartitionRecord:
        if self._partition is None:
            raw = self.backend.get(partition_key(self.partition))
            self._partition = PartitionRecord() if raw is None else PartitionRecord.from_bytes(raw)
        return self._partition

    def put_partition(self, record: PartitionRecord) -> None:
        self._partition = record
        self.writes[partition_key(self.partition)] = record.to_bytes()

    # ------------------------------------------------------------ the event memory (streams.ledger.memory)

    def _id_key(self, account_id: str, event_id: str) -> bytes:
        """b"i:" + h16(account, id), computed once for the lookup and the remember of one event."""
        last = self._last_id
        if last[0] == event_id and last[1] == account_id:
            return last[2]
        key = b"i:" + _h16(account_id, event_id)
        self._last_id = (event_id, account_id, key)
        return key

    def _chunk_prefix(self, account_id: str, package_id: str) -> bytes:
        """b"u:" + h16(account, package), memoized for the unit (a charge reads and appends a package's chunks)."""
        prefix = self._chunk_prefixes.get((account_id, package_id))
        if prefix is None:
            prefix = self._chunk_prefixes[(account_id, package_id)] = b"u:" + _h16(account_id, package_id)
        return prefix

    def fingerprint_of(self, account_id: str, event_id: str) -> str | None:
        key = self._id_key(account_id, event_id)
        fingerprint = self._ids.get(key)
        if fingerprint is not None:
            return fingerprint
        raw = self.backend.get(key)
        if raw is None:
            return None
        packed, _day, offset = _ID.unpack(raw)
        if self.offset is not None and offset >= self.offset:
            return None  # written by a torn earlier try of this very record
        return packed.hex()

    def usage_entries(self, account_id: str, package_id: str) -> Entries:
        prefix = self._chunk_prefix(account_id, package_id)
        entries: Entries = []
        for key, value in self.backend.scan(prefix):
            (offset,) = _OFFSET.unpack(key[18:])
            if self.offset is None or offset < self.offset:
                entries.extend(_decode_entries(value))
        for (chunk, _offset), appended in self._entries.items():
            if chunk == prefix:
                entries.extend((_instant(us), micro) for us, micro in appended)
        return entries

    def remember(self, account_id: str, event_id: str, fingerprint: str, occurred_at: datetime) -> None:
        key = self._id_key(account_id, event_id)
        day = day_of(occurred_at)
        self._ids[key] = fingerprint
        self.writes[key] = _ID.pack(bytes.fromhex(fingerprint), day, self._record_offset_or_tick())
        self._new_ids.setdefault(day, []).append(key[2:])

    def append(self, account_id: str, appended: Iterable[tuple[str, datetime, int]]) -> None:
        for package_id, instant, micro in appended:
            prefix = self._chunk_prefix(account_id, package_id)
            self._entries.setdefault((prefix, self._record_offset_or_tick()), []).append((_micros(instant), micro))

    def forget_package(self, account_id: str, package_id: str) -> None:
        prefix = self._chunk_prefix(account_id, package_id)
        for chunk in [chunk for chunk in self._entries if chunk[0] == prefix]:
            del self._entries[chunk]
        for key, _ in list(self.backend.scan(prefix)):
            self.writes[key] = None

    def expire_days(self, days: list[int], before_day: int | None) -> list[int]:
        """Delete the ids of every day < before_day (whole days); the days still kept."""
        if before_day is None:
            return days
        kept = []
        for day in days:
            if day >= before_day:
                kept.append(day)
                continue
            for key, value in list(self.backend.scan(b"x:" + day.to_bytes(4, "big"))):
                for at in range(0, len(value), 16):
                    self.writes[b"i:" + value[at:at + 16]] = None
                self.writes[key] = None
            for hashed in self._new_ids.pop(day, ()):
                self.writes[b"i:" + hashed] = None
        return kept

    # ------------------------------------------------------------ the unit of work

    def _offset_or_tick(self) -> int:
        return -1 if self.offset is None else self.offset

    def _record_offset_or_tick(self) -> int:
        return -1 if self.record_offset is None else self.record_offset

    def finish(self) -> Writes:
        """Add the memory appended and the account records to the writes; return them all."""
        for day, hashes in self._new_ids.items():
            # Keyed by the unit's first and last record: a retry cut elsewhere writes its own list.
            key = b"x:" + _DAY_OFFSETS.pack(day, self._offset_or_tick(), self._record_offset_or_tick())
            self.writes[key] = b"".join(hashes)
        for (prefix, record_offset), entries in self._entries.items():
            self.writes[prefix + _OFFSET.pack(record_offset)] = ";".join(
                f"{us},{micro}" for us, micro in entries).encode("ascii")
        for key, record in self._records.items():
            self.writes[key] = record.to_bytes()
        return self.writes

    def new_id_days(self) -> list[int]:
        return sorted(self._new_ids)

    def applied_records(self) -> dict[bytes, AccountRecord]:
        """The records this unit wrote, by key (not durable yet: for lookups only)."""
        return dict(self._records)

    def written_records(self) -> list[tuple[str, AccountRecord]]:
        return [(key[2:].decode("utf-8"), record) for key, record in self._records.items()]

    def commit_to_cache(self) -> None:
        """After the writes are durable: the decoded records become the cached ones."""
        if self.cache is not None:
            for key, record in self._records.items():
                self.cache.put(key, record)


def _micros(instant: datetime) -> int:
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _instant(micros: int) -> datetime:
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=micros)


def _decode_entries(value: bytes) -> Entries:
    entries: Entries = []
    for item in value.decode("ascii").split(";"):
        if item:
            us, micro = item.split(",")
            entries.append((_instant(int(us)), int(micro)))
    return entries


def merge_days(kept: list[int], new: list[int]) -> list[int]:
    days = list(kept)
    for day in new:
        index = bisect.bisect_left(days, day)
        if index == len(days) or days[index] != day:
            days.insert(index, day)
    return days
