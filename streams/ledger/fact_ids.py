"""Ids of output facts: derived from the cause, so a redelivered cause yields the same ids."""
from __future__ import annotations

import hashlib

__all__ = ["derive_event_id"]


def derive_event_id(kind: str, account_id: str, cause_event_id: str, ordinal: int) -> str:
    """Deterministic id of an output fact: same cause, same id (consumers dedupe on it)."""
    text = f"{kind}\x1f{account_id}\x1f{cause_event_id}\x1f{ordinal}"
    return kind + "-" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
