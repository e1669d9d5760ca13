"""What the worker stores and publishes, as bytes: table values and out-topic values.

The account table value holds the core's `AccountState` together with what has been
applied (the ledger-log position and the source of the last applied event) and the
last status published for it: "remember what was applied, in the same state that
holds the balance", so a redelivery is recognised by one comparison.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from schemas import topics

from streams.ledger import AccountState, Limits, redact
from streams.ledger.json_bytes import json_bytes

_Fragment = orjson.Fragment

#: Bump with an upcaster when the table value layout changes. 2: small records (the event
#: memory moved to keys of its own); state of version 1 is rebuilt by a replay.
RECORD_FORMAT_VERSION = 2


class Source(NamedTuple):
    """Where an input event came from (input topic, partition, offset). A NamedTuple, not a
    frozen dataclass: one is built per event, at a third of the cost."""

    topic: str
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def source_of(headers) -> Source | None:
    """The input topic/partition/offset the sequencer recorded in a ledger-log record's headers."""
    found = {name: value for name, value in (headers or ())}
    try:
        return Source(found[topics.HEADER_SOURCE_TOPIC].decode(), int(found[topics.HEADER_SOURCE_PARTITION]),
                      int(found[topics.HEADER_SOURCE_OFFSET]))
    except (KeyError, ValueError):
        return None


class LogPosition(NamedTuple):
    """Where the ledger read an event: the ledger-log partition and offset, and for a v2
    (batch) record the event's index inside it (a NamedTuple: one per event)."""

    partition: int
    offset: int
    index: int | None = None

    def to_dict(self) -> dict[str, int]:
        if self.index is None:
            return {"partition": self.partition, "offset": self.offset}
        return {"partition": self.partition, "offset": self.offset, "index": self.index}


@dataclass
class AccountRecord:
    """One account's table value: small and fixed-size (the core's state is headers only).

    `log` is the ledger-log position of the last record that changed the account: a
    record at or below it was applied already (after a torn write, the recovered
    changelog may hold this record but not the partition's watermark).
    """

    state: AccountState
    log: LogPosition
    source: Source | None = None
    event_time: str | None = None
    #: (status, allowed, tier, valid_from) last published on quota-status.
    status_key: tuple | None = None

    def to_bytes(self) -> bytes:
        return json_bytes({
            "v": RECORD_FORMAT_VERSION,
            "s": _Fragment(self.state.to_json()),
            "l": [self.log.partition, self.log.offset, self.log.index],
            "src": None if self.source is None else [self.source.topic, self.source.partition, self.source.offset],
            "t": self.event_time,
            "k": None if self.status_key is None else list(self.status_key),
        })

    @classmethod
    def from_bytes(cls, raw: bytes, limits: Limits) -> "AccountRecord":
        data = orjson.loads(raw)
        if data.get("v") != RECORD_FORMAT_VERSION:
            raise ValueError(f"unknown account record version {data.get('v')!r}")
        source, status_key = data.get("src"), data.get("k")
        return cls(
            state=AccountState.from_dict(data["s"], limits),
            log=LogPosition(*data["l"]),
            source=None if source is None else Source(*source),
            event_time=data.get("t"),
            status_key=None if status_key is None else tuple(status_key),
        )


@dataclass
class PartitionRecord:
    """Per-partition ledger state, written with every record applied on the partition.

    next_offset: the ledger-log offset expected next (-1: none applied yet). A record
        below it is a redelivery (skipped); above it, a hole (records not delivered):
        the ledger refuses to apply past it.
    high_water: the event-time high-water mark (latest occurred_at of applied usage),
        RFC 3339, for the lateness rule.
    id_days: the event-time days that hold remembered ids (expired as whole days).
    global_refreshes / global_refresh_ids: the global refreshes this partition applied.
    """

    global_refreshes: list[str] = field(default_factory=list)
    global_refresh_ids: list[tuple[str, str]] = field(default_factory=list)
    next_offset: int = -1
    high_water: str | None = None
    id_days: list[int] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return json_bytes({"v": RECORD_FORMAT_VERSION, "global_refreshes": self.global_refreshes,
                             "global_refresh_ids": self.global_refresh_ids, "next_offset": self.next_offset,
                             "high_water": self.high_water, "id_days": self.id_days})

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PartitionRecord":
        data = orjson.loads(raw)
        if data.get("v") != RECORD_FORMAT_VERSION:
            raise ValueError(f"unknown partition record version {data.get('v')!r}")
        return cls(list(data["global_refreshes"]), [tuple(pair) for pair in data["global_refresh_ids"]],
                   int(data["next_offset"]), data.get("high_water"), list(data.get("id_days") or ()))


#: The most bytes of an original payload a dead letter carries. Inputs may be as large as
#: the broker allows (1 MiB by default); a dead letter quoting all of one, JSON-escaped or
#: base64, could exceed the producer's request size and stall the ledger on a record
#: Kafka refuses for ever. Longer payloads are cut, and the dead letter says so.
DEAD_LETTER_PAYLOAD_BYTES_MAX = 65_536


def payload_field(raw: bytes) -> dict:
    """The original payload for a dead letter: text when UTF-8 (secrets redacted), else
    base64; at most DEAD_LETTER_PAYLOAD_BYTES_MAX bytes of it, with its size when cut."""
    head = raw[:DEAD_LETTER_PAYLOAD_BYTES_MAX]
    cut = {} if len(raw) == len(head) else {"payload_truncated": True, "payload_bytes": len(raw)}
    for trim in range(4 if cut else 1):  # a cut may split a UTF-8 character: drop its start
        try:
            text = head[:len(head) - trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return {"payload": redact(text), "payload_encoding": "utf-8", **cut}
    return {"payload": base64.b64encode(head).decode("ascii"), "payload_encoding": "base64", **cut}


def dead_letter(raw: bytes, reason: str, detail: str, source: Source | None, log: LogPosition | None,
                event_id: str | None = None, account_id: str | None = None) -> bytes:
    """A `tokenplan.rejected` value: the original payload, the reason, where it came from."""
    return json_bytes({
        "type": "event.rejected",
        "reason": reason,
        "detail": redact(detail),
        "event_id": None if event_id is None else redact(event_id),
        "account_id": None if account_id is None else redact(account_id),
        "source": None if source is None else source.to_dict(),
        "log": None if log is None else log.to_dict(),
        **payload_field(raw),
    })
