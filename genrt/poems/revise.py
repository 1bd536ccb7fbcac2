"""Write one verse of a poem again, keeping every other verse exactly: `PoemGenerator.revise`, `genrt revise`.

The verses before the one revised are forced (as a continued first line is), the model writes the verse under the
request's own options and rules (form, 平仄, rhyme, acrostic, the verse rules), with exactly the old verse's length
and closing mark, and the verses after it are put back. Candidates that break the whole poem's form, tones or rhyme
(the later, fixed verses constrain the new one too) are dropped, and the rest are ranked by the model's
log-probability of the whole revised poem: what follows the verse weighs in its choice.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from genrt.contract import VERSE_BREAKS
from genrt.decoding.processors import NEG
from genrt.decoding.scheduler import Request, Scheduler
from genrt.poems.generator import Poem
from genrt.poems.options import MAX_NUM_BEAMS
from genrt.poems.tokenizer import char_list

if TYPE_CHECKING:
    from genrt.poems.generator import PoemGenerator

CANDIDATES_PER_ALTERNATIVE = 3        # candidates decoded per alternative asked for (some fail the whole-poem checks)
# generate options that revise sets itself: the verse keeps the old one's length, num_alternatives says how many
NOT_FOR_REVISE = ("num_return_sequences", "best_of", "max_new_tokens", "min_new_tokens")


def split_verses(text: str) -> list[str]:
    """Each verse with the mark that closes it (a last verse may have none)."""
    verses, current = [], ""
    for ch in text:
        current += ch
        if ch in VERSE_BREAKS:
            verses.append(current)
            current = ""
    return verses + [current] if current else verses


class ReviseVerse:
    """After the forced verses (the row's first `start` ids), exactly `length` characters, then `mark`, then the
    end: the revised verse keeps the old one's length and closing mark."""

    def __init__(self, start: int, length: int, mark: int | None, break_ids: list[int], eos_id: int):
        self.start, self.length, self.mark, self.eos = start, length, mark, eos_id
        self.stops = np.asarray(sorted(set(break_ids) | {eos_id}), np.int64)

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        written = tokens.shape[1] - self.start
        if written < self.length:
            logits[:, self.stops] = NEG                    # a character, not yet a break or the end
            return logits
        keep = self.mark if written == self.length and self.mark is not None else self.eos
        kept = logits[:, keep].copy()
        logits[:] = NEG
        logits[:, keep] = np.where(np.isfinite(kept), kept, 0.0)
        return logits


def revise(gen: "PoemGenerator", prompt: str, poem: str, line: int, num_alternatives: int = 3,
           **options: Any) -> list["Poem"]:
    """Up to `num_alternatives` versions of `poem` with verse `line` (1 = the first) written again, best first by
    the model's log-probability of the whole poem (Poem.score). Options are PoemGenerator.generate's; greedy
    decoding gathers its candidates with best-first beams. Raises ValueError naming any bad input."""
    if not isinstance(poem, str) or not poem.strip():
        raise ValueError("the poem to revise must be a non-empty string")
    text = gen.tokenizer.normalize(poem.strip())
    verses = split_verses(text)
    # the verses kept are returned as given (traditional characters stay); normalising maps a character to one
    given = split_verses(poem.strip()) if len(poem.strip()) == len(text) else verses
    if isinstance(line, bool) or not isinstance(line, (int, np.integer)) or not 1 <= line <= len(verses):
        raise ValueError(f"line must be a verse number from 1 to {len(verses)}, got {line!r}")
    if isinstance(num_alternatives, bool) or not isinstance(num_alternatives, (int, np.integer)) \
            or not 1 <= num_alternatives <= MAX_NUM_BEAMS:
        raise ValueError(f"num_alternatives must be an integer from 1 to {MAX_NUM_BEAMS}, got {num_alternatives!r}")
    unknown = gen.tokenizer.unknown_chars("".join(verses))
    if unknown:
        raise ValueError(f"the poem has characters outside the model's vocabulary: {char_list(unknown)}")
    empty = next((i for i, v in enumerate(verses, 1) if v[:1] in VERSE_BREAKS), None)
    if empty is not None:
        raise ValueError(f"verse {empty} of the poem is empty (a mark where a verse should start): "
                         f"{verses[empty - 1]!r}")
    ignored = [name for name in NOT_FOR_REVISE if name in options]
    if ignored:
        raise ValueError(f"revise writes a verse as long as the old one and returns num_alternatives versions: "
                         f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply")
    opts = gen.options(**options)
    _, (prompt_line,) = gen._encode_prompts([prompt], opts)          # continue mode: the given first line
    gen._score_target(text, prompt_line)            # what scoring will refuse (too long, not its prompt's poem)
    old = verses[line - 1]
    body, mark = (old[:-1], old[-1]) if old[-1] in VERSE_BREAKS else (old, None)
    before, after = "".join(verses[:line - 1]), "".join(verses[line:])
    forced = gen.tokenizer.encode_text(before)
    if len(forced) < len(prompt_line):
        raise ValueError(f"in continue mode the prompt line is given: revise a verse after it (line "
                         f"{len(split_verses(gen.tokenizer.decode(prompt_line))) + 1} or later)")
    opts = _candidate_options(opts, num_alternatives)

    (request,) = gen.requests([prompt], opts)                         # the source; its prefix is replaced
    prefix = np.tile(np.asarray([gen.tokenizer.sos_id] + forced, np.int64), (request.rows, 1))     # (R, P)
    processors = gen._processors(opts, [forced], prompt) + [ReviseVerse(
        prefix.shape[1], len(body), gen.tokenizer.index.get(mark) if mark else None,
        gen.tokenizer.ids_of(VERSE_BREAKS), gen.tokenizer.eos_id)]
    search = gen._search(opts, prefix, len(body) + 2, processors, gen._root_seed(opts))
    request = Request(request.source, prefix, search, context=request.context)
    scheduler = Scheduler(gen.model, max(request.rows, 1))
    scheduler.submit(request)
    scheduler.run()
    if request.error is not None:
        raise request.error

    texts, verse_of, problem = [], {}, None
    for hyp in request.result:
        verse = gen.tokenizer.decode(hyp.tokens)
        candidate = before + verse + after
        if not hyp.finished or verse == old or len(verse) != len(old) or candidate in verse_of:
            continue
        problem = _problem(candidate, opts)
        if problem is None:
            texts.append(candidate)
            verse_of[candidate] = verse
    if not texts:
        if problem is not None:      # every version breaks the rules: the kept verses do not allow one
            raise ValueError(f"no version of verse {line} keeps the poem within its rules, the other verses "
                             f"kept as given: {problem}")
        return []
    scores = gen.score([prompt] * len(texts), texts, mode=opts.mode)
    ranked = sorted(zip(texts, scores), key=lambda pair: -pair[1].logprob)[:num_alternatives]
    kept_before, kept_after = "".join(given[:line - 1]), "".join(given[line:])
    return [Poem(prompt, kept_before + verse_of[text] + kept_after, s.logprob, True) for text, s in ranked]


def _candidate_options(opts, wanted: int):
    """The request's mode, asked for enough candidates: beams as wide as needed (greedy: best-first beams),
    sampling as many draws. The verse's length is the old one's (ReviseVerse), whatever shape the other verses
    suggest, so the regular-shape rule is off."""
    n = min(MAX_NUM_BEAMS, max(wanted * CANDIDATES_PER_ALTERNATIVE, 2))
    if opts.do_sample and not opts.is_beam:
        return replace(opts, num_return_sequences=n, best_of=1, min_new_tokens=0, regular_shape=False)
    beams = max(opts.num_beams, n)
    return replace(opts, num_beams=beams, num_return_sequences=beams, min_new_tokens=0, regular_shape=False)


def _problem(text: str, opts) -> str | None:
    """What in the whole revised poem breaks the request's form, acrostic, rhyme or tones, or None."""
    from genrt.poems.verse.forms import form_problem
    if opts.form or opts.acrostic:
        problem = form_problem(text, opts.form, opts.acrostic, opts.rhyme_scheme == "modern")
        if problem is not None:
            return problem
    if opts.tonal or opts.rhyme_scheme == "pingshui":
        from genrt.poems.verse.tonal import pingshui_rhyme_problem, tonal_problem
        return (tonal_problem(text, opts.form, opts.acrostic) if opts.tonal else None) \
            or pingshui_rhyme_problem(text, opts.form, opts.acrostic)
    return None
