"""Idiomatic 叠字: which characters Tang and Song poets double, and where in a verse.

萧萧, 悠悠, 依依 are idiomatic; 掩掩, 为为, 琴琴 are not. The table is learned from the training poems at export
time (export.poem_doubling) and shipped in the model directory (manifest `doubling_file`); `IdiomaticDoubling` is
the logits processor that applies it: it bans repeating the previous character of a verse unless the table allows
that character to double at that place.

A doubled pair is two identical adjacent Han characters inside one verse (the text between two VERSE_BREAKS); its
place is the index of its first character in the verse, kept per verse length (5 and 7). The table file:

    {"min_count": 20,                  # a character is idiomatic when doubled at least this often in the corpus
     "min_at_position": 3,             # ... and may double at a place seen at least this often there
     "verse_lengths": [5, 7],          # the verse lengths whose places are kept
     "training_poems": 293314, "doubled_pairs": 100925,     # what it was counted on (informative)
     "chars": {"萧": {"count": 2008, "5": [0, 2, 3], "7": [0, 2, 4, 5]}, ...}}

Only idiomatic characters are listed: a character absent from `chars` never doubles.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from genrt.contract import VERSE_BREAKS, ManifestError, PoemsManifest, contained_file, is_han, read_json
from genrt.decoding.processors import NEG
from genrt.poems.verse.forms import _vocab_tables

DOUBLING_FILE = "doubling.json"
MIN_COUNT = 20              # the definition: a doubled pair seen fewer than 20 times is not idiomatic
MIN_AT_POSITION = 3
VERSE_LENGTHS = (5, 7)


def verses(text: str) -> list[str]:
    """The verses of a poem body: the text between VERSE_BREAKS, each break ending one (a trailing verse without
    its break counts; empty ones are kept, so indices follow the breaks)."""
    out, verse = [], []
    for ch in text:
        if ch in VERSE_BREAKS:
            out.append("".join(verse))
            verse = []
        else:
            verse.append(ch)
    return out + ["".join(verse)] if verse else out


def doubled_pairs(text: str) -> Iterator[tuple[str, int, int]]:
    """(character, verse length, index in the verse of the pair's first character) for each doubled pair of a
    poem body; 萧萧萧 holds two pairs."""
    for verse in verses(text):
        for i in range(len(verse) - 1):
            if verse[i] == verse[i + 1] and is_han(verse[i]):
                yield verse[i], len(verse), i


@dataclass(frozen=True)
class DoublingTable:
    min_count: int
    min_at_position: int
    verse_lengths: tuple[int, ...]
    counts: Mapping[str, int]                               # idiomatic character -> doubled pairs counted
    places: Mapping[str, Mapping[int, frozenset[int]]]      # character -> verse length -> allowed pair starts
    training_poems: int = 0
    doubled_pairs: int = 0

    def idiomatic(self, ch: str) -> bool:
        """Doubled at least `min_count` times in the corpus (wherever)."""
        return ch in self.counts

    def allowed(self, ch: str, start: int, verse_length: int | None = None) -> bool:
        """May `ch` double with its pair starting at index `start` of a verse of `verse_length` characters?
        None = not known yet (the first verse): any kept length where the pair fits. A verse length without
        places (or a start past them) asks only that the character be idiomatic."""
        if ch not in self.counts:
            return False
        lengths = [n for n in self.verse_lengths if start < n - 1] if verse_length is None else (
            [verse_length] if verse_length in self.verse_lengths and start < verse_length - 1 else [])
        if not lengths:
            return True
        return any(start in self.places.get(ch, {}).get(n, ()) for n in lengths)

    def unidiomatic(self, text: str) -> list[str]:
        """The doubled pairs of a poem whose character is not idiomatic ('掩掩'), in order."""
        return [ch * 2 for ch, _, _ in doubled_pairs(text) if not self.idiomatic(ch)]

    def misplaced(self, text: str) -> list[str]:
        """The doubled pairs of a poem that IdiomaticDoubling would not have let through: not idiomatic, not at
        a place for the poem's verse length (its first verse's; either while in the first verse), or a third in
        a row ('萧萧萧' gives one)."""
        out, first = [], None
        for verse in verses(text):
            for i in range(len(verse) - 1):
                ch = verse[i]
                if ch == verse[i + 1] and is_han(ch) and (i and verse[i - 1] == ch or not self.allowed(ch, i, first)):
                    out.append(ch * 2)
            first = len(verse) if first is None else first
        return out

    def to_json(self) -> dict[str, Any]:
        chars = {ch: {"count": self.counts[ch],
                      **{str(n): sorted(self.places.get(ch, {}).get(n, ())) for n in self.verse_lengths}}
                 for ch in sorted(self.counts, key=lambda c: (-self.counts[c], c))}
        return {"min_count": self.min_count, "min_at_position": self.min_at_position,
                "verse_lengths": list(self.verse_lengths), "training_poems": self.training_poems,
                "doubled_pairs": self.doubled_pairs, "chars": chars}

    @classmethod
    def from_json(cls, data: Any) -> "DoublingTable":
        """Parse the file's JSON; ValueError naming every problem."""
        problems = table_problems(data)
        if problems:
            raise ValueError("; ".join(problems))
        lengths = tuple(data["verse_lengths"])
        return cls(data["min_count"], data["min_at_position"], lengths,
                   counts={ch: e["count"] for ch, e in data["chars"].items()},
                   places={ch: {n: frozenset(e.get(str(n), ())) for n in lengths} for ch, e in data["chars"].items()},
                   training_poems=data.get("training_poems", 0), doubled_pairs=data.get("doubled_pairs", 0))


