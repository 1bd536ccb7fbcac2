"""The doubling table of a poem model directory: which characters the training poems double (叠字) and where in a
verse; genrt.poems.verse.doubling describes the file and applies it.

    python -m export.poem_doubling --data ../shared/data/chinese-poetry genrt/models/poems [MODEL_DIR ...]

The poems are read and cleaned as trainers.poems_corpus reads them, and only its training split is counted (the
validation poems stay out), with the corpus settings the model's manifest records (`training.corpus.config`:
val_percent, max_body, max_files) where it has them. Each directory gets `doubling.json` and the manifest field
`doubling_file` naming it; every other manifest field is kept as written, and the graphs are not touched.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from export.model_dir import command_errors, replace_text
from genrt.contract import MANIFEST_NAME, PoemsManifest, read_manifest
from genrt.poems.verse.doubling import (
    DOUBLING_FILE, MIN_AT_POSITION, MIN_COUNT, VERSE_LENGTHS, DoublingTable, doubled_pairs,
)


def count_doubles(bodies: Iterable[str]) -> tuple[Counter, Counter, int]:
    """-> (doubled pairs per character, per (character, verse length, pair start), poems counted)."""
    totals, places, poems = Counter(), Counter(), 0
    for body in bodies:
        poems += 1
        for ch, length, start in doubled_pairs(body):
            totals[ch] += 1
            places[ch, length, start] += 1
    return totals, places, poems


def doubling_table(bodies: Iterable[str], min_count: int = MIN_COUNT, min_at_position: int = MIN_AT_POSITION,
                   verse_lengths: tuple[int, ...] = VERSE_LENGTHS, vocab: Iterable[str] | None = None
                   ) -> DoublingTable:
    """The characters doubled at least `min_count` times (and in `vocab`, when given), each with the places (per
    verse length, the pair's start) where it doubles at least `min_at_position` times."""
    totals, places, poems = count_doubles(bodies)
    keep = set(vocab) if vocab is not None else None
    chars = [ch for ch, n in totals.items() if n >= min_count and (keep is None or ch in keep)]
    return DoublingTable(
        min_count, min_at_position, tuple(verse_lengths),
        counts={ch: totals[ch] for ch in chars},
        places={ch: {n: frozenset(p for p in range(n - 1) if places[ch, n, p] >= min_at_position)
                     for n in verse_lengths} for ch in chars},
        training_poems=poems, doubled_pairs=sum(totals.values()))


def corpus_settings(manifest: PoemsManifest) -> dict[str, Any]:
    """The split and cleaning settings the model's corpus was built with (trainers.poems_corpus defaults else)."""
    from trainers.poems_corpus import CorpusConfig
    recorded = manifest.training.get("corpus", {}).get("config", {}) if isinstance(manifest.training, dict) else {}
    default = CorpusConfig()
    return {k: recorded.get(k, getattr(default, k)) for k in ("val_percent", "max_body", "max_files")}


def training_bodies(data: str | Path, val_percent: float, max_body: int, max_files: int = 0) -> list[str]:
    """Bodies of the corpus's training poems, cleaned and simplified as the trainer reads them."""
    from trainers.poems_corpus import CorpusStats, is_validation, read_poems
    return [p["body"] for p in read_poems(data, CorpusStats(), max_files, max_body)
            if not is_validation(p["id"], val_percent)]


def write_doubling(model_dir: str | Path, table: DoublingTable) -> str:
    """Write the table into model_dir and name it in the manifest (only that field changes: the rest of the
    manifest is kept byte for byte); read the directory back through the contract. -> the file name."""
    model_dir = Path(model_dir)
    replace_text(model_dir / DOUBLING_FILE, json.dumps(table.to_json(), ensure_ascii=False, separators=(",", ":"))
                 + "\n")
    path = model_dir / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    keys = list(data)
    after = keys.index("t2s_file") + 1 if "t2s_file" in keys else len(keys)   # where the dataclass puts it
    if "doubling_file" not in data:
        data = dict(list(data.items())[:after] + [("doubling_file", DOUBLING_FILE)] + list(data.items())[after:])
    data["doubling_file"] = DOUBLING_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")   # as write_manifest
    os.replace(tmp, path)
    read_manifest(model_dir, expected_kind="poems-transformer")
    return DOUBLING_FILE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", type=Path, nargs="+", help="poem model directories (same corpus settings)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chinese-poetry"),
                        help="the chinese-poetry folder the model was trained on")
    parser.add_argument("--min-count", type=int, default=MIN_COUNT,
                        help="idiomatic: doubled at least this often in the training poems")
    parser.add_argument("--min-at-position", type=int, default=MIN_AT_POSITION,
                        help="a character may double at a place of a 5- or 7-character verse seen this often")
    args = parser.parse_args(argv)
    with command_errors("failed"):
        manifests = [read_manifest(d, expected_kind="poems-transformer") for d in args.model_dirs]
    settings = {json.dumps(corpus_settings(m), sort_keys=True) for m in manifests}
    if len(settings) > 1:
        parser.error("the model directories record different corpus settings: export them one at a time")
    bodies = training_bodies(args.data, **corpus_settings(manifests[0]))
    if not bodies:
        parser.error(f"no training poems under {args.data}")
    for model_dir, manifest in zip(args.model_dirs, manifests):
        table = doubling_table(bodies, args.min_count, args.min_at_position, vocab=manifest.vocab)
        write_doubling(model_dir, table)
        size = (model_dir / DOUBLING_FILE).stat().st_size
        print(f"{model_dir}: {DOUBLING_FILE} ({size:,} bytes): {len(table.counts)} characters double idiomatically, "
              f"from {table.doubled_pairs:,} doubled pairs in {table.training_poems:,} training poems")


if __name__ == "__main__":
    main()
