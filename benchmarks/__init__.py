"""Measurement scripts (never run as timed tests): `python -m benchmarks [--quick]`."""
# Before any benchmark imports onnxruntime: its telemetry database and device id are never written (genrt.privacy).
import genrt.privacy  # noqa: F401
