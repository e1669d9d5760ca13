"""Proving balances: replays of the ledger-log (file, Kafka, parallel) and the comparison with live answers."""
