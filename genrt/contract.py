"""The model-package contract: the one place export/ and genrt/ agree on.

A model directory holds `manifest.json` plus the ONNX graphs it names. The manifest carries a `format_version`,
the model kind, its dimensions, special token ids and vocab (poems), and the graph I/O names. Every tensor name,
dtype and (symbolic) shape below is the contract: export builds graphs to it, the runtime checks graphs against it
when loading, and a test checks every exported graph against it (genrt.graph_io compares a graph with its spec).

Loading never stops at the first problem: `ManifestError` lists every missing or mismatched piece at once.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from genrt import limits
from genrt.contract_checks import field_type_problems, file_fields, file_name_problem
from genrt.onnx_file import position_table_rows

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FACES_KIND = "faces-dcgan"
POEMS_KIND = "poems-transformer"

# Special tokens of the poem vocab, in id order: ids 0..len-1 are fixed by this list.
PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
PROMPT_TITLE, PROMPT_FIRST_LINE = "<title>", "<first>"
SPECIAL_TOKENS = (PAD, SOS, EOS, UNK, PROMPT_TITLE, PROMPT_FIRST_LINE)
PROMPT_KIND_TOKENS = {"title": PROMPT_TITLE, "continue": PROMPT_FIRST_LINE}
# Optional control tokens: a model trained with them has them at the end of its vocab, and its source may carry
# one right after the prompt-kind token, naming the requested form (keys: the forms' ASCII names).
FORM_TOKENS = {"wujue": "<wujue>", "qijue": "<qijue>", "wulv": "<wulv>", "qilv": "<qilv>"}
CONTROL_TOKENS = SPECIAL_TOKENS + tuple(FORM_TOKENS.values())
VERSE_BREAKS = "，。？！；"   # the marks that end a verse in the corpus, in generation and in every evaluator
COMMA, PERIOD = "，", "。"     # the two a poem model must have: forms, shapes and tones write verses with them
# Han characters (CJK ideographs, Extension A, compatibility ideographs): what the corpus keeps as poem text and
# what forms, rhymes and tones treat as a character
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def is_han(ch: str) -> bool:
    return len(ch) == 1 and HAN.match(ch) is not None
PAD_ID, SOS_ID, EOS_ID, UNK_ID = (SPECIAL_TOKENS.index(t) for t in (PAD, SOS, EOS, UNK))
# ids a decoder must never emit among the special tokens: all but <eos>
NEVER_GENERATED_SPECIAL_IDS = tuple(i for i, t in enumerate(SPECIAL_TOKENS) if t != EOS)


class ManifestError(ValueError):
    """A model directory or graph does not match the contract. `problems` lists every mismatch."""

    def __init__(self, where: str, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"{where}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                        # numpy dtype name: float32, int64, uint8, bool
    shape: tuple[str | int, ...]      # str = symbolic (dynamic) axis, int = fixed size


@dataclass(frozen=True)
class GraphSpec:
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


# ---------------------------------------------------------------- faces

REALNESS = "realness"

@dataclass(frozen=True)
class FacesManifest:
    nz: int
    image_size: int
    channels: int = 3
    graph_file: str = "generator.onnx"
    precision: str = "fp32"
    training: dict[str, Any] = field(default_factory=dict)
    data_licence: str = ""
    discriminator_file: str = ""     # the filter's realness graph (discriminator()); "" = none shipped
    discriminator_training: dict[str, Any] = field(default_factory=dict)   # how that graph was trained: {} = the
                                                                           # GAN's own discriminator, else a critic's
    kind: str = FACES_KIND
    format_version: int = FORMAT_VERSION

    def graph(self) -> GraphSpec:
        """z (batch, nz) float32 -> images (batch, H, W, 3) uint8, post-processing inside the graph."""
        return GraphSpec(
            self.graph_file,
            inputs=(TensorSpec("z", "float32", ("batch", self.nz)),),
            outputs=(TensorSpec("images", "uint8", ("batch", self.image_size, self.image_size, self.channels)),),
        )

    def discriminator(self) -> GraphSpec:
        """images (batch, H, W, 3) uint8, the generator's output -> realness (batch,) float32: a discriminator's
        logit (the GAN's own, or a critic trained after it: discriminator_training), higher = rated more like a real
        photo (genrt faces --filter keeps the highest)."""
        return GraphSpec(
            self.discriminator_file,
            inputs=(TensorSpec("images", "uint8", ("batch", self.image_size, self.image_size, self.channels)),),
            outputs=(TensorSpec(REALNESS, "float32", ("batch",)),),
        )

    def graphs(self) -> dict[str, GraphSpec]:
        return {"generator": self.graph(), **({"discriminator": self.discriminator()} if self.discriminator_file
                                              else {})}

    def graph_files(self) -> tuple[str, ...]:
        return (self.graph_file, *((self.discriminator_file,) if self.discriminator_file else ()))

    def extra_files(self) -> tuple[str, ...]:
        return ()


# ---------------------------------------------------------------- poems

ALL_LOGITS = "all_logits"
LOG_NORM = "log_norm"
SELF_MASK = "self_mask"
# Cache and source widths are padded to multiples of this many positions, the unused ones masked. onnxruntime's
# attention reduces a row's keys in SIMD lanes (16 fp32 lanes with AVX-512); with widths in whole multiples of 16 a
# masked key adds an exact 0 in a lane of its own, so a row's result does not depend on how wide the call is, and
# rows of different lengths can share a decoder call without changing any row's numbers (export.poem_invariance).
CACHE_ALIGN = 16


def past_key(layer: int) -> str:
    return f"past_key.{layer}"


def past_value(layer: int) -> str:
    return f"past_value.{layer}"


def present_key(layer: int) -> str:
    return f"present_key.{layer}"


def present_value(layer: int) -> str:
    return f"present_value.{layer}"


def new_key(layer: int) -> str:
    return f"new_key.{layer}"


def new_value(layer: int) -> str:
    return f"new_value.{layer}"


# What a decoder returns of its self-attention cache (PoemsManifest.cache_outputs):
# "present": each layer's cache grown by the new positions, (B, H, T+N, Dh): the graph copies every row's cache each
#            step (fused MultiHeadAttention), and a device cache (CUDA, IOBinding) grows by taking it back as is;
# "new":     only the new positions' keys and values, (B, H, N, Dh): the runtime writes them into its own cache slots
#            (host cache only), and no step copies the cache (export.poem_new_kv).
CACHE_OUTPUTS = ("present", "new")


def cross_key(layer: int) -> str:
    return f"cross_key.{layer}"


def cross_value(layer: int) -> str:
    return f"cross_value.{layer}"


@dataclass(frozen=True)
class PoemsManifest:
    vocab: tuple[str, ...]
    d_model: int
    num_heads: int
    num_encoder_layers: int
    num_decoder_layers: int
    dim_feedforward: int
    max_len: int
    encoder_file: str = "encoder.onnx"
    decoder_file: str = "decoder.onnx"
    precision: str = "fp32"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_licence: str = ""
    generation: dict[str, Any] = field(default_factory=dict)  # recommended settings, see GENERATION_SECTIONS
    t2s_file: str = ""               # JSON {traditional: simplified} for prompt characters outside the vocab
    doubling_file: str = ""          # JSON: which characters double idiomatically, and where (verse.doubling)
    scoring: bool = False            # the decoder also returns `all_logits` (every new position): score()
    log_norm: bool = False           # the decoder also returns `log_norm` (B,): log-sum-exp of `logits`
    batch_invariant: bool = False    # checked at export: a row's logits are bit-identical whatever other rows share
                                     # the call, with caches and sources padded to CACHE_ALIGN (genrt.poems.model)
    cache_outputs: str = "present"   # what the decoder returns of its self-attention cache: CACHE_OUTPUTS
    kind: str = POEMS_KIND
    format_version: int = FORMAT_VERSION

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def token_id(self, token: str) -> int:
        return SPECIAL_TOKENS.index(token)

    @property
    def pad_id(self) -> int:
        return self.token_id(PAD)

    @property
    def sos_id(self) -> int:
        return self.token_id(SOS)

    @property
    def eos_id(self) -> int:
        return self.token_id(EOS)

    @property
    def unk_id(self) -> int:
        return self.token_id(UNK)

    def kv_shape(self, length: str) -> tuple[str | int, ...]:
        return ("batch", self.num_heads, length, self.head_dim)  # (B, H, T, Dh)

    def encoder(self) -> GraphSpec:
        """src_ids (B, S) + src_mask (B, S; 1 = token, 0 = pad) -> cross-attention K/V per decoder layer."""
        outputs = []
        for i in range(self.num_decoder_layers):
            outputs += [TensorSpec(cross_key(i), "float32", self.kv_shape("src_len")),
                        TensorSpec(cross_value(i), "float32", self.kv_shape("src_len"))]
        return GraphSpec(
            self.encoder_file,
            inputs=(TensorSpec("src_ids", "int64", ("batch", "src_len")),
                    TensorSpec("src_mask", "float32", ("batch", "src_len"))),
            outputs=tuple(outputs),
        )

    def decoder(self) -> GraphSpec:
        """New tokens (B, N) at positions (B, N) + self-attn cache (B, H, T, Dh) + cross K/V
        -> next-token logits (B, V) of the last new token, and the cache grown to (B, H, T+N, Dh) (cache_outputs
        "present") or the new positions' keys and values (B, H, N, Dh) alone ("new").
        N = 1 is the incremental step; N > 1 with T = 0 re-runs a whole prefix (the no-cache path).
        `self_mask` (B, T+N), 1 = a key to attend: the cached slots a row has filled, and the new positions
        (causal among themselves). Rows of different lengths share one call: a row's unfilled slots are 0."""
        inputs = [TensorSpec("input_ids", "int64", ("batch", "new_len")),
                  TensorSpec("position_ids", "int64", ("batch", "new_len")),
                  TensorSpec("src_mask", "float32", ("batch", "src_len")),
                  TensorSpec(SELF_MASK, "float32", ("batch", "total_len"))]
        outputs = [TensorSpec("logits", "float32", ("batch", len(self.vocab)))]
        for i in range(self.num_decoder_layers):
            inputs += [TensorSpec(past_key(i), "float32", self.kv_shape("past_len")),
                       TensorSpec(past_value(i), "float32", self.kv_shape("past_len"))]
            if self.cache_outputs == "new":
                outputs += [TensorSpec(new_key(i), "float32", self.kv_shape("new_len")),
                            TensorSpec(new_value(i), "float32", self.kv_shape("new_len"))]
            else:
                outputs += [TensorSpec(present_key(i), "float32", self.kv_shape("total_len")),
                            TensorSpec(present_value(i), "float32", self.kv_shape("total_len"))]
        for i in range(self.num_decoder_layers):
            inputs += [TensorSpec(cross_key(i), "float32", self.kv_shape("src_len")),
                       TensorSpec(cross_value(i), "float32", self.kv_shape("src_len"))]
        if self.scoring:   # teacher-forced scoring: logits of every new position, (B, N, V)
            outputs.append(TensorSpec(ALL_LOGITS, "float32", ("batch", "new_len", len(self.vocab))))
        if self.log_norm:  # log of the softmax denominator of `logits`: a step's log-probs without a numpy pass
            outputs.append(TensorSpec(LOG_NORM, "float32", ("batch",)))
        return GraphSpec(self.decoder_file, inputs=tuple(inputs), outputs=tuple(outputs))

    def graphs(self) -> dict[str, GraphSpec]:
        return {"encoder": self.encoder(), "decoder": self.decoder()}

    def graph_files(self) -> tuple[str, ...]:
        return (self.encoder_file, self.decoder_file)

    def extra_files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.t2s_file, self.doubling_file) if f)


