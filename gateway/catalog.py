"""The plan's models as a gateway needs them: names to list and accept, ratios to estimate.

Read from the same versioned data the ledger rates with (`schemas/catalog.json`); the
gateway only *estimates* (in-flight credits, at peak ratios, so never below the
charge), while the ledger's rating (`streams.ledger.rating`) stays the one rule that bills.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import orjson

from schemas.events import parse_instant

__all__ = ["PlanModels", "load_plan_models"]


@dataclass(frozen=True, slots=True)
class Ratios:
    """Credits per token of one model (peak)."""

    hit: Decimal
    miss: Decimal
    output: Decimal


@dataclass(frozen=True)
class PlanModels:
    """The models of the catalog version in effect: canonical names and peak ratios."""

    version: str
    names: tuple[str, ...]
    ratios: dict[str, Ratios]  # lower-case name -> ratios (free models: all zero)

    def canonical(self, model: str) -> str | None:
        """The catalog's spelling of `model` (names match case-insensitively), or None."""
        lowered = model.lower()
        return next((name for name in self.names if name.lower() == lowered), None)

    def estimate(self, model: str, input_tokens: int, output_tokens: int) -> Decimal:
        """An upper estimate of a request's credits: input as cache misses, peak ratios."""
        ratios = self.ratios[model.lower()]
        return input_tokens * ratios.miss + output_tokens * ratios.output

    def cost(self, model: str, hit: int, miss: int, output: int) -> Decimal:
        """Credits of finished usage at peak ratios (an upper bound of the ledger's charge)."""
        ratios = self.ratios[model.lower()]
        return hit * ratios.hit + miss * ratios.miss + output * ratios.output


def load_plan_models(at: datetime, text: bytes | None = None) -> PlanModels:
    """The version of the catalog in effect at `at` (the packaged one unless `text` is given)."""
    data = orjson.loads(text if text is not None else
                        importlib.resources.files("schemas").joinpath("catalog.json").read_bytes())
    versions = sorted(data["versions"], key=lambda v: parse_instant(v["effective_from"]))
    current = [v for v in versions if parse_instant(v["effective_from"]) <= at] or versions[:1]
    version = current[-1]
    ratios = {m["name"].lower(): Ratios(Decimal(m["ratio_hit"]), Decimal(m["ratio_miss"]), Decimal(m["ratio_output"]))
              for m in version["models"]}
    zero = Ratios(Decimal(0), Decimal(0), Decimal(0))
    ratios.update({name.lower(): zero for name in version["free_models"]})
    names = tuple(m["name"] for m in version["models"]) + tuple(version["free_models"])
    return PlanModels(version=version["name"], names=names, ratios=ratios)
