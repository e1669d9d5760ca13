"""Benchmarks (not tests): `python -m bench.replay`."""
