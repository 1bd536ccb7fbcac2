"""genrt.serve.config: limits checked, and the settings a worker process reads back from its environment."""
from __future__ import annotations

import pytest

from genrt.serve.config import API_KEY_VARIABLE, CONFIG_VARIABLE, ServeConfig


def test_environment_round_trip_keeps_the_key_out_of_the_json(monkeypatch):
    config = ServeConfig(model_dir="m", threads=1, max_rows=8, max_queued=3, request_timeout=2.5, api_key="s3cret")
    env = config.environment()
    assert "s3cret" not in env[CONFIG_VARIABLE] and env[API_KEY_VARIABLE] == "s3cret"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ServeConfig.from_environment() == config


@pytest.mark.parametrize("changes, words", [({"max_rows": 0}, "max_rows"), ({"max_queued": True}, "max_queued"),
                                            ({"request_timeout": 0}, "request_timeout"),
                                            ({"request_timeout": float("inf")}, "request_timeout"),
                                            ({"max_body_bytes": -1}, "max_body_bytes"), ({"api_key": " "}, "API key")])
def test_limits_are_checked(changes, words):
    with pytest.raises(ValueError, match=words):
        ServeConfig(**changes)


def test_unknown_environment_setting_is_named(monkeypatch):
    monkeypatch.setenv(CONFIG_VARIABLE, '{"max_rowz": 3}')
    with pytest.raises(ValueError, match="max_rowz"):
        ServeConfig.from_environment()
