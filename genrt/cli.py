"""`genrt` command line: parse options, call the Python API, print. One command per model kind.

    genrt faces --n 16 -o out/            # out/face_0000.png ... + out/grid.png
    genrt poem 春江花月夜 --num-beams 4     # a poem for a title, through encoder + KV-cache decoder
"""
from __future__ import annotations

import json
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
from genrt.faces import FaceGenerator, save_grid, save_images
from genrt.runtime import PRECISIONS, PROVIDERS, ProviderError
from genrt.text.generator import PoemGenerator
from genrt.text.options import GenerationOptions

GRID_MAX_IMAGES = 64          # grid.png shows the first 64 images, so a huge --n never builds a huge grid
DEFAULT_FACES = 16


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


def provider_option(f):
    return click.option("--provider", type=click.Choice(PROVIDERS, case_sensitive=False), default="auto",
                        show_default=True, help="onnxruntime execution provider; auto = CUDA if available, else CPU")(f)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for onnxruntime [default: physical cores for faces, 1 for poems]")(f)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genrt")
def main() -> None:
    """On-device generation with onnxruntime: DCGAN faces and Transformer poems."""


# ---------------------------------------------------------------- faces

@main.command()
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help=f"number of faces [default: {DEFAULT_FACES}]")
@click.option("-o", "--out", type=click.Path(file_okay=False, writable=True, path_type=Path), required=True,
              help="output directory (created if missing)")
@click.option("--seed", type=int, default=None, help="random seed; same seed, same images [default: random]")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="faces per onnxruntime call")
@click.option("--interpolate", "frames", type=click.IntRange(min=2), default=None,
              help="instead of random faces, write this many frames morphing between two faces")
@provider_option
@threads_option
@precision_option
@model_option
def faces(n: int | None, out: Path, seed: int | None, batch_size: int, frames: int | None, provider: str,
          threads: int | None, precision: str | None, model_dir: Path | None) -> None:
    """Generate faces: OUT/face_0000.png ... and OUT/grid.png."""
    if frames is not None and n is not None:
        raise click.UsageError("use either --n or --interpolate, not both")
    with user_errors():
        generator = FaceGenerator.load(model_dir, provider=provider.lower(), threads=threads, quiet=False,
                                       precision=precision)
        prepare_out_dir(out)
        seed = pick_seed(seed)
        if frames is not None:
            images = generator.interpolate(frames, seed=seed, batch_size=batch_size)   # (K, H, W, 3)
            save_images(images, out, prefix="frame")
            save_grid(images, out / "grid.png", nrow=len(images))
            click.echo(f"wrote {frames} frames and grid.png to {out}")
            return
        total = n or DEFAULT_FACES
        grid_images = []
        with progress_bar(total, "face", show=total > batch_size) as bar:
            written = 0
            for batch in generator.iter_batches(total, seed=seed, batch_size=batch_size):  # (B, H, W, 3)
                save_images(batch, out, start=written, total=total)
                grid_images.extend(batch[:max(0, GRID_MAX_IMAGES - written)])
                written += len(batch)
                bar.update(len(batch))
        save_grid(grid_images, out / "grid.png")
        click.echo(f"wrote {total} faces and grid.png to {out}")


# ---------------------------------------------------------------- poems

_DEFAULTS = GenerationOptions()


def break_lines(text: str) -> str:
    """One couplet per line: a line break after each sentence-ending mark."""
    for mark in "。？！；":
        text = text.replace(mark, mark + "\n")
    return text


@main.command()
@click.argument("prompts", nargs=-1)
@click.option("--continue", "continue_line", is_flag=True,
              help="PROMPT is the first line of the poem: the model continues it (default: PROMPT is a title)")
@click.option("--max-new-tokens", type=int, default=_DEFAULTS.max_new_tokens, show_default=True)
@click.option("--num-beams", type=int, default=_DEFAULTS.num_beams, show_default=True)
@click.option("--length-penalty", type=float, default=_DEFAULTS.length_penalty, show_default=True)
@click.option("--do-sample", is_flag=True, help="sample instead of greedy/beam search")
@click.option("--temperature", type=float, default=_DEFAULTS.temperature, show_default=True)
@click.option("--top-k", type=int, default=_DEFAULTS.top_k, show_default=True, help="0 = off")
@click.option("--top-p", type=float, default=_DEFAULTS.top_p, show_default=True, help="1.0 = off")
@click.option("--repetition-penalty", type=float, default=_DEFAULTS.repetition_penalty, show_default=True)
@click.option("--no-repeat-ngram-size", type=int, default=_DEFAULTS.no_repeat_ngram_size, show_default=True)
@click.option("--num-return-sequences", type=int, default=_DEFAULTS.num_return_sequences, show_default=True)
@click.option("--seed", type=int, default=None, help="seed for sampling")
@click.option("--form", default=None, help="五言绝句/七言绝句/五言律诗/七言律诗 (or wujue, qijue, wulv, qilv)")
@click.option("--acrostic", default=None, help="藏头诗: line i starts with the i-th character")
@click.option("--rhyme", is_flag=True, help="even lines end on one rhyme group (needs --form or --acrostic)")
@click.option("--form-token/--no-form-token", default=_DEFAULTS.form_token, show_default=True,
              help="with --form, also condition the model on the form's token (models trained with them)")
@click.option("--stream", is_flag=True, help="print characters as they are decoded")
@click.option("--json", "as_json", is_flag=True, help="print results as JSON")
@provider_option
@threads_option
@precision_option
@model_option
def poem(prompts: tuple[str, ...], continue_line: bool, stream: bool, as_json: bool, provider: str,
         threads: int | None, precision: str | None, model_dir: Path | None, **options) -> None:
    """Write a classical Chinese poem for each PROMPT (a title or theme, or with --continue a first line)."""
    with user_errors():
        if not prompts:
            if not options["acrostic"]:
                raise UserError("give a PROMPT (a title, or a first line with --continue)")
            prompts = (options["acrostic"],)
        opts = GenerationOptions.from_kwargs(mode="continue" if continue_line else "title", **options)
        if stream and (as_json or len(prompts) > 1):
            raise UserError("--stream prints one poem as text: use one PROMPT and no --json")
        generator = PoemGenerator.load(model_dir, provider=provider.lower(), threads=threads, precision=precision)
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


if __name__ == "__main__":
    main()
