"""Chinese poem corpus: read chinese-poetry JSON, convert to simplified, clean, build the vocab, tokenize, cache.

    python -m trainers.poems_corpus --data ../shared/data/chinese-poetry --cache cache/poems

Each kept poem gives a training pair (source = prompt, target = body with its punctuation):
  title mode     source = <title> + title characters
  continue mode  source = <first> + the poem's first line; the target is still the whole body, and at generation
                 time the runtime forces the given line as the first decoded characters, then continues.
  form tokens    half the pairs of a poem of a regular form (五绝/七绝/五律/七律) get <wujue>/<qijue>/<wulv>/<qilv>
                 after the prompt-kind token, so the model learns to follow a requested form (genrt --form).
"""
from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from genrt.contract import HAN, FORM_TOKENS, PROMPT_FIRST_LINE, PROMPT_TITLE, SPECIAL_TOKENS, VERSE_BREAKS
from genrt.poems.tokenizer import CharTokenizer

LINE_END = VERSE_BREAKS
BODY_PUNCT = set(LINE_END) | set("：、")
_NOTES = re.compile(r"（[^（）]*）|\([^()]*\)|\{[^{}]*\}|\[[^\[\]]*\]|【[^【】]*】|〔[^〔〕]*〕|《[^《》]*》")
_NO_TEXT = {"無正文。", "无正文。", "無正文", "无正文"}
_ASCII_PUNCT = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ";": "；", ":": "："})


@dataclass
class CorpusStats:
    files: int = 0
    poems_read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=Counter)
    notes_removed: int = 0


def make_converter():
    """Traditional -> simplified converter (opencc); identity when opencc is not installed."""
    try:
        import opencc
    except ImportError:  # the runtime never needs it; trainers list it in the [train] extra
        return lambda s: s
    conv = opencc.OpenCC("t2s")
    return conv.convert


def clean_body(paragraphs: list[str], stats: CorpusStats | None = None) -> tuple[str | None, str]:
    """Join the paragraphs into one body string, or (None, reason) when the poem must be dropped."""
    if not isinstance(paragraphs, list):
        return None, "malformed"
    text = "".join(p.strip() for p in paragraphs if isinstance(p, str))
    if text.strip() in _NO_TEXT:
        return None, "no text (無正文)"
    cleaned = _NOTES.sub("", text)
    if stats is not None and cleaned != text:
        stats.notes_removed += 1
    cleaned = cleaned.translate(_ASCII_PUNCT).replace(" ", "").replace("\u3000", "")
    if not cleaned:
        return None, "empty"
    if "□" in cleaned or "■" in cleaned or "�" in cleaned:
        return None, "missing characters (□)"
    if any(not HAN.match(ch) and ch not in BODY_PUNCT for ch in cleaned):
        return None, "unexpected characters"
    if cleaned[-1] not in LINE_END:
        return None, "unterminated last line"
    if sum(1 for ch in cleaned if HAN.match(ch)) < 8:
        return None, "too short"
    return cleaned, ""


def clean_title(title: str) -> str:
    title = _NOTES.sub("", title or "").translate(_ASCII_PUNCT)
    return "".join(ch for ch in title if HAN.match(ch))[:30]


def first_line(body: str) -> str:
    """The first line of a body, without its punctuation: '床前明月光，疑是…' -> '床前明月光'."""
    for i, ch in enumerate(body):
        if ch in LINE_END:
            return body[:i]
    return body


def read_poems(folder: str | Path, stats: CorpusStats, max_files: int = 0, max_body: int = 198) -> Iterator[dict]:
    """Yield cleaned poems {title, body, id} (simplified); counts what was dropped and why in `stats`."""
    convert = make_converter()
    paths = sorted(Path(folder).glob("poet.*.json"), key=lambda p: (p.name.split(".")[1], int(p.name.split(".")[2])))
    if max_files:
        paths = paths[:max_files]
    for path in paths:
        stats.files += 1
        for entry in json.loads(path.read_text(encoding="utf-8")):
            stats.poems_read += 1
            body, reason = clean_body(entry.get("paragraphs"), stats)
            if body is not None:
                body = convert(body)
                if len(body) > max_body:
                    body, reason = None, f"longer than {max_body} characters"
            if body is None:
                stats.dropped[reason] += 1
                continue
            stats.kept += 1
            yield {"title": convert(clean_title(entry.get("title", ""))), "body": body,
                   "id": str(entry.get("id", f"{path.name}:{stats.poems_read}"))}


def is_validation(poem_id: str, val_percent: float) -> bool:
    """Deterministic split by a hash of the poem id: stable across runs and file orders."""
    return (zlib.crc32(poem_id.encode()) % 10000) < val_percent * 100


def build_vocab(poems: Iterable[dict], min_freq: int, form_tokens: bool = False) -> list[str]:
    """Special tokens, characters by falling frequency, then (optionally) the form tokens: appended last, so a
    vocab with them extends the same vocab without them and a checkpoint can grow into it."""
    counts = Counter()
    for p in poems:
        counts.update(p["body"])
        counts.update(p["title"])
    chars = sorted((c for c, n in counts.items() if n >= min_freq), key=lambda c: (-counts[c], c))
    return list(SPECIAL_TOKENS) + chars + (list(FORM_TOKENS.values()) if form_tokens else [])


