"""limits.py and rejections.py: defaults, validation, named reasons, redaction, invariant errors."""
from datetime import timedelta

import pytest

from streams.ledger import Limits, Reason, redact
from streams.ledger.errors import LedgerInvariantError, invariant
from streams.ledger.rejections import reject


def test_defaults_and_bounds():
    limits = Limits()
    assert (limits.tokens_per_field_max, limits.event_id_length_max) == (10_000_000, 128)
    assert limits.lateness_max == limits.dedupe_window == timedelta(days=35)
    with pytest.raises(ValueError):
        Limits(tokens_per_field_max=20_000_000)  # may tighten the contract, never loosen it
    with pytest.raises(ValueError):
        Limits(dedupe_window=timedelta(days=30))  # shorter than lateness_max: a retry could charge twice
    with pytest.raises(ValueError):
        Limits(lateness_max=timedelta(0))


def test_every_reason_explained():
    assert all(reason.explanation for reason in Reason)


def test_redact_and_rejection_detail():
    assert redact("key tp-abcdefgh1234 and tp-short") == "key tp-*** and tp-short"
    rejection = reject(Reason.INVALID_EVENT, "bad tp-abcdefgh1234", event_id="tp-abcdefgh9999")
    assert "abcdefgh" not in str(rejection.to_dict())


def test_invariant_raises_our_error():
    with pytest.raises(LedgerInvariantError):
        invariant(False, "broken")
