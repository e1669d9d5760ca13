"""Keys: entropy, hashing, records, and the secret file."""
from __future__ import annotations

import base64
import stat
from datetime import datetime, timezone

import pytest

from gateway.keys.records import changed, issued, public_view
from gateway.keys.secrets import KEY_BYTES, hash_key, load_key_secret, looks_like_key, new_key, new_key_id
from schemas.keys import KeyRecord

AT = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)


def test_a_key_has_at_least_128_random_bits_and_is_never_repeated():
    keys = {new_key() for _ in range(1000)}
    assert len(keys) == 1000
    key = keys.pop()
    assert key.startswith("tp-") and looks_like_key(key)
    raw = base64.urlsafe_b64decode(key[3:] + "=" * (-len(key[3:]) % 4))
    assert len(raw) == KEY_BYTES >= 16


def test_the_hash_depends_on_the_secret_and_is_not_the_key():
    key = new_key()
    one, two = hash_key(b"secret-1", key), hash_key(b"secret-2", key)
    assert one != two and len(one) == 64 and key[3:] not in one
    assert hash_key(b"secret-1", key) == one


def test_a_record_carries_the_hash_and_no_secret():
    key = new_key()
    record = issued(new_key_id(), "acct-1", hash_key(b"s", key), "laptop", AT)
    text = record.model_dump_json()
    assert key not in text and key[3:] not in text
    assert KeyRecord.model_validate_json(text) == record
    assert "key_hash" not in public_view(record)


def test_revocation_is_final():
    record = issued("key_1", "acct-1", "a" * 64, None, AT)
    revoked = changed(record, "key.revoked", AT, "lost")
    assert (revoked.status, revoked.reason, revoked.type) == ("revoked", "lost", "key.revoked")
    assert revoked.event_id != record.event_id
    with pytest.raises(ValueError, match="revoked"):
        changed(revoked, "key.reinstated", AT)


def test_the_secret_file_is_created_once_private(tmp_path):
    path = tmp_path / "sub" / "key-secret"
    first = load_key_secret("", path)
    assert load_key_secret("", path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_secret("configured", path) == b"configured"
    path.write_text("")
    with pytest.raises(SystemExit, match="empty"):
        load_key_secret("", path)
