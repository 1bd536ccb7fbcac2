"""GenerationOptions.validate: every bad value and contradiction gives one clear ValueError."""
import pytest

from genrt.text.options import GenerationOptions


@pytest.mark.parametrize("kwargs, message", [
    ({"num_beams": 0}, "num_beams must be >= 1"),
    ({"do_sample": True, "top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"do_sample": True, "top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"do_sample": True, "temperature": 0.0}, "temperature must be > 0"),
    ({"do_sample": True, "temperature": -1.0}, "temperature must be > 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
    ({"temperature": 0.7}, "only applies when sampling"),
    ({"temperature": 0.7, "top_k": 5}, "temperature, top_k only apply when sampling"),
    ({"do_sample": True, "num_beams": 4}, "cannot be combined"),
    ({"num_return_sequences": 3}, "cannot exceed num_beams"),
    ({"length_penalty": 2.0}, "only applies to beam search"),
    ({"mode": "poem"}, "mode must be"),
    ({"repetition_penalty": 0.0}, "repetition_penalty must be > 0"),
    ({"seed": -1}, "seed must be"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationOptions(**kwargs).validate()


def test_several_problems_are_reported_together():
    with pytest.raises(ValueError) as err:
        GenerationOptions(num_beams=0, max_new_tokens=0).validate()
    assert "num_beams" in str(err.value) and "max_new_tokens" in str(err.value)


def test_good_options_and_from_kwargs():
    opts = GenerationOptions.from_kwargs(num_beams=4, num_return_sequences=2, length_penalty=0.8)
    assert opts.is_beam and opts.num_return_sequences == 2
    assert GenerationOptions.from_kwargs(do_sample=True, temperature=0.8, top_k=20, top_p=0.9, seed=3).do_sample
    with pytest.raises(ValueError, match="unknown generation option"):
        GenerationOptions.from_kwargs(beams=3)


def test_options_are_frozen():
    with pytest.raises(Exception):
        GenerationOptions().num_beams = 3