Manifest = FacesManifest | PoemsManifest
_KINDS: dict[str, type] = {FACES_KIND: FacesManifest, POEMS_KIND: PoemsManifest}
_REQUIRED: dict[str, tuple[str, ...]] = {
    FACES_KIND: ("nz", "image_size"),
    POEMS_KIND: ("vocab", "d_model", "num_heads", "num_encoder_layers", "num_decoder_layers",
                 "dim_feedforward", "max_len"),
}


# ---------------------------------------------------------------- reading and writing

def write_manifest(model_dir: str | Path, manifest: Manifest) -> Path:
    path = Path(model_dir) / MANIFEST_NAME
    data = asdict(manifest)
    if isinstance(manifest, PoemsManifest):
        data["special_tokens"] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    data["graphs"] = {k: _graph_dict(g) for k, g in manifest.graphs().items()}  # informative; the code is the spec
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)                                      # readers see the old manifest or the new one
    return path


def _graph_dict(g: GraphSpec) -> dict[str, Any]:
    return {"file": g.file, "inputs": [asdict(t) for t in g.inputs], "outputs": [asdict(t) for t in g.outputs]}


def read_manifest(model_dir: str | Path, expected_kind: str | None = None) -> Manifest:
    """Parse and validate `model_dir/manifest.json`; raise ManifestError naming every problem found."""
    model_dir = Path(model_dir)
    where = str(model_dir)
    if not model_dir.is_dir():
        raise ManifestError(where, ["not a directory" if model_dir.exists() else "no such directory"])
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(where, [f"missing {MANIFEST_NAME}"])
    data = read_json(path, where)
    if not isinstance(data, dict):
        raise ManifestError(where, [f"{MANIFEST_NAME} must hold a JSON object"])

    problems: list[str] = []
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        problems.append(f"format_version is {version!r}, this genrt reads {FORMAT_VERSION}")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        problems.append(f"kind is {kind!r}, expected one of {sorted(_KINDS)}")
        raise ManifestError(where, problems)
    if expected_kind and kind != expected_kind:  # the other kind's fields would only add noise
        raise ManifestError(where, problems + [f"kind is {kind!r}, expected {expected_kind!r}"])
    problems += [f"missing field {k!r}" for k in _REQUIRED[kind] if k not in data]
    problems += _entry_count_problems(data)
    if problems:
        raise ManifestError(where, problems)

    cls = _KINDS[kind]
    fields_ = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
    problems += field_type_problems(cls, fields_)
    problems += [f"field {name!r} {problem}" for name, file in file_fields(data)
                 if isinstance(file, str) and (problem := file_name_problem(model_dir, file))]
    if problems:
        raise ManifestError(where, problems)
    fields_["vocab"] = tuple(fields_["vocab"]) if "vocab" in fields_ else None
    if fields_["vocab"] is None:
        del fields_["vocab"]
    manifest = cls(**fields_)
    problems += _check_values(manifest)
    for file in manifest.graph_files():
        if not (model_dir / file).is_file():
            problems.append(f"missing graph file {file}")
    for file in manifest.extra_files():
        if not (model_dir / file).is_file():
            problems.append(f"missing file {file}")
    if not problems and isinstance(manifest, PoemsManifest):
        problems += _position_table_problems(model_dir, manifest)
    if problems:
        raise ManifestError(where, problems)
    return manifest


