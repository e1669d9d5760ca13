"""The three counts a `usage` event carries, and the one error for usage we cannot trust.

Every parser in this package ends in `UsageCounts`, so the event's bounds are checked
in one place: a count the ledger would refuse is refused here, before anything is sent.
"""
from __future__ import annotations

from dataclasses import dataclass

from schemas.events import TOKENS_PER_FIELD_MAX

__all__ = ["UsageCounts", "UsageError", "check_count"]


class UsageError(ValueError):
    """Usage that is missing or inconsistent: never read as zero tokens.

    `reason` is a short snake_case name (for metrics and logs); the message says what
    was wrong and where.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def check_count(value: object, where: str) -> int:
    """`value` as a token count, or UsageError: a bool, float or string is never a count.

    Why strict: a provider's `true` or `5.0` means the payload is not what we think it is,
    and guessing would bill someone for a number nobody reported.
    """
    if type(value) is not int:
        raise UsageError("usage_not_integer", f"{where} is {value!r}, not an integer")
    if value < 0:
        raise UsageError("usage_negative", f"{where} is {value}, below 0")
    if value > TOKENS_PER_FIELD_MAX:
        raise UsageError("usage_too_large", f"{where} is {value}, above {TOKENS_PER_FIELD_MAX}")
    return value


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """One response's tokens as the ledger rates them (hit, miss, output); always in bounds."""

    input_cache_hit_tokens: int
    input_cache_miss_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        # Derived counts (Anthropic's miss is a sum) can pass the raw checks and still overflow.
        for name in ("input_cache_hit_tokens", "input_cache_miss_tokens", "output_tokens"):
            check_count(getattr(self, name), name)

    def as_event_fields(self) -> dict[str, int]:
        """The fields of `schemas.events.Usage` these counts fill."""
        return {
            "input_cache_hit_tokens": self.input_cache_hit_tokens,
            "input_cache_miss_tokens": self.input_cache_miss_tokens,
            "output_tokens": self.output_tokens,
        }
