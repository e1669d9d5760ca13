"""The API key contract: each `tokenplan.keys` record (compacted, key = `key_id`).

A record is the key's whole current state, so compaction keeps exactly what a
gateway needs: which account a key spends from and whether it may be used. The
secret itself (`tp-...`) is shown once to whoever issued it and is never stored
or published: only `key_hash`, an HMAC-SHA-256 of the key under the server's key
secret, so a reader of the topic cannot recover or test keys without that secret.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import ACCOUNT_ID_LENGTH_MAX, KEY_ID_LENGTH_MAX, Instant

__all__ = ["KEY_PREFIX", "KeyRecord", "KeyStatus"]

#: Every API key starts with it (the product document's `tp-` keys).
KEY_PREFIX = "tp-"
KeyStatus = Literal["active", "revoked", "suspended"]
LABEL_LENGTH_MAX = 200


class KeyRecord(BaseModel):
    """One key's state after its latest change (`type` names that change)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["key.issued", "key.revoked", "key.suspended", "key.reinstated"]
    #: Unique per change: consumers dedupe on it.
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    key_id: Annotated[str, Field(min_length=1, max_length=KEY_ID_LENGTH_MAX)]
    account_id: Annotated[str, Field(min_length=1, max_length=ACCOUNT_ID_LENGTH_MAX)]
    label: Annotated[str, Field(max_length=LABEL_LENGTH_MAX)] | None = None
    #: Lower-case hex HMAC-SHA-256 of the key text under the key secret.
    key_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    hash_scheme: Literal["hmac-sha256"] = "hmac-sha256"
    status: KeyStatus
    issued_at: Instant
    changed_at: Instant
    #: Why the latest change was made (revocation, suspension, reinstatement); never the key.
    reason: Annotated[str, Field(max_length=1000)] | None = None
