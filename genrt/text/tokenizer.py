"""Character tokenizer over the manifest's vocab."""
from __future__ import annotations

from typing import Iterable, Sequence

from genrt.contract import EOS, PAD, PROMPT_KIND_TOKENS, SOS, SPECIAL_TOKENS, UNK


class CharTokenizer:
    def __init__(self, vocab: Sequence[str]):
        self.vocab = tuple(vocab)
        self.index = {tok: i for i, tok in enumerate(self.vocab)}
        self.pad_id, self.sos_id, self.eos_id, self.unk_id = (self.index[t] for t in (PAD, SOS, EOS, UNK))
        self.special_ids = tuple(self.index[t] for t in SPECIAL_TOKENS)

    def __len__(self) -> int:
        return len(self.vocab)

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocab, in order of first appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index or ch in SPECIAL_TOKENS))

    def encode_text(self, text: str) -> list[int]:
        return [self.index.get(ch, self.unk_id) for ch in text]

    def encode_prompt(self, text: str, mode: str, max_len: int) -> list[int]:
        """Source ids for a prompt: the mode token then the characters. Raises ValueError naming the problem."""
        text = (text or "").strip()
        if not text:
            raise ValueError("the prompt is empty")
        if mode not in PROMPT_KIND_TOKENS:
            raise ValueError(f"unknown prompt mode {mode!r}; choose one of {', '.join(PROMPT_KIND_TOKENS)}")
        if len(text) + 1 > max_len:
            raise ValueError(f"the prompt has {len(text)} characters; the model accepts at most {max_len - 1}")
        unknown = self.unknown_chars(text)
        if len(unknown) == len(set(text)):
            raise ValueError(f"no character of the prompt is in the model's vocabulary: {''.join(unknown)}")
        return [self.index[PROMPT_KIND_TOKENS[mode]]] + self.encode_text(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Characters of the ids, skipping special tokens and stopping at <eos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= len(self.special_ids):
                out.append(self.vocab[i])
        return "".join(out)

    def ids_of(self, chars: Iterable[str]) -> list[int]:
        return [self.index[ch] for ch in chars if ch in self.index]
