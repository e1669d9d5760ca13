"""The lookup view in process (no broker): who answers (the partition's owner, as faust's
assignor says), the owner's answer passed through, 503 while not running, the lean dispatch."""
from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from schemas.status import QuotaStatus
from streams.ledger.partitioning import key_partition
from streams.worker import web as worker_web
from streams.worker.main import build
from streams.worker.web import Owners
from tests.worker.test_glue import SETTINGS

PATH = "/accounts/{account_id}/quota"


class FakeRouter:
    def __init__(self, distribution: dict) -> None:
        self.distribution = distribution

    def tables_metadata(self) -> dict:
        return self.distribution


class FakeApp:
    def __init__(self, distribution: dict) -> None:
        self.router = FakeRouter(distribution)


def test_owners_follow_the_changelog_distribution_and_its_replacement():
    app = FakeApp({"http://127.0.0.1:6066": {"cl": [0, 2]}, "http://10.0.0.2:7000": {"cl": [1], "other": [3]}})
    owners = Owners(app, "cl", "http://127.0.0.1:6066")
    assert owners.owner(0) is None and owners.owner(2) is None
    assert owners.owner(1) == ("10.0.0.2", 7000)
    with pytest.raises(LookupError):
        owners.owner(3)  # another topic's partition names no owner of ours
    app.router.distribution = {"http://10.0.0.2:7000": {"cl": [0, 1, 2]}}  # a new assignment
    assert owners.owner(0) == ("10.0.0.2", 7000)


def _view(worker):
    return worker.wiring.app.web.views[PATH]


def _request(account_id: str, query: str = ""):
    return make_mocked_request("GET", f"/accounts/{account_id}/quota{query}", match_info={"account_id": account_id})


async def test_a_worker_that_is_not_running_says_503():
    response = await _view(build(SETTINGS))(_request("a"))
    assert response.status == 503 and orjson.loads(response.body)["status"] == "starting"


@pytest.fixture
def running(monkeypatch):
    monkeypatch.setattr(worker_web, "worker_status", lambda app: "running")


async def test_an_owned_account_is_read_here(running, monkeypatch):
    worker = build(SETTINGS)
    changelog = worker.wiring.accounts_table.changelog_topic.get_topic_name()
    own = {SETTINGS.advertised_url: {changelog: list(range(SETTINGS.partitions))}}
    monkeypatch.setattr(worker.wiring.app.router, "tables_metadata", lambda: own)
    monkeypatch.setattr(worker_web, "read_account", lambda wiring, runtime, account_id, partition: None)
    response = await _view(worker)(_request("nobody", "?as_of=2026-05-27T00:00:00Z"))
    body = QuotaStatus.model_validate(orjson.loads(response.body))
    assert response.status == 200 and body.status == "none" and body.served_by == SETTINGS.advertised_url
    assert body.as_of.computed_at.isoformat() == "2026-05-27T00:00:00+00:00"
    bad = await _view(worker)(_request("nobody", "?as_of=yesterday"))
    assert bad.status == 400


async def test_another_owners_answer_is_passed_through(running, monkeypatch):
    seen = []

    async def owner_view(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.Response(body=b'{"from": "owner"}', status=203, content_type="application/json")

    owner_app = web.Application()
    owner_app.router.add_get(PATH, owner_view)
    async with TestServer(owner_app, host="127.0.0.1") as server:
        worker = build(SETTINGS)
        changelog = worker.wiring.accounts_table.changelog_topic.get_topic_name()
        partition = key_partition(b"remote", SETTINGS.partitions)
        other = {f"http://127.0.0.1:{server.port}": {changelog: [partition]}}
        monkeypatch.setattr(worker.wiring.app.router, "tables_metadata", lambda: other)
        try:
            response = await _view(worker)(_request("remote", "?as_of=2026-05-27T00:00:00Z"))
            assert (response.status, response.body, response.content_type) == (203, b'{"from": "owner"}',
                                                                                "application/json")
            assert seen == ["/accounts/remote/quota?as_of=2026-05-27T00:00:00Z"]
            unowned = await _view(worker)(_request("x" if key_partition(b"x", SETTINGS.partitions) != partition else "y"))
            assert unowned.status == 503 and orjson.loads(unowned.body)["status"] == "routing (LookupError)"
        finally:
            await worker.wiring.app.http_client.close()