def read_json(path: Path, where: str) -> Any:
    """A model directory's JSON file, within limits.MAX_MANIFEST_BYTES and Python's nesting depth: a crafted
    file is a ManifestError naming it, never a long read or a RecursionError."""
    try:
        size = path.stat().st_size
        if size > limits.MAX_MANIFEST_BYTES:
            raise ManifestError(where, [f"{path.name} is {size:,} bytes; genrt reads at most "
                                        f"{limits.MAX_MANIFEST_BYTES:,}"])
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(where, [f"{path.name} is not valid JSON ({e})"]) from None
    except RecursionError:
        raise ManifestError(where, [f"{path.name} is nested too deeply to be a genrt file"]) from None


def _entry_count_problems(data: dict[str, Any]) -> list[str]:
    """Counts that would make checking the manifest itself slow: its informative graph list and its vocab."""
    problems = []
    graphs, vocab = data.get("graphs"), data.get("vocab")
    if isinstance(graphs, dict) and len(graphs) > limits.MAX_GRAPH_ENTRIES:
        problems.append(f"graphs has {len(graphs):,} entries; genrt's limit is {limits.MAX_GRAPH_ENTRIES}")
    if isinstance(vocab, list) and len(vocab) > limits.MODEL_SIZE_LIMITS["vocab"]:
        problems.append(f"vocab has {len(vocab):,} entries; genrt's limit is {limits.MODEL_SIZE_LIMITS['vocab']:,}")
    return problems


