"""The pure rulebook core of tokenplan: rating, packages, prices, refreshes, quotas.

No I/O (except `load_catalog`), no clock, no framework: time and ids are
data. The streaming agents, `tokenplan replay` and `tokenplan quote` call
exactly this API:

    decode_event(raw, limits) -> Event | Rejection
    step(state, event, catalog, limits, *, global_refreshes=()) -> StepResult
    account_view(state, as_of) -> dict;  allowed(view) -> bool
    quote(state, action, tier, period, currency, auto_renew, at, catalog) -> dict
    Fold(catalog, limits).feed(raw) / .result(as_of)   (the replay fold)
    AccountState.to_dict() / AccountState.from_dict(data, limits)
    AccountState.to_json() -> bytes; StepResult.fact_payloads(); view_key(state, as_of)
        (the streaming worker's hot path: exactly the bytes / key of the plain forms)
"""
from streams.ledger.catalog import Catalog, load_catalog, parse_catalog
from streams.ledger.decisions import quote
from streams.ledger.fact_ids import derive_event_id
from streams.ledger.fold import Fold
from streams.ledger.state import AccountState
from streams.ledger.step import StepResult, step
from streams.ledger.decode import decode_event
from streams.ledger.errors import LedgerInvariantError
from streams.ledger.limits import DEFAULT_LIMITS, Limits
from streams.ledger.rejections import Reason, Rejection, redact
from streams.ledger.views import account_view, allowed, view_key

__all__ = [
    "DEFAULT_LIMITS", "AccountState", "Catalog", "Fold", "LedgerInvariantError", "Limits",
    "Reason", "Rejection", "StepResult", "account_view", "allowed", "decode_event",
    "derive_event_id", "load_catalog", "parse_catalog", "quote", "redact", "step", "view_key",
]
