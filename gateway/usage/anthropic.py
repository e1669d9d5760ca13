"""Anthropic Messages usage, streamed or not, as `UsageCounts`.

Anthropic's `input_tokens` excludes both cache fields: hit = cache_read_input_tokens,
miss = input_tokens + cache_creation_input_tokens (a cache write is a full-price input).
"""
from __future__ import annotations

from collections.abc import Iterable

from gateway.usage.counts import UsageCounts, UsageError
from gateway.usage.read import field, load, optional_count, required_count

__all__ = ["MessageStreamUsage", "message", "message_stream"]

_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")


def _counts(usage: object, where: str) -> UsageCounts:
    """A Messages `usage` object (or the merged stream fields) as our three counts."""
    uncached = required_count(usage, "input_tokens", where)
    read = optional_count(usage, "cache_read_input_tokens", where)
    creation = optional_count(usage, "cache_creation_input_tokens", where)
    output = required_count(usage, "output_tokens", where)
    return UsageCounts(input_cache_hit_tokens=read, input_cache_miss_tokens=uncached + creation,
                       output_tokens=output)


def message(response: object) -> UsageCounts:
    """The counts of a (non-streamed) `Message`: model, dict, or JSON."""
    usage = field(load(response), "usage", "response")
    if usage is None:
        raise UsageError("usage_missing", "response has no usage")
    return _counts(usage, "response.usage")


class MessageStreamUsage:
    """Usage of a streamed message, fed event by event as the gateway forwards them.

    `message_start` carries the input counts (and a provisional output count);
    `message_delta` carries the *cumulative* output count, and any input or cache field
    it carries replaces the start's. Both are needed: without the delta the output
    count is only the start's placeholder, so the stream is refused as incomplete.
    """

    __slots__ = ("_fields", "_started", "_delta_seen")

    def __init__(self) -> None:
        self._fields: dict[str, object] = {}
        self._started = False
        self._delta_seen = False

    def feed(self, event: object) -> None:
        """One stream event (model, dict or JSON); events other than the two are ignored."""
        event = load(event)
        kind = field(event, "type", "event")
        if kind == "message_start":
            self._start(field(event, "message", "event"))
        elif kind == "message_delta":
            self._delta(field(event, "usage", "event"))

    def _start(self, message: object) -> None:
        usage = field(message, "usage", "message_start.message") if message is not None else None
        if usage is not None:
            self._fields = {name: field(usage, name, "message_start.message.usage") for name in _FIELDS}
            self._started = True

    def _delta(self, usage: object) -> None:
        if usage is None:
            return
        for name in _FIELDS:
            value = field(usage, name, "message_delta.usage")
            if value is not None:  # null or absent: the start's value stands
                self._fields[name] = value
        self._delta_seen = True

    def result(self) -> UsageCounts:
        """The stream's counts; UsageError without message_start usage or message_delta usage."""
        if not self._started:
            raise UsageError("usage_missing", "no message_start event with usage")
        if not self._delta_seen:
            raise UsageError("usage_stream_incomplete",
                             "no message_delta usage: the final output count is unknown")
        return _counts(self._fields, "stream usage")


def message_stream(events: Iterable[object]) -> UsageCounts:
    """The counts of a whole event sequence (see `MessageStreamUsage`)."""
    usage = MessageStreamUsage()
    for event in events:
        usage.feed(event)
    return usage.result()