def _count(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


MAX_PLACES = 62             # IdiomaticDoubling keeps a character's places as bits of one int64


def table_problems(data: Any) -> list[str]:
    """What makes `data` not a doubling table (the first ten problems), [] when it is one."""
    if not isinstance(data, dict):
        return ["the doubling table must be a JSON object"]
    problems = [f"{k} must be a positive integer" for k in ("min_count", "min_at_position")
                if not _count(data.get(k), 1)]
    problems += [f"{k} must be a non-negative integer" for k in ("training_poems", "doubled_pairs")
                 if k in data and not _count(data[k])]
    lengths = data.get("verse_lengths")
    if (not isinstance(lengths, list) or not all(_count(n, 2) for n in lengths) or len(set(lengths)) < len(lengths)
            or sum(n - 1 for n in lengths) > MAX_PLACES):
        return problems + [f"verse_lengths must be distinct verse lengths (integers >= 2) with at most {MAX_PLACES} "
                           f"pair starts in all"]
    chars = data.get("chars")
    if not isinstance(chars, dict):
        return problems + ["chars must map characters to their entries"]
    for ch, entry in chars.items():
        if not is_han(ch):
            problems.append(f"chars has {ch!r:.20}, not one Han character")
        elif not isinstance(entry, dict) or not _count(entry.get("count")):
            problems.append(f"chars[{ch!r}] needs a non-negative integer count")
        elif any(not isinstance(entry.get(str(n), []), list)
                 or not all(_count(p) and p < n - 1 for p in entry.get(str(n), [])) for n in lengths):
            problems.append(f"chars[{ch!r}] has a place outside its verse length")
        if len(problems) >= 10:
            break
    return problems


def load_doubling(model_dir: str | Path, manifest: PoemsManifest) -> DoublingTable | None:
    """The model directory's doubling table (None when it has none)."""
    if not manifest.doubling_file:
        return None
    path = contained_file(model_dir, manifest.doubling_file, "doubling_file")
    data = read_json(path, str(model_dir))                  # within the manifest's size and nesting limits
    try:
        return DoublingTable.from_json(data)
    except ValueError as e:
        raise ManifestError(str(model_dir), [f"{manifest.doubling_file} is not a usable doubling table ({e})"]) \
            from None


class IdiomaticDoubling:
    """LogitsProcessor: the next token may repeat the previous character of the verse only where the table lets
    that character double at that place (for the poem's verse length: its first verse's, or either while the
    first verse is still open); a third in a row never. Bans at most that one id per row.

    Stateless between steps (reads each row's tokens), so beam search may reorder rows. `start` is the column
    where the poem begins (1: after <sos>); forced continue-mode text counts as part of the poem."""

    max_banned_ids = 1           # genrt.decoding.processors.could_empty_a_row

    def __init__(self, tokenizer, table: DoublingTable, start: int = 1):
        vocab = tokenizer.vocab
        self.start = start
        # (V,) bool: a table lookup per step, cheaper than np.isin (which sorts)
        self.is_break = np.array([tok in VERSE_BREAKS for tok in vocab])
        self.han = _vocab_tables(tuple(vocab)).han                                     # (V,) bool
        # places as bits: one per (verse length, pair start), then one "idiomatic, place not kept" bit
        lengths = table.verse_lengths
        bit, base = {}, 0
        for n in lengths:
            for p in range(n - 1):
                bit[n, p] = 1 << (base + p)
            base += n - 1
        anywhere = 1 << base
        self.places = np.zeros(len(vocab), np.int64)                                   # (V,) bits per id
        for ch in table.counts:
            if ch in tokenizer.index:
                self.places[tokenizer.index[ch]] = anywhere | sum(bit[n, p] for n in lengths
                                                                  for p in table.places[ch].get(n, ()))
        # needed bits per (length code, pair start): code 0 = not known yet, 1.. = lengths, last = other length
        width = max(lengths, default=2) - 1
        self.need = np.full((len(lengths) + 2, width + 1), anywhere, np.int64)
        for p in range(width):
            union = [bit[n, p] for n in lengths if p < n - 1]
            self.need[0, p] = sum(union) if union else anywhere
            for code, n in enumerate(lengths, 1):
                self.need[code, p] = bit[n, p] if p < n - 1 else anywhere
        self.length_code = np.full(MAX_PLACES + 3, len(lengths) + 1, np.int64)        # first verse length -> code
        for code, n in enumerate(lengths, 1):
            self.length_code[n] = code

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        body = tokens[:, self.start:]                                                  # (N, U)
        n, u = body.shape
        if u == 0:
            return logits
        prev = body[:, -1]                                                             # (N,)
        breaks = self.is_break[body]                                                   # (N, U)
        any_break = breaks.any(axis=1)
        last_break = np.where(any_break, u - 1 - breaks[:, ::-1].argmax(axis=1), -1)
        start = u - 2 - last_break                           # index in its verse of the pair `prev` would start
        first_len = np.where(any_break, breaks.argmax(axis=1), 0)                      # the first verse's length
        code = np.where(any_break, self.length_code[np.minimum(first_len, len(self.length_code) - 1)], 0)
        need = self.need[code, np.clip(start, 0, self.need.shape[1] - 1)]
        tripled = (start >= 1) & (body[:, max(u - 2, 0)] == prev)
        ban = self.han[prev] & (((self.places[prev] & need) == 0) | tripled)
        rows = np.flatnonzero(ban)
        if rows.size:
            logits[rows, prev[rows]] = NEG
        return logits

