"""Property: whatever a manifest holds, read_manifest returns a manifest or raises ManifestError, nothing else."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from genrt.contract import FACES_KIND, FORMAT_VERSION, POEMS_KIND, SPECIAL_TOKENS, ManifestError, read_manifest

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)
FIELDS = ["format_version", "kind", "vocab", "d_model", "num_heads", "num_encoder_layers", "num_decoder_layers",
          "dim_feedforward", "max_len", "nz", "image_size", "channels", "generation", "graphs", "encoder_file",
          "decoder_file", "graph_file", "t2s_file", "precision", "scoring", "training"]
BASES = [
    {"format_version": FORMAT_VERSION, "kind": POEMS_KIND, "vocab": list(SPECIAL_TOKENS) + ["春"], "d_model": 8,
     "num_heads": 2, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 16, "max_len": 16},
    {"format_version": FORMAT_VERSION, "kind": FACES_KIND, "nz": 4, "image_size": 8},
]
SETTINGS = ["max_new_tokens", "temperature", "top_k", "top_p", "seed", "best_of", "length_penalty", "do_sample"]


def load(data) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name in ("encoder.onnx", "decoder.onnx", "generator.onnx"):
            (Path(folder) / name).write_bytes(b"")
        (Path(folder) / "manifest.json").write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
        try:
            read_manifest(folder)
        except ManifestError as e:
            assert str(e) and e.problems


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), changes=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4))
def test_any_field_values(base, changes):
    load({**base, **changes})


@settings(max_examples=40, deadline=None)
@given(section=st.sampled_from(["default", "no_options", "beam", "sample", "other"]),
       values=st.dictionaries(st.sampled_from(SETTINGS), JSON, max_size=3))
def test_any_recommended_settings(section, values):
    load({**BASES[0], "generation": {section: values}})


@settings(max_examples=20, deadline=None)
@given(JSON)
def test_any_json_document(document):
    load(document)
