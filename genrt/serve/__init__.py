"""`genrt serve`: an HTTP service over the poem engine and the face generator, and a playground page.

Installed by the `serve` extra (pip install ".[serve]": FastAPI, uvicorn, prometheus_client). Importing this
package needs none of them (the click command lives here too); create_app does.
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_app", "ServeConfig", "Models", "load_models"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from genrt.serve.app import create_app
        return create_app
    if name == "ServeConfig":
        from genrt.serve.config import ServeConfig
        return ServeConfig
    if name in ("Models", "load_models"):
        from genrt.serve import service
        return getattr(service, name)
    raise AttributeError(f"module 'genrt.serve' has no attribute {name!r}")
