"""The gateway kit: what a gateway team adopts to feed the ledger and stop service.

It imports `schemas` (the contracts) and never `streams` (an import contract holds it):
- `usage/`: token counts from real OpenAI and Anthropic responses, streamed or not;
- `keys/`: `tp-` API keys: issued once, stored only as a hash, on `tokenplan.keys`;
- `quota/`: the local cache of `tokenplan.quota-status` and `tokenplan.keys` that
  answers "may this key spend now?" from memory;
- `policy/`: classifying requests (coding tool, unknown, non-coding) from versioned rules;
- `proxy/`: the reference gateway (`tokenplan gateway`);
- `upstream_sim.py`: a fake model server for local runs and tests (`tokenplan upstream-sim`).
"""
