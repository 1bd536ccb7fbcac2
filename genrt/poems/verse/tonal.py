"""平仄 and 平水韵 for regulated verse (近体诗): the patterns, a checker, and a logits processor that enforces them.

Patterns. Four line types (five characters; seven prefix two characters of the opposite tone):
    A 仄仄平平仄   B 平平仄仄平   C 平平平仄仄   D 仄仄仄平平
The even positions and the last character are strict (二四六分明); the other odd positions are free unless that
makes 孤平 (a B line whose first character of the last five is 仄: 仄平仄仄平) or a 三平尾/三仄尾 (the last three
characters of one tone). A poem is one of four sequences (粘 between couplets, 对 inside one; 律诗 repeats it):
    A B C D  (五言仄起 / 七言平起, first line unrhymed)      D B C D  (first line rhymed)
    C D A B  (五言平起 / 七言仄起, first line unrhymed)      B D A B  (first line rhymed)
Rhyming lines (every even line, and the first when it is rhymed) end in 平声 of one 平水韵 group; the others end in
仄声 (built into A and C). A character with both readings fits either tone, and every group it is in.

Rhyme alone (`pingshui rhyme`, without tones): every even line ends on a 平声 character, all of one group.

The processor keeps, for every row, the patterns and line variants its characters still fit; a character is
allowed next when some surviving variant takes its tone there. Every variant is complete, so a row never reaches
a position where nothing fits; an acrostic character is checked against every pattern before decoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Sequence

import numpy as np

from genrt.contract import is_han
from genrt.poems.verse.forms import COMMA, PERIOD, Rules, form_problem
from genrt.poems.verse.pingshui import PING, ZE, PingshuiTable, vocab_tones
from genrt.decoding.processors import NEG  # a banned token's logit

P, Z = PING, ZE
BASE_LINES = {"A": "仄仄平平仄", "B": "平平仄仄平", "C": "平平平仄仄", "D": "仄仄仄平平"}
POEM_SEQUENCES = ("ABCD", "DBCD", "CDAB", "BDAB")
MIN_GROUP_CHARS = 8          # the first rhyme foot binds only groups with this many 平 characters in the vocabulary
                             # (fewer in a small vocabulary: its largest groups), so later feet have a choice


def line_pattern(kind: str, length: int) -> str:
    """The strict form of a line type: 'A', 5 -> 仄仄平平仄; 'A', 7 -> 平平仄仄平平仄."""
    base = BASE_LINES[kind]
    if length == 5:
        return base
    if length == 7:
        lead = Z if base[0] == P else P
        return lead * 2 + base
    raise ValueError(f"regulated lines have 5 or 7 characters, not {length}")


@lru_cache(maxsize=None)
def line_variants(kind: str, length: int) -> tuple[str, ...]:
    """Every concrete tone string a line of this type may take (free odd positions, minus 孤平 and 三平/三仄尾)."""
    strict = line_pattern(kind, length)
    free = [i for i in range(0, length - 1, 2)]
    out = []
    for tones in product((P, Z), repeat=len(free)):
        line = list(strict)
        for i, t in zip(free, tones):
            line[i] = t
        if line_fault(kind, "".join(line)) is None:
            out.append("".join(line))
    return tuple(out)


def line_fault(kind: str, tones: str) -> str | None:
    """Why a concrete tone string is not allowed for its type (None: allowed)."""
    if len(set(tones[-3:])) == 1:
        return "三平尾" if tones[-1] == P else "三仄尾"
    if kind == "B" and tones[-5] == Z:
        return "孤平"
    return None


@dataclass(frozen=True)
class Pattern:
    """One tonal pattern of a poem: line types per line, which lines rhyme."""
    sequence: str            # e.g. ABCDABCD
    length: int

    @property
    def name(self) -> str:
        start = "平起" if line_pattern(self.sequence[0], self.length)[1] == P else "仄起"
        return f"{start}{'首句入韵' if self.rhymes(0) else '首句不入韵'}"

    def rhymes(self, line: int) -> bool:
        return line % 2 == 1 or self.sequence[line] in "BD"

    def lines(self) -> list[str]:
        return [line_pattern(k, self.length) for k in self.sequence]


@lru_cache(maxsize=None)
def patterns(lines: int, length: int) -> tuple[Pattern, ...]:
    """The four patterns of a 4-line (绝句) or 8-line (律诗) poem; a 律诗 repeats the quatrain, its first line
    unrhymed the second time (DBCD -> DBCD ABCD)."""
    if lines == 4:
        return tuple(Pattern(seq, length) for seq in POEM_SEQUENCES)
    return tuple(Pattern(seq + POEM_SEQUENCES[i // 2 * 2], length) for i, seq in enumerate(POEM_SEQUENCES))


# ---------------------------------------------------------------- the state of one poem, character by character

@dataclass(frozen=True)
class Path:
    pattern: int             # index into the pattern list, -1 = rhyme only (no tones)
    variants: frozenset      # indexes of the current line's variants still possible
    groups: int              # 平水韵 groups the rhyme feet so far share (bitmask; -1 = no foot yet)


@dataclass(frozen=True)
class State:
    line: int
    pos: int
    length: int | None       # None until the first line ends (acrostic without a form)
    paths: tuple[Path, ...]


class VerseRules:
    """The tonal/rhyme rules of one request, shared by the checker and the processor."""

    def __init__(self, form: str | None, acrostic: str | None, tonal: bool, table: PingshuiTable | None = None,
                 only: Sequence[str] | None = None):
        """only: pattern names to keep (e.g. ['平起首句入韵']); None = all four."""
        self.rules = Rules.of(form, acrostic, False)
        self.tonal = tonal
        self.table = table or PingshuiTable.load()
        if tonal and self.rules.length is None:
            raise ValueError("tonal needs a form (五言/七言 绝句/律诗)")
        self.patterns = patterns(self.rules.lines, self.rules.length) if tonal else ()
        if only is not None:
            unknown = sorted(set(only) - {p.name for p in self.patterns})
            if unknown or not only:
                raise ValueError(f"unknown tonal pattern(s) {unknown}; choose from "
                                 f"{', '.join(p.name for p in self.patterns)}")
        self.variants = {}                    # (pattern, line) -> tuple of concrete tone strings
        if tonal:
            self._plan_acrostic(only)

    def _plan_acrostic(self, only: Sequence[str] | None = None) -> None:
        alive, reasons = [], []
        for i, pat in enumerate(self.patterns):
            if only is not None and pat.name not in only:
                continue
            ok = True
            for line, kind in enumerate(pat.sequence):
                options = line_variants(kind, pat.length)
                if line < len(self.rules.acrostic):
                    ch = self.rules.acrostic[line]
                    options = tuple(v for v in options if v[0] in self.table.tones(ch))
                    if not options:
                        ok = False
                        reasons.append(f"{pat.name}: line {line + 1} must start with "
                                       f"{'/'.join(sorted({v[0] for v in line_variants(kind, pat.length)}))}")
                self.variants[i, line] = options
            if ok:
                alive.append(i)
        if not alive:
            tones = {ch: "".join(sorted(self.table.tones(ch))) or "no reading" for ch in self.rules.acrostic}
            raise ValueError(f"the acrostic {self.rules.acrostic!r} fits no tonal pattern ("
                             f"{', '.join(f'{c}: {t}' for c, t in tones.items())}; {'; '.join(reasons)})")
        self.alive = tuple(alive)

    def start(self) -> State:
        if not self.tonal:
            return State(0, 0, self.rules.length, (Path(-1, frozenset(), -1),))
        paths = tuple(Path(i, frozenset(range(len(self.variants[i, 0]))), -1) for i in self.alive)
        return State(0, 0, self.rules.length, paths)

    def rhymes(self, path: Path, line: int) -> bool:
        return self.patterns[path.pattern].rhymes(line) if path.pattern >= 0 else line % 2 == 1

    def is_last(self, state: State) -> bool:
        return state.length is not None and state.pos == state.length - 1

    def advance(self, state: State, ch: str) -> State:
        """The state after one more character of the body (a line mark ends the line)."""
        if ch in (COMMA, PERIOD):
            line = state.line + 1
            paths = tuple(Path(p.pattern, frozenset(range(len(self.variants.get((p.pattern, line), ())))), p.groups)
                          for p in state.paths) if line < self.rules.lines else state.paths
            return State(line, 0, state.length or state.pos, paths)
        tones, mask = self.table.tones(ch), self.table.ping_mask(ch)
        last = self.is_last(state)
        paths = []
        for p in state.paths:
            variants = p.variants
            if p.pattern >= 0:
                options = self.variants[p.pattern, state.line]
                variants = frozenset(v for v in variants if options[v][state.pos] in tones)
                if not variants:
                    continue
            groups = p.groups
            if last and self.rhymes(p, state.line):
                groups = mask if groups == -1 else groups & mask
                if not groups:
                    continue
            paths.append(Path(p.pattern, variants, groups))
        return State(state.line, state.pos + 1, state.length, tuple(paths))

    def needs(self, state: State) -> frozenset[tuple[str | None, int | None]]:
        """What the next character may be: a set of (tone or None = any, group mask or None = any)."""
        last = self.is_last(state)
        out = set()
        for p in state.paths:
            tones = ({self.variants[p.pattern, state.line][v][state.pos] for v in p.variants}
                     if p.pattern >= 0 else {None})
            if last and self.rhymes(p, state.line):
                out.add((P, p.groups))
            else:
                out.update((t, None) for t in tones)
        return frozenset(out)

    def describe(self, needs: frozenset) -> str:
        parts = []
        for tone, groups in sorted(needs, key=str):
            rhyme = "" if groups is None else (" of any 平水韵 group" if groups == -1
                                                else f" in {self.table.group_names(groups)}")
            parts.append(f"{tone or 'any tone'}{rhyme}")
        return " or ".join(parts)


# ---------------------------------------------------------------- checker

def tonal_problem(text: str, form: str, acrostic: str | None = None) -> str | None:
    """Why a poem breaks the 平仄/平水韵 rules of its form (None: it follows one pattern). Shape first."""
    problem = form_problem(text, form, acrostic)
    if problem:
        return problem
    return _walk_problem(VerseRules(form, acrostic, True), text)


def pingshui_rhyme_problem(text: str, form: str | None = None, acrostic: str | None = None) -> str | None:
    """Why the even lines do not end on 平声 characters of one 平水韵 group (None: they do)."""
    problem = form_problem(text, form, acrostic)
    return problem or _walk_problem(VerseRules(form, acrostic, False), text)


def _walk_problem(rules: VerseRules, text: str) -> str | None:
    state = rules.start()
    for ch in text:
        if ch in (COMMA, PERIOD):
            state = rules.advance(state, ch)
            continue
        needs = rules.needs(state)
        nxt = rules.advance(state, ch)
        if not nxt.paths:
            tones = "".join(sorted(rules.table.tones(ch))) or "not in 平水韵"
            group = rules.table.group_names(rules.table.ping_mask(ch))
            return (f"line {state.line + 1}, character {state.pos + 1}: {ch!r} is {tones}"
                    f"{' (' + group + ')' if group else ''}; the pattern needs {rules.describe(needs)}")
        state = nxt
    return None


def matching_patterns(text: str, form: str) -> list[str]:
    """Names of the patterns a well-formed poem follows ([] if none)."""
    rules = VerseRules(form, None, True)
    state = rules.start()
    for ch in text:
        state = rules.advance(state, ch)
    return sorted({rules.patterns[p.pattern].name for p in state.paths})


# ---------------------------------------------------------------- the processor

class TonalConstraint:
    """LogitsProcessor: 平仄 (tonal=True, needs a form) and/or 平水韵 rhyme. Place it after FormConstraint, which
    keeps the shape. Stateless across steps like FormConstraint: each row's state follows from its tokens (kept in
    a memo of the previous step, so a step costs one character per row)."""

    def __init__(self, tokenizer, form: str | None = None, acrostic: str | None = None, tonal: bool = True,
                 prefix_ids: Sequence[int] = (), only: Sequence[str] | None = None):
        self.tokenizer = tokenizer
        self.verse = VerseRules(form, acrostic, tonal, only=only)
        vocab = tuple(tokenizer.vocab)
        tones = vocab_tones(vocab)
        self._can = {P: tones.can_ping, Z: tones.can_ze, None: None}
        self._ping_mask = tones.ping_mask                                      # (V,) int64
        self._viable = viable_groups(tones.group_sizes)
        missing = [ch for ch in self.verse.rules.acrostic if not self.verse.table.tones(ch)]
        if tonal and missing:
            raise ValueError(f"acrostic characters without a 平水韵 reading: {''.join(missing)}")
        if not self._viable:
            raise ValueError("no character of the model's vocabulary has a 平声 reading in 平水韵")
        self._memo: dict[tuple[int, ...], State | None] = {}     # row prefix -> state, the previous step's rows
        # shared by every constraint on this vocabulary and request: states are values, so what one poem
        # worked out (next states, banned ids) serves the next poems too
        self._steps, self._banned = _shared_tables(vocab, form, acrostic, tonal, tuple(only or ()))
        self.dead_rows = 0
        if len(prefix_ids):
            self.check_prefix(prefix_ids)

    def check_prefix(self, prefix_ids: Sequence[int]) -> None:
        ids = [int(i) for i in prefix_ids]
        ids = ids[1:] if ids and ids[0] == self.tokenizer.sos_id else ids
        text = "".join(self.tokenizer.vocab[i] for i in ids)
        problem = _walk_problem(self.verse, text)
        if problem:
            raise ValueError(f"the given text does not fit the tonal pattern: {problem}")

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        memo, banned = {}, []
        for row in tokens.tolist():
            key = tuple(row)
            state = self._state(key, memo)
            memo[key] = state
            banned.append(self._banned_ids(state))
        self._memo = memo
        first = banned[0]
        if all(b is first for b in banned):                     # the usual case: one rule for every row
            if first is not None:
                np.copyto(logits, NEG, where=first)              # (V,) broadcast over the rows
            return logits
        for i, mask in enumerate(banned):
            if mask is not None:
                np.copyto(logits[i], NEG, where=mask)
        return logits

    def _state(self, key: tuple[int, ...], memo: dict) -> State | None:
        parent = self._memo.get(key[:-1], _MISSING) if len(key) > 1 else _MISSING
        if parent is _MISSING:
            parent = memo.get(key[:-1], _MISSING)
        if parent is _MISSING:                                   # first call, or a forced prefix: walk it all
            state = self.verse.start()
            for i in key[1:]:
                state = self._advance(state, i)
            return state
        return self._advance(parent, key[-1])

    def _advance(self, state: State | None, token: int) -> State | None:
        if state is None:
            return None
        step = (state, token)
        nxt = self._steps.get(step, _MISSING)
        if nxt is _MISSING:
            ch = self.tokenizer.vocab[token]
            if not (is_han(ch) or ch in (COMMA, PERIOD)) or state.line >= self.verse.rules.lines:
                nxt = None                                       # off the rules (FormConstraint ends such rows)
            else:
                nxt = self.verse.advance(state, ch)
                nxt = nxt if nxt.paths else None
            if len(self._steps) < MAX_CACHED_STATES:
                self._steps[step] = nxt
        return nxt

    def _banned_ids(self, state: State | None) -> np.ndarray | None:
        """(V,) bool of the ids not allowed next, None = no restriction here; one array per rule, reused."""
        if state is None:
            self.dead_rows += 1
            return None
        ids = self._banned.get(state, _MISSING)
        if ids is _MISSING:
            needs = self._needs(state)
            ids = self._banned.get(needs, _MISSING)
            if ids is _MISSING:
                mask = self._mask(needs)
                ids = self._banned[needs] = None if mask is None else ~mask
            if len(self._banned) < MAX_CACHED_STATES:
                self._banned[state] = ids
        return ids

    def _needs(self, state: State) -> frozenset | None:
        if state.line >= self.verse.rules.lines or (state.length is not None and state.pos >= state.length):
            return None                                          # a line mark or <eos> comes next
        return self.verse.needs(state)

    def _mask(self, needs: frozenset | None) -> np.ndarray | None:
        """(V,) bool of the allowed next tokens, None = no restriction here."""
        if needs is None or (None, None) in needs:
            return None
        mask = np.zeros(len(self._ping_mask), bool)
        for tone, groups in needs:
            can = self._can[tone] if tone else np.ones_like(mask)
            if groups is not None:
                bound = self._viable if groups == -1 else groups
                can = can & ((self._ping_mask & bound) != 0)
            mask |= can
        return mask


_MISSING = object()
MAX_CACHED_STATES = 200_000            # per shared table; beyond it, states are worked out again each time


@lru_cache(maxsize=8)
def _shared_tables(vocab: tuple[str, ...], form, acrostic, tonal, only) -> tuple[dict, dict]:
    return {}, {}


def viable_groups(group_sizes: Sequence[int]) -> int:
    """Bitmask of the 平 groups a first rhyme foot may bind: at least MIN_GROUP_CHARS characters in the
    vocabulary (fewer in a small vocabulary: its largest groups)."""
    need = min(MIN_GROUP_CHARS, max(group_sizes))
    return sum(1 << g for g, size in enumerate(group_sizes) if size >= need > 0)
