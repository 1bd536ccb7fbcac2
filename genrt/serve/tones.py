"""平仄 marks for the page and the API: one mark per character of a poem, from genrt's 平水韵 table."""
from __future__ import annotations

from genrt.poems.verse.pingshui import PingshuiTable


def tone_marks(text: str) -> str:
    """'床前明月光，' -> '平平平仄平，': 平 or 仄, 中 for a character read both ways, ? for one the table lacks; every
    other character (punctuation) kept as it is, so marks and text line up character for character."""
    table = PingshuiTable.load()
    marks = table.marks(text)
    return "".join(m if ch.isalpha() or ch in "，。" else ch for ch, m in zip(text, marks))