def contained_file(model_dir: str | Path, name: str, label: str = "graph file") -> Path:
    """model_dir/name, or ManifestError when `name` would reach outside model_dir (for code that opens a file a
    manifest names)."""
    problem = file_name_problem(Path(model_dir), name)
    if problem:
        raise ManifestError(str(model_dir), [f"{label} {problem}"])
    return Path(model_dir) / name


def _position_table_problems(model_dir: Path, m: PoemsManifest) -> list[str]:
    """The runtime decodes positions 0..max_len-1: the decoder's position table must have that many rows."""
    rows = position_table_rows(model_dir / m.decoder_file)
    if rows is not None and m.max_len > rows:
        return [f"max_len {m.max_len} exceeds the position table of {m.decoder_file} ({rows} positions)"]
    return []


# The manifest's `generation` section: recommended decoding settings (like transformers' generation_config.json).
# "default" applies to every call; on top of it "beam" when the caller asks for num_beams > 1, "sample" when the
# caller asks for do_sample, "no_options" when the caller names no decoding mode at all (what `genrt poem TITLE`
# does). Options the caller gives explicitly always win. Keys are GenerationOptions fields; the runtime validates
# the values there.
GENERATION_SECTIONS = ("default", "no_options", "beam", "sample")
GENERATION_KEYS = {
    "max_new_tokens": int, "length_penalty": float, "repetition_penalty": float, "no_repeat_ngram_size": int,
    "max_char_repeats": int, "no_repeat_verse": bool, "regular_shape": bool, "idiomatic_doubling": bool,
    "max_verse_openings": int, "max_title_echoes": int,
    "best_of": int, "do_sample": bool,
    "seed": int, "temperature": float, "top_k": int, "top_p": float,
}


