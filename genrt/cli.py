"""`genrt` command line: parse options, call the Python API, print. One command per model kind.

    genrt faces --n 16 -o out/            # out/face_0000.png ... + out/grid.png
    genrt poem 春江花月夜 --num-beams 4     # a poem for a title, through encoder + KV-cache decoder
"""
from __future__ import annotations

import json
import math
import secrets
import sys
from dataclasses import asdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
from tqdm import tqdm

from genrt import __version__
from genrt.contract import ManifestError
import numpy as np

from genrt.faces import FaceGenerator, own_files, save_grid, save_images
from genrt.providers import available_providers, is_provider_name, known_names, parse_provider_option
from genrt.runtime import PRECISIONS, ProviderError
from genrt.poems.generator import PoemGenerator
from genrt.poems.options import MAX_NEW_TOKENS, MAX_NUM_BEAMS, MAX_NUM_RETURN_SEQUENCES

GRID_MAX_IMAGES = 64          # grid.png shows the first 64 images, so a huge --n never builds a huge grid
DEFAULT_FACES = 16
MAX_IMAGES = 100_000          # --n / --interpolate cap: images stream to disk, this bounds the disk and the time


# ---------------------------------------------------------------- shared by every command

class UserError(click.ClickException):
    """A problem with the user's input or files: printed as one 'Error: ...' line, exit code 2."""
    exit_code = 2


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn genrt's expected exceptions into a one-line error with exit code 2 (no traceback)."""
    try:
        yield
    except click.ClickException:
        raise
    except (ManifestError, ProviderError, ValueError, OSError) as e:
        raise UserError(" ".join(str(e).split()) or type(e).__name__) from None


class FiniteFloat(click.FloatRange):
    """A float option that also refuses nan and inf (click's FloatRange lets nan through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class ProviderName(click.ParamType):
    """auto, a short name from genrt.providers' table, or any execution provider name onnxruntime knows; whether
    it is installed is checked when the model loads (genrt.runtime.resolve_provider, with the install command)."""
    name = "provider"

    def convert(self, value, param, ctx):
        if not is_provider_name(value):
            self.fail(f"{value!r} is not an execution provider; choose {', '.join(known_names())} or an onnxruntime "
                      f"name (installed: {', '.join(available_providers())})", param, ctx)
        return value


def parse_provider_options(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    try:
        return dict(parse_provider_option(v) for v in values)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def provider_option(f):
    f = click.option("--provider-option", "provider_options", multiple=True, metavar="KEY=VALUE",
                     callback=parse_provider_options,
                     help="an option for the provider, passed to onnxruntime as is (repeatable), e.g. device_id=1")(f)
    return click.option("--provider", type=ProviderName(), default="auto", show_default=True,
                        help=f"onnxruntime execution provider: {', '.join(known_names())} or any onnxruntime name "
                             f"(e.g. DmlExecutionProvider); auto = CUDA if available, else CPU")(f)


def load_poems(model_dir: Path | None, provider: str, threads: int | None, precision: str | None,
               provider_options: dict[str, str]) -> PoemGenerator:
    """PoemGenerator.load, with provider options when there are any (opened here until PoemGenerator.load takes
    them)."""
    if not provider_options:
        return PoemGenerator.load(model_dir, provider=provider, threads=threads, precision=precision)
    from genrt.contract import POEMS_KIND
    from genrt.poems.model import DEFAULT_DECODE_THREADS, PoemModel
    from genrt.runtime import open_model_dir
    opened = open_model_dir(model_dir, POEMS_KIND, provider, threads, precision, DEFAULT_DECODE_THREADS,
                            provider_options)
    return PoemGenerator(PoemModel(opened.manifest, opened.sessions["encoder"], opened.sessions["decoder"],
                                   opened.provider, opened.model_dir))


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for onnxruntime [default: physical cores]")(f)


def precision_option(f):
    return click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                        help="bundled model variant [default: the fastest variant that passed its quality gate]")(f)


def model_option(f):
    return click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
                        help="model directory [default: the bundled model]")(f)


def prepare_out_dir(out: Path) -> Path:
    """Create the output directory (and parents); an existing file there is an error, not overwritten."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output directory {out}: {e.strerror or e}") from None
    return out


def pick_seed(seed: int | None) -> int:
    """The user's seed, or a fresh one that is printed (stderr) so the run can be repeated."""
    if seed is None:
        seed = secrets.randbelow(2**31)
        click.echo(f"seed: {seed}", err=True)
    return seed


