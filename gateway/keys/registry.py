"""Keys as a gateway or an operator sees them: the latest record per key_id."""
from __future__ import annotations

import logging

from pydantic import ValidationError

from gateway.config import GatewaySettings
from gateway.kafka import read_whole
from schemas.keys import KeyRecord
from schemas.topics import KEYS

__all__ = ["decode_key_record", "load_keys"]

logger = logging.getLogger(__name__)


def decode_key_record(value: bytes | None) -> KeyRecord | None:
    """A record's value as a KeyRecord; None for a tombstone or a value that does not validate."""
    if value is None:
        return None
    try:
        return KeyRecord.model_validate_json(value)
    except ValidationError as error:
        logger.warning("skipping an invalid %s record: %s", KEYS, error.errors()[0]["msg"])
        return None


async def load_keys(settings: GatewaySettings) -> dict[str, KeyRecord]:
    """key_id -> its latest record, read from the whole `keys` topic."""
    keys: dict[str, KeyRecord] = {}
    async for key, value in read_whole(settings, KEYS):
        record = decode_key_record(value)
        if record is not None:
            keys[record.key_id] = record
        elif value is None and key is not None:
            keys.pop(key.decode("utf-8"), None)
    return keys
