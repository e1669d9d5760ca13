"""Worker settings come from the environment with documented defaults."""
from __future__ import annotations

from pathlib import Path

import pytest

from streams.config import Settings


def test_defaults_match_the_readme():
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.web_port == 6066
    assert settings.partitions == 8
    assert settings.topic("usage") == "tokenplan.usage"
    assert settings.data_dir == Path(".data")


def test_environment_overrides_and_broker_urls():
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "a:9092, b:9093", "TOKENPLAN_WEB_PORT": "7000", "TOKENPLAN_PARTITIONS": "4",
         "TOKENPLAN_TOPIC_PREFIX": "x.tokenplan.", "TOKENPLAN_DATA_DIR": "/tmp/state"}
    )
    assert settings.broker_urls == ["kafka://a:9092", "kafka://b:9093"]
    assert settings.web_port == 7000 and settings.partitions == 4
    assert settings.topic("plans") == "x.tokenplan.plans"
    assert settings.data_dir == Path("/tmp/state")


def test_a_non_integer_setting_is_refused_by_name():
    with pytest.raises(SystemExit, match="TOKENPLAN_PARTITIONS='eight' is not an integer"):
        Settings.from_env({"TOKENPLAN_PARTITIONS": "eight"})


def test_batch_settings_have_defaults_and_refuse_nonsense():
    settings = Settings.from_env({"TOKENPLAN_SEQUENCER_BATCH_MAX": "64", "TOKENPLAN_BATCH_WAIT_MS": "0"})
    assert settings.sequencer_batch_max == 64 and settings.batch_wait_ms == 0
    assert Settings.from_env({}).batch_wait_ms == 20
    with pytest.raises(SystemExit, match="sequencer_batch_max must be at least 1"):
        Settings.from_env({"TOKENPLAN_SEQUENCER_BATCH_MAX": "0"})
    with pytest.raises(SystemExit, match="must not be negative"):
        Settings.from_env({"TOKENPLAN_BATCH_WAIT_MS": "-1"})
    assert Settings.from_env({}).consumer_fetch_wait_ms == 20
    with pytest.raises(SystemExit, match="consumer_fetch_wait_ms must be at least 1"):
        Settings.from_env({"TOKENPLAN_CONSUMER_FETCH_WAIT_MS": "0"})


def test_event_loop_is_asyncio_unless_uvloop_is_asked_for():
    assert Settings.from_env({}).event_loop == "asyncio"
    assert Settings.from_env({"TOKENPLAN_EVENT_LOOP": "uvloop"}).event_loop == "uvloop"
    with pytest.raises(SystemExit, match="event_loop must be uvloop or asyncio"):
        Settings.from_env({"TOKENPLAN_EVENT_LOOP": "trio"})
