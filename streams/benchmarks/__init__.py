"""Benchmarks (not tests): `python -m streams.benchmarks.replay`."""