def form_of(body: str) -> str | None:
    """The ASCII name of the regular form a poem body has (genrt.poems.verse.forms decides), or None."""
    from genrt.poems.verse.forms import FORMS, well_formed
    for spec in FORMS.values():
        if well_formed(body, spec.name):
            return spec.aliases[0]
    return None


def tokenizer_of(index: dict[str, int]) -> CharTokenizer:
    return CharTokenizer(sorted(index, key=index.get))


def make_pairs(poems: list[dict], index: dict[str, int], continue_share: float, seed: int, form_share: float = 0.0
               ) -> tuple[list[list[int]], list[list[int]]]:
    """(sources, targets) as id lists. Every poem with a title gives a title pair; a share of poems also gives a
    continue pair (source = its first line). Targets are body ids only: <sos>/<eos> are added when batching.
    With form tokens in `index`, a `form_share` of the pairs of a regular-form poem carry its form token after
    the prompt-kind token (a separate random stream: the pairs themselves do not change)."""
    rng, form_rng = np.random.default_rng(seed), np.random.default_rng(seed + 7919)
    with_forms = all(t in index for t in FORM_TOKENS.values()) and form_share > 0
    sources, targets = [], []

    tok = tokenizer_of(index)

    def source(kind: str, text: str, form: str | None) -> list[int]:
        return tok.prompt_ids(kind, text, form if form and form_rng.random() < form_share else None)

    for p in poems:
        body = tok.encode_text(p["body"])
        form = form_of(p["body"]) if with_forms else None
        if p["title"]:
            sources.append(source(PROMPT_TITLE, p["title"], form))
            targets.append(body)
        if not p["title"] or rng.random() < continue_share:
            sources.append(source(PROMPT_FIRST_LINE, first_line(p["body"]), form))
            targets.append(body)
    return sources, targets


def pack(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Flat uint16 token array + int64 offsets (len n+1): compact, fast to slice, easy to ship to a GPU box."""
    offsets = np.zeros(len(seqs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    flat = np.fromiter((t for s in seqs for t in s), np.uint16, count=int(offsets[-1]))
    return flat, offsets


def unpack(flat: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    return flat[offsets[i]:offsets[i + 1]]


@dataclass
class CorpusConfig:
    data: str = "../shared/data/chinese-poetry"
    cache: str = "cache/poems"
    min_freq: int = 3
    val_percent: float = 1.0
    continue_share: float = 0.3
    max_body: int = 198            # max target length 200 with <sos> and <eos>
    max_files: int = 0             # 0 = all
    form_tokens: bool = True       # append <wujue> <qijue> <wulv> <qilv> to the vocab and tag sources with them
    form_share: float = 0.5        # share of pairs of a regular form whose source carries its form token
    seed: int = 1234


def build_corpus(cfg: CorpusConfig) -> Path:
    """Read, clean, split, tokenize and cache the corpus. Returns the cache directory."""
    stats = CorpusStats()
    poems = list(read_poems(cfg.data, stats, cfg.max_files, cfg.max_body))
    if not poems:
        raise SystemExit(f"no usable poems under {cfg.data}")
    train = [p for p in poems if not is_validation(p["id"], cfg.val_percent)]
    val = [p for p in poems if is_validation(p["id"], cfg.val_percent)]
    vocab = build_vocab(train, cfg.min_freq, cfg.form_tokens)
    index = {tok: i for i, tok in enumerate(vocab)}
    out = Path(cfg.cache)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, items, seed in (("train", train, cfg.seed), ("val", val, cfg.seed + 1)):
        src, tgt = make_pairs(items, index, cfg.continue_share, seed, cfg.form_share)
        arrays[f"{split}_src"], arrays[f"{split}_src_offsets"] = pack(src)
        arrays[f"{split}_tgt"], arrays[f"{split}_tgt_offsets"] = pack(tgt)
    np.savez(out / "corpus.npz", **arrays)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    summary = {
        "config": asdict(cfg), "files": stats.files, "poems_read": stats.poems_read, "kept": stats.kept,
        "dropped": dict(stats.dropped), "dropped_total": sum(stats.dropped.values()),
        "poems_with_notes_removed": stats.notes_removed, "train_poems": len(train), "val_poems": len(val),
        "vocab_size": len(vocab), "train_target_chars": int(len(arrays["train_tgt"])),
        "train_pairs": int(len(arrays["train_src_offsets"]) - 1),
        "train_pairs_with_form_token": {t: int((arrays["train_src"] == index[t]).sum())
                                        for t in FORM_TOKENS.values() if t in index},
    }
    (out / "stats.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return out


def load_corpus(cache: str | Path) -> tuple[dict[str, np.ndarray], list[str], dict]:
    cache = Path(cache)
    with np.load(cache / "corpus.npz") as z:
        arrays = {k: z[k] for k in z.files}
    vocab = json.loads((cache / "vocab.json").read_text(encoding="utf-8"))
    stats = json.loads((cache / "stats.json").read_text(encoding="utf-8"))
    return arrays, vocab, stats


def main(argv: list[str] | None = None) -> None:
    from trainers.common import parse_config
    cfg = parse_config(CorpusConfig, argv, description=__doc__)
    out = build_corpus(cfg)
    print((out / "stats.json").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
