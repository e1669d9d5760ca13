"""What a request body says about its client: system-prompt texts and tool names (pure).

Covers the three request shapes the gateway serves: Chat Completions (`messages`, with
`system`/`developer` roles), Responses (`instructions`, `input` items) and Anthropic
Messages (`system` as text or blocks). Only the prompt's start and the tool list are read.
"""
from __future__ import annotations

from collections.abc import Iterator

__all__ = ["PROMPT_SCAN_CHARS", "PROMPT_TEXTS_MAX", "prompt_texts", "tool_names"]

#: Characters read from each system text: tools put their identity sentence first (or
#: in the first few blocks), and a body may hold megabytes of conversation.
PROMPT_SCAN_CHARS = 4096

#: System texts read per request (blocks, system/developer messages): the identity is in
#: the first ones; the cap keeps a pathological body from costing a full scan.
PROMPT_TEXTS_MAX = 8

_SYSTEM_ROLES = ("system", "developer")


def _texts(content: object) -> Iterator[str]:
    """The text of a content value: a string, or a list of parts with a "text" field."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def _message_texts(messages: object) -> Iterator[str]:
    """System and developer messages, and the first message whatever its role: some tools
    send their system prompt as the first user turn (Cline's R1 format, OpenCode to Codex)."""
    if not isinstance(messages, list):
        return
    for index, message in enumerate(messages):
        if isinstance(message, dict) and (index == 0 or message.get("role") in _SYSTEM_ROLES):
            yield from _texts(message.get("content"))


def _all_texts(body: dict) -> Iterator[str]:
    yield from _texts(body.get("system"))
    yield from _texts(body.get("instructions"))
    yield from _message_texts(body.get("messages"))
    yield from _message_texts(body.get("input"))


def prompt_texts(body: dict) -> list[str]:
    """The lower-cased starts of the request's system texts, at most `PROMPT_TEXTS_MAX`."""
    texts = []
    for text in _all_texts(body):
        texts.append(text[:PROMPT_SCAN_CHARS].lower())
        if len(texts) == PROMPT_TEXTS_MAX:
            break
    return texts


def tool_names(body: dict) -> frozenset[str]:
    """The lower-cased names of the declared tools (OpenAI `function.name`, or `name`)."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return frozenset()
    names = set()
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else tool.get("name")
        if isinstance(name, str):
            names.add(name.lower())
    return frozenset(names)
