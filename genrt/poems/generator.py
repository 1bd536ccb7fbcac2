"""PoemGenerator: prompt text in, poems out, through the exported encoder + KV-cache decoder."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from genrt import limits
from genrt.contract import VERSE_BREAKS, ManifestError
from genrt.decoding.processors import (
    LogitsProcessor, MinNewTokens, NoRepeatNGram, RepetitionPenalty, SuppressTokens, VerseRepetitionBlock, logsumexp,
    make_sampler, pick_greedy,
)
from genrt.decoding.lanes import run_requests
from genrt.decoding.scheduler import Request, Scheduler
from genrt.decoding.search import BeamSampling, BeamSearch, Hypothesis, SampleSearch, Search
from genrt.poems.verse.doubling import IdiomaticDoubling, load_doubling
from genrt.poems.verse.echo import TitleEcho, VerseOpenings
from genrt.poems.model import PoemModel
from genrt.poems.options import GenerationOptions
from genrt.poems.tokenizer import CharTokenizer, char_list, load_t2s

LINE_PUNCTUATION = VERSE_BREAKS
# settings that mean something only when sampling: a caller's do_sample=False drops the recommended ones
SAMPLING_ONLY = ("do_sample", "temperature", "top_k", "top_p", "best_of", "seed")
# Rows one call decodes together at most (prompts x beams / returned sequences); more requests wait for room and
# join as others finish.
BATCH_ROWS = 64
SHARED_PROCESSOR_LISTS = 256           # configurations whose processor lists are kept for reuse


@dataclass(frozen=True)
class Poem:
    prompt: str
    text: str            # the poem body (in continue mode it starts with the given line)
    score: float         # sum of log-probabilities of the generated characters and <eos> (when finished);
                         # greedy/sampling: the model's own; beam: after the logit processors, as ranked
    finished: bool       # ended with <eos> rather than at the length limit


@dataclass(frozen=True)
class PoemScore:
    prompt: str
    poem: str
    logprob: float       # sum of the model's log-probabilities of the poem's characters and the final <eos>
    tokens: int          # how many ids were scored: the characters (after the prompt line in continue mode) + <eos>
    nll_per_char: float  # -logprob / tokens (natural log, per token, <eos> included)


def text_list(name: str, value: Any, item: str = "a prompt") -> list:
    """One string, or an iterable of them (a list, a tuple, a generator), as a list; ValueError for anything else
    (None, a dict, bytes), naming `name` (the argument) or `item` (one of its elements)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (Mapping, bytes, bytearray)) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a string or a list of strings, got {type(value).__name__}")
    items = list(value)
    bad = next((v for v in items if not isinstance(v, str)), None)
    if bad is not None:
        raise ValueError(f"{item} must be a string, got {type(bad).__name__}")
    return items


