"""Records waiting for Kafka, on local disk: nothing metered is lost while the broker is away.

One append-only file of JSON lines (topic, key, value). Draining re-sends every line
in order and then truncates the file; a crash in between re-sends some lines later,
which is safe because each usage event keeps its `event_id` and the ledger charges an
id once. The file has a bound (`spool_bytes_max`): when full, `append` refuses and the
gateway refuses new requests (it cannot meter them), rather than losing usage.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path

import orjson

__all__ = ["Spool", "SpoolFull"]

FILE_NAME = "usage.jsonl"


class SpoolFull(RuntimeError):
    """The spool reached its bound."""


class Spool:
    """The spool file of one gateway (one directory per gateway process)."""

    def __init__(self, directory: Path, bytes_max: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self.bytes_max = bytes_max
        self._size = self.path.stat().st_size if self.path.exists() else 0  # one writer: this process

    def size(self) -> int:
        """Bytes in the spool (kept in memory: asked on every request)."""
        return self._size

    def full(self) -> bool:
        return self.size() >= self.bytes_max

    def append(self, topic: str, key: bytes, value: bytes) -> None:
        """Add one record, flushed to disk before returning (SpoolFull at the bound)."""
        line = orjson.dumps({"topic": topic, "key": base64.b64encode(key).decode(), "value": value.decode("utf-8")})
        if self.size() + len(line) + 1 > self.bytes_max:
            raise SpoolFull(f"the usage spool {self.path} holds {self.size()} bytes (bound {self.bytes_max})")
        with open(self.path, "ab") as handle:
            handle.write(line + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._size += len(line) + 1

    def records(self, size: int) -> list[tuple[str, bytes, bytes]]:
        """The records in the first `size` bytes, oldest first (a torn line from a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as handle:
            data = handle.read(size)
        for line in data.splitlines():
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            out.append((item["topic"], base64.b64decode(item["key"]), item["value"].encode("utf-8")))
        return out

    def clear(self, expected_size: int) -> None:
        """Drop what was drained; keeps lines appended since (`expected_size` = size when read)."""
        data = self.path.read_bytes() if self.path.exists() else b""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(data[expected_size:])
        os.replace(tmp, self.path)
        self._size = len(data) - expected_size
