"""genrt.serve.schemas: the poem options are GenerationOptions' fields, strict types, OpenAI fields refused."""
from __future__ import annotations

from dataclasses import fields

import pytest

pytest.importorskip("pydantic")

from pydantic import ValidationError  # noqa: E402

from genrt.poems.options import GenerationOptions  # noqa: E402
from genrt.serve.errors import ApiError  # noqa: E402
from genrt.serve.schemas import (CompletionRequest, PoemRequest, ScoreRequest, given_options, prompt_list,  # noqa: E402
                                 score_pairs)


def test_every_generate_option_by_its_python_name():
    assert {f.name for f in fields(GenerationOptions)} | {"prompt", "stream"} == set(PoemRequest.model_fields)
    body = PoemRequest.model_validate({"prompt": "春江", "num_beams": 4, "rhyme": "pingshui", "seed": None})
    assert given_options(body) == {"num_beams": 4, "rhyme": "pingshui"}


@pytest.mark.parametrize("body", [{"prompt": "春江", "num_beams": "4"}, {"prompt": "春江", "do_sample": 1},
                                  {"prompt": "春江", "num_beams": 4.0}, {"prompt": "春江", "bogus": 1}])
def test_strict_types(body):
    with pytest.raises(ValidationError):
        PoemRequest.model_validate(body)


def test_prompt_and_pair_limits():
    assert prompt_list("春江") == ["春江"]
    with pytest.raises(ApiError, match="limit is 2"):
        prompt_list(["a", "b", "c"], limit=2)
    assert score_pairs(ScoreRequest(prompts="a", poems="b")) == (["a"], ["b"])
    with pytest.raises(ApiError, match="as many prompts as poems"):
        score_pairs(ScoreRequest(prompts=["a"], poems=[]))


def test_openai_fields_genrt_does_not_implement():
    plain = CompletionRequest(model="genrt-poems", prompt="a", echo=False, stop=[], best_of=1, logit_bias={})
    assert plain.unsupported() == []
    asked = CompletionRequest(model="genrt-poems", prompt="a", echo=True, stop="。", presence_penalty=0.5)
    assert asked.unsupported() == ["echo", "stop", "presence_penalty"]
