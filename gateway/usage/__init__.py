"""Usage counts from OpenAI and Anthropic responses (pure: no I/O).

- `counts.py`: `UsageCounts` (hit, miss, output; always within the event's bounds) and
  `UsageError` (with a `reason`): usage that is missing or inconsistent is never 0 tokens;
- `openai.py`: Chat Completions (whole or streamed) and the Responses API;
- `anthropic.py`: Messages (whole or streamed);
- `sse.py`: `SseDecoder`, events from a forwarded byte stream split anywhere;
- `read.py`: one accessor for SDK models, dicts and JSON.
"""
