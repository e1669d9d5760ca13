"""Key text, key ids and key hashes.

A key is `tp-` plus 256 bits from `secrets` (url-safe base64): far beyond guessing.
Only its HMAC-SHA-256 under the server's key secret is ever stored or published, so
a leak of the keys topic gives neither keys nor a way to test guesses offline.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from schemas.keys import KEY_PREFIX

__all__ = ["KEY_BYTES", "hash_key", "load_key_secret", "new_key", "new_key_id", "looks_like_key"]

#: Random bytes in a key (256 bits; the issue asks at least 128).
KEY_BYTES = 32
#: Random bytes of the secret created when none is configured.
SECRET_BYTES = 32


def new_key() -> str:
    """A fresh `tp-...` key (shown once, never stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def new_key_id() -> str:
    """A public name for a key: safe in logs, events and metrics."""
    return "key_" + secrets.token_hex(8)


def looks_like_key(text: str) -> bool:
    """Cheap shape check before hashing (refuses obviously foreign credentials)."""
    return text.startswith(KEY_PREFIX) and 16 <= len(text) <= 200


def hash_key(secret: bytes, key: str) -> str:
    """Lower-case hex HMAC-SHA-256 of the key under `secret`."""
    return hmac.new(secret, key.encode("utf-8"), hashlib.sha256).hexdigest()


def load_key_secret(configured: str, path: Path) -> bytes:
    """The configured secret, else the one kept at `path` (created 0600 on first use).

    The file makes a single machine (`make run`, the tests) work with no setup, while
    a fleet sets TOKENPLAN_KEY_SECRET from its secret store on every gateway.
    """
    if configured:
        return configured.encode("utf-8")
    if path.exists():
        text = path.read_text().strip()
        if not text:
            raise SystemExit(f"the key secret file {path} is empty; delete it or set TOKENPLAN_KEY_SECRET")
        return text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(SECRET_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
    return text.encode("utf-8")
