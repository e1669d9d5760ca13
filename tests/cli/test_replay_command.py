"""`tokenplan replay` and `tokenplan quote` through streams.cli.main, with temp files."""
import json
import subprocess
import sys

import orjson
import pytest

from streams.cli import main
from tests.ledger.conftest import purchase, usage


@pytest.fixture
def events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [purchase("alice", "2026-05-01T00:00:00Z", event_id="p1"),
             usage("alice", "2026-05-02T10:00:00Z", miss=10_000_000, event_id="u1"),
             usage("alice", "2026-05-02T10:00:00Z", miss=10_000_000, event_id="u1")]
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n\n{broken\n")
    return path


def test_replay_prints_issue_structure(events_file, capsys):
    assert main(["replay", str(events_file), "--as-of", "2026-05-10T08:00:00+08:00"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["as_of"] == "2026-05-10T00:00:00Z"
    assert out["accounts"]["alice"]["credits_remaining"] == "1100000000"
    assert [r["reason"] for r in out["rejected"]] == ["invalid_json"]


def test_replay_out_file_and_stdin(events_file, tmp_path):
    out = tmp_path / "out.json"
    assert main(["replay", str(events_file), "--as-of", "2026-05-10T00:00:00Z", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["accounts"]["alice"]["status"] == "active"
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "-", "--as-of", "2026-06-02T00:00:00Z"],
                          input=events_file.read_bytes(), capture_output=True, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["accounts"]["alice"]["status"] == "expired"
    assert proc.stderr == b""


def test_replay_unusable_input_exits_2(events_file, tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["replay", str(events_file), "--as-of", "2026-05-10T00:00:00"]) == 2
    assert "invalid instant" in capsys.readouterr().err


def test_quote(events_file, capsys):
    args = ["quote", str(events_file), "--account", "alice", "--action", "upgrade", "--tier", "pro",
            "--period", "monthly", "--currency", "USD", "--at", "2026-05-03T00:00:00Z"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"allowed": True, "amount": "48.39", "currency": "USD",
                                                   "discount": None}
    args[args.index("upgrade")] = "purchase"
    assert main(args) == 0
    refused = json.loads(capsys.readouterr().out)
    assert refused["allowed"] is False and refused["reason"] == "package_already_valid"
    assert main(["quote", str(events_file), "--account", "zed", "--action", "purchase", "--tier", "lite",
                 "--period", "monthly", "--currency", "CNY", "--auto-renew", "--at", "2026-05-03T00:00:00Z"]) == 0
    assert json.loads(capsys.readouterr().out) == {"allowed": True, "amount": "30.03", "currency": "CNY",
                                                   "discount": "auto_renew_new"}
    assert main(["quote", str(events_file), "--account", "a", "--action", "purchase", "--tier", "lite",
                 "--period", "monthly", "--currency", "USD", "--at", "yesterday"]) == 2