def progress_bar(total: int, unit: str, show: bool) -> tqdm:
    """A progress bar on stderr, shown only on a terminal and only when there is more than one batch."""
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=None if show else True, leave=False)


class OneLineErrors(click.Group):
    """Bad option values and usage errors print one 'Error: ...' line (exit 2), not click's usage block."""

    def main(self, *args, **kwargs):
        if kwargs.get("standalone_mode") is False:     # an embedding caller handles click's exceptions itself
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as e:
            hint = f" (see 'genrt {e.ctx.info_name} --help')" if e.ctx is not None and e.ctx.parent else ""
            click.echo(f"Error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genrt")
def main() -> None:
    """On-device generation with onnxruntime: DCGAN faces and Transformer poems."""


# ---------------------------------------------------------------- faces

@main.command()
@click.option("--n", "n", type=click.IntRange(min=1, max=MAX_IMAGES), default=None,
              help=f"number of faces [default: {DEFAULT_FACES}]")
@click.option("-o", "--out", type=click.Path(file_okay=False, writable=True, path_type=Path), required=True,
              help="output directory (created if missing)")
@click.option("--seed", type=int, default=None, help="random seed; same seed, same images [default: random]")
@click.option("--batch-size", type=click.IntRange(min=1, max=1024), default=64, show_default=True,
              help="faces per onnxruntime call")
@click.option("--truncation", type=FiniteFloat(0.0, 1.0, min_open=True), default=1.0, show_default=True,
              help="psi: scale latents toward the mean latent; lower = more typical, less varied faces")
@click.option("--interpolate", "frames", type=click.IntRange(min=2, max=MAX_IMAGES), default=None,
              help="instead of random faces, write this many frames morphing between two faces")
@click.option("--nrow", type=click.IntRange(min=1, max=GRID_MAX_IMAGES), default=None,
              help="images per grid row [default: about the square root of the images shown]")
@click.option("--grid/--no-grid", default=True, show_default=True,
              help=f"also write grid.png (at most {GRID_MAX_IMAGES} images; frames evenly spaced)")
@click.option("--overwrite", is_flag=True,
              help="replace an earlier run's face_*.png / frame_*.png / grid.png in OUT (other files are kept)")
@provider_option
@threads_option
@precision_option
@model_option
def faces(n: int | None, out: Path, seed: int | None, batch_size: int, truncation: float, frames: int | None,
          nrow: int | None, grid: bool, overwrite: bool, provider: str, provider_options: dict[str, str],
          threads: int | None, precision: str | None, model_dir: Path | None) -> None:
    """Generate faces: OUT/face_0000.png ... and OUT/grid.png."""
    if frames is not None and n is not None:
        raise click.UsageError("use either --n or --interpolate, not both")
    with user_errors():
        generator = FaceGenerator.load(model_dir, provider=provider, threads=threads, precision=precision,
                                       provider_options=provider_options)
        clear_earlier_run(prepare_out_dir(out), overwrite)
        seed = pick_seed(seed)
        if frames is not None:
            batches = generator.iter_interpolation(frames, seed=seed, batch_size=batch_size, truncation=truncation)
            total, prefix, what = frames, "frame", "frames"
        else:
            total = n or DEFAULT_FACES
            batches = generator.iter_batches(total, seed=seed, batch_size=batch_size, truncation=truncation)
            prefix, what = "face", "faces"
        shown = write_images(batches, out, prefix, total, grid_indices(total, evenly=frames is not None),
                             show_bar=total > batch_size)
        if grid:
            save_grid(shown, out / "grid.png", nrow=nrow)
        click.echo(f"wrote {total} {what}{' and grid.png' if grid else ''} to {out}")


def clear_earlier_run(out: Path, overwrite: bool) -> None:
    """Refuse to mix two runs' images in one folder; with --overwrite remove only genrt's own files there."""
    earlier = own_files(out)
    if earlier and not overwrite:
        raise UserError(f"{out} already holds {len(earlier)} files of an earlier run ({earlier[0].name}, ...); "
                        f"use --overwrite to replace them or choose another --out")
    for path in earlier:
        path.unlink()


def grid_indices(total: int, evenly: bool) -> set[int]:
    """Which images go into grid.png: the first GRID_MAX_IMAGES, or (frames) that many evenly spaced."""
    if not evenly or total <= GRID_MAX_IMAGES:
        return set(range(min(total, GRID_MAX_IMAGES)))
    return {int(round(i)) for i in np.linspace(0, total - 1, GRID_MAX_IMAGES)}


