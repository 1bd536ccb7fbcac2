"""Generation options: one frozen dataclass, checked once by validate() before anything runs."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class GenerationOptions:
    """Names follow transformers' generate() where one exists."""
    mode: str = "title"                  # "title": prompt is a title/theme; "continue": prompt is the first line
    max_new_tokens: int = 128
    num_beams: int = 1
    length_penalty: float = 1.0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0                       # 0 = off
    top_p: float = 1.0                   # 1.0 = off
    repetition_penalty: float = 1.0      # 1.0 = off
    no_repeat_ngram_size: int = 0        # 0 = off
    num_return_sequences: int = 1
    seed: int | None = None
    form: str | None = None              # 七言绝句 / qijue ... (genrt.text.forms)
    acrostic: str | None = None          # line i starts with acrostic[i]
    rhyme: bool = False                  # even lines end on one rhyme group
    form_token: bool = True              # with `form`, also tell the model (its form token) if it knows them

    @classmethod
    def from_kwargs(cls, base: "GenerationOptions | None" = None, **kwargs: Any) -> "GenerationOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown generation option(s): {', '.join(unknown)}")
        return replace(base or cls(), **kwargs).validate()

    def validate(self) -> "GenerationOptions":
        """Return self, or raise ValueError naming every problem in one line."""
        problems = []
        if self.mode not in ("title", "continue"):
            problems.append(f"mode must be 'title' or 'continue', got {self.mode!r}")
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens!r}")
        if not _is_int(self.num_beams) or self.num_beams < 1:
            problems.append(f"num_beams must be >= 1, got {self.num_beams!r}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            problems.append(f"top_k must be >= 0, got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not self.repetition_penalty > 0:
            problems.append(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        if not _is_int(self.no_repeat_ngram_size) or self.no_repeat_ngram_size < 0:
            problems.append(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size!r}")
        if not _is_int(self.num_return_sequences) or self.num_return_sequences < 1:
            problems.append(f"num_return_sequences must be >= 1, got {self.num_return_sequences!r}")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            problems.append(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("do_sample", "rhyme", "form_token"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be True or False, got {getattr(self, name)!r}")
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
        if self.do_sample and _is_int(self.num_beams) and self.num_beams > 1:
            problems.append("do_sample and num_beams > 1 cannot be combined: choose sampling or beam search")
        if (not self.do_sample and _is_int(self.num_beams) and _is_int(self.num_return_sequences)
                and self.num_return_sequences > self.num_beams):
            problems.append(f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams "
                            f"({self.num_beams}) without sampling")
        if self.length_penalty != 1.0 and _is_int(self.num_beams) and self.num_beams == 1:
            problems.append("length_penalty only applies to beam search (num_beams > 1)")
        return problems

    def _form_problems(self) -> list[str]:
        if self.form is None and self.acrostic is None and not self.rhyme:
            return []
        from genrt.text.forms import check_request  # imported lazily: forms are optional machinery
        try:
            check_request(self.form, self.acrostic, self.rhyme)
        except ValueError as e:
            return [str(e)]
        return []

    @property
    def is_beam(self) -> bool:
        return self.num_beams > 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
