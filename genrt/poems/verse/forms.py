"""Regulated verse and acrostic poems: constrained decoding as a logits processor.

Rules (one poem body = lines, each of `length` Han characters followed by its line-end mark):
  * Forms: 五言绝句 (wujue) 4x5, 七言绝句 (qijue) 4x7, 五言律诗 (wulv) 8x5, 七言律诗 (qilv) 8x7.
  * Line ends: '，' after odd lines (1st, 3rd, ...), '。' after even lines and always after the last line;
    then <eos>. Nothing else is ever allowed: no other punctuation, no special token inside the poem.
  * Acrostic (藏头): line i starts with acrostic[i]. With a form, the acrostic may be shorter than the form
    (the remaining lines start freely). Without a form the poem has len(acrostic) lines (2..16); the first line
    sets the line length for the whole poem: after 5 characters the first line may end ('，') or go on to 7,
    and every later line has the same length.
  * Rhyme (押韵): every even line ends on a character of one rhyme group. The 2nd line may end on any character
    that has a group; that character's group then binds the 4th, 6th, 8th line ends. Tones (平仄) are not
    enforced.
  * Rhyme groups: a modern 中华新韵-like approximation, 14 groups, from each character's most common modern
    reading (pypinyin finals, strict): 麻 a ia ua | 波 o e uo io | 皆 ie ve | 开 ai uai | 微 ei uei |
    豪 ao iao | 尤 ou iou | 寒 an ian uan van | 文 en in uen vn | 唐 ang iang uang | 庚 eng ing ueng ong iong |
    齐 i v er | 支 -i after zh ch sh r z c s | 姑 u. Polyphonic characters only count with that one reading;
    characters without a reading (or a final such as 'n', 'ng') belong to no group and never end a rhyming
    line. pypinyin is imported only when rhyme is requested.

FormConstraint derives its state from the tokens alone (no per-row cache, no reorder): all rows have the same
length T, and once a row's line length is known (fixed by the form, or by the first line) the line and position
follow from T by arithmetic; the rhyme group is read from the 2nd line's last token. A forced prefix (continue
mode) therefore works as long as it is itself well formed: the first call checks every row in full and raises
ValueError naming the problem (`check_prefix`, or `prefix_ids=` at construction, checks it before decoding).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from genrt.contract import SPECIAL_TOKENS, UNK, is_han
from genrt.poems.verse.requests import (  # noqa: F401 -- re-exported: the request side of forms
    COMMA, FORMS, FREE_LENGTHS, MAX_FREE_LINES, PERIOD, RHYME_SCHEMES, FormSpec, Rules, check_request, form_choices,
    poem_token_budget, resolve_form, rhyme_scheme,
)
from genrt.decoding.processors import NEG  # a banned token's logit
from genrt.poems.verse.rhyme import RHYME_GROUPS, rhyme_group, rhyme_groups_of  # noqa: F401 -- re-exported


# ---------------------------------------------------------------- the reference rules, character by character

@dataclass
class _Walk:
    line: int = 0                 # lines completed
    pos: int = 0                  # characters in the current line
    length: int | None = None     # line length, once known
    group: int | None = None      # rhyme group, once the 2nd line has ended


def _walk(symbols: Sequence[str], rules: Rules, group_of: Callable[[str], int]) -> tuple[_Walk, str | None]:
    """Follow the rules over a body (characters, UNK standing for any character); stop at the first problem."""
    w = _Walk(length=rules.length)
    for ch in symbols:
        problem = _advance(w, ch, rules, group_of)
        if problem:
            return w, problem
    return w, None


def _advance(w: _Walk, ch: str, rules: Rules, group_of: Callable[[str], int]) -> str | None:
    n = w.line + 1
    if w.line >= rules.lines:
        return f"text goes on after the last line: {ch!r}"
    if ch in (COMMA, PERIOD):
        if w.length is None and w.pos not in FREE_LENGTHS:
            return f"line {n} has {w.pos} characters; lines need 5 or 7"
        if w.length is not None and w.pos != w.length:
            return f"line {n} has {w.pos} characters, expected {w.length}"
        if ch != rules.end_mark(w.line):
            return f"line {n} ends with {ch!r}, expected {rules.end_mark(w.line)!r}"
        w.length, w.line, w.pos = w.pos, w.line + 1, 0
        return None
    if not (is_han(ch) or ch == UNK):
        return f"line {n} holds {ch!r}, which is not a Han character or a line end"
    if w.pos == (w.length or max(FREE_LENGTHS)):
        return f"line {n} is longer than {w.length or max(FREE_LENGTHS)} characters"
    if w.pos == 0 and w.line < len(rules.acrostic) and ch != rules.acrostic[w.line]:
        return f"line {n} starts with {ch!r}, the acrostic needs {rules.acrostic[w.line]!r}"
    w.pos += 1
    if rules.rhyme and w.line % 2 == 1 and w.pos == w.length:
        return _rhyme(w, ch, n, group_of(ch) if ch != UNK else -1)
    return None


def _rhyme(w: _Walk, ch: str, n: int, group: int) -> str | None:
    if group < 0:
        return f"line {n} ends on {ch!r}, which has no rhyme group"
    if w.group is None:
        w.group = group
    elif group != w.group:
        return (f"line {n} ends on {ch!r} ({RHYME_GROUPS[group]}), which does not rhyme with "
                f"group {RHYME_GROUPS[w.group]}")
    return None


def form_problem(text: str, form: str | None = None, acrostic: str | None = None, rhyme: bool = False
                 ) -> str | None:
    """Why a decoded poem breaks the rules (None = well formed). Needs no tokenizer."""
    rules = Rules.of(form, acrostic, rhyme)
    w, problem = _walk(list(text), rules, rhyme_group)
    if problem is None and w.line < rules.lines:
        problem = f"the poem stops in line {w.line + 1} of {rules.lines}"
    return problem


def well_formed(text: str, form: str | None = None, acrostic: str | None = None, rhyme: bool = False) -> bool:
    return form_problem(text, form, acrostic, rhyme) is None


# ---------------------------------------------------------------- vocab tables (once per vocab)

@dataclass(frozen=True)
class _VocabTables:
    han: np.ndarray           # (V,) bool: single Han characters
    kind: np.ndarray          # (V,) int8: 1 = character slot (Han or <unk>), 2 = line end, 0 = anything else


@lru_cache(maxsize=4)
def _vocab_tables(vocab: tuple[str, ...]) -> _VocabTables:
    han = np.array([is_han(tok) and tok not in SPECIAL_TOKENS for tok in vocab], bool)
    kind = np.where(han, 1, 0).astype(np.int8)
    for i, tok in enumerate(vocab):
        kind[i] = 2 if tok in (COMMA, PERIOD) else 1 if tok == UNK else kind[i]
    return _VocabTables(han, kind)


@lru_cache(maxsize=4)
def _vocab_groups(vocab: tuple[str, ...]) -> np.ndarray:
    """(V,) int64 rhyme group per token, -1 = none."""
    groups = rhyme_groups_of(vocab)
    groups[~_vocab_tables(vocab).han] = -1
    return groups


# ---------------------------------------------------------------- the processor

# Row classes: what the next token may be. Rows of FormConstraint._banned, in this order.
HAN, ONLY_COMMA, ONLY_PERIOD, ONLY_EOS, HAN_OR_COMMA, RHYMABLE = range(6)
_ACROSTIC0 = 6                # then one class per acrostic character, then one per rhyme group
_KIND_CHAR, _KIND_END = 1, 2


class FormConstraint:
    """LogitsProcessor: only the tokens the rules allow next keep their logits; the rest become -inf.
    Stateless across steps: the state of every row follows from its tokens, so beams may move freely."""

    def __init__(self, tokenizer, form: str | None = None, acrostic: str | None = None, rhyme: bool = False,
                 prefix_ids: Sequence[int] = ()):
        self.tokenizer, self.rules = tokenizer, Rules.of(form, acrostic, rhyme)
        self.check_vocab()
        vocab = tokenizer.vocab
        tables = _vocab_tables(vocab)
        self._kind = tables.kind                                              # (V,)
        self._non_han = np.flatnonzero(~tables.han)                           # ids banned inside a line
        self._comma, self._period = tokenizer.index[COMMA], tokenizer.index[PERIOD]
        self._group_class = np.full(len(vocab), RHYMABLE, np.int64)           # (V,) class that a 2nd line end binds
        allowed = [tables.han, *self._one_hot([self._comma, self._period, tokenizer.eos_id])]
        allowed.append(tables.han | self._one_hot([self._comma])[0])
        allowed.append(self._rhyme_allowed(tables.han))
        allowed += self._one_hot([tokenizer.index[ch] for ch in self.rules.acrostic])
        if self.rules.rhyme:
            groups = _vocab_groups(vocab)
            allowed += [tables.han & (groups == g) for g in range(len(RHYME_GROUPS))]
            first_group = _ACROSTIC0 + len(self.rules.acrostic)
            self._group_class[groups >= 0] = first_group + groups[groups >= 0]
        self._banned = ~np.stack(allowed)                                     # (C, V) bool
        only = [-1, self._comma, self._period, tokenizer.eos_id, -1, -1] + tokenizer.ids_of(self.rules.acrostic)
        self._only = np.array(only + [-1] * (len(allowed) - len(only)))      # (C,) the sole allowed id, or -1
        self.off_form_rows = 0  # rows seen off the rules (sent to <eos>): beam search's parked dead rows, or bugs
        self._first_call = True
        if len(prefix_ids):
            self.check_prefix(prefix_ids)

    # ------------------------------------------------------------ checks

    def check_vocab(self) -> None:
        """Raise ValueError when the vocab cannot express the request (acrostic characters, line marks, rhymes)."""
        tok, problems = self.tokenizer, []
        missing = tok.unknown_chars(self.rules.acrostic)
        if missing:
            problems.append(f"acrostic characters not in the model's vocabulary: {''.join(missing)}")
        marks = tok.unknown_chars(COMMA + PERIOD)
        if marks:
            problems.append(f"the model's vocabulary lacks the line marks {''.join(marks)}")
        if self.rules.rhyme and not (_vocab_groups(tok.vocab) >= 0).any():
            problems.append("no character of the model's vocabulary has a rhyme group")
        if problems:
            raise ValueError("; ".join(problems))

    def check_prefix(self, prefix_ids: Sequence[int]) -> None:
        """Raise ValueError when forced ids (continue mode: the given first line) break the rules."""
        ids = [int(i) for i in prefix_ids]
        ids = ids[1:] if ids and ids[0] == self.tokenizer.sos_id else ids
        symbols = [self.tokenizer.vocab[i] for i in ids]
        _, problem = _walk(symbols, self.rules, lambda ch: int(_vocab_groups(self.tokenizer.vocab)[
            self.tokenizer.index[ch]]))
        if problem:
            raise ValueError(f"the given text does not fit the requested poem: {problem}")

    # ------------------------------------------------------------ per step

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self._first_call:              # the rows may hold a forced prefix: check it once, fully
            self._first_call = False
            for row in set(map(tuple, tokens.tolist())):
                self.check_prefix(row)
        cls = self._row_classes(tokens)                                       # (N,)
        first = cls[0]
        if (cls == first).all():                                              # the usual case: one class
            if first == HAN:
                logits[:, self._non_han] = NEG
            elif self._only[first] >= 0:
                logits[:] = NEG
                logits[:, self._only[first]] = 0.0       # sole choice: its value is irrelevant, keep it finite
            else:
                np.copyto(logits, NEG, where=self._banned[first])             # (V,) broadcast over rows
            return logits
        np.copyto(logits, NEG, where=self._banned[cls])                       # (N, V)
        forced = np.flatnonzero(self._only[cls] >= 0)
        logits[forced, self._only[cls[forced]]] = 0.0
        return logits

    def _row_classes(self, tokens: np.ndarray) -> np.ndarray:
        """Class of the next token per row. tokens (N, T): <sos> then the body so far."""
        n, done = tokens.shape[0], tokens.shape[1] - 1
        if self.rules.length is not None:
            return self._classes_at(tokens, done, self.rules.length, True)
        short, long = FREE_LENGTHS
        if done <= short:                                # line 1 still open in every row: length undecided
            return self._classes_at(tokens, done, long, False)
        ended_short = self._kind[tokens[:, 1 + short]] == _KIND_END          # (N,) line 1 ended after 5
        cls = np.empty(n, np.int64)
        for length, rows in ((short, ended_short), (long, ~ended_short)):
            if rows.any():
                cls[rows] = self._classes_at(tokens[rows], done, length, True)
        return cls

    def _classes_at(self, tokens: np.ndarray, done: int, length: int, decided: bool) -> np.ndarray:
        """Classes for rows sharing one line length: the same for all rows except the rhyme group."""
        line, pos = divmod(done, length + 1)
        c = self._class_of(line, pos, length, decided)
        if c is None:                                    # an even line's last character: the bound group
            cls = self._group_class[tokens[:, 1 + 2 * length]]                # 2nd line's last token
        else:
            cls = np.full(tokens.shape[0], c, np.int64)
        if done and (line < self.rules.lines or (line == self.rules.lines and pos == 0)):
            expected = _KIND_END if pos == 0 else _KIND_CHAR
            off = self._kind[tokens[:, -1]] != expected                       # (N,) the last token broke the rules
            if off.any():
                self.off_form_rows += int(off.sum())
                cls[off] = ONLY_EOS
        return cls

    def _class_of(self, line: int, pos: int, length: int, decided: bool) -> int | None:
        r = self.rules
        if line >= r.lines:
            return ONLY_EOS
        if pos == length:
            return ONLY_PERIOD if r.end_mark(line) == PERIOD else ONLY_COMMA
        if pos == 0 and line < len(r.acrostic):
            return _ACROSTIC0 + line
        if not decided and pos == min(FREE_LENGTHS):
            return HAN_OR_COMMA
        if r.rhyme and line % 2 == 1 and pos == length - 1:
            return RHYMABLE if line == 1 else None
        return HAN

    # ------------------------------------------------------------ helpers

    def _one_hot(self, ids: Sequence[int]) -> list[np.ndarray]:
        rows = [np.zeros(len(self.tokenizer.vocab), bool) for _ in ids]
        for row, i in zip(rows, ids):
            row[i] = True
        return rows

    def _rhyme_allowed(self, han: np.ndarray) -> np.ndarray:
        return han & (_vocab_groups(self.tokenizer.vocab) >= 0) if self.rules.rhyme else han

    @property
    def max_tokens(self) -> int:
        return self.rules.max_tokens