class PoemGenerator:
    def __init__(self, model: PoemModel):
        self.model = model
        self.manifest = model.manifest
        self.tokenizer = CharTokenizer(self.manifest.vocab, load_t2s(model.model_dir, self.manifest))
        table = load_doubling(model.model_dir, self.manifest)
        # stateless processors (they re-read each row's ids every step) are built once and shared by requests
        self._doubling = IdiomaticDoubling(self.tokenizer, table) if table else None
        self._suppress = SuppressTokens(self.tokenizer.never_generated_ids)
        self._shape = None                                   # RegularShape, built on first use
        self._shared: dict[tuple, list[LogitsProcessor]] = {}  # processor lists by configuration (_shared_processors)
        self._stateless: dict[tuple, LogitsProcessor] = {}     # processors by class and arguments (_stateless_one)
        self._check_recommended()

    def _check_recommended(self) -> None:
        """Each mode's recommended settings, merged as a call merges them, must validate together (each setting
        alone was range-checked with the manifest): a combination that does not is the model directory's
        problem, named at load, not a caller's at the first decode."""
        for mode, kwargs in (("no options", {}), ("beams", {"num_beams": 4}), ("sampling", {"do_sample": True}),
                             ("greedy", {"do_sample": False})):
            try:
                self.options(**kwargs)
            except ValueError as e:
                raise ManifestError(str(self.model.model_dir), [
                    f"generation: the recommended settings for {mode} do not go together: {e}"]) from None

    @classmethod
    def load(cls, model_dir: str | Path | None = None, provider: str = "auto", threads: int | None = None,
             precision: str | None = None, provider_options: dict | None = None) -> "PoemGenerator":
        return cls(PoemModel.load(model_dir, provider, threads, precision, provider_options=provider_options))

    @property
    def provider(self) -> str:
        return self.model.provider

    # ---------------------------------------------------------------- public API

    def options(self, options: GenerationOptions | None = None, **kwargs: Any) -> GenerationOptions:
        """The validated options a call decodes with. Given a GenerationOptions, exactly that (plus kwargs).
        Given keyword arguments alone, the model directory's recommended settings (manifest `generation`: its
        "default" section, then "beam" when num_beams > 1, "sample" when do_sample, or "no_options" when the
        call names neither) under them: what the caller names explicitly always wins. Asking for do_sample
        without a seed always draws a fresh one (a recommended seed belongs to the modes that did not ask to
        sample); asking for do_sample=False drops every recommended sampling setting (num_beams=4,
        do_sample=False is best-first beam search even where the model recommends beam sampling)."""
        if options is not None and not isinstance(options, GenerationOptions):
            raise ValueError(f"options must be a GenerationOptions, got {type(options).__name__}; pass settings "
                             f"as keyword arguments (generate(prompt, num_beams=4))")
        # numpy scalars (np.int64(8), np.bool_(True)) mean what the Python values mean, here and in the merge below
        kwargs = {k: v.item() if isinstance(v, np.generic) else v for k, v in kwargs.items()}
        if options is not None:
            return GenerationOptions.from_kwargs(options, **kwargs)
        recommended = self.manifest.generation or {}
        merged = dict(recommended.get("default", {}))
        beams = kwargs.get("num_beams", 1)
        if isinstance(beams, (int, np.integer)) and not isinstance(beams, bool) and beams > 1:
            merged.update(recommended.get("beam", {}))
        elif kwargs.get("do_sample") is True:
            merged.update(recommended.get("sample", {}))
        elif "do_sample" not in kwargs and "num_beams" not in kwargs:
            merged.update(recommended.get("no_options", {}))
        if kwargs.get("do_sample") is True:
            merged.pop("seed", None)                         # asked to sample: a fresh seed unless given
        elif kwargs.get("do_sample") is False:               # asked not to: no recommended sampling setting stays
            for key in SAMPLING_ONLY:
                merged.pop(key, None)
        merged.update(kwargs)
        wanted, best_of = merged.get("num_return_sequences", 1), merged.get("best_of", 1)
        if "best_of" not in kwargs and isinstance(wanted, int) and isinstance(best_of, int) and wanted > best_of > 1:
            merged["best_of"] = wanted                       # a recommended best_of never refuses more poems
        return GenerationOptions.from_kwargs(None, **merged)

    def check_prompts(self, prompts: Sequence[str], options: GenerationOptions) -> None:
        """Raise ValueError naming the problem if any prompt cannot be decoded with these options."""
        self._encode_prompts(list(prompts), options)

    def dropped_chars(self, prompt: str) -> str:
        """Characters of a prompt the model does not see: not in its vocabulary, even after the traditional ->
        simplified table. In order of appearance, each once."""
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
        return "".join(self.tokenizer.unknown_chars(self.tokenizer.normalize(prompt.strip())))

    def score(self, prompts: str | Sequence[str], poems: str | Sequence[str], mode: str = "title",
              batch_size: int = 32) -> list[PoemScore]:
        """Teacher-forced log-probability of each (prompt, poem) pair, one decoder call per batch of pairs.
        In continue mode the poem starts with its prompt line, which is given, not scored. For a poem genrt
        generated it is the Poem.score of greedy or sampled decoding, computed in one call instead of step by step:
        with fp32 the same to rounding; with int8 activations are rounded per position, and a value that differs in
        its last float bits between the two ways can round to the next int8 step, so some poems differ by a few
        hundredths of a nat (2 of 12 greedy poems, by 0.026 and 0.050)."""
        prompts, poems = text_list("prompts", prompts), text_list("poems", poems, "a poem")
        if len(prompts) != len(poems) or not prompts:
            raise ValueError(f"score needs as many prompts as poems (got {len(prompts)} and {len(poems)})")
        batch_size = limits.check_count("batch_size", batch_size, limits.MAX_BATCH)
        opts = GenerationOptions(mode=mode).validate()
        sources, forced = self._encode_prompts(prompts, opts)
        targets = [self._score_target(p, f) for p, f in zip(poems, forced)]
        limits.check_poem_score(self.manifest, min(batch_size, len(targets)), max(map(len, targets)) + 1)
        out = []
        for start in range(0, len(prompts), batch_size):
            chunk = range(start, min(start + batch_size, len(prompts)))
            logits = self.model.teacher_forced_logits([sources[i] for i in chunk],
                                                      [[self.tokenizer.sos_id] + targets[i][:-1] for i in chunk])
            for i, lg in zip(chunk, logits):
                lp = lg.astype(np.float64) - logsumexp(lg.astype(np.float64))          # (N, V)
                scored = np.arange(len(forced[i]), len(targets[i]))                    # skip the given line
                total = float(lp[scored, np.asarray(targets[i])[scored]].sum())
                out.append(PoemScore(prompts[i], poems[i], total, len(scored), -total / len(scored)))
        return out

    def _score_target(self, poem: str, forced: list[int]) -> list[int]:
        if not isinstance(poem, str) or not poem.strip():
            raise ValueError("a poem to score must be a non-empty string")
        text = self.tokenizer.normalize(poem.strip())
        unknown = self.tokenizer.unknown_chars(text)
        if unknown:
            raise ValueError(f"the poem has characters outside the model's vocabulary: {char_list(unknown)}")
        ids = self.tokenizer.encode_text(text)
        if ids[:len(forced)] != forced or len(ids) == len(forced):
            raise ValueError("in continue mode the poem must start with its prompt line and go on after it")
        if len(ids) + 1 > self.manifest.max_len:
            raise ValueError(f"the poem has {len(ids)} characters; the model scores at most "
                             f"{self.manifest.max_len - 1}")
        return ids + [self.tokenizer.eos_id]

    def generate(self, prompt: str | Sequence[str], options: GenerationOptions | None = None,
                 **kwargs: Any) -> list[Poem] | list[list[Poem]]:
        """One prompt -> list of `num_return_sequences` poems; a list of prompts -> one such list per prompt,
        decoded together (genrt.decoding.scheduler: one decoder call per step for all of them in each of the
        model's lanes, genrt.decoding.lanes; each prompt gets the poems it would get alone). Options: see
        `options`. Raises ValueError naming any bad input or option."""
        opts = self.options(options, **kwargs)
        prompts = text_list("prompt", prompt)
        if not prompts:
            raise ValueError("no prompt given")
        requests = self.requests(prompts, opts)
        run_requests(self.model, requests, BATCH_ROWS)
        poems = [self.poems_of(r) for r in requests]
        return poems[0] if isinstance(prompt, str) else poems

    def stream(self, prompt: str, options: GenerationOptions | None = None, **kwargs: Any) -> Iterator[str]:
        """Pieces of the poem `generate` would return first for the same arguments, as they become certain: with
        greedy or sampling, each character as it is decoded; with beams or best_of, the characters every candidate
        still in the running shares (the rest when the search ends). Bad input raises here, before the first
        piece, not on iteration."""
        opts = self.options(options, **kwargs)
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
        if opts.num_return_sequences != 1:
            raise ValueError("stream shows one poem: use num_return_sequences=1")
        (request,) = self.requests([prompt], opts)
        return self._pieces(request)

    def _pieces(self, request: Request) -> Iterator[str]:
        forced = request.context[1]
        if forced:
            yield self.tokenizer.decode(forced)
        scheduler, shown = Scheduler(self.model, max(BATCH_ROWS, request.rows)), 0
        scheduler.submit(request)
        while not request.done:
            scheduler.step()
            ids = request.search.settled() if not request.done else []
            if len(ids) > shown:
                yield self.tokenizer.decode(ids[shown:])
                shown = len(ids)
        if request.error is not None:
            raise request.error
        final = request.result[0].tokens
        if len(final) > shown:
            yield self.tokenizer.decode(final[shown:])

    def revise(self, prompt: str, poem: str, line: int, num_alternatives: int = 3, **kwargs: Any) -> list[Poem]:
        """`poem` with verse `line` (1 = the first) written again, every other verse kept: up to
        `num_alternatives` versions, best first by the model's log-probability of the whole poem (Poem.score), each
        keeping the form, tones, rhyme and acrostic asked for (genrt.poems.revise)."""
        from genrt.poems.revise import revise
        return revise(self, prompt, poem, line, num_alternatives, **kwargs)

    def requests(self, prompts: Sequence[str], opts: GenerationOptions) -> list[Request]:
        """One scheduler request per prompt (validated options): source ids, forced prefix, processors and search.
        Sampling draws from streams seeded by (seed, row), the same for every prompt of the call, so a prompt
        samples the same poems alone or beside others. Request.context = (prompt, forced ids)."""
        limits.check_poem_decode(self.manifest, 1, opts.num_beams, opts.num_return_sequences, opts.best_of)
        sources, forced = self._encode_prompts(prompts, opts)
        root = self._root_seed(opts)
        out = []
        for prompt, source, line in zip(prompts, sources, forced):
            copies = opts.num_beams if opts.is_beam else max(opts.num_return_sequences, opts.best_of)
            prefix = np.tile(np.asarray([self.tokenizer.sos_id] + line, np.int64), (copies, 1))   # (R, P)
            max_new = self._max_new(opts, prefix)
            processors = self._shared_processors(opts, line, prompt)
            out.append(Request(source, prefix, self._search(opts, prefix, max_new, processors, root),
                               context=(prompt, line)))
        return out

    def _search(self, opts: GenerationOptions, prefix: np.ndarray, max_new: int,
                processors: list[LogitsProcessor], root: int) -> Search:
        eos = self.tokenizer.eos_id
        if opts.is_beam:
            sampling = (BeamSampling(np.random.default_rng([root, 0]), opts.temperature, opts.top_k, opts.top_p)
                        if opts.do_sample else None)
            return BeamSearch(prefix, max_new, eos, processors, opts.length_penalty, opts.num_return_sequences,
                              sampling)
        if opts.do_sample:   # one stream per output row: row j of any prompt draws from (seed, j)
            pick = make_sampler([np.random.default_rng([root, j]) for j in range(len(prefix))], opts.temperature,
                                opts.top_k, opts.top_p)
        else:
            pick = pick_greedy
        return SampleSearch(prefix, max_new, eos, processors, pick, opts.num_return_sequences, opts.best_of > 1)

    def poems_of(self, request: Request) -> list[Poem]:
        """The finished request's poems, or its error raised."""
        if request.error is not None:
            raise request.error
        prompt, forced = request.context
        return [self._poem(prompt, forced, h) for h in request.result]

    # ---------------------------------------------------------------- pieces

    def _encode_prompts(self, prompts: Sequence[str], opts: GenerationOptions
                        ) -> tuple[list[list[int]], list[list[int]]]:
        """Source ids per prompt, and the ids forced at the start of the poem (continue mode: the given line)."""
        sources, forced = [], []
        for text in prompts:
            if not isinstance(text, str):
                raise ValueError(f"a prompt must be a string, got {type(text).__name__}")
            text = self.tokenizer.normalize(text)
            sources.append(self.tokenizer.encode_prompt(text, opts.mode, self.manifest.max_len, self._form_tag(opts)))
            forced.append(self._forced_line(text.strip()) if opts.mode == "continue" else [])
        return sources, forced

    @staticmethod
    def _form_tag(opts: GenerationOptions) -> str | None:
        """ASCII name of the requested form, to put its token in the source (None: no form, or told not to)."""
        if not (opts.form and opts.form_token):
            return None
        from genrt.poems.verse.forms import resolve_form
        return resolve_form(opts.form).aliases[0]

    def _forced_line(self, line: str) -> list[int]:
        unknown = self.tokenizer.unknown_chars(line)
        if unknown:
            raise ValueError(f"continue mode needs every character of the line in the vocabulary; unknown: "
                             f"{char_list(unknown)}")
        if all(ch in VERSE_BREAKS for ch in line):
            raise ValueError(f"continue mode needs a line of characters to go on from, got only marks: {line!r}")
        return self.tokenizer.encode_text(line)

    def _max_new(self, opts: GenerationOptions, prefix: np.ndarray) -> int:
        """How many ids a request may generate after its prefix (R, P), or ValueError when the options cannot
        fit."""
        room = self.manifest.max_len - prefix.shape[1]  # positions the model was trained on
        if room < 1:
            raise ValueError(f"the forced line leaves no room: the model decodes at most {self.manifest.max_len} "
                             f"characters")
        max_new = min(opts.max_new_tokens, room)
        if opts.min_new_tokens > max_new:
            raise ValueError(f"min_new_tokens={opts.min_new_tokens} does not fit: the model decodes at most "
                             f"{max_new} new tokens here (model limit {self.manifest.max_len})")
        if opts.form or opts.acrostic:
            from genrt.poems.verse.forms import poem_token_budget
            needed = poem_token_budget(opts.form, opts.acrostic) - (prefix.shape[1] - 1)
            if needed > max_new:
                raise ValueError(f"the requested form needs {needed} more tokens but only {max_new} are allowed "
                                 f"(max_new_tokens={opts.max_new_tokens}, model limit {self.manifest.max_len})")
        return max_new

    def _processors(self, opts: GenerationOptions, forced: list[list[int]], prompt: str = ""
                    ) -> list[LogitsProcessor]:
        tok = self.tokenizer
        processors: list[LogitsProcessor] = [self._suppress]
        breaks = tuple(tok.ids_of(LINE_PUNCTUATION))
        if opts.min_new_tokens:
            processors.append(self._stateless_one(MinNewTokens, opts.min_new_tokens, tok.eos_id,
                                                  1 + len(forced[0]) if forced else 1))
        if opts.repetition_penalty != 1.0:
            processors.append(self._stateless_one(RepetitionPenalty, opts.repetition_penalty, breaks + (tok.eos_id,)))
        if opts.no_repeat_ngram_size:
            processors.append(self._stateless_one(NoRepeatNGram, opts.no_repeat_ngram_size))
        if opts.max_char_repeats or opts.no_repeat_verse:
            processors.append(self._stateless_one(VerseRepetitionBlock, breaks, opts.max_char_repeats,
                                                  opts.no_repeat_verse))
        if opts.idiomatic_doubling and self._doubling is not None:
            processors.append(self._doubling)
        if opts.max_verse_openings:
            processors.append(self._stateless_one(VerseOpenings, breaks, opts.max_verse_openings))
        if opts.max_title_echoes and opts.mode == "title":
            title = [i for i in tok.encode_text(tok.normalize(prompt).strip()) if i != tok.unk_id]
            processors.append(TitleEcho(title, opts.max_title_echoes))
        if opts.regular_shape and not (opts.form or opts.acrostic):
            if self._shape is None:
                from genrt.poems.verse.shape import RegularShape
                self._shape = RegularShape(tok)
            processors.append(self._shape)                 # last: it decides what remains allowed
        if opts.form or opts.acrostic:
            from genrt.poems.verse.forms import FormConstraint
            constraints = [FormConstraint(tok, opts.form, opts.acrostic, opts.rhyme_scheme == "modern")]
            if opts.tonal or opts.rhyme_scheme == "pingshui":
                from genrt.poems.verse.tonal import TonalConstraint
                constraints.append(TonalConstraint(tok, opts.form, opts.acrostic, opts.tonal))
            processors += constraints  # last: they decide what remains allowed
        for processor in processors:
            if hasattr(processor, "check_prefix"):
                for line in forced:  # a continued first line must already fit the form
                    processor.check_prefix(line)
        return processors

    def _stateless_one(self, kind: type, *args) -> LogitsProcessor:
        """One instance of a stateless processor per class and arguments, whatever request asks for it: requests
        whose lists differ in one processor (their titles) still share the others, and a step runs a shared one
        once over all their rows (SampleSearch.update_sampled)."""
        key = (kind, args)
        processor = self._stateless.get(key)
        if processor is None:
            if len(self._stateless) >= SHARED_PROCESSOR_LISTS:
                self._stateless.clear()
            processor = self._stateless[key] = kind(*args)
        return processor

    def _shared_processors(self, opts: GenerationOptions, line: list[int], prompt: str) -> list[LogitsProcessor]:
        """`_processors`, the same list for requests that need the same ones: every processor is stateless (it
        re-reads each row's ids), so requests of one configuration share them, and the scheduler can step such
        greedy requests as one (SampleSearch.group_key)."""
        title = prompt if opts.max_title_echoes and opts.mode == "title" else None      # TitleEcho is per title
        key = (opts, len(line), title)
        shared = self._shared.get(key)
        if shared is None:
            shared = self._processors(opts, [line], prompt)
            if any(hasattr(p, "reorder") for p in shared):                         # state: never shared
                return shared
            if len(self._shared) >= SHARED_PROCESSOR_LISTS:
                self._shared.clear()
            self._shared[key] = shared
        else:
            for processor in shared:
                if hasattr(processor, "check_prefix"):
                    processor.check_prefix(line)
        return shared

    @staticmethod
    def _root_seed(opts: GenerationOptions) -> int:
        return np.random.SeedSequence(opts.seed).entropy if opts.seed is None else opts.seed

    def _poem(self, prompt: str, forced: list[int], hyp: Hypothesis) -> Poem:
        return Poem(prompt, self.tokenizer.decode(forced + hyp.tokens), hyp.score, hyp.finished)
