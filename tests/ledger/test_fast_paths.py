"""The hot-path shortcuts agree exactly with the general code they bypass."""
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import _RFC3339, format_instant, parse_instant
from streams.ledger.limits import DEFAULT_LIMITS
from streams.ledger.memory import DAY_S, InMemoryEventMemory, day_of, expired_before
from streams.ledger import AccountState, Limits, Rejection, decode_event, step
from streams.ledger.units import credits_text, from_micro, parse_micro_text, parse_micro_texts, to_micro
from streams.ledger.catalog import load_catalog
from streams.ledger.fold import Fold
from tests.ledger.conftest import ev, purchase, refresh, renew, run, upgrade, usage

_instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                         timezones=st.just(timezone.utc))


@settings(max_examples=400, deadline=None)
@given(_instants)
def test_instant_text_fast_paths_agree(instant):
    text = instant.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"
    assert format_instant(instant) == text
    assert format_instant(instant.astimezone(timezone(timedelta(hours=8)))) == text
    assert parse_instant(text) == instant and parse_instant(text).tzinfo is timezone.utc
    assert parse_instant(text.replace("Z", "+00:00")) == instant


def test_parse_instant_fast_path_stays_strict():
    for text in ("2026-05-02T10:00:00.1234567Z", "2026-05-02Z", "20260502T100000Z", "2026-W18-5T10:00:00Z",
                 "2026-05-02T10:00:00,5Z"):
        try:
            parse_instant(text)
        except ValueError:
            continue
        raise AssertionError(text)
    assert parse_instant("2026-05-02T10:00:00.000000Z") == datetime(2026, 5, 2, 10, tzinfo=timezone.utc)
    assert parse_instant("2026-05-02t10:00:00z") == datetime(2026, 5, 2, 10, tzinfo=timezone.utc)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.integers(0, 10**9), st.integers(0, 10**26), st.integers(-10**9, -1),
                 st.integers(10**27, 10**32)))
def test_credits_text_fast_path_agrees(micro):
    assert credits_text(micro) == format(from_micro(micro), "f")
    if 0 <= micro < 10**26:
        text = credits_text(micro)
        assert parse_micro_text(text) == micro == to_micro(Decimal(text))
        assert parse_micro_texts([text, "7.5", "0"]) == [micro, 7_500_000, 0]


def test_parse_micro_text_refuses_non_canonical():
    for text in ("01", "1.0", "1.", ".5", "+1", "-1", "1e3", "1_0", "1.1234567", "", "\uff11"):
        assert parse_micro_text(text) is None and parse_micro_texts(["1", text]) is None
    assert parse_micro_texts([]) == []


def test_unhashable_enum_value_is_rejected_not_raised():
    data = usage()
    for value in ([], {}, ["cn"]):
        for field in ("cluster", "protocol"):
            assert decode_event(orjson.dumps({**data, field: value})).reason == "invalid_event"


def test_state_from_non_canonical_texts_is_accepted_and_normalized(catalog):
    state, _ = run(catalog, purchase(), *[usage(at=f"2026-05-0{d}T16:30:00Z", model="MiMo-V2.5", hit=d)
                                          for d in range(2, 6)])
    data = state.to_dict()
    assert data["packages"][0]["s"] == [["2026-05-01T00:00:00Z", "22.4"]]  # (2+3+4+5) x 2 x 0.8
    odd = orjson.loads(orjson.dumps(data))
    odd["packages"][0]["s"][0] = ["2026-05-01T08:00:00+08:00", "22.40"]
    restored = AccountState.from_dict(odd, DEFAULT_LIMITS)
    assert restored.to_dict() == data
    nxt = ev(usage(at="2026-05-09T01:00:00Z", miss=3))
    assert step(restored, nxt, catalog).state.to_dict() == step(state, nxt, catalog).state.to_dict()
    assert not isinstance(decode_event(orjson.dumps(usage())), Rejection)


def _parse_instant_general(value):
    """`parse_instant` for a string without its plain-UTC shortcut: the rule that shortcut must keep."""
    if _RFC3339.fullmatch(value) is None:
        raise ValueError("instant must be RFC 3339 with an offset, e.g. 2026-05-27T00:00:00+08:00")
    return datetime.fromisoformat(value.upper()).astimezone(timezone.utc)


def _outcome(parse, text):
    try:
        value = parse(text)
    except ValueError as error:
        return ("error", str(error))
    return ("ok", value, value.tzinfo is timezone.utc)


