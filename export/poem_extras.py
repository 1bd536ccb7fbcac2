"""The small, non-graph parts of a poem model directory: the traditional -> simplified prompt table and the
recommended generation settings (manifest `generation`, chosen with benchmarks/poem_decoding.py).

    python -m export.poem_extras genrt/models/poems [--generation settings.json]

export.poems writes both when it exports; this command adds or refreshes them in an existing directory (the
manifest is rewritten atomically and read back through the contract; the graphs are not touched).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable

from export.model_dir import command_errors, replace_text
from genrt.contract import PoemsManifest, generation_problems, read_manifest, write_manifest

T2S_FILE = "t2s.json"
# CJK Unified Ideographs and Extension A: every traditional character a prompt is likely to hold
CJK_RANGES = ((0x3400, 0x4DC0), (0x4E00, 0xA000))

# Chosen by benchmarks/poem_decoding.py on validation titles (benchmarks/results/poem_decoding*.md).
RECOMMENDED_GENERATION: dict[str, dict[str, Any]] = {
    # every mode: no verse repeats, at most 2 of a character per verse, 4 or 8 verses of 5 or 7 characters, no
    # character opening a third verse, no piece of the title recurring
    "default": {"max_char_repeats": 2, "no_repeat_verse": True, "regular_shape": True, "repetition_penalty": 1.2,
                "max_verse_openings": 2, "max_title_echoes": 1},
    # `genrt poem TITLE`: the most likely of 4 sampled poems, seeded, so a title always gives the same poem
    "no_options": {"do_sample": True, "best_of": 4, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 0,
                   "repetition_penalty": 1.0},
    # `--num-beams 4`: beam sampling (candidates drawn from each beam's top-k/top-p set, seeded), since best-first
    # beams settle on the same stock phrases for every title (distinct-2 0.42); `--num-beams 4 --greedy` is that
    "beam": {"do_sample": True, "temperature": 1.0, "top_k": 40, "top_p": 0.95, "seed": 0},
    "sample": {"temperature": 0.9, "top_k": 100, "top_p": 0.95, "repetition_penalty": 1.0},
}


def t2s_table(vocab: Iterable[str]) -> dict[str, str]:
    """{traditional: simplified} for every single character whose OpenCC t2s form is a different single character
    that is in the vocab while the original is not (the corpus was converted with the same OpenCC)."""
    from trainers.poems_corpus import make_converter
    convert, vocab = make_converter(), set(vocab)
    table = {}
    for lo, hi in CJK_RANGES:
        for cp in range(lo, hi):
            ch = chr(cp)
            simple = convert(ch)
            if len(simple) == 1 and simple != ch and simple in vocab and ch not in vocab:
                table[ch] = simple
    return table


def write_t2s(model_dir: Path, vocab: Iterable[str]) -> str:
    replace_text(model_dir / T2S_FILE, json.dumps(t2s_table(vocab), ensure_ascii=False, sort_keys=True))
    return T2S_FILE


def with_extras(model_dir: Path, manifest: PoemsManifest, generation: dict | None = None) -> PoemsManifest:
    """Write the t2s table into model_dir; return the manifest naming it and carrying the generation settings."""
    generation = RECOMMENDED_GENERATION if generation is None else generation
    problems = generation_problems(generation)
    if problems:
        raise ValueError("; ".join(problems))
    return dataclasses.replace(manifest, t2s_file=write_t2s(model_dir, manifest.vocab), generation=generation)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--generation", type=Path, default=None, help="JSON of the generation section")
    args = parser.parse_args(argv)
    with command_errors("failed"):                   # a bad or missing --generation JSON is a ValueError too
        manifest = read_manifest(args.model_dir, expected_kind="poems-transformer")
        generation = json.loads(args.generation.read_text(encoding="utf-8")) if args.generation else None
        updated = with_extras(args.model_dir, manifest, generation)
        write_manifest(args.model_dir, updated)      # atomic: temporary file, then rename
        read_manifest(args.model_dir)
    print(f"{args.model_dir}: {T2S_FILE} ({len(json.loads((args.model_dir / T2S_FILE).read_text('utf-8')))} "
          f"characters) and generation settings {json.dumps(updated.generation, ensure_ascii=False)}")


if __name__ == "__main__":
    main()