def generation_problems(section: Any) -> list[str]:
    if not isinstance(section, dict):
        return [f"generation must be an object, got {section!r:.40}"]
    problems = [f"generation has unknown section {k!r} (known: {', '.join(GENERATION_SECTIONS)})"
                for k in section if k not in GENERATION_SECTIONS]
    for name, settings in section.items():
        if name not in GENERATION_SECTIONS:
            continue
        if not isinstance(settings, dict):
            problems.append(f"generation.{name} must be an object")
            continue
        for key, value in settings.items():
            kind = GENERATION_KEYS.get(key)
            if kind is None:
                problems.append(f"generation.{name} has unknown setting {key!r}")
            elif isinstance(value, bool) != (kind is bool) or not isinstance(value, (int, float) if kind is float
                                                                               else kind):
                problems.append(f"generation.{name}.{key} must be {kind.__name__}, got {value!r:.40}")
            else:
                problems += [f"generation.{name}: {p}" for p in setting_range_problems(key, value)]
    return problems


def setting_range_problems(key: str, value: Any) -> list[str]:
    """The range problems GenerationOptions.validate finds in this one setting (its own rules, so a recommended
    setting is checked at load exactly as a caller's would be when decoding)."""
    from dataclasses import replace
    from genrt.poems.options import GenerationOptions   # here: genrt.poems imports this module
    try:
        replace(GenerationOptions(), **{key: value}).validate()
    except ValueError as e:
        return [p for p in str(e).split("; ") if p.startswith(f"{key} must")]
    return []


def _size_problems(m: Manifest, names: tuple[str, ...]) -> list[str]:
    """Each size a positive integer within genrt's limits (a crafted size would build huge graph specs)."""
    problems = []
    for name in names:
        value, high = getattr(m, name), limits.MODEL_SIZE_LIMITS[name]
        if not isinstance(value, int) or value <= 0:
            problems.append(f"{name} must be a positive integer, got {value!r}")
        elif value > high:
            problems.append(f"{name} is {value:,}; genrt's limit is {high:,}")
    return problems


def _check_values(m: Manifest) -> list[str]:
    problems = []
    if isinstance(m, FacesManifest):
        problems += _size_problems(m, ("nz", "image_size", "channels"))
    else:
        problems += _size_problems(m, ("d_model", "num_heads", "num_encoder_layers", "num_decoder_layers",
                                       "dim_feedforward", "max_len"))
        if not problems and m.d_model % m.num_heads:
            problems.append(f"d_model {m.d_model} is not divisible by num_heads {m.num_heads}")
        if tuple(m.vocab[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            problems.append(f"vocab must start with the special tokens {list(SPECIAL_TOKENS)}")
        if len(set(m.vocab)) != len(m.vocab):
            problems.append("vocab has duplicate entries")
        missing = [mark for mark in (COMMA, PERIOD) if mark not in m.vocab]
        if missing:
            problems.append(f"vocab lacks the verse marks {' '.join(missing)} (every poem is written in verses)")
        if m.cache_outputs not in CACHE_OUTPUTS:
            problems.append(f"cache_outputs is {m.cache_outputs!r}, expected one of {list(CACHE_OUTPUTS)}")
        problems += generation_problems(m.generation)
        forms = [t for t in FORM_TOKENS.values() if t in m.vocab]
        if forms and len(forms) != len(FORM_TOKENS):
            problems.append(f"vocab has only some form tokens ({', '.join(forms)}); a model has all of "
                            f"{list(FORM_TOKENS.values())} or none")
    return problems
