"""benchmarks.providers: node placement read from onnxruntime's log, one table for every provider, a quick run."""
from __future__ import annotations

import json

from benchmarks import providers
from benchmarks.report import providers_markdown, providers_table

LOG = """\
2026-01-01 [V:onnxruntime:, session_state.cc:1307 VerifyEachNodeIsAssignedToAnEp] Node placements
2026-01-01 [V:onnxruntime:, session_state.cc:1313 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [OpenVINOExecutionProvider]. Number of nodes: 2
2026-01-01 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   OpenVINO-EP-subgraph_1 (OpenVINOExecutionProvider_OpenVINO-EP-subgraph_1_0)
2026-01-01 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   OpenVINO-EP-subgraph_2 (OpenVINOExecutionProvider_OpenVINO-EP-subgraph_2_1)
2026-01-01 [V:onnxruntime:, session_state.cc:1313 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2
2026-01-01 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   MultiHeadAttention (/l0/MultiHeadAttention)
2026-01-01 [V:onnxruntime:, session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp]   Cast (/Cast)
2026-01-01 [V:onnxruntime:, session_state.cc:175 CreateGraphInfo] SaveMLValueNameIndexMapping
2026-01-01 [V:onnxruntime:, session_state.cc:1307 VerifyEachNodeIsAssignedToAnEp] Node placements
2026-01-01 [V:onnxruntime:, session_state.cc:1310 VerifyEachNodeIsAssignedToAnEp]  All nodes placed on [CPUExecutionProvider]. Number of nodes: 96
"""


def test_placements_are_read_per_session_in_order():
    placed = providers.placements(LOG, ["encoder", "decoder"])
    assert placed == {"encoder": {"OpenVINOExecutionProvider": {"OpenVINO-EP-subgraph": 2},
                                  "CPUExecutionProvider": {"MultiHeadAttention": 1, "Cast": 1}},
                      "decoder": {"CPUExecutionProvider": {"all nodes": 96}}}
    assert providers.placement_words(placed) == ("encoder: OpenVINO 2 subgraphs, CPU MultiHeadAttention x1 Cast x1; "
                                                 "decoder: CPU all 96 nodes")


def _row(provider, precision, ms, engine="genrt"):
    return {"model": "faces", "engine": engine, "provider": provider, "precision": precision, "n": 16,
            "median_ms": ms, "images_per_s": 16 / ms * 1e3, "ran_on": f"{provider} here"}


def test_one_table_compares_every_provider_with_the_cpu_provider():
    rows = [_row("openvino", "fp32", 50.0), _row("cpu", "fp32", 100.0), _row("cuda", "fp32", 10.0),
            _row("cuda", "fp32", 20.0, engine="torch-eager")]
    table = providers_table(rows)
    assert len(table) == 2 + 4 and "| genrt, cpu | fp32 | cpu here |" in table[2]
    assert "cuda here" in table[3] and table[3].endswith("| 10.00x |")
    assert table[4].endswith("| 2.00x |") and "openvino here" in table[4]
    assert "torch-eager, cuda" in table[5] and table[5].endswith("| 5.00x |")


def test_a_quick_run_writes_json_and_markdown(tiny_faces_model, tmp_path):
    providers.main(["--providers", "cpu", "--threads", "1", "--quick", "--kinds", "faces", "--faces-model",
                    str(tiny_faces_model), "--out", str(tmp_path)])
    result = json.loads((tmp_path / "providers.json").read_text())
    assert {"cpu", "date", "onnxruntime", "onnxruntime_wheels", "providers"} <= set(result["machine"])
    assert [r["n"] for r in result["rows"]] == list(providers.FACE_BATCHES)
    assert all("CPUExecutionProvider" in r["ran_on"] and "CPU all" in r["placed"] for r in result["rows"])
    markdown = (tmp_path / "providers.md").read_text()
    assert "### Providers side by side" in markdown and "CPU all" in markdown
    assert markdown == providers_markdown(result)