_instant_texts = st.one_of(
    _instants.map(lambda instant: instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    _instants.map(lambda instant: instant.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt W][0-9]{2}:[0-9]{2}:[0-9]{2}([.,][0-9]{0,8})?([Zz]|[+-]0[0-9]:[0-9]{2})?",
                  fullmatch=True),
    st.text(alphabet="0123456789-:.TtZzW+ \u0663\uff11\n", max_size=30),
)


@settings(max_examples=1500, deadline=None)
@given(_instant_texts)
def test_parse_instant_plain_utc_shortcut_agrees(text):
    assert _outcome(parse_instant, text) == _outcome(_parse_instant_general, text)


def test_parse_instant_plain_utc_shortcut_edges():
    for text in ("2026-05-02T10:00:00Z", "2026-05-02T10:00:00.5Z", "0001-01-01T00:00:00Z",
                 "9999-12-31T23:59:59.999999Z", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
                 "0000-01-01T00:00:00Z", "2026-05-02T24:00:00Z", "2026-05-02T10:00:60Z",
                 "2026-05-02T10:00:00.1234567Z", "2026-05-02T10:00:00.Z", "2026-05-02T10:00:00Z\n",
                 "2026-05-02t10:00:00z", "2026-05-02T1\u0663:00:00Z", "2026-W18-5T10:00:00.12345Z"):
        assert _outcome(parse_instant, text) == _outcome(_parse_instant_general, text), text


_any_instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
                             timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=8)),
                                                        timezone(timedelta(hours=-5, minutes=-30))]))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_any_instants,
                 st.integers(-3, 99_003).map(lambda d: datetime(1970, 1, 1, tzinfo=timezone.utc)
                                             + timedelta(days=d, microseconds=-1)),
                 st.integers(-3, 99_003).map(lambda d: datetime(1970, 1, 1, tzinfo=timezone.utc)
                                             + timedelta(days=d))))
def test_day_of_shortcut_agrees(instant):
    assert day_of(instant) == int((instant - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()) // DAY_S


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 40), st.integers(-5, 60)), max_size=60))
def test_memory_expire_shortcut_agrees(operations):
    """Remember ids on random days and expire at random bounds: the same as dropping every day < bound."""
    memory = InMemoryEventMemory()
    kept: dict[tuple[str, str], int] = {}
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for n, (account, day, bound) in enumerate(operations):
        at = base + timedelta(days=day, hours=n % 24)
        memory.remember(f"a{account}", f"e{n % 7}", f"f{n}", at)
        kept.setdefault((f"a{account}", f"e{n % 7}"), day_of(at))
        before = day_of(base) + bound
        expected = {key for key, d in kept.items() if d < before}
        assert memory.expire(before) == len(expected)
        kept = {key: d for key, d in kept.items() if d >= before}
        assert len(memory) == len(kept)
        assert all(memory.fingerprint_of(*key) is not None for key in kept)


# ------------------------------------------------------------------ Fold.add == Fold.feed

_BASE = datetime(2026, 5, 1, tzinfo=timezone.utc)
_FOLD_LIMITS = (DEFAULT_LIMITS, Limits(lateness_max=timedelta(days=2), dedupe_window=timedelta(days=3),
                                      packages_max=2, refreshes_max=3))


def _random_log(rng, count: int, accounts: int) -> list[bytes]:
    """Mostly usage in rough time order, with every case the fold's fast path must hand to `step`:
    unknown accounts, plan events, refreshes (global too), retries, conflicts, late usage,
    exhaustion and its end, unknown models, instants before the catalog, bad lines."""
    sent: list[dict] = []
    lines = []
    for n in range(count):
        at = _BASE + timedelta(hours=n * 2 + rng.uniform(-30, 2))
        if rng.random() < 0.02:
            at -= timedelta(days=rng.choice((3, 40, 500)))
        account = f"acct-{rng.randrange(accounts)}"
        text = rng.choice((at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), at.isoformat()))
        roll = rng.random()
        if roll < 0.05:
            data = purchase(account, text, tier=rng.choice(("lite", "max")), period=rng.choice(("monthly", "annual")))
        elif roll < 0.07:
            data = upgrade(account, text, tier=rng.choice(("standard", "pro", "max")))
        elif roll < 0.09:
            data = renew(account, text)
        elif roll < 0.11:
            data = refresh(text, account if rng.random() < 0.7 else None)
        elif roll < 0.15 and sent:
            data = dict(rng.choice(sent))
            if rng.random() < 0.3:
                data["output_tokens"] += 1
        else:
            data = usage(account, text, model=rng.choice(("MiMo-V2.5-Pro", "mimo-v2.5", "MiMo-V2-Pro", "nope")),
                         hit=rng.randrange(50_000), out=rng.randrange(2_000),
                         miss=9_000_000 if rng.random() < 0.03 else rng.randrange(5_000))
            sent.append(data)
        lines.append(orjson.dumps(data))
        if rng.random() < 0.01:
            lines.append(rng.choice((b"{not json", b'{"type": "usage", "event_id": "x", "account_id": "acct-1"}')))
    return lines


