"""Character tokenizer over the manifest's vocab."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from genrt.contract import (
    CONTROL_TOKENS, EOS, FORM_TOKENS, PAD, PROMPT_KIND_TOKENS, SOS, UNK, ManifestError, PoemsManifest, contained_file,
    read_json,
)


def load_t2s(model_dir: str | Path, manifest: PoemsManifest) -> dict[str, str]:
    """The model directory's traditional -> simplified character table ({} when it has none)."""
    if not manifest.t2s_file:
        return {}
    path = contained_file(model_dir, manifest.t2s_file, "t2s_file")
    table = read_json(path, str(model_dir))
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(k) == 1
                                              and len(v) == 1 for k, v in table.items()):
        raise ManifestError(str(model_dir), [f"{manifest.t2s_file} must map single characters to single characters"])
    return table


def char_list(chars: Iterable[str]) -> str:
    """Characters for a message, each once, in order, comma-separated ("h, e, l, o", not "helo"); a space or an
    unprintable character is shown by its escape."""
    unique = dict.fromkeys(chars)
    return ", ".join(ch if ch.isprintable() and not ch.isspace() else repr(ch) for ch in unique)


class CharTokenizer:
    def __init__(self, vocab: Sequence[str], t2s: Mapping[str, str] | None = None):
        self.vocab = tuple(vocab)
        self.index = {tok: i for i, tok in enumerate(self.vocab)}
        # traditional -> simplified, only where the simplified form is in the vocab and the original is not
        self.t2s = {t: s for t, s in (t2s or {}).items() if s in self.index and t not in self.index}
        self.pad_id, self.sos_id, self.eos_id, self.unk_id = (self.index[t] for t in (PAD, SOS, EOS, UNK))
        self.control_ids = frozenset(self.index[t] for t in CONTROL_TOKENS if t in self.index)
        self.form_ids = {form: self.index[t] for form, t in FORM_TOKENS.items() if t in self.index}

    def __len__(self) -> int:
        return len(self.vocab)

    def normalize(self, text: str) -> str:
        """Characters outside the vocab replaced by their simplified form where the table has one in it."""
        return "".join(self.t2s.get(ch, ch) for ch in text) if self.t2s else text

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocab, in order of first appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode_text(self, text: str) -> list[int]:
        return [self.index.get(ch, self.unk_id) for ch in text]

    @property
    def never_generated_ids(self) -> list[int]:
        """Ids a decoder must never emit: every control token except <eos>."""
        return sorted(self.control_ids - {self.eos_id})

    def encode_prompt(self, text: str, mode: str, max_len: int, form: str | None = None) -> list[int]:
        """Source ids for a prompt: the mode token, the form token (when `form`, an ASCII form name, is given and
        the vocab has form tokens), then the characters. Raises ValueError naming the problem."""
        text = (text or "").strip()
        if not text:
            raise ValueError("the prompt is empty")
        if mode not in PROMPT_KIND_TOKENS:
            raise ValueError(f"unknown prompt mode {mode!r}; choose one of {', '.join(PROMPT_KIND_TOKENS)}")
        tag = [self.form_ids[form]] if form in self.form_ids else []
        room = max_len - 1 - len(tag)
        if len(text) > room:
            raise ValueError(f"the prompt has {len(text)} characters; the model accepts at most {room}")
        unknown = self.unknown_chars(text)
        if len(unknown) == len(set(text)):
            raise ValueError(f"no character of the prompt is in the model's vocabulary: {char_list(unknown)}")
        return self.prompt_ids(PROMPT_KIND_TOKENS[mode], text, form if tag else None)

    def prompt_ids(self, kind_token: str, text: str, form: str | None = None) -> list[int]:
        """The source layout the model is trained on, and nothing else (no checks): the prompt-kind token
        (<title> / <first>), the form token when `form` (an ASCII form name) is given, then the characters.
        trainers.poems_corpus builds its pairs with it too."""
        tag = [self.form_ids[form]] if form else []
        return [self.index[kind_token]] + tag + self.encode_text(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Characters of the ids, skipping control tokens and stopping at <eos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in self.control_ids:
                out.append(self.vocab[i])
        return "".join(out)

    def ids_of(self, chars: Iterable[str]) -> list[int]:
        return [self.index[ch] for ch in chars if ch in self.index]
