"""Write the JSON Schema files under schemas/json/: `python -m schemas.export`.

The files are the published contract; `tests/schemas` fails when they drift
from the pydantic models, so run this after changing a model.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import TypeAdapter

from schemas.events import EVENT_ADAPTER, EVENT_MODELS
from schemas.outputs import BalanceChanged, QuotaExhausted, QuotaRestored
from schemas.gateway import UnmeteredRequest
from schemas.keys import KeyRecord
from schemas.policy import KeyReinstated, KeyStatusRecord, PolicyFact, PolicyViolation
from schemas.status import QuotaStatus

JSON_DIR = Path(__file__).parent / "json"


def schema_documents() -> dict[str, dict]:
    """File name -> JSON Schema document, for every input and output model."""
    documents: dict[str, dict] = {"event.schema.json": EVENT_ADAPTER.json_schema()}
    for type_name, model in EVENT_MODELS.items():
        documents[f"{type_name}.schema.json"] = model.model_json_schema()
    for model in (BalanceChanged, QuotaExhausted, QuotaRestored):
        name = model.model_fields["type"].default
        documents[f"{name}.schema.json"] = TypeAdapter(model).json_schema(mode="serialization")
    documents["quota.status.schema.json"] = TypeAdapter(QuotaStatus).json_schema(mode="serialization")
    documents["key.schema.json"] = TypeAdapter(KeyRecord).json_schema(mode="serialization")
    for name, model in (("policy.violation", PolicyViolation), ("key.reinstated", KeyReinstated),
                        ("policy.fact", PolicyFact), ("key.status", KeyStatusRecord)):
        documents[f"{name}.schema.json"] = TypeAdapter(model).json_schema(mode="serialization")
    documents["request.unmetered.schema.json"] = TypeAdapter(UnmeteredRequest).json_schema(mode="serialization")
    return documents


def render(document: dict) -> str:
    """Stable text form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(out_dir: Path = JSON_DIR) -> int:
    """Write every schema file; print the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, document in schema_documents().items():
        path = out_dir / name
        path.write_text(render(document), encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
