"""The rules of verse, as logits processors and checkers: forms and acrostics (forms.py, the requests they accept in
requests.py), the free regular shape (shape.py), rhyme groups (rhyme.py), 平仄 and 平水韵 (tonal.py, pingshui.py),
and idiomatic doubled characters (doubling.py). Imports run one way: requests <- forms <- shape, tonal, doubling."""