def write_images(batches: Iterator[np.ndarray], out: Path, prefix: str, total: int, keep: set[int],
                 show_bar: bool) -> np.ndarray:
    """Stream batches (B, H, W, 3) to OUT/<prefix>_NNNN.png; returns the images whose indices are in `keep`."""
    kept, written = [], 0
    with progress_bar(total, prefix, show=show_bar) as bar:
        for batch in batches:
            save_images(batch, out, prefix=prefix, start=written, total=total)
            kept.extend(image for i, image in enumerate(batch, start=written) if i in keep)
            written += len(batch)
            bar.update(len(batch))
    return np.stack(kept)


# ---------------------------------------------------------------- poems

def break_lines(text: str) -> str:
    """One couplet per line: a line break after each sentence-ending mark."""
    for mark in "。？！；":
        text = text.replace(mark, mark + "\n")
    return text


RECOMMENDED = "[default: the model's recommended setting]"


@main.command()
@click.argument("prompts", nargs=-1)
@click.option("--continue", "continue_line", is_flag=True,
              help="PROMPT is the first line of the poem: the model continues it (default: PROMPT is a title)")
@click.option("--max-new-tokens", type=click.IntRange(1, MAX_NEW_TOKENS), default=None, help=RECOMMENDED)
@click.option("--min-new-tokens", type=click.IntRange(0, MAX_NEW_TOKENS), default=None,
              help="no end of poem before this many new characters (with --free-shape, no --form) [default: 0]")
@click.option("--num-beams", type=click.IntRange(1, MAX_NUM_BEAMS), default=None,
              help="beam search, with the model's recommended beam settings (the bundled model samples each step's "
                   "candidates, seeded; add --greedy for best-first beams) [default: 1]")
@click.option("--length-penalty", type=FiniteFloat(-10, 10), default=None, help=RECOMMENDED)
@click.option("--do-sample/--greedy", default=None,
              help="sample (with the model's recommended sampling settings), or never sample: greedy search, or "
                   "best-first beam search with --num-beams [default: the model's recommended mode; --stream "
                   "decodes greedily unless --do-sample]")
@click.option("--temperature", type=FiniteFloat(1e-3, 1e3), default=None, help=RECOMMENDED)
@click.option("--top-k", type=click.IntRange(min=0), default=None, help="0 = off " + RECOMMENDED)
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), default=None, help="1.0 = off " + RECOMMENDED)
@click.option("--repetition-penalty", type=FiniteFloat(1e-3, 1e3), default=None, help="1.0 = off " + RECOMMENDED)
@click.option("--no-repeat-ngram-size", type=click.IntRange(min=0), default=None, help="0 = off " + RECOMMENDED)
@click.option("--max-char-repeats", type=click.IntRange(min=0), default=None,
              help="most times a character may appear in one verse; 0 = off " + RECOMMENDED)
@click.option("--no-repeat-verse/--allow-repeat-verse", default=None,
              help="forbid a verse that repeats an earlier one " + RECOMMENDED)
@click.option("--regular-shape/--free-shape", default=None,
              help="without --form: 4 or 8 verses of 5 or 7 characters " + RECOMMENDED)
@click.option("--num-return-sequences", type=click.IntRange(1, MAX_NUM_RETURN_SEQUENCES), default=None,
              help="poems per prompt [default: 1]")
@click.option("--best-of", type=click.IntRange(1, MAX_NUM_RETURN_SEQUENCES), default=None,
              help="with --do-sample: draw this many poems per prompt, print the most likely " + RECOMMENDED)
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="seed for sampling [default: random, printed]")
@click.option("--form", default=None, help="五言绝句/七言绝句/五言律诗/七言律诗 (or wujue, qijue, wulv, qilv)")
@click.option("--acrostic", default=None, help="藏头诗: line i starts with the i-th character")
@click.option("--rhyme", type=click.Choice(["modern", "pingshui"]), is_flag=False, flag_value="modern", default=None,
              help="even lines end on one rhyme group: modern (中华新韵-like, the value of a bare --rhyme) or "
                   "pingshui (平水韵); needs --form or --acrostic")
@click.option("--tonal", is_flag=True, default=None,
              help="with --form: the 平仄 of regulated verse (粘对, no 孤平/三平尾), rhyming in 平水韵")
@click.option("--form-token/--no-form-token", default=None,
              help="with --form, also condition the model on the form's token [default: on]")
