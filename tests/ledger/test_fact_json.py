"""Facts: the hot-path JSON equals the models' JSON, and a usage charge says what was used.

`StepResult.fact_payloads()` (fact_json, no pydantic) must be exactly
`(fact.type, fact.model_dump_json().encode())` of `StepResult.facts` (the models).
"""
import random
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.outputs import BalanceChanged, QuotaExhausted
from streams.ledger.fold import Fold
from streams.ledger.rating import charge_micro, rate
from streams.ledger.units import to_micro
from tests.ledger.conftest import ev, purchase, refresh, renew, run, upgrade, usage, utc
from tests.ledger.test_fast_paths import _FOLD_LIMITS, _random_log


def _plain_payloads(result) -> list[tuple[str, bytes]]:
    return [(fact.type, fact.model_dump_json().encode()) for fact in result.facts]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 8), st.sampled_from(_FOLD_LIMITS))
def test_fact_payloads_match_the_models_json(catalog, seed, accounts, limits):
    """Every fact of a random log (charges, exhaustion, plan changes, refreshes): the same bytes."""
    ledger = Fold(catalog, limits)
    kinds, offpeaks = set(), set()
    for line in _random_log(random.Random(seed), 300, accounts):
        results = ledger.feed(line)
        for result in results if isinstance(results, list) else []:
            assert result.fact_payloads() == _plain_payloads(result)
            kinds.update(fact.type for fact in result.facts)
            offpeaks.update(fact.usage.offpeak for fact in result.facts if getattr(fact, "usage", None))
    assert "balance.changed" in kinds and offpeaks == {False, True}


def test_fact_payloads_of_priced_exhausting_and_restoring_facts(catalog):
    state, results = run(catalog, purchase("a", auto_renew=True), usage("a", miss=10**7),
                         usage("a", at="2026-05-02T17:00:00Z", miss=10**7),
                         usage("a", at="2026-05-02T18:00:00Z", miss=10**7, model="MiMo-V2.5-TTS"),
                         upgrade("a", "2026-05-03T00:00:00Z", tier="max"),
                         refresh("2026-05-04T00:00:00Z", "a"), renew("a", "2026-05-31T00:00:00Z"))
    kinds = []
    for result in results:
        assert result.fact_payloads() == _plain_payloads(result)
        kinds += [fact_type for fact_type, _ in result.fact_payloads()]
    assert {"balance.changed", "quota.exhausted", "quota.restored"} <= set(kinds)


def _usage_of(result) -> dict:
    [change] = [orjson.loads(p) for t, p in result.fact_payloads() if t == "balance.changed"]
    assert change["schema_version"] == 2
    return change


def test_a_usage_charge_carries_what_was_used_at_peak(catalog):
    _, results = run(catalog, purchase("a"), usage("a", at="2026-05-02T15:59:59.999Z", model="MiMo-V2.5",
                                                   hit=10, miss=3, out=1, key_id="key-7", cluster="sgp",
                                                   protocol="anthropic"))
    change = _usage_of(results[-1])
    assert change["credits_charged"] == "520"  # 10 x 2 + 3 x 100 + 1 x 200
    assert change["usage"] == {
        "model": "MiMo-V2.5", "input_cache_hit_tokens": 10, "input_cache_miss_tokens": 3, "output_tokens": 1,
        "coefficient": "1", "offpeak": False, "credits_saved": "0", "cluster": "sgp", "protocol": "anthropic",
        "key_id": "key-7"}


def test_a_usage_charge_off_peak_says_the_coefficient_and_what_it_saved(catalog):
    _, results = run(catalog, purchase("a"), usage("a", at="2026-05-02T16:00:00Z", model="MiMo-V2.5-Pro",
                                                   hit=3, miss=1, out=1))
    change = _usage_of(results[-1])
    assert change["credits_charged"] == "726"  # (3 x 2.5 + 300 + 600) x 0.8
    usage_part = change["usage"]
    assert (usage_part["coefficient"], usage_part["offpeak"], usage_part["credits_saved"]) == ("0.8", True, "181.5")
    assert Decimal(change["credits_charged"]) + Decimal(usage_part["credits_saved"]) == Decimal("907.5")


def test_free_models_off_peak_save_nothing_and_plan_changes_carry_no_usage(catalog):
    _, results = run(catalog, purchase("a"), usage("a", at="2026-05-02T20:00:00Z", model="MiMo-V2.5-TTS", miss=99),
                     refresh("2026-05-03T00:00:00Z", "a"))
    bought, free, refreshed = (result.facts[-1] for result in results)
    assert bought.usage is None and refreshed.usage is None and bought.schema_version == 2
    assert free.credits_charged == 0 and free.usage.offpeak and free.usage.credits_saved == 0
    assert free.usage.coefficient == Decimal("0.8")


def test_the_charge_that_exhausts_carries_its_usage(catalog):
    _, results = run(catalog, purchase("a"), usage("a", model="MiMo-V2-Pro", miss=9_000_000))
    exhausted, change = results[-1].facts
    assert isinstance(exhausted, QuotaExhausted) and isinstance(change, BalanceChanged)
    assert change.usage.input_cache_miss_tokens == 9_000_000 and change.usage.model == "MiMo-V2-Pro"


def test_an_upgrade_moving_usage_carries_no_usage(catalog):
    """The moved usage was described by its own charge; the upgrade's facts re-describe none."""
    _, results = run(catalog, purchase("a"), usage("a", at="2026-05-12T00:00:00Z", miss=10),
                     upgrade("a", "2026-05-10T00:00:00Z"))
    assert all(fact.usage is None for fact in results[-1].facts if isinstance(fact, BalanceChanged))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(("MiMo-V2.5-Pro", "mimo-v2.5", "MiMo-V2-Pro", "MiMo-V2-Omni", "MiMo-V2-TTS")),
       st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 86_399))
def test_rate_is_the_charge_and_the_exact_saving(catalog, model, hit, miss, out, second):
    at = utc(2026, 5, 2, second // 3600, second // 60 % 60, second % 60)
    version = catalog.version_at(at)
    micro, coefficient, offpeak, saved = rate(version, model, hit, miss, out, at)
    ratios = version.ratios(model)
    credits = Decimal(0) if ratios is None else hit * ratios.ratio_hit + miss * ratios.ratio_miss + out * ratios.ratio_output
    assert offpeak == (second >= 16 * 3600) and coefficient == (Decimal("0.8") if offpeak else 1)
    assert to_micro(credits * coefficient) == micro == charge_micro(version, model, hit, miss, out, at)
    assert saved == to_micro(credits) - micro


def test_a_fact_names_the_key_never_a_secret(catalog):
    """The ledger refuses usage holding a `tp-` secret, so `key_id` in a fact is never one."""
    _, results = run(catalog, purchase("a"))
    from streams.ledger import Rejection, decode_event
    assert isinstance(decode_event(usage("a", key_id="tp-" + "x" * 40)), Rejection)
    assert ev(usage("a")).key_id == "key-1" and results[-1].facts[-1].usage is None
