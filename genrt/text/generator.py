"""PoemGenerator: prompt text in, poems out, through the exported encoder + KV-cache decoder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from genrt.text.model import PoemModel
from genrt.text.options import GenerationOptions
from genrt.text.processors import (
    LogitsProcessor, NoRepeatNGram, RepetitionPenalty, SuppressTokens, make_sampler, pick_greedy,
)
from genrt.text.search import beam_search, generate_tokens, iter_tokens
from genrt.text.tokenizer import CharTokenizer

LINE_PUNCTUATION = "，。？！；"


@dataclass(frozen=True)
class Poem:
    prompt: str
    text: str            # the poem body (in continue mode it starts with the given line)
    score: float         # beam: sum of log-probabilities; greedy/sampling: 0.0
    finished: bool       # ended with <eos> rather than at the length limit


class PoemGenerator:
    def __init__(self, model: PoemModel):
        self.model = model
        self.manifest = model.manifest
        self.tokenizer = CharTokenizer(self.manifest.vocab)

    @classmethod
    def load(cls, model_dir: str | Path | None = None, provider: str = "auto", threads: int | None = None,
             precision: str | None = None) -> "PoemGenerator":
        return cls(PoemModel.load(model_dir, provider, threads, precision))

    @property
    def provider(self) -> str:
        return self.model.provider

    # ---------------------------------------------------------------- public API

    def generate(self, prompt: str | Sequence[str], options: GenerationOptions | None = None,
                 **kwargs: Any) -> list[Poem] | list[list[Poem]]:
        """One prompt -> list of `num_return_sequences` poems; a list of prompts -> one such list per prompt,
        decoded together as one batch. Raises ValueError naming any bad input or option."""
        opts = GenerationOptions.from_kwargs(options, **kwargs)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("no prompt given")
        sources, forced = self._encode_prompts(prompts, opts)
        copies = opts.num_beams if opts.is_beam else opts.num_return_sequences
        prefix = self._prefix(forced, copies)
        max_new = self._max_new(opts, prefix)
        processors = self._processors(opts, forced)
        cache = self.model.start(sources, copies)
        if opts.is_beam:
            hyps = beam_search(self.model, cache, prefix, opts.num_beams, max_new, self.tokenizer.eos_id,
                               processors, opts.length_penalty, opts.num_return_sequences)
        else:
            flat = generate_tokens(self.model, cache, prefix, max_new, self.tokenizer.eos_id, processors,
                                   self._picker(opts))
            hyps = [flat[i * copies:(i + 1) * copies] for i in range(len(prompts))]
        poems = [[self._poem(p, f, h) for h in hs] for p, f, hs in zip(prompts, forced, hyps)]
        return poems[0] if isinstance(prompt, str) else poems

    def stream(self, prompt: str, options: GenerationOptions | None = None, **kwargs: Any) -> Iterator[str]:
        """Pieces of the poem as they are decoded (greedy or sampling; one sequence). Bad input raises here,
        before the first piece, not on iteration."""
        opts = GenerationOptions.from_kwargs(options, **kwargs)
        if opts.is_beam or opts.num_return_sequences != 1:
            raise ValueError("stream decodes one sequence greedily or by sampling: use num_beams=1 and "
                             "num_return_sequences=1")
        sources, forced = self._encode_prompts([prompt], opts)
        prefix = self._prefix(forced, 1)
        max_new, processors = self._max_new(opts, prefix), self._processors(opts, forced)
        steps = iter_tokens(self.model, self.model.start(sources), prefix, max_new, self.tokenizer.eos_id,
                            processors, self._picker(opts))
        return self._pieces(forced[0], steps)

    def _pieces(self, forced: list[int], steps) -> Iterator[str]:
        if forced:
            yield self.tokenizer.decode(forced)
        for new, alive in steps:
            if alive[0]:
                yield self.tokenizer.vocab[int(new[0])]

    # ---------------------------------------------------------------- pieces

    def _encode_prompts(self, prompts: Sequence[str], opts: GenerationOptions
                        ) -> tuple[list[list[int]], list[list[int]]]:
        """Source ids per prompt, and the ids forced at the start of the poem (continue mode: the given line)."""
        sources, forced = [], []
        for text in prompts:
            if not isinstance(text, str):
                raise ValueError(f"a prompt must be a string, got {type(text).__name__}")
            sources.append(self.tokenizer.encode_prompt(text, opts.mode, self.manifest.max_len, self._form_tag(opts)))
            forced.append(self._forced_line(text.strip()) if opts.mode == "continue" else [])
        return sources, forced

    @staticmethod
    def _form_tag(opts: GenerationOptions) -> str | None:
        """ASCII name of the requested form, to put its token in the source (None: no form, or told not to)."""
        if not (opts.form and opts.form_token):
            return None
        from genrt.text.forms import resolve_form
        return resolve_form(opts.form).aliases[0]

    def _forced_line(self, line: str) -> list[int]:
        unknown = self.tokenizer.unknown_chars(line)
        if unknown:
            raise ValueError(f"continue mode needs every character of the line in the vocabulary; unknown: "
                             f"{''.join(unknown)}")
        return self.tokenizer.encode_text(line)

    def _prefix(self, forced: list[list[int]], copies: int) -> np.ndarray:
        if len({len(f) for f in forced}) > 1:
            raise ValueError("in continue mode, prompts decoded together must have the same length")
        row = [self.tokenizer.sos_id] + forced[0]
        rows = [[self.tokenizer.sos_id] + f for f in forced for _ in range(copies)]
        return np.asarray(rows, np.int64).reshape(-1, len(row))                 # (B*copies, P)

    def _max_new(self, opts: GenerationOptions, prefix: np.ndarray) -> int:
        room = self.manifest.max_len - prefix.shape[1]  # positions the model was trained on
        if room < 1:
            raise ValueError(f"the forced line leaves no room: the model decodes at most {self.manifest.max_len} "
                             f"characters")
        max_new = min(opts.max_new_tokens, room)
        if opts.form or opts.acrostic:
            from genrt.text.forms import poem_token_budget
            needed = poem_token_budget(opts.form, opts.acrostic) - (prefix.shape[1] - 1)
            if needed > max_new:
                raise ValueError(f"the requested form needs {needed} more tokens but only {max_new} are allowed "
                                 f"(max_new_tokens={opts.max_new_tokens}, model limit {self.manifest.max_len})")
        return max_new

    def _processors(self, opts: GenerationOptions, forced: list[list[int]]) -> list[LogitsProcessor]:
        tok = self.tokenizer
        processors: list[LogitsProcessor] = [SuppressTokens(tok.never_generated_ids)]
        if opts.repetition_penalty != 1.0:
            punctuation = tok.ids_of(LINE_PUNCTUATION) + [tok.eos_id]
            processors.append(RepetitionPenalty(opts.repetition_penalty, ignore_ids=punctuation))
        if opts.no_repeat_ngram_size:
            processors.append(NoRepeatNGram(opts.no_repeat_ngram_size))
        if opts.form or opts.acrostic or opts.rhyme:
            from genrt.text.forms import FormConstraint
            constraint = FormConstraint(tok, opts.form, opts.acrostic, opts.rhyme)
            for line in forced:  # a continued first line must already fit the form
                constraint.check_prefix(line)
            processors.append(constraint)  # last: it decides what remains allowed
        return processors

    @staticmethod
    def _picker(opts: GenerationOptions):
        if not opts.do_sample:
            return pick_greedy
        return make_sampler(np.random.default_rng(opts.seed), opts.temperature, opts.top_k, opts.top_p)

    def _poem(self, prompt: str, forced: list[int], hyp) -> Poem:
        return Poem(prompt, self.tokenizer.decode(forced + hyp.tokens), hyp.score, hyp.finished)
