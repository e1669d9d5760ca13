"""OpenAI usage (Chat Completions and Responses), streamed or not, as `UsageCounts`.

OpenAI's input count includes the cached part: hit = cached_tokens, miss = the rest.
Reasoning tokens are already inside the output count, so they are never added.
"""
from __future__ import annotations

from collections.abc import Iterable

from gateway.usage.counts import UsageCounts, UsageError
from gateway.usage.read import field, load, optional_count, required_count

__all__ = ["ChatStreamUsage", "ResponsesStreamUsage", "chat_completion", "chat_stream",
           "responses", "responses_stream"]

#: Responses API stream events that carry the final response (usage included): an
#: incomplete (max_output_tokens) or failed response is billed too.
_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_DONE = ("[DONE]", b"[DONE]")


def _split(prompt: int, cached: int, output: int, where: str) -> UsageCounts:
    """Hit and miss from an input total that includes its cached part."""
    if cached > prompt:
        raise UsageError("usage_cached_exceeds_prompt",
                         f"{where}: {cached} cached tokens exceed {prompt} input tokens")
    return UsageCounts(input_cache_hit_tokens=cached, input_cache_miss_tokens=prompt - cached,
                       output_tokens=output)


def _usage_of(response: object, where: str) -> object:
    """The `usage` object of a response or chunk; its absence is an error, never 0 tokens."""
    usage = field(response, "usage", where)
    if usage is None:
        raise UsageError("usage_missing", f"{where} has no usage")
    return usage


def _chat_usage(usage: object, where: str) -> UsageCounts:
    """A Chat Completions `usage` object (the same shape in a response and in a chunk)."""
    prompt = required_count(usage, "prompt_tokens", where)
    details = field(usage, "prompt_tokens_details", where)
    cached = optional_count(details, "cached_tokens", f"{where}.prompt_tokens_details")
    output = required_count(usage, "completion_tokens", where)
    return _split(prompt, cached, output, where)


def chat_completion(response: object) -> UsageCounts:
    """The counts of a (non-streamed) `ChatCompletion`: model, dict, or JSON."""
    return _chat_usage(_usage_of(load(response), "response"), "response.usage")


class ChatStreamUsage:
    """Usage of a streamed chat completion, fed chunk by chunk as the gateway forwards them.

    Only the last chunk carries usage, and only when the request set
    `stream_options.include_usage`; earlier chunks have `usage: null`. If several chunks
    carry usage (some compatible servers send it cumulatively), the last one wins.
    """

    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage: object = None

    def feed(self, chunk: object) -> None:
        """One chunk (model, dict or JSON); the `[DONE]` sentinel is accepted and ignored."""
        if isinstance(chunk, (str, bytes)) and chunk in _DONE:
            return
        usage = field(load(chunk), "usage", "chunk")
        if usage is not None:
            self._usage = usage

    def result(self) -> UsageCounts:
        """The stream's counts; UsageError if no chunk carried usage."""
        if self._usage is None:
            raise UsageError("usage_missing",
                             "no chunk carried usage (was stream_options.include_usage set?)")
        return _chat_usage(self._usage, "chunk.usage")


def chat_stream(chunks: Iterable[object]) -> UsageCounts:
    """The counts of a whole chunk sequence (see `ChatStreamUsage`)."""
    usage = ChatStreamUsage()
    for chunk in chunks:
        usage.feed(chunk)
    return usage.result()


def responses(response: object) -> UsageCounts:
    """The counts of a Responses API `Response`: model, dict, or JSON."""
    usage = _usage_of(load(response), "response")
    where = "response.usage"
    prompt = required_count(usage, "input_tokens", where)
    details = field(usage, "input_tokens_details", where)
    cached = optional_count(details, "cached_tokens", f"{where}.input_tokens_details")
    output = required_count(usage, "output_tokens", where)
    return _split(prompt, cached, output, where)


class ResponsesStreamUsage:
    """Usage of a streamed Responses API call: the terminal event carries the response."""

    __slots__ = ("_response", "_ended")

    def __init__(self) -> None:
        self._response: object = None
        self._ended = False

    def feed(self, event: object) -> None:
        """One stream event (model, dict or JSON); only terminal events are read."""
        event = load(event)
        if field(event, "type", "event") in _RESPONSES_TERMINAL:
            self._response = field(event, "response", "event")
            self._ended = True

    def result(self) -> UsageCounts:
        """The stream's counts; UsageError if no terminal event arrived."""
        if not self._ended:
            raise UsageError("usage_missing", "no response.completed (or incomplete/failed) event")
        return responses(self._response)


def responses_stream(events: Iterable[object]) -> UsageCounts:
    """The counts of a whole Responses API event sequence (see `ResponsesStreamUsage`)."""
    usage = ResponsesStreamUsage()
    for event in events:
        usage.feed(event)
    return usage.result()
