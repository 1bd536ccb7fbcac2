"""The service's settings: which models to load and every limit, in one frozen dataclass.

`genrt serve` builds one from its options; `uvicorn --factory genrt.serve.app:create_app` (and each worker of
`genrt serve --workers N`) reads it from the environment: GENRT_SERVE_CONFIG (JSON of these fields) and
GENRT_API_KEY (kept out of the JSON, so the key never appears in a process listing or a log line).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from genrt.poems.generator import BATCH_ROWS

CONFIG_VARIABLE = "GENRT_SERVE_CONFIG"
API_KEY_VARIABLE = "GENRT_API_KEY"

MAX_FACES = 64                   # faces per request: as many as the CLI's grid.png shows
MAX_FACES_DRAWN = 4 * MAX_FACES  # faces a request may draw to filter (n / filter): a bounded cost per request
MAX_PROMPTS = 64                 # prompts per /v1/poems or /v1/completions request
MAX_SCORE_PAIRS = 64             # (prompt, poem) pairs per /v1/score request
MAX_BODY_BYTES = 256 * 1024      # request body; 64 prompts or pairs of 200 characters need ~80 KB
MAX_QUEUED = 256                 # requests waiting for the engine (poems) or a worker (faces, score)
REQUEST_TIMEOUT = 60.0           # seconds from arrival to the last byte of the answer's content
RETRY_AFTER = 1                  # seconds a 429 asks the client to wait


@dataclass(frozen=True)
class ServeConfig:
    model_dir: str | None = None          # poem model directory (None: by precision, the bundled one)
    faces_model_dir: str | None = None
    precision: str | None = None
    provider: str = "auto"
    threads: int | None = None
    max_rows: int = BATCH_ROWS            # decoder rows each engine lane steps together
    max_queued: int = MAX_QUEUED
    request_timeout: float = REQUEST_TIMEOUT
    max_body_bytes: int = MAX_BODY_BYTES
    api_key: str | None = None
    retry_after: int = RETRY_AFTER
    engine_process: bool = True           # the engine's lanes in processes of their own (poems.engine_process)

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_queued", "max_body_bytes", "retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.request_timeout, (int, float)) or not 0 < self.request_timeout < float("inf"):
            raise ValueError(f"request_timeout must be a positive number of seconds, got {self.request_timeout!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key must not be empty")

    @classmethod
    def from_environment(cls) -> "ServeConfig":
        """Settings a worker process inherits: GENRT_SERVE_CONFIG (JSON) and GENRT_API_KEY."""
        text = os.environ.get(CONFIG_VARIABLE)
        values = json.loads(text) if text else {}
        known = {f.name for f in fields(cls)} - {"api_key"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{CONFIG_VARIABLE}: unknown setting(s) {', '.join(unknown)}")
        return cls(**values, api_key=os.environ.get(API_KEY_VARIABLE) or None)

    def environment(self) -> dict[str, str]:
        """The variables that give a worker process these settings (from_environment reads them back)."""
        values = asdict(self)
        key = values.pop("api_key")
        env = {CONFIG_VARIABLE: json.dumps(values)}
        if key is not None:
            env[API_KEY_VARIABLE] = key
        return env
