"""GenerationOptions.validate: every bad value and contradiction gives one clear ValueError."""
import math
from dataclasses import fields

import numpy as np
import pytest

from genrt.limits import MAX_SEED
from genrt.poems.options import (
    LENGTH_PENALTY_RANGE, MAX_NEW_TOKENS, MAX_NUM_BEAMS, MAX_NUM_RETURN_SEQUENCES, REPETITION_PENALTY_RANGE,
    TEMPERATURE_RANGE, GenerationOptions,
)

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # the dev extra brings it; without it only the property tests are skipped
    st = None

FIELD_NAMES = [f.name for f in fields(GenerationOptions)]


@pytest.mark.parametrize("kwargs, message", [
    ({"num_beams": 0}, "num_beams must be >= 1"),
    ({"do_sample": True, "top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"do_sample": True, "top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"do_sample": True, "temperature": 0.0}, "temperature must be > 0"),
    ({"do_sample": True, "temperature": -1.0}, "temperature must be > 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
    ({"temperature": 0.7}, "only applies when sampling"),
    ({"temperature": 0.7, "top_k": 5}, "temperature, top_k only apply when sampling"),
    ({"do_sample": True, "num_beams": 4, "best_of": 2}, "best_of ranks independently sampled poems"),
    ({"do_sample": True, "num_beams": 2, "num_return_sequences": 3}, "cannot exceed num_beams \\(2\\) in beam search"),
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


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize("kwargs, message", [
    ({"do_sample": True, "temperature": INF}, "temperature must be a finite number, got inf"),
    ({"do_sample": True, "temperature": NAN}, "temperature must be a finite number, got nan"),
    ({"do_sample": True, "top_p": NAN}, "top_p must be a finite number, got nan"),
    ({"repetition_penalty": -INF}, "repetition_penalty must be a finite number, got -inf"),
    ({"num_beams": 2, "length_penalty": NAN}, "length_penalty must be a finite number, got nan"),
    ({"do_sample": True, "temperature": "abc"}, "temperature must be a number, got 'abc'"),
    ({"max_new_tokens": "abc"}, "max_new_tokens must be a number, got 'abc'"),
    ({"top_k": None}, "top_k must be a number, got None"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer, got 2.5"),
    ({"num_beams": True}, "num_beams must be an integer, got True"),
    ({"no_repeat_ngram_size": False}, "no_repeat_ngram_size must be an integer, got False"),
    ({"do_sample": True, "temperature": True}, "temperature must be a number, got True"),
    ({"num_beams": MAX_NUM_BEAMS + 1}, f"num_beams must be <= {MAX_NUM_BEAMS}, got {MAX_NUM_BEAMS + 1}"),
    ({"do_sample": True, "num_return_sequences": 10**6},
     f"num_return_sequences must be <= {MAX_NUM_RETURN_SEQUENCES}"),
    ({"max_new_tokens": 10**9}, f"max_new_tokens must be <= {MAX_NEW_TOKENS}, got 1000000000"),
    ({"max_new_tokens": 10**5000}, "max_new_tokens must be <= .*, got an integer of 16610 bits"),
    ({"do_sample": True, "temperature": 1e-30}, "temperature must be between 0.001 and 1000, got 1e-30"),
    ({"repetition_penalty": 1e-300}, "repetition_penalty must be between 0.001 and 1000"),
    ({"num_beams": 2, "length_penalty": 1e300}, "length_penalty must be between -10 and 10"),
    ({"seed": 1.5}, "seed must be an integer from 0 to 9223372036854775807, got 1.5"),
    ({"seed": 2**70}, "seed must be an integer from 0 to 9223372036854775807, got 1180591620717411303424"),
])
def test_non_finite_mistyped_and_absurd_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        GenerationOptions(**kwargs).validate()
    assert "\n" not in str(err.value)


def test_numpy_numbers_are_numbers():
    opts = GenerationOptions.from_kwargs(max_new_tokens=np.int64(8), num_beams=np.int32(4), length_penalty=np.float32(
        0.5), num_return_sequences=np.uint8(2), seed=np.int64(3), rhyme=np.bool_(False))
    assert opts.max_new_tokens == 8 and type(opts.max_new_tokens) is int and type(opts.length_penalty) is float
    assert opts.rhyme is False and opts.seed == 3
    sampled = GenerationOptions.from_kwargs(do_sample=np.bool_(True), temperature=np.float64(0.7), top_p=np.float16(
        0.5), top_k=np.int16(5))
    assert sampled.do_sample is True and sampled.top_p == 0.5 and sampled.top_k == 5


def test_the_caps_themselves_are_allowed():
    assert GenerationOptions.from_kwargs(num_beams=MAX_NUM_BEAMS, num_return_sequences=MAX_NUM_BEAMS,
                                         max_new_tokens=MAX_NEW_TOKENS, length_penalty=LENGTH_PENALTY_RANGE[0])
    assert GenerationOptions.from_kwargs(do_sample=True, temperature=TEMPERATURE_RANGE[0],
                                         repetition_penalty=REPETITION_PENALTY_RANGE[1],
                                         num_return_sequences=MAX_NUM_RETURN_SEQUENCES)


# ---------------------------------------------------------------- properties (hypothesis)

if st is not None:
    ANY_VALUE = st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-3, 70), st.floats(), st.floats(0, 2),
        st.text(max_size=5), st.sampled_from(["title", "continue", "qijue", "七言绝句", "春江", "wujue", "0.5", ""]),
        st.builds(np.int64, st.integers(-2**63, 2**63 - 1)), st.builds(np.float32, st.floats(width=32)),
        st.builds(np.bool_, st.booleans()), st.lists(st.integers(), max_size=2), st.just(object()),
    )
    SLOW_MACHINE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

    @SLOW_MACHINE
    @given(st.dictionaries(st.sampled_from(FIELD_NAMES + ["beams"]), ANY_VALUE, max_size=8))
    def test_any_option_dict_validates_or_names_a_field(kwargs):
        try:
            opts = GenerationOptions.from_kwargs(**kwargs)
        except (ValueError, TypeError) as e:
            message = str(e)
            assert "\n" not in message and any(name in message for name in FIELD_NAMES + ["beams"]), message
            return
        assert_sane(opts)

    def assert_sane(opts):
        for name in ("max_new_tokens", "num_beams", "top_k", "no_repeat_ngram_size", "num_return_sequences"):
            value = getattr(opts, name)
            assert type(value) is int and value >= 0, name
        for name in ("temperature", "top_p", "repetition_penalty", "length_penalty"):
            value = getattr(opts, name)
            assert type(value) in (int, float) and math.isfinite(value), name
        assert opts.num_beams <= MAX_NUM_BEAMS and opts.num_return_sequences <= MAX_NUM_RETURN_SEQUENCES
        assert opts.max_new_tokens <= MAX_NEW_TOKENS

    @SLOW_MACHINE
    @given(st.fixed_dictionaries({
        "max_new_tokens": st.integers(1, MAX_NEW_TOKENS),
        "num_return_sequences": st.integers(1, MAX_NUM_RETURN_SEQUENCES),
        "temperature": st.floats(*TEMPERATURE_RANGE), "top_p": st.floats(0, 1, exclude_min=True),
        "top_k": st.integers(0, 10**6), "repetition_penalty": st.floats(*REPETITION_PENALTY_RANGE),
        "no_repeat_ngram_size": st.integers(0, 10), "seed": st.none() | st.integers(0, MAX_SEED),
    }))
    def test_every_sampling_setting_inside_the_documented_ranges_validates(kwargs):
        assert_sane(GenerationOptions.from_kwargs(do_sample=True, **kwargs))
else:
    def test_property_tests_need_hypothesis():
        pytest.skip("hypothesis is not installed (pip install -e '.[dev]')")


def test_min_new_tokens_bounds_and_conflicts():
    assert GenerationOptions(min_new_tokens=10).validate().min_new_tokens == 10
    with pytest.raises(ValueError, match="cannot exceed max_new_tokens"):
        GenerationOptions(min_new_tokens=20, max_new_tokens=10).validate()
    with pytest.raises(ValueError, match="--free-shape"):
        GenerationOptions(min_new_tokens=5, regular_shape=True).validate()
    with pytest.raises(ValueError, match="a form"):
        GenerationOptions(min_new_tokens=5, form="wujue").validate()
    with pytest.raises(ValueError, match="min_new_tokens must be"):
        GenerationOptions(min_new_tokens=-1).validate()