@click.option("--stream", is_flag=True, help="print characters as they are decoded")
@click.option("--json", "as_json", is_flag=True, help="print results as JSON")
@provider_option
@threads_option
@precision_option
@model_option
def poem(prompts: tuple[str, ...], continue_line: bool, stream: bool, as_json: bool, provider: str,
         provider_options: dict[str, str], threads: int | None, precision: str | None, model_dir: Path | None,
         **options) -> None:
    """Write a classical Chinese poem for each PROMPT (a title or theme, or with --continue a first line).
    Options left out take the model directory's recommended settings."""
    with user_errors():
        given = {k: v for k, v in options.items() if v is not None}
        if not prompts:
            if not given.get("acrostic"):
                raise UserError("give a PROMPT (a title, or a first line with --continue)")
            prompts = (given["acrostic"],)
        if stream and (as_json or len(prompts) > 1):
            raise UserError("--stream prints one poem as text: use one PROMPT and no --json")
        generator = load_poems(model_dir, provider, threads, precision, provider_options)
        given["mode"] = "continue" if continue_line else "title"
        if stream:
            given.setdefault("do_sample", False)            # one sequence as it comes, as PoemGenerator.stream
        opts = generator.options(**given)                    # validated before anything prints
        if opts.do_sample and opts.seed is None:
            opts = generator.options(**given, seed=pick_seed(None))
        generator.check_prompts(prompts, opts)
        report_dropped(generator, prompts)
        if stream:
            for piece in generator.stream(prompts[0], opts):
                click.echo(break_lines(piece), nl=False)
            click.echo()
            return
        results = generator.generate(list(prompts), opts)
    if as_json:
        click.echo(json.dumps([[asdict(p) for p in per_prompt] for per_prompt in results], ensure_ascii=False,
                              indent=1))
        return
    for per_prompt in results:
        for i, p in enumerate(per_prompt):
            header = p.prompt if len(per_prompt) == 1 else f"{p.prompt} ({i + 1})"
            click.echo(f"《{header}》\n{break_lines(p.text).strip()}\n")
            if not p.finished:
                click.echo(f"genrt: 《{header}》 was cut at {opts.max_new_tokens} new characters "
                           f"(--max-new-tokens) before the poem ended", err=True)


@main.command()
@click.argument("pairs", nargs=-1)
@click.option("--jsonl", "jsonl", type=click.File("r", encoding="utf-8"), default=None,
              help='pairs from a file, one JSON object a line: {"prompt": ..., "poem": ...} ("-" = stdin)')
@click.option("--continue", "continue_line", is_flag=True,
              help="prompts are first lines (each poem starts with its prompt; the line itself is not scored)")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@provider_option
@threads_option
@precision_option
@model_option
def score(pairs: tuple[str, ...], jsonl, continue_line: bool, batch_size: int, provider: str,
          provider_options: dict[str, str], threads: int | None, precision: str | None,
          model_dir: Path | None) -> None:
    """Score poems under the model: PAIRS are PROMPT POEM [PROMPT POEM ...]. Prints JSON, one object per pair:
    logprob (natural log, summed over the characters and <eos>), tokens scored (<eos> included), nll_per_char."""
    with user_errors():
        if len(pairs) % 2:
            raise UserError("give PROMPT POEM pairs (an even number of arguments)")
        items = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
        if jsonl is not None:
            items += [read_pair(line, n) for n, line in enumerate(jsonl, 1) if line.strip()]
        if not items:
            raise UserError("nothing to score: give PROMPT POEM pairs or --jsonl FILE")
        generator = load_poems(model_dir, provider, threads, precision, provider_options)
        results = generator.score([p for p, _ in items], [q for _, q in items],
                                  mode="continue" if continue_line else "title", batch_size=batch_size)
    click.echo(json.dumps([asdict(r) for r in results], ensure_ascii=False, indent=1))


def read_pair(line: str, number: int) -> tuple[str, str]:
    try:
        item = json.loads(line)
        return item["prompt"], item["poem"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"--jsonl line {number}: expected {{\"prompt\": ..., \"poem\": ...}}") from None


def report_dropped(generator: PoemGenerator, prompts: tuple[str, ...]) -> None:
    """Name on stderr the prompt characters the model cannot see (not in its vocabulary, even simplified)."""
    for prompt in prompts:
        dropped = generator.dropped_chars(prompt)
        if dropped:
            click.echo(f"genrt: not in the model's vocabulary, left out of 《{prompt}》: {dropped}", err=True)


if __name__ == "__main__":
    main()