def _ledger_dump(ledger: Fold) -> dict:
    memories = {p: (m._ids, m._entries, dict(m._days)) for p, m in ledger.memories.items()}
    return {"result": orjson.dumps(ledger.result(_BASE + timedelta(days=20))),
            "later": orjson.dumps(ledger.result(_BASE + timedelta(days=400))),
            "states": {a: None if s is None else s.to_dict() for a, s in ledger.accounts.items()},
            "counts": (ledger.facts_count, ledger.duplicates_count, ledger.applied_count),
            "high_waters": ledger.high_waters, "memories": memories,
            "refreshes": (ledger.global_refreshes, ledger.global_refresh_ids.pairs())}


def _fold_and_feed(lines: list[bytes], limits: Limits, partitions: int) -> list[bool]:
    """Fold and feed `lines` into two ledgers, check they end equal; returns the fast path's answers."""
    fed = Fold(load_catalog(), limits, partitions=partitions)
    folded = Fold(load_catalog(), limits, partitions=partitions)
    taken: list[bool] = []
    fast = folded._fold_usage
    folded._fold_usage = lambda usage: taken.append(fast(usage)) or taken[-1]
    for line in lines:
        fed.feed(line)
        folded.add(line)
    assert _ledger_dump(folded) == _ledger_dump(fed)
    return taken


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 12), st.sampled_from(_FOLD_LIMITS), st.sampled_from((1, 3, 8)))
def test_fold_agrees_with_feed(seed, accounts, limits, partitions):
    """The fold's fast path for plain usage leaves exactly what `feed` (and so `step`) leaves."""
    _fold_and_feed(_random_log(random.Random(seed), 400, accounts), limits, partitions)


def test_fold_agrees_with_feed_on_a_long_log():
    taken = _fold_and_feed(_random_log(random.Random(1), 5000, 6), DEFAULT_LIMITS, 3)
    assert sum(taken) > len(taken) / 2 and not all(taken)  # both paths did real work


def test_fold_takes_the_fast_path_for_plain_usage_only():
    """Exhaustion, duplicates and unknown accounts go to `step`; plain charges do not."""
    ledger = Fold(load_catalog())
    taken = []
    fast = ledger._fold_usage
    ledger._fold_usage = lambda usage: taken.append(fast(usage)) or taken[-1]
    retry = usage("bob", "2026-05-02T01:00:00Z", miss=10)
    for data in (usage("bob"), purchase("bob"), retry, retry,
                 usage("bob", "2026-05-03T00:00:00Z", model="MiMo-V2-Pro", miss=9_000_000),
                 usage("bob", "2026-05-03T01:00:00Z", miss=1)):
        ledger.add(orjson.dumps(data))
    assert taken == [False, True, False, False, False]  # unknown account, plain, duplicate, exhausts, exhausted
    assert ledger.applied_count == 4 and ledger.duplicates_count == 1


_epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
_days_around = st.one_of(st.integers(-5, 60), st.integers(98_990, 99_010), st.integers(-719_000, 2_900_000))


def _expiry(expire, *args):
    try:
        return expire(*args)
    except OverflowError:  # a window beyond the calendar: both raise alike
        return "overflow"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _days_around, st.integers(0, 86_400 * 10**6 - 1)), max_size=40),
       st.sampled_from([timedelta(days=35), timedelta(days=3, hours=5, microseconds=7), timedelta(0),
                        timedelta(days=2_000_000), timedelta(days=2_950_000)]))
def test_expire_behind_agrees_with_expire(operations, window):
    """Remember ids and move a mark at random (as the Fold does: after remembering an id):
    `expire_behind` drops exactly what `expire(expired_before(...))` drops."""
    fast, slow = InMemoryEventMemory(), InMemoryEventMemory()
    for n, (is_mark, day, micros) in enumerate(operations):
        at = _epoch + timedelta(days=day, microseconds=micros)
        if is_mark and len(slow):
            assert _expiry(fast.expire_behind, at, window) == _expiry(
                lambda: slow.expire(expired_before(at, window)))
        else:
            fast.remember("a", f"e{n}", "f", at)
            slow.remember("a", f"e{n}", "f", at)
        assert fast._ids == slow._ids and dict(fast._days) == dict(slow._days)
