"""The catalog: models, credit ratios, tiers, pools, prices, discounts, off-peak window.

Catalog content is versioned DATA (`schemas/catalog.json`, a contract the gateway
reads too), not code: each version
has an `effective_from` instant and a charge uses the version in effect at
the event's `occurred_at`. This module parses and validates it; the only I/O
is `load_catalog`, which the commands and agents call once at start.
"""
from __future__ import annotations

import bisect
import importlib.resources
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from schemas.events import Instant
from streams.ledger.units import to_micro

__all__ = ["Catalog", "CatalogVersion", "ModelRatios", "TierSpec", "load_catalog", "parse_catalog"]

Period = Literal["monthly", "annual"]
Currency = Literal["USD", "CNY"]


def _decimal_text(value: Any) -> Decimal:
    """Decimals in the catalog are strings: a JSON float would already be inexact."""
    if not isinstance(value, str):
        raise ValueError("decimal values in the catalog must be strings, e.g. \"2.5\"")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise ValueError("catalog decimals must be finite and non-negative")
    return number


DecimalText = Annotated[Decimal, BeforeValidator(_decimal_text)]


def _cache(model: BaseModel, **lookups: Any) -> None:
    """Store derived lookup tables as plain instance attributes.

    Why not PrivateAttr: pydantic serves private attributes through
    __getattr__, which costs microseconds on the hot path; plain instance
    dict entries are found directly. They are not fields: never serialized,
    not part of equality.
    """
    for name, value in lookups.items():
        object.__setattr__(model, name, value)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelRatios(_Frozen):
    """Credits per token of one billable model."""

    name: str
    ratio_hit: DecimalText
    ratio_miss: DecimalText
    ratio_output: DecimalText


class TierSpec(_Frozen):
    """One tier: its credit pool and list price per period and currency."""

    name: str
    credits: dict[Period, DecimalText]
    prices: dict[Currency, dict[Period, DecimalText]]


class Discounts(_Frozen):
    """Multipliers applied to a monthly list price (and the annual relation)."""

    first_purchase: DecimalText
    auto_renew_new: DecimalText
    auto_renew_existing: DecimalText
    annual_vs_monthly: DecimalText


class OffPeak(_Frozen):
    """Off-peak window in seconds of the UTC day, [start_s, end_s), and its coefficient."""

    start_s: int = Field(ge=0, le=86400)
    end_s: int = Field(ge=0, le=86400)
    coefficient: DecimalText

    @model_validator(mode="after")
    def _window_ordered(self) -> "OffPeak":
        if self.start_s >= self.end_s:
            raise ValueError("off-peak start_s must be before end_s")
        return self


class CatalogVersion(_Frozen):
    """Everything priced or rated from `effective_from` until the next version."""

    effective_from: Instant
    name: str
    models: list[ModelRatios]
    free_models: list[str]
    tiers: list[TierSpec] = Field(min_length=1)
    period_months: dict[Period, int]
    discounts: Discounts
    offpeak: OffPeak


    @model_validator(mode="after")
    def _index(self) -> "CatalogVersion":
        """Build case-insensitive lookups; refuse ambiguous names."""
        ratios = {m.name.lower(): m for m in self.models}
        free = frozenset(n.lower() for n in self.free_models)
        if len(ratios) != len(self.models) or len(free) != len(self.free_models) or ratios.keys() & free:
            raise ValueError("model names must be unique, case-insensitively")
        micro = {key: self._micro_pair(m) for key, m in ratios.items()}
        micro.update({key: ((0, 0, 0), (0, 0, 0)) for key in free})
        _cache(self, _ratios=ratios, _free=free, _micro=micro,
               _tiers={t.name: t for t in self.tiers},
               _rank={t.name: i for i, t in enumerate(self.tiers)},
               _offpeak_window=(self.offpeak.start_s, self.offpeak.end_s))
        return self

    def _micro_pair(self, model: ModelRatios) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(peak, off-peak) ratios in micro-credits; refuses ratios that would need rounding."""
        ratios = (model.ratio_hit, model.ratio_miss, model.ratio_output)
        coefficient = self.offpeak.coefficient
        peak = tuple(to_micro(r) for r in ratios)
        offpeak = tuple(to_micro(r * coefficient) for r in ratios)
        return peak, offpeak  # type: ignore[return-value]

    def micro_ratios(self, model: str) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        """(peak, off-peak) micro-credit ratios (hit, miss, output); zeros for free models.

        None for an unknown model: never free, never guessed.
        """
        return self._micro.get(model.lower())

    def ratios(self, model: str) -> ModelRatios | None:
        """Ratios of a billable model (case-insensitive), None when unknown or free."""
        return self._ratios.get(model.lower())

    def is_free(self, model: str) -> bool:
        """True for models that are recorded but cost 0 credits (the TTS series)."""
        return model.lower() in self._free

    def tier(self, name: str) -> TierSpec | None:
        """The tier spec by name, None when unknown."""
        return self._tiers.get(name)

    def tier_rank(self, name: str) -> int:
        """Position of a tier from lowest (0) to highest; tiers are listed in order."""
        return self._rank[name]

    def is_top_tier(self, name: str) -> bool:
        """True for the highest tier (Max): nothing to upgrade to."""
        return self._rank[name] == len(self.tiers) - 1

    def credits_limit(self, tier: str, period: str) -> Decimal | None:
        """The tier's pool for a period, None when unknown."""
        spec = self._tiers.get(tier)
        return None if spec is None else spec.credits.get(period)

    def list_price(self, tier: str, period: str, currency: str) -> Decimal | None:
        """The table price, None when tier, period or currency is unknown."""
        spec = self._tiers.get(tier)
        if spec is None:
            return None
        return spec.prices.get(currency, {}).get(period)


class Catalog(_Frozen):
    """All catalog versions, ordered by effective_from."""

    versions: list[CatalogVersion] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> "Catalog":
        starts = [v.effective_from for v in self.versions]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("catalog versions must have strictly increasing effective_from")
        _cache(self, _starts=starts, _last=self.versions[-1], _last_start=starts[-1])
        return self

    def version_at(self, instant: datetime) -> CatalogVersion | None:
        """The version in effect at `instant`, None before the first one."""
        if instant >= self._last_start:  # the common case: the current version
            return self._last
        index = bisect.bisect_right(self._starts, instant) - 1
        return self.versions[index] if index >= 0 else None


def parse_catalog(text: str | bytes) -> Catalog:
    """Validate catalog JSON text into a Catalog (pure)."""
    return Catalog.model_validate_json(text)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate the catalog: the packaged `schemas/catalog.json` unless a path is given.

    This is the core's only I/O, kept out of the rules: callers load once and
    pass the Catalog object to the pure functions.
    """
    if path is None:
        text = importlib.resources.files("schemas").joinpath("catalog.json").read_bytes()
    else:
        text = Path(path).read_bytes()
    return parse_catalog(text)
