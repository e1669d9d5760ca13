"""Server-sent events from bytes as they arrive, for reading usage off a forwarded stream.

The gateway forwards the upstream's bytes unchanged and feeds a copy here, so network
splits (mid-line, mid-character, mid-CRLF) must not change what is decoded. Lines end
with LF or CRLF (what OpenAI and Anthropic send; a lone CR is not a line end here).
"""
from __future__ import annotations

from gateway.usage.counts import UsageError

__all__ = ["SSE_EVENT_BYTES_MAX", "SseDecoder"]

#: One event's bytes at most: a Responses `response.completed` event repeats the whole
#: output, so this is generous; the bound only stops an endless line from eating memory.
SSE_EVENT_BYTES_MAX = 32 * 1024 * 1024


class SseDecoder:
    """Incremental SSE parser: `feed` returns the events completed by the given bytes."""

    __slots__ = ("_buffer", "_scanned", "_event", "_data", "_pending", "_first_line", "_max")

    def __init__(self, max_event_bytes: int = SSE_EVENT_BYTES_MAX) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold no LF (no rescans on long lines)
        self._event: str | None = None
        self._data: list[str] = []
        self._pending = 0  # bytes held for the current event
        self._first_line = True
        self._max = max_event_bytes

    def feed(self, data: bytes) -> list[tuple[str | None, str]]:
        """(event name or None, data) for each event that `data` completes, in order."""
        self._buffer += data
        events: list[tuple[str | None, str]] = []
        start = 0
        while (end := self._buffer.find(b"\n", max(start, self._scanned))) != -1:
            self._line(bytes(self._buffer[start:end]), events)
            start = end + 1
        del self._buffer[:start]
        self._scanned = len(self._buffer)
        if self._pending + len(self._buffer) > self._max:
            raise UsageError("sse_event_too_large", f"an SSE event exceeds {self._max} bytes")
        return events

    def _line(self, raw: bytes, events: list[tuple[str | None, str]]) -> None:
        """One complete line (LF removed): a field, a comment, or the blank end of an event."""
        line = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
        if self._first_line:
            line = line.removeprefix("\ufeff")  # a byte-order mark may open the stream
            self._first_line = False
        if not line:
            self._dispatch(events)
            return
        self._pending += len(raw) + 1
        if line.startswith(":"):
            return  # comment (keep-alive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # `id` and `retry` matter to reconnecting browsers, not to usage: ignored.

    def _dispatch(self, events: list[tuple[str | None, str]]) -> None:
        """End of an event: emit it if it had data (as the SSE spec says), then reset."""
        if self._data:
            events.append((self._event or None, "\n".join(self._data)))
        self._event = None
        self._data = []
        self._pending = 0
