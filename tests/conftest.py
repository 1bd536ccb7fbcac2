"""Shared fixtures, one plugin module per model kind (each defines its own session-scoped tiny model)."""
pytest_plugins = ["tests.fixtures_faces", "tests.fixtures_poems"]
