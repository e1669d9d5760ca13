"""`tokenplan projector` wiring and settings (no broker)."""
from __future__ import annotations

import pytest

from projections.settings import ProjectorSettings, parse_thresholds
from streams.cli import main


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["projector", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "TOKENPLAN_PROJECTIONS_URL" in text and "alert:{account}:{valid_from}:{threshold}" in text


def test_a_webhook_without_a_secret_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("TOKENPLAN_WEBHOOK_URL", "http://127.0.0.1:1/hook")
    monkeypatch.delenv("TOKENPLAN_WEBHOOK_SECRET", raising=False)
    assert main(["projector"]) == 2
    assert "TOKENPLAN_WEBHOOK_SECRET" in capsys.readouterr().err


def test_settings_from_the_environment():
    settings = ProjectorSettings.from_env({"TOKENPLAN_APP_ID": "app", "TOKENPLAN_ALERT_THRESHOLDS": "100, 50,80"})
    assert settings.group_id == "app-projector" and settings.thresholds == (50, 80, 100)
    assert settings.projections_url == "sqlite:///.data/projections.db" and settings.batch_max == 2000
    assert ProjectorSettings.from_env({"TOKENPLAN_PROJECTOR_GROUP": "g"}).group_id == "g"
    with pytest.raises(ValueError):
        parse_thresholds("0,101")
