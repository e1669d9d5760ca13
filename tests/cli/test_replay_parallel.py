"""`tokenplan replay --workers N`: the fold split by partition gives exactly the one-process JSON."""
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from bench.workload import generate, stamp
from streams.cli import main
from streams.ledger.catalog import load_catalog
from streams.ledger.fold import Fold
from streams.ledger.limits import DEFAULT_LIMITS, Limits
from streams.audit.parallel import make_ledger, replay_parallel

DAY = datetime(2026, 5, 1, tzinfo=timezone.utc)
AS_OF = datetime(2026, 5, 20, tzinfo=timezone.utc)
ACCOUNTS = [f"acct-{n}" for n in range(40)]


def _refresh(event_id: str, at: datetime, **extra) -> bytes:
    return orjson.dumps({"type": "quota.refreshed", "event_id": event_id, "occurred_at": stamp(at), **extra})


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    """Plans, then usage with retries, with global refreshes and bad lines in between."""
    workload = generate(600, ACCOUNTS, DAY, seed=3)
    lines = [orjson.dumps(event) for event in workload.plans]
    wire = [orjson.dumps(event) for event in workload.wire]
    lines += wire[:150]
    lines += [
        _refresh("global-1", DAY + timedelta(hours=2)),            # every account: no account_id
        b"{not json",                                                # invalid_json
        b"[1, 2, 3]",                                                # JSON, not an object
        b'{"type": "usage", "event_id": "half", "account_id": "acct-3"}',   # missing fields (routed)
        b'{"type": "usage", "event_id": "nobody", "account_id": ""}',       # empty account: everyone's
        b'{"type": "plan.purchased", "event_id": "bad-tier", "occurred_at": "2026-05-01T00:00:00Z", '
        b'"account_id": "acct-9", "tier": "mega", "period": "monthly", "currency": "USD", "auto_renew": false}',
        b'{"type": "plan.cancelled", "event_id": "x1", "occurred_at": "2026-05-02T00:00:00Z"}',
        b"   ",                                                      # blank: skipped
    ]
    lines += wire[150:400]
    lines += [
        _refresh("global-2", DAY + timedelta(hours=3)),
        _refresh("global-1", DAY + timedelta(hours=9)),             # same id, other content: conflict
        _refresh("global-2", DAY + timedelta(hours=3)),             # exact duplicate: ignored
        _refresh("global-3", DAY + timedelta(hours=4)),             # per-account too_many_refreshes (limit 2)
        _refresh("acct-7-own", DAY + timedelta(hours=5), account_id="acct-7"),
        orjson.dumps({**workload.usage[5], "event_id": "late-1",    # far behind its partition's mark
                      "occurred_at": stamp(DAY - timedelta(days=40))}),
    ]
    lines += wire[400:]
    lines += [orjson.dumps({"type": "plan.purchased", "event_id": "buy-new", "occurred_at": stamp(DAY),
                            "account_id": "late-comer", "tier": "lite", "period": "monthly",
                            "currency": "USD", "auto_renew": False})]
    path = tmp_path_factory.mktemp("parallel") / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    return path


def _single(path, partitions: int, limits: Limits) -> dict:
    ledger = make_ledger(load_catalog(), limits, partitions)
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                ledger.feed(line)
    return ledger.result(AS_OF)


@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, Limits(refreshes_max=2)], ids=["default", "refreshes_max=2"])
@pytest.mark.parametrize("partitions", [8, 5])
def test_parallel_equals_single_process(events_file, partitions, limits):
    expected = _single(events_file, partitions, limits)
    reasons = {entry["reason"] for entry in expected["rejected"]}
    assert {"invalid_json", "invalid_timestamp", "unknown_type", "duplicate_conflict", "usage_too_late"} <= reasons
    assert reasons & {"invalid_event", "unknown_tier"}
    if limits.refreshes_max == 2:  # one broadcast line rejects many accounts: their order must hold
        assert sum(entry["reason"] == "too_many_refreshes" for entry in expected["rejected"]) > 10
    assert len(expected["accounts"]) == len(ACCOUNTS) + 1
    for workers in (1, 2, 3):
        got = replay_parallel(str(events_file), workers, partitions, AS_OF, limits)
        assert orjson.dumps(got) == orjson.dumps(expected), workers


def test_more_workers_than_partitions(events_file):
    expected = _single(events_file, 2, DEFAULT_LIMITS)
    assert replay_parallel(str(events_file), 3, 2, AS_OF, DEFAULT_LIMITS) == expected


def test_make_ledger_passes_partitions():
    assert make_ledger(load_catalog(), DEFAULT_LIMITS, 5).partitions == 5
    assert isinstance(make_ledger(load_catalog(), DEFAULT_LIMITS, 5), Fold)


def test_cli_workers_output_equals_one_process(events_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENPLAN_PARTITIONS", "6")
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"out-{workers}.json"
        assert main(["replay", str(events_file), "--workers", workers, "--as-of", "2026-05-20T00:00:00Z",
                     "--out", str(out)]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["rejected"]


def test_cli_workers_from_stdin(events_file, tmp_path):
    out = tmp_path / "one.json"
    assert main(["replay", str(events_file), "--as-of", "2026-05-20T00:00:00Z", "--out", str(out)]) == 0
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "-", "--workers", "2",
                           "--as-of", "2026-05-20T00:00:00Z"],
                          input=events_file.read_bytes(), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(out.read_bytes())
    assert proc.stderr == b""


def test_cli_workers_refusals(events_file, tmp_path, capsys):
    assert main(["replay", str(events_file), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["replay", "--from-kafka", "--workers", "2"]) == 2
    assert "not supported with --from-kafka" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.jsonl"), "--workers", "2"]) == 2
    assert "cannot read" in capsys.readouterr().err
