"""The committed JSON Schema files equal what the pydantic models export."""
from schemas.export import JSON_DIR, render, schema_documents


def test_schema_files_are_in_sync():
    documents = schema_documents()
    stale = [name for name, document in documents.items()
             if not (JSON_DIR / name).exists() or (JSON_DIR / name).read_text(encoding="utf-8") != render(document)]
    assert not stale, f"run `python -m schemas.export`: stale {stale}"
    assert sorted(p.name for p in JSON_DIR.glob("*.schema.json")) == sorted(documents)


def test_event_schema_is_strict_where_it_matters():
    usage = schema_documents()["usage.schema.json"]
    tokens = usage["properties"]["output_tokens"]
    assert tokens["type"] == "integer" and tokens["minimum"] == 0 and tokens["maximum"] == 10_000_000
    assert usage["properties"]["occurred_at"]["format"] == "date-time"
    assert usage["properties"]["event_id"]["maxLength"] == 128
