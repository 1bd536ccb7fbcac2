"""genrt writes nothing outside what a command names: onnxruntime's telemetry is switched off here.

onnxruntime's Linux and macOS builds keep a telemetry database and a persistent device id under
~/.cache/Microsoft/DeveloperTools/.onnxruntime, created when the module is imported, unless ORT_DISABLE_TELEMETRY is
set first. genrt/__init__.py imports this module before anything imports onnxruntime, and the session maker also
switches telemetry events off for a process that imported onnxruntime before genrt.
"""
from __future__ import annotations

import os

TELEMETRY_SWITCH = "ORT_DISABLE_TELEMETRY"
os.environ[TELEMETRY_SWITCH] = "1"


def disable_onnxruntime_telemetry(ort) -> None:
    """Switch off onnxruntime's telemetry events for this process (a no-op where the build has none)."""
    disable = getattr(ort, "disable_telemetry_events", None)
    if callable(disable):
        disable()
