"""balance.changed version 2 adds `usage`; version 1 records (no schema_version) still read."""
import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.export import JSON_DIR
from schemas.outputs import BALANCE_CHANGED_VERSION, BalanceChanged, UsageDetail

#: A balance.changed as the ledger wrote it before version 2.
VERSION_1 = json.dumps({
    "event_id": "bc-1", "cause_event_id": "u-1", "cause_type": "usage", "account_id": "a",
    "occurred_at": "2026-05-02T10:00:00Z", "type": "balance.changed",
    "package": {"tier": "lite", "period": "monthly", "valid_from": "2026-05-01T00:00:00Z",
                "valid_until": "2026-06-01T00:00:00Z", "credits_limit": "4100000000"},
    "credits_charged": "520", "credits_used": "520", "credits_remaining": "4099999480",
    "amount": None, "currency": None, "discount": None})

USAGE = {"model": "MiMo-V2.5", "input_cache_hit_tokens": 10, "input_cache_miss_tokens": 3, "output_tokens": 1,
         "coefficient": "0.8", "offpeak": True, "credits_saved": "104", "cluster": "cn", "protocol": "openai",
         "key_id": "key-1"}


def test_a_version_1_record_still_validates_and_reads_as_version_1():
    fact = BalanceChanged.model_validate_json(VERSION_1)
    assert fact.schema_version == 1 and fact.usage is None and fact.credits_charged == Decimal(520)


def test_a_version_2_record_round_trips_with_its_usage():
    data = {**json.loads(VERSION_1), "schema_version": 2, "usage": USAGE}
    fact = BalanceChanged.model_validate(data)
    assert fact.schema_version == BALANCE_CHANGED_VERSION == 2
    assert fact.usage.coefficient == Decimal("0.8") and fact.usage.credits_saved == Decimal(104)
    assert json.loads(fact.model_dump_json()) == data  # Decimals as strings


def test_usage_detail_has_exactly_the_dashboard_fields_and_refuses_others():
    assert list(UsageDetail.model_fields) == list(USAGE)
    with pytest.raises(ValidationError):
        UsageDetail.model_validate({**USAGE, "key": "tp-secret"})


def test_the_published_schema_keeps_version_1_records_valid():
    """No default published for schema_version (a defaults-filling reader would call old records v2),
    and neither it nor usage is required."""
    schema = json.loads((JSON_DIR / "balance.changed.schema.json").read_text(encoding="utf-8"))
    assert "default" not in schema["properties"]["schema_version"]
    assert not {"schema_version", "usage"} & set(schema["required"])
    assert set(json.loads(VERSION_1)) <= set(schema["properties"])
