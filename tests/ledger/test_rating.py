"""rating.py: credits per usage event, exact decimals, off-peak window boundaries."""
from decimal import Decimal

import pytest

from streams.ledger.rating import charge_micro, is_offpeak
from streams.ledger.units import MICRO, from_micro
from tests.ledger.conftest import utc


def credits(catalog, model, hit, miss, out, at):
    micro = charge_micro(catalog.version_at(at), model, hit, miss, out, at)
    return None if micro is None else from_micro(micro)


def test_product_document_example(catalog):
    # Lite, 10M cache-miss MiMo-V2.5-Pro tokens = 3,000,000,000 credits.
    assert credits(catalog, "MiMo-V2.5-Pro", 0, 10_000_000, 0, utc(2026, 5, 2, 10)) == Decimal(3_000_000_000)


@pytest.mark.parametrize("model,ratios", [
    ("MiMo-V2.5-Pro", ("2.5", "300", "600")),
    ("MiMo-V2.5", ("2", "100", "200")),
    ("MiMo-V2-Pro", ("140", "700", "2100")),
    ("MiMo-V2-Omni", ("56", "280", "1400")),
])
def test_ratios_per_token_kind(catalog, model, ratios):
    at = utc(2026, 5, 2, 12)
    assert credits(catalog, model, 1, 0, 0, at) == Decimal(ratios[0])
    assert credits(catalog, model, 0, 1, 0, at) == Decimal(ratios[1])
    assert credits(catalog, model, 0, 0, 1, at) == Decimal(ratios[2])
    total = Decimal(ratios[0]) * 3 + Decimal(ratios[1]) * 5 + Decimal(ratios[2]) * 7
    assert credits(catalog, model, 3, 5, 7, at) == total


@pytest.mark.parametrize("model", ["MiMo-V2.5-TTS", "MiMo-V2.5-TTS-VoiceClone",
                                   "MiMo-V2.5-TTS-VoiceDesign", "MiMo-V2-TTS", "mimo-v2-tts"])
def test_tts_models_are_free(catalog, model):
    assert credits(catalog, model, 1000, 1000, 1000, utc(2026, 5, 2)) == 0


def test_model_names_are_case_insensitive(catalog):
    at = utc(2026, 5, 2, 12)
    assert credits(catalog, "mimo-v2.5-pro", 0, 1, 0, at) == credits(catalog, "MIMO-V2.5-PRO", 0, 1, 0, at) == 300


def test_unknown_model_is_not_free(catalog):
    assert credits(catalog, "gpt-5", 0, 1, 0, utc(2026, 5, 2)) is None
    assert credits(catalog, "MiMo-V2.5-Pro-Ultra", 0, 0, 0, utc(2026, 5, 2)) is None


def test_offpeak_boundaries(catalog):
    version = catalog.version_at(utc(2026, 5, 2))
    assert not is_offpeak(version, utc(2026, 5, 2, 15, 59, 59))
    assert not is_offpeak(version, utc(2026, 5, 2, 15, 59, 59, 999999))
    assert is_offpeak(version, utc(2026, 5, 2, 16, 0, 0))
    assert is_offpeak(version, utc(2026, 5, 2, 23, 59, 59, 999999))
    assert not is_offpeak(version, utc(2026, 5, 3, 0, 0, 0))


def test_offpeak_coefficient_is_exact(catalog):
    # 0.8 x 2 = 1.6 and 0.8 x 2.5 = 2: exact decimals, never rounded.
    assert credits(catalog, "MiMo-V2.5", 1, 0, 0, utc(2026, 5, 2, 16)) == Decimal("1.6")
    assert credits(catalog, "MiMo-V2.5", 1, 0, 0, utc(2026, 5, 2, 15, 59, 59)) == Decimal("2")
    assert credits(catalog, "MiMo-V2.5-Pro", 3, 0, 0, utc(2026, 5, 2, 12)) == Decimal("7.5")
    assert credits(catalog, "MiMo-V2.5-Pro", 1, 0, 0, utc(2026, 5, 2, 17)) == Decimal("2")
    assert credits(catalog, "MiMo-V2.5", 1, 0, 0, utc(2026, 5, 3, 0)) == Decimal("2")


def test_micro_credit_unit():
    assert MICRO == 1_000_000
    assert str(from_micro(1_600_000)) == "1.6"
