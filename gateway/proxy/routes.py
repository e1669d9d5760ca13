"""The routes the gateway serves: protocol, upstream path, and how usage is read from the reply."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

from gateway.usage import anthropic as anthropic_usage
from gateway.usage import openai as openai_usage
from gateway.usage.counts import UsageCounts

__all__ = ["ROUTES", "Route", "StreamUsage"]


class StreamUsage(Protocol):
    def feed(self, event: object) -> None: ...
    def result(self) -> UsageCounts: ...


@dataclass(frozen=True)
class Route:
    """One model route: where it forwards and how usage is read, whole or streamed."""

    name: str
    protocol: Literal["openai", "anthropic"]
    path: str  # the gateway's path
    upstream_path: str
    whole: Callable[[bytes], UsageCounts]
    stream: Callable[[], StreamUsage]
    #: The request's output limit fields, first present wins (the in-flight estimate).
    max_tokens_fields: tuple[str, ...]


ROUTES: tuple[Route, ...] = (
    Route("chat", "openai", "/v1/chat/completions", "/v1/chat/completions", openai_usage.chat_completion,
          openai_usage.ChatStreamUsage, ("max_completion_tokens", "max_tokens")),
    Route("responses", "openai", "/v1/responses", "/v1/responses", openai_usage.responses,
          openai_usage.ResponsesStreamUsage, ("max_output_tokens",)),
    Route("messages", "anthropic", "/anthropic/v1/messages", "/v1/messages", anthropic_usage.message,
          anthropic_usage.MessageStreamUsage, ("max_tokens",)),
)
