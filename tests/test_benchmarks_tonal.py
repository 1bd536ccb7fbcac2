"""benchmarks.tonal: the validation poems of a corpus cache, the checker's pass rates on real poems, the report."""

import pytest

from benchmarks.tonal import check_real, markdown, validation_poems
from genrt.contract import PROMPT_TITLE, SPECIAL_TOKENS
from tests.test_benchmarks_poem_decoding import write_cache

DENGGUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"           # 五绝, 仄起首句不入韵
JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"              # 五绝 shape, not regulated (古绝)
CHUNWANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
ZAOFA = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
DENGGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。"
           "艰难苦恨繁霜鬓，潦倒新停浊酒杯。")


def test_validation_poems_are_distinct_sorted_and_free_of_control_tokens(tmp_path):
    vocab = list(SPECIAL_TOKENS) + list("，。春江花月山水")
    cache = write_cache(tmp_path / "cache", vocab, [
        ([PROMPT_TITLE, "春"], list("山水，江月。") + ["<eos>"]),
        ([PROMPT_TITLE, "江"], list("春江，花月。")),
        ([PROMPT_TITLE, "月"], list("山水，江月。")),
    ], [])
    assert validation_poems(cache) == sorted({"山水，江月。", "春江，花月。"})


def test_check_real_counts_shaped_poems_per_form_and_their_pass_rates():
    rows = {r["form"]: r for r in check_real([DENGGUANQUE, JINGYESI, CHUNWANG, ZAOFA, DENGGAO, "春风。"])}
    assert list(rows) == ["五言绝句", "七言绝句", "五言律诗", "七言律诗"]
    assert [rows[f]["poems"] for f in rows] == [2, 1, 1, 1]
    assert rows["五言绝句"]["tonal"] == 0.5                                  # 静夜思 follows no tonal pattern
    assert rows["五言绝句"]["patterns"] == {"仄起首句不入韵": 1}
    assert all(r["pingshui_rhyme"] == 1.0 and r["char_coverage"] == 1.0 for r in rows.values())
    assert rows["七言律诗"]["tonal"] == 1.0 and sum(rows["七言绝句"]["patterns"].values()) == 1


def test_markdown_shows_each_table_and_only_the_tonal_examples():
    report = {
        "model": "bundled", "precision": "int8", "titles": 10, "machine": "Test CPU (avx2), 1 threads",
        "real": [{"form": "五言绝句", "poems": 40, "tonal": 0.625, "pingshui_rhyme": 0.9, "char_coverage": 0.99871,
                  "patterns": {"仄起首句不入韵": 20, "平起首句入韵": 5}}],
        "generated": [{"form": "五言绝句", "search": "defaults (no options)", "tonal": True, "shape": 1.0,
                       "follows_pattern": 0.95, "pingshui_rhyme": 0.9, "nll_per_char": 3.14159,
                       "seconds_per_poem": 0.256}],
        "timing": [{"form": "五言绝句", "ms_per_token_form": 0.5, "ms_per_token_tonal": 0.6, "overhead": 0.2,
                    "processor_us_cold": 80.0, "processor_us_warm": 12.34, "processor_share_cold": 0.16,
                    "processor_share_warm": 0.0247}],
        "examples": [{"form": "五言绝句", "tonal": True, "title": "登楼", "text": DENGGUANQUE, "marks": "仄仄平平仄"},
                     {"form": "五言绝句", "tonal": False, "title": "无声", "text": JINGYESI, "marks": "x"}],
    }
    text = markdown(report)
    assert text.startswith("Model: `bundled` (int8), 10 validation titles; Test CPU (avx2), 1 threads.")
    assert "| 五言绝句 | 40 | 62.5% | 90.0% | 99.87% | 仄起首句不入韵 |" in text
    assert "| 五言绝句 | defaults (no options) | yes | 100% | 95% | 90% | 3.142 | 0.26 |" in text
    assert "| 五言绝句 | 0.500 | 0.600 | +20.0% | 80.0 | 12.3 | 16.0% | 2.5% |" in text
    assert f"- 《登楼》 五言绝句: {DENGGUANQUE}\n  `仄仄平平仄`" in text and "无声" not in text


def test_a_timing_rerun_names_its_own_machine():
    report = {"model": "m", "precision": "fp32", "titles": 0, "machine": "first CPU", "real": [], "generated": [],
              "timing": [], "examples": []}
    assert "the --form step; first CPU):" in markdown(report)
    assert "the --form step; second CPU):" in markdown({**report, "timing_machine": "second CPU"})


def test_skip_timing_keeps_the_timing_of_the_existing_report(tmp_path, monkeypatch):
    import json

    import benchmarks.tonal as tonal
    from genrt.poems import generator as generator_module

    class FakeGenerator:
        class model:
            class manifest:
                precision = "int8"

    monkeypatch.setattr(generator_module.PoemGenerator, "load", classmethod(lambda cls, *a, **k: FakeGenerator()))
    monkeypatch.setattr(tonal, "load_split", lambda cache, n, seed: (["春江"], ["x"], set()))
    monkeypatch.setattr(tonal, "validation_poems", lambda cache: [])
    monkeypatch.setattr(tonal, "check_real", lambda poems: [])
    monkeypatch.setattr(tonal, "generate_rows", lambda gen, titles, batch: ([], []))
    def row(ms):
        return {"form": "wujue", "ms_per_token_form": ms, "ms_per_token_tonal": ms, "overhead": 0.0,
                "processor_us_cold": 1.0, "processor_us_warm": 1.0, "processor_share_cold": 0.01,
                "processor_share_warm": 0.01}
    timed = []
    monkeypatch.setattr(tonal, "time_tonal", lambda gen, titles: timed.append(titles) or [row(0.987)])
    out = tmp_path / "tonal.json"
    out.write_text(json.dumps({"machine": "quiet CPU", "timing": [row(0.123)]}), encoding="utf-8")
    tonal.main(["--cache", str(tmp_path), "--out", str(out), "--skip-timing"])
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["timing"] == [row(0.123)] and report["timing_machine"] == "quiet CPU" and not timed
    assert "| 0.123 |" in out.with_suffix(".md").read_text(encoding="utf-8")
    tonal.main(["--cache", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text(encoding="utf-8"))["timing"] == [row(0.987)] and timed
    with pytest.raises(SystemExit):
        tonal.main(["--cache", str(tmp_path), "--out", str(out), "--skip-timing", "--only-timing"])
