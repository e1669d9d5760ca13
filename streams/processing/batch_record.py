"""Ledger-log record formats: v1 (one input event) and v2 (a batch of one partition's events).

Why batches: faust acks, commits and redelivers whole Kafka records, so a unit of
ledger work that must never be torn is one record. The sequencer packs up to
`TOKENPLAN_LEDGER_RECORD_EVENTS_MAX` input events bound for one ledger-log partition
into one v2 record; the ledger applies the record as a whole, writes each touched key
once, and faust's ack of that one record covers every event in it.

v1 (the format before batches, kept forever in ledger-log, so every reader keeps
reading it): the record value is the input event's bytes, unchanged; its headers name
the input topic, partition and offset.

v2: header `tokenplan-format: 2`; the value is `MAGIC` followed by entries, each the
input event byte for byte with where it came from (big-endian):

    u16 topic length, topic (UTF-8) | u32 source partition | u64 source offset
    i32 key length (-1: no key), key | u32 value length, value

Binary, not JSON: input values are arbitrary bytes (a dead letter must quote a
non-UTF-8 payload exactly), and a length-prefixed frame copies them without escaping.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from schemas import topics

__all__ = ["FORMAT_HEADER", "MAGIC", "BatchFormatError", "InputEvent", "decode_record", "encode_batch",
           "record_format"]

#: Kafka header naming a ledger-log record's format (absent: v1).
FORMAT_HEADER = "tokenplan-format"
MAGIC = b"TPL2"
_HEAD = struct.Struct(">H")
_POSITION = struct.Struct(">IQi")
_LENGTH = struct.Struct(">I")


class BatchFormatError(ValueError):
    """A v2 record that does not parse: our own bug or a foreign writer (dead-lettered whole)."""


class InputEvent(NamedTuple):
    """One input record as the sequencer received it (a tuple: built per input record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def encode_batch(events: Sequence[InputEvent]) -> bytes:
    """The v2 value holding `events` in order."""
    parts = [MAGIC]
    for event in events:
        topic = event.topic.encode("utf-8")
        key_length = -1 if event.key is None else len(event.key)
        parts += [_HEAD.pack(len(topic)), topic, _POSITION.pack(event.partition, event.offset, key_length)]
        if event.key is not None:
            parts.append(event.key)
        parts += [_LENGTH.pack(len(event.value)), event.value]
    return b"".join(parts)


def encoded_size(event: InputEvent) -> int:
    """Bytes `event` adds to a v2 value (the sequencer caps a record's size with it)."""
    return (_HEAD.size + len(event.topic.encode("utf-8")) + _POSITION.size + len(event.key or b"")
            + _LENGTH.size + len(event.value))


def _decode_batch(value: bytes) -> Iterator[InputEvent]:
    if not value.startswith(MAGIC):
        raise BatchFormatError("a v2 ledger-log record must start with TPL2")
    view, at, end = memoryview(value), len(MAGIC), len(value)
    try:
        while at < end:
            (topic_length,) = _HEAD.unpack_from(view, at)
            at += _HEAD.size
            topic = bytes(view[at:at + topic_length]).decode("utf-8")
            at += topic_length
            partition, offset, key_length = _POSITION.unpack_from(view, at)
            at += _POSITION.size
            key = None
            if key_length >= 0:
                key = bytes(view[at:at + key_length])
                at += key_length
            (value_length,) = _LENGTH.unpack_from(view, at)
            at += _LENGTH.size
            if at + value_length > end:
                raise BatchFormatError("a v2 entry runs past the end of the record")
            yield InputEvent(topic, partition, offset, key, bytes(view[at:at + value_length]))
            at += value_length
    except (struct.error, UnicodeDecodeError) as error:
        raise BatchFormatError(f"malformed v2 ledger-log record: {error}") from error


def record_format(headers) -> int:
    """2 for a v2 record, 1 otherwise (records written before batches have no format header)."""
    for name, value in headers or ():
        if name == FORMAT_HEADER:
            return 2 if value == b"2" else int(value or b"1")
    return 1


def _header(headers, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def decode_record(value: bytes | None, key: bytes | None, headers) -> list[InputEvent]:
    """The input events of one ledger-log record, whatever its format (BatchFormatError if v2 is broken)."""
    if record_format(headers) == 2:
        return list(_decode_batch(value or b""))
    topic = _header(headers, topics.HEADER_SOURCE_TOPIC)
    partition = _header(headers, topics.HEADER_SOURCE_PARTITION)
    offset = _header(headers, topics.HEADER_SOURCE_OFFSET)
    try:
        source = (topic.decode(), int(partition), int(offset)) if topic and partition and offset else ("", -1, -1)
    except ValueError:
        source = ("", -1, -1)
    return [InputEvent(source[0], source[1], source[2], key, value if value is not None else b"")]
