"""Generation options: one frozen dataclass, checked once by validate() before anything runs."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np

from genrt.limits import MAX_SEED

# Caps on sizes that cost memory or time in proportion; validate() refuses anything above them. The K/V cache holds
# one row per beam (or per returned sample) per prompt. max_new_tokens is a model-independent bound: the generator
# also clamps it to the positions the model has (its manifest's max_len).
MAX_NUM_BEAMS = 64
MAX_NUM_RETURN_SEQUENCES = 64          # sampling decodes this many rows per prompt; beam search at most num_beams
MAX_NEW_TOKENS = 4096
# Ranges for the float knobs, well inside where the float32 logits (divided by the temperature, divided or
# multiplied by the penalty) or the beam score (score / length ** length_penalty) would overflow.
TEMPERATURE_RANGE = (1e-3, 1e3)
REPETITION_PENALTY_RANGE = (1e-3, 1e3)
LENGTH_PENALTY_RANGE = (-10.0, 10.0)


@dataclass(frozen=True)
class GenerationOptions:
    """Names follow transformers' generate() where one exists."""
    mode: str = "title"                  # "title": prompt is a title/theme; "continue": prompt is the first line
    max_new_tokens: int = 128
    min_new_tokens: int = 0              # no <eos> before this many new tokens (transformers' name); 0 = off
    num_beams: int = 1
    length_penalty: float = 1.0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0                       # 0 = off
    top_p: float = 1.0                   # 1.0 = off
    repetition_penalty: float = 1.0      # 1.0 = off
    no_repeat_ngram_size: int = 0        # 0 = off
    max_char_repeats: int = 0            # most times one character may appear in a verse; 0 = off (2 keeps 叠字)
    no_repeat_verse: bool = False        # never write a verse that repeats an earlier verse of the poem
    max_verse_openings: int = 0          # most verses one character may open; 0 = off (genrt.poems.verse.echo)
    max_title_echoes: int = 0            # title mode: most times a 2-character piece of the title may recur; 0 = off
    regular_shape: bool = False          # without `form`: 4 or 8 verses of 5 or 7 characters (genrt.poems.verse.shape)
    idiomatic_doubling: bool = True      # double a character (叠字) only where the corpus does (verse.doubling;
                                         # no effect for a model directory without the table)
    # poems returned per prompt, in this order: beams best first by score / length ** length_penalty; best_of's
    # candidates best first by log-probability per character (<eos> counted); plain samples in the order drawn
    num_return_sequences: int = 1
    best_of: int = 1                     # sampling: draw this many candidates per prompt, return the most likely
    seed: int | None = None
    form: str | None = None              # 七言绝句 / qijue ... (genrt.poems.verse.forms)
    acrostic: str | None = None          # line i starts with acrostic[i]
    rhyme: bool | str = False            # even lines end on one rhyme group: True/'modern' or 'pingshui' (平水韵)
    tonal: bool = False                  # with `form`: 平仄 of 近体诗, rhyme in 平水韵 (genrt.poems.verse.tonal)
    form_token: bool = True              # with `form`, also tell the model (its form token) if it knows them

    @classmethod
    def from_kwargs(cls, base: "GenerationOptions | None" = None, **kwargs: Any) -> "GenerationOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown generation option(s): {', '.join(unknown)}")
        return replace(base or cls(), **kwargs).validate()

    def __post_init__(self) -> None:
        """numpy scalars (np.int64(8), np.float32(0.9), np.bool_) are taken as the Python values they hold."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, f.name, value.item())

    def validate(self) -> "GenerationOptions":
        """Return self, or raise ValueError naming every problem in one line."""
        problems = []
        if self.mode not in ("title", "continue"):
            problems.append(f"mode must be 'title' or 'continue', got {_show(self.mode)}")
        problems += [p for p in (
            _int_problem("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS),
            _int_problem("min_new_tokens", self.min_new_tokens, 0, MAX_NEW_TOKENS),
            _int_problem("num_beams", self.num_beams, 1, MAX_NUM_BEAMS),
            _int_problem("top_k", self.top_k, 0),
            _int_problem("no_repeat_ngram_size", self.no_repeat_ngram_size, 0),
            _int_problem("max_char_repeats", self.max_char_repeats, 0),
            _int_problem("max_verse_openings", self.max_verse_openings, 0),
            _int_problem("max_title_echoes", self.max_title_echoes, 0),
            _int_problem("num_return_sequences", self.num_return_sequences, 1, MAX_NUM_RETURN_SEQUENCES),
            _int_problem("best_of", self.best_of, 1, MAX_NUM_RETURN_SEQUENCES),
            _float_problem("temperature", self.temperature, "> 0", _positive, TEMPERATURE_RANGE),
            _float_problem("top_p", self.top_p, "in (0, 1]", lambda v: 0 < v <= 1),
            _float_problem("repetition_penalty", self.repetition_penalty, "> 0", _positive, REPETITION_PENALTY_RANGE),
            _float_problem("length_penalty", self.length_penalty, limits=LENGTH_PENALTY_RANGE),
        ) if p]
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            problems.append(f"seed must be an integer from 0 to {MAX_SEED}, got {_show(self.seed)}")
        for name in ("do_sample", "tonal", "form_token", "no_repeat_verse", "regular_shape", "idiomatic_doubling"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be True or False, got {_show(getattr(self, name))}")
        problems += self._contradictions()
        if not problems:
            problems += self._form_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _contradictions(self) -> list[str]:
        problems = []
        if not self.do_sample:
            changed = [n for n, v, off in (("temperature", self.temperature, 1.0), ("top_k", self.top_k, 0),
                                           ("top_p", self.top_p, 1.0)) if v != off]
            if changed:
                verb = "applies" if len(changed) == 1 else "apply"
                problems.append(f"{', '.join(changed)} only {verb} when sampling: add do_sample (--do-sample)")
        if _is_int(self.best_of) and self.best_of > 1 and not self.do_sample:
            problems.append("best_of ranks sampled candidates: add do_sample (--do-sample)")
        if (_is_int(self.best_of) and _is_int(self.num_return_sequences) and self.best_of > 1
                and self.num_return_sequences > self.best_of):
            problems.append(f"num_return_sequences ({self.num_return_sequences}) cannot exceed best_of "
                            f"({self.best_of})")
        if (_is_int(self.best_of) and self.best_of > 1 and _is_int(self.num_beams) and self.num_beams > 1):
            problems.append("best_of ranks independently sampled poems; beam search (num_beams > 1) ranks its own "
                            "beams: use one or the other")
        if (_is_int(self.num_beams) and _is_int(self.num_return_sequences) and (self.num_beams > 1 or not
                self.do_sample) and self.num_return_sequences > self.num_beams):
            problems.append(f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams "
                            f"({self.num_beams}) "
                            + ("in beam search" if self.num_beams > 1 else "without sampling"))
        if (_is_int(self.min_new_tokens) and _is_int(self.max_new_tokens)
                and self.min_new_tokens > self.max_new_tokens):
            problems.append(f"min_new_tokens ({self.min_new_tokens}) cannot exceed max_new_tokens "
                            f"({self.max_new_tokens})")
        if _is_int(self.min_new_tokens) and self.min_new_tokens and (self.form or self.acrostic or
                                                                      self.regular_shape is True):
            problems.append("min_new_tokens cannot be combined with a form, an acrostic or the regular shape, which "
                            "end the poem themselves: add regular_shape=False (--free-shape)")
        if self.length_penalty != 1.0 and _is_int(self.num_beams) and self.num_beams == 1:
            problems.append("length_penalty only applies to beam search (num_beams > 1)")
        return problems

    def _form_problems(self) -> list[str]:
        if self.form is None and self.acrostic is None and not self.rhyme and not self.tonal:
            return []
        from genrt.poems.verse.requests import check_request  # imported lazily: verse rules are optional machinery
        try:
            check_request(self.form, self.acrostic, self.rhyme, self.tonal)
            if self.tonal:
                from genrt.poems.verse.tonal import VerseRules   # an acrostic must fit some tonal pattern
                VerseRules(self.form, self.acrostic, True)
        except ValueError as e:
            return [str(e)]
        return []

    @property
    def rhyme_scheme(self) -> str | None:
        """None, 'modern' or 'pingshui' (tonal verse rhymes in 平水韵)."""
        from genrt.poems.verse.requests import rhyme_scheme
        return rhyme_scheme(self.rhyme, self.tonal)

    @property
    def is_beam(self) -> bool:
        return self.num_beams > 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_problem(name: str, value: Any, low: int, high: int | None = None) -> str | None:
    if not _is_number(value) and not isinstance(value, bool):
        return f"{name} must be a number, got {_show(value)}"
    if not _is_int(value):
        return f"{name} must be an integer, got {_show(value)}"
    if value < low:
        return f"{name} must be >= {low}, got {_show(value)}"
    if high is not None and value > high:
        return f"{name} must be <= {high}, got {_show(value)}"
    return None


def _positive(v: float) -> bool:
    return v > 0


def _float_problem(name: str, value: Any, rule: str = "", ok: Callable[[float], bool] | None = None,
                   limits: tuple[float, float] | None = None) -> str | None:
    """A finite number for which ok(value) holds (`rule` says what ok tests), within `limits` (inclusive)."""
    if not _is_number(value):
        return f"{name} must be a number, got {_show(value)}"
    if not math.isfinite(value):
        return f"{name} must be a finite number, got {_show(value)}"
    if ok is not None and not ok(value):
        return f"{name} must be {rule}, got {_show(value)}"
    if limits is not None and not limits[0] <= value <= limits[1]:
        return f"{name} must be between {limits[0]:g} and {limits[1]:g}, got {_show(value)}"
    return None


def _show(value: Any, width: int = 40) -> str:
    """repr for a message, kept short (a huge int is not even converted: Python refuses past 4300 digits)."""
    if _is_int(value) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."
