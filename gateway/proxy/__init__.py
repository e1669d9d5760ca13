"""The reference gateway: OpenAI- and Anthropic-compatible routes in front of an upstream."""
