"""Measurement scripts (never run as timed tests): `python -m benchmarks [--quick]`."""
