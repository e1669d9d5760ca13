"""catalog.py: versioned data; the version in effect at occurred_at is used."""
import json

import pytest
from pydantic import ValidationError

from streams.ledger import parse_catalog
from streams.ledger.catalog import load_catalog
from tests.ledger.conftest import purchase, run, usage, utc


def _two_versions():
    base = json.loads(load_catalog().model_dump_json())
    text = json.dumps(base)
    data = json.loads(text)
    v1 = data["versions"][0]
    for m in v1["models"]:
        for k in ("ratio_hit", "ratio_miss", "ratio_output"):
            m[k] = str(m[k])
    v2 = json.loads(json.dumps(v1))
    v2["effective_from"] = "2026-06-01T00:00:00Z"
    v2["models"][0]["ratio_miss"] = "400"
    return {"versions": [v1, v2]}


def test_charge_uses_version_in_effect(catalog):
    two = parse_catalog(json.dumps(_two_versions()))
    assert two.version_at(utc(2026, 5, 31, 23, 59, 59)).ratios("MiMo-V2.5-Pro").ratio_miss == 300
    assert two.version_at(utc(2026, 6, 1)).ratios("MiMo-V2.5-Pro").ratio_miss == 400
    assert two.version_at(utc(2024, 1, 1)) is None
    state, _ = run(two, purchase(at="2026-05-20T00:00:00Z"), usage(at="2026-05-31T00:00:00Z", miss=1),
                   usage(at="2026-06-02T00:00:00Z", miss=1))
    assert state.packages[0].used_micro == 700 * 10**6


def test_catalog_refuses_floats_and_disorder():
    data = _two_versions()
    data["versions"][0]["models"][0]["ratio_hit"] = 2.5
    with pytest.raises(ValidationError):
        parse_catalog(json.dumps(data))
    data = _two_versions()
    data["versions"].reverse()
    with pytest.raises(ValidationError):
        parse_catalog(json.dumps(data))


def test_no_catalog_version_rejects(catalog):
    _, results = run(catalog, purchase(at="2020-01-01T00:00:00Z"))
    assert results[-1].rejection.reason == "no_catalog_version"
