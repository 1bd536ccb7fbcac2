"""genrt.serve.tones: one 平仄 mark per character, punctuation kept, so marks line up with the text."""
from genrt.serve.tones import tone_marks


def test_marks_line_up_with_the_text():
    text = "床前明月光，疑是地上霜。看？"
    marks = tone_marks(text)
    assert len(marks) == len(text)
    assert marks[:6] == "平平平仄平，" and marks[11] == "。" and marks[12] == "中" and marks[13] == "？"


def test_unknown_characters_are_question_marks():
    assert tone_marks("A") == "?" and tone_marks("") == ""
