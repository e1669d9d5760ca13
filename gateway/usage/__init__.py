"""Usage counts from OpenAI and Anthropic responses (pure: no I/O)."""
