"""Every quota-status record and lookup body the worker builds is a valid `QuotaStatus`."""
from datetime import timedelta

import orjson

from schemas import topics
from schemas.status import QuotaStatus
from streams.processing.processor import Processor, status_view
from streams.ledger import Limits, load_catalog
from tests.support import events as ev
from tests.processing.test_processor import DAY, NOW, Log


def test_status_records_and_lookup_bodies_follow_the_contract():
    processor = Processor(load_catalog(), Limits())
    log = Log(processor)
    emitted = log.feed(ev.purchase("a", DAY))
    for hour in (1, 2, 3):
        emitted += log.feed(ev.usage("a", DAY + timedelta(hours=hour), model="mimo-v2.5-pro", miss=10_000_000))
    bodies = [orjson.loads(e.value) for e in emitted if e.topic == topics.QUOTA_STATUS]
    # purchase, the first usage (credit steps crossed), the exhausting usage
    assert [b["status"] for b in bodies] == ["active", "active", "exhausted"]
    for body in bodies:
        model = QuotaStatus.model_validate(body)  # extra="forbid": no field outside the contract
        dumped = model.model_dump(mode="json")
        assert {k: v for k, v in dumped.items() if k not in ("as_of", "served_by")} == \
            {k: v for k, v in body.items() if k != "as_of"}
        assert dumped["as_of"]["log"]["offset"] == body["as_of"]["log"]["offset"]
    unknown = status_view(None, NOW) | {"account_id": "nobody", "served_by": "http://127.0.0.1:6066"}
    assert QuotaStatus.model_validate(unknown).status == "none"
