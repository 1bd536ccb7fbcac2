"""Request bodies (pydantic: types and shape, strict, unknown fields refused) and response bodies.

Value checks stay where the CLI has them (GenerationOptions.validate, PoemGenerator, FaceGenerator): a body that
fits the schema but asks for something genrt refuses gets genrt's own one-line message (400). The poem options
are GenerationOptions' fields by their Python names, read from the dataclass, so the two never drift apart.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal, Optional, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from genrt.faces.generator import candidate_count
from genrt.limits import MAX_SEED
from genrt.poems.options import MAX_NEW_TOKENS, MAX_NUM_RETURN_SEQUENCES, GenerationOptions
from genrt.poems.revise import NOT_FOR_REVISE
from genrt.serve.config import MAX_FACES, MAX_FACES_DRAWN, MAX_PROMPTS, MAX_SCORE_PAIRS
from genrt.serve.errors import ApiError

STRICT = ConfigDict(strict=True, extra="forbid")
OPTION_NAMES = tuple(f.name for f in fields(GenerationOptions))


class PoemRequestBase(BaseModel):
    model_config = STRICT
    prompt: str | list[str] = Field(description="a title (or with mode 'continue' a first line), or a list of them",
                                    examples=["春江花月夜"])
    stream: bool = Field(False, description="send the first poem's pieces as Server-Sent Events as they are decoded")


_hints = get_type_hints(GenerationOptions)
# Every generate option by its Python name, optional: left out, the model's recommended settings apply.
PoemRequest = create_model("PoemRequest", __base__=PoemRequestBase,
                           **{name: (Optional[_hints[name]], None) for name in OPTION_NAMES})


def given_options(body: BaseModel) -> dict[str, Any]:
    """The generate options a request names (None = left out)."""
    return {name: getattr(body, name) for name in OPTION_NAMES if getattr(body, name, None) is not None}


class ReviseRequestBase(BaseModel):
    model_config = STRICT
    prompt: str = Field(description="the poem's title (or with mode 'continue' its first line)", examples=["静夜思"])
    poem: str = Field(examples=["床前明月光，疑是地上霜。举头望明月，低头思故乡。"])
    line: int = Field(ge=1, le=64, description="the verse to write again (1 = the first)")
    num_alternatives: int = Field(3, ge=1, le=64, description="versions, best first by the whole poem's score")


# The verse's own generate options too, by their Python names (form, tonal, rhyme, acrostic, num_beams, ...), less
# those revise sets itself (a 422 names them as unknown fields)
ReviseRequest = create_model("ReviseRequest", __base__=ReviseRequestBase,
                             **{name: (Optional[_hints[name]], None) for name in OPTION_NAMES
                                if name not in NOT_FOR_REVISE})


class ScoreRequest(BaseModel):
    model_config = STRICT
    prompts: str | list[str] = Field(description="one prompt per poem", examples=[["静夜思"]])
    poems: str | list[str] = Field(examples=[["床前明月光，疑是地上霜。举头望明月，低头思故乡。"]])
    mode: Literal["title", "continue"] = "title"


class FacesRequest(BaseModel):
    model_config = STRICT
    n: int = Field(16, ge=1, le=MAX_FACES)
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="left out: drawn, and returned (X-Genrt-Seed)")
    truncation: float = Field(1.0, gt=0, le=1, description="psi: lower = more typical, less varied faces")
    filter: float = Field(1.0, gt=0, le=1, description="keep: draw n / filter faces, return the n the model's "
                          "discriminator (the bundled models': a critic trained after the GAN) rates most real: "
                          "fewer malformed faces, slightly less varied (1 = no filter; needs a model that ships its "
                          "discriminator)")
    format: Literal["png", "zip", "json"] = Field("png", description="one PNG grid, a zip of PNGs, or base64 PNGs")
    nrow: int | None = Field(None, ge=1, le=MAX_FACES, description="images per grid row (png)")

    @model_validator(mode="after")
    def _bounded_draw(self) -> "FacesRequest":
        try:
            drawn = candidate_count(self.n, self.filter)
        except ValueError as e:                                  # beyond genrt's own limit (a tiny filter)
            raise PydanticCustomError("faces_drawn", str(e)) from None
        if drawn > MAX_FACES_DRAWN:
            raise PydanticCustomError("faces_drawn", f"filter {self.filter:g} draws {drawn} faces for n {self.n}; at "
                                      f"most {MAX_FACES_DRAWN} a request")
        return self


class CompletionRequest(BaseModel):
    """OpenAI's completions request. Fields genrt has no use for are accepted only at their defaults."""
    model_config = ConfigDict(strict=True, extra="forbid")
    model: str
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS,
                                   description="left out: the model's recommended length")
    temperature: float | None = Field(None, ge=0, description="0: greedy; left out: the recommended settings")
    top_p: float | None = None
    n: int = Field(1, ge=1, le=MAX_NUM_RETURN_SEQUENCES)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stream: bool = False
    stream_options: dict[str, bool] | None = None
    user: str | None = None
    mode: Literal["title", "continue"] | None = Field(None, description="genrt: the prompt is a title (default) "
                                                                         "or a first line to continue")
    # OpenAI fields genrt does not implement: refused unless left at their defaults
    echo: bool | None = None
    logprobs: int | None = None
    stop: str | list[str] | None = None
    suffix: str | None = None
    best_of: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    def unsupported(self) -> list[str]:
        """The OpenAI fields set to something other than their defaults."""
        return [name for name, neutral in UNSUPPORTED.items() if getattr(self, name) not in (None, *neutral)]


UNSUPPORTED = {"echo": (False,), "logprobs": (), "stop": ([],), "suffix": ("",), "best_of": (1,),
               "presence_penalty": (0,), "frequency_penalty": (0,), "logit_bias": ({},)}


def prompt_list(prompt: str | list[str], limit: int = MAX_PROMPTS) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ApiError(400, "no prompt given")
    if len(prompts) > limit:
        raise ApiError(400, f"{len(prompts)} prompts in one request; the limit is {limit}")
    return prompts


def score_pairs(body: ScoreRequest) -> tuple[list[str], list[str]]:
    prompts = [body.prompts] if isinstance(body.prompts, str) else list(body.prompts)
    poems = [body.poems] if isinstance(body.poems, str) else list(body.poems)
    if len(prompts) != len(poems) or not prompts:
        raise ApiError(400, f"score needs as many prompts as poems (got {len(prompts)} and {len(poems)})")
    if len(prompts) > MAX_SCORE_PAIRS:
        raise ApiError(400, f"{len(prompts)} pairs in one request; the limit is {MAX_SCORE_PAIRS}")
    return prompts, poems


class PoemOut(BaseModel):
    prompt: str
    text: str
    score: float
    finished: bool
    tones: str = Field(description="平/仄 under each character (中: either, ?: not in 平水韵), punctuation kept")


class PoemsResponse(BaseModel):
    poems: list[list[PoemOut]] = Field(description="per prompt, its poems: beams and best_of candidates best first, "
                                                   "plain samples in the order drawn")
    seed: int | None = Field(description="the sampling seed used (drawn when not given); None without sampling")


class ScoreOut(BaseModel):
    prompt: str
    poem: str
    logprob: float
    tokens: int
    nll_per_char: float


class ReviseResponse(BaseModel):
    poems: list[PoemOut] = Field(description="the whole poem with the verse written again, best first")


class ScoreResponse(BaseModel):
    scores: list[ScoreOut]
