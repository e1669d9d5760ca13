"""The `tokenplan.keys` records: a key's state after each change (pure)."""
from __future__ import annotations

import uuid
from datetime import datetime

from schemas.keys import KeyRecord, KeyStatus

__all__ = ["issued", "changed", "public_view"]


def issued(key_id: str, account_id: str, key_hash: str, label: str | None, at: datetime) -> KeyRecord:
    """The record of a new, active key."""
    return KeyRecord(type="key.issued", event_id=f"{key_id}:issued", key_id=key_id, account_id=account_id,
                     label=label, key_hash=key_hash, status="active", issued_at=at, changed_at=at)


#: change type -> the status it leaves the key in.
CHANGES: dict[str, KeyStatus] = {"key.revoked": "revoked", "key.suspended": "suspended",
                                 "key.reinstated": "active"}


def changed(record: KeyRecord, change: str, at: datetime, reason: str | None = None) -> KeyRecord:
    """The record after `change` (key.revoked, ...). A revoked key stays revoked."""
    if record.status == "revoked":
        raise ValueError(f"key {record.key_id} is revoked; a revoked key cannot change again")
    return record.model_copy(update={"type": change, "status": CHANGES[change], "changed_at": at,
                                     "reason": reason, "event_id": f"{record.key_id}:{uuid.uuid4().hex}"})


def public_view(record: KeyRecord) -> dict:
    """What `tokenplan keys list` shows: no hash, no secret."""
    return {"key_id": record.key_id, "account_id": record.account_id, "label": record.label,
            "status": record.status, "issued_at": record.model_dump(mode="json")["issued_at"],
            "changed_at": record.model_dump(mode="json")["changed_at"], "reason": record.reason}
