"""`tp-` API keys: generation, hashing, and the `tokenplan.keys` records."""
