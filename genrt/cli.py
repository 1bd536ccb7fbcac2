"""`genrt` command line: parse options, call the Python API, print. One command per model kind.

    genrt faces --n 16 -o out/            # out/face_0000.png ... + out/grid.png
    genrt poem 春江花月夜 --num-beams 4     # a poem for a title, through encoder + KV-cache decoder
"""
from __future__ import annotations

import json
import math
import os
import secrets
import sys
import tempfile
from dataclasses import asdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
from tqdm import tqdm

from genrt import __version__, limits
from genrt.cli_boundary import (Interrupted, StdoutClosed, StdoutError, UserError, boundary, click_error,
                                closed_pipe, discard_stdout, guard_stdout, note, one_line, open_standard_fds,
                                require_stdout, stderr_usable)
import numpy as np

from genrt.faces import FaceGenerator, image_names, save_grid
from genrt.faces.generator import candidate_count
from genrt.faces.images import OWN_FILE, save_gif, save_png, seed_image_name
from genrt.faces.output import RunFolder
from genrt.providers import available_providers, is_provider_name, known_names, parse_provider_option
from genrt.runtime import PRECISIONS, GraphRunError
from genrt.poems.generator import PoemGenerator
from genrt.poems.tokenizer import char_list
from genrt.user_models import MODEL_KINDS, find_variants, install_variant, source_models_dir, variant_name
from genrt.poems.options import MAX_NEW_TOKENS, MAX_NUM_BEAMS, MAX_NUM_RETURN_SEQUENCES

GRID_MAX_IMAGES = 64          # grid.png shows the first 64 images, so a huge --n never builds a huge grid
DEFAULT_FACES = 16
MAX_IMAGES = 100_000          # --n / --interpolate cap: images stream to disk, this bounds the disk and the time
MAX_GIF_FRAMES = 2_000        # a GIF is assembled in memory: 2,000 64x64 frames are ~25 MB


# ---------------------------------------------------------------- shared by every command

@contextmanager
def user_errors() -> Iterator[None]:
    """Turn genrt's expected exceptions into a one-line error with exit code 2 (no traceback); the group's
    boundary (genrt.cli_boundary) does the same around every command."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as e:
        error = click_error(e)
        if error is None:
            raise
        raise error from None


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
                     help="an option for the provider, passed to onnxruntime as is (repeatable), e.g. device_id=1; "
                          "the CPU provider takes none")(f)
    return click.option("--provider", type=ProviderName(), default="auto", show_default=True,
                        help=f"onnxruntime execution provider: {', '.join(known_names())} or any onnxruntime name "
                             f"(e.g. DmlExecutionProvider); auto = CUDA if available, else CPU")(f)


def load_poems(model_dir: Path | None, provider: str, threads: int | None, precision: str | None,
               provider_options: dict[str, str]) -> PoemGenerator:
    return PoemGenerator.load(model_dir, provider=provider, threads=threads, precision=precision,
                              provider_options=provider_options or None)


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1, max=limits.MAX_THREADS), default=None,
                        help="CPU threads for onnxruntime (poems: one decoder lane per thread) "
                             "[default: physical cores]")(f)


def precision_option(f):
    return click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                        help="bundled model variant [default: the fastest variant that passed its quality gate]")(f)


def model_option(f):
    return click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
                        help="model directory [default: the bundled model]")(f)


class OutFolder(click.Path):
    """-o/--out: a folder path, never empty (an empty name would quietly mean the current folder)."""

    def __init__(self):
        super().__init__(file_okay=False, writable=True, path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("the output folder must be named (an empty name is not the current folder)", param, ctx)
        return super().convert(value, param, ctx)


def pick_seed(seed: int | None) -> int:
    """The user's seed, or a fresh one that is printed (stderr) so the run can be repeated."""
    if seed is None:
        seed = secrets.randbelow(2**31)
        note(f"seed: {seed}")
    return seed


def progress_bar(total: int, unit: str, show: bool) -> tqdm:
    """A progress bar on stderr, shown only on a terminal and only when there is more than one batch."""
    show = show and stderr_usable()                    # a closed stderr loses the bar, never the run
    return tqdm(total=total, unit=unit, file=sys.stderr if show else None, disable=None if show else True,
                leave=False)


# click >= 8.2 raises this UsageError for a group called without a command (no_args_is_help)
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(click.Group):
    """Bad option values and usage errors print one 'Error: ...' line (exit 2), not click's usage block."""

    def invoke(self, ctx):
        with boundary():                                # genrt.cli_boundary: one line, whatever a command raises
            return super().invoke(ctx)

    def main(self, *args, **kwargs):
        if kwargs.get("standalone_mode") is False:     # an embedding caller handles click's exceptions itself
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        open_standard_fds()
        guard_stdout()
        try:
            code = super().main(*args, **kwargs)
        except NO_ARGS_IS_HELP as e:                    # bare `genrt` or `genrt models`: the help, as click shows it
            note(e.ctx.get_help() if e.ctx is not None else e.format_message())
            sys.exit(2)
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None and e.ctx.parent else ""
            note(f"Error: {' '.join(e.format_message().split())}{hint}")
            sys.exit(2)
        except click.ClickException as e:
            try:
                e.show()
            except (OSError, ValueError):
                pass
            if isinstance(e, StdoutClosed) or (isinstance(e, UserError) and
                                               e.message.startswith("cannot write to standard output")):
                discard_stdout()
            sys.exit(e.exit_code)
        except StdoutError as e:                        # --help or --version into a full or closed stdout
            if not closed_pipe(e):
                note(f"Error: {one_line(e)}")
            discard_stdout()
            sys.exit(StdoutClosed.exit_code if closed_pipe(e) else 2)
        except click.Abort as e:                        # Ctrl-C while click parsed the arguments
            interrupted = isinstance(e.__context__, KeyboardInterrupt)
            note("genrt: interrupted" if interrupted else "Aborted!")
            sys.exit(Interrupted().exit_code if interrupted else 1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genrt")
def main() -> None:
    """On-device generation with onnxruntime: DCGAN faces and Transformer poems."""


# ---------------------------------------------------------------- faces

FACES_EXAMPLES = """\b
Examples:
  genrt faces -n 16 -o out/                          # out/face_0000.png ... out/face_0015.png + out/grid.png
  genrt faces --seeds 0-15,42 -o seeds/              # seeds/seed0000.png ... seed0015.png, seed0042.png
  genrt faces --interpolate 60 -o morph/ --gif morph.gif   # 60 frames between two faces, also as a GIF
  genrt faces -n 64 -o typical/ --truncation 0.7     # latents pulled toward the mean: fewer odd faces
  genrt faces -n 16 -o kept/ --filter 0.5            # 32 drawn, the 16 the model's critic rates most real kept
"""


def parse_seeds(ctx: click.Context | None, param: click.Parameter | None, text: str | None) -> list[int] | None:
    """'0-15,42' -> [0, 1, ..., 15, 42]: comma-separated seeds and inclusive ranges, each seed once, in order."""
    if text is None:
        return None
    seeds: dict[int, None] = {}
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise click.BadParameter(f"{part.strip()!r} is not a seed or a range such as 0-15", param_hint="'--seeds'")
        if first < 0 or last < first or last > limits.MAX_SEED:
            raise click.BadParameter(f"{part.strip()!r}: seeds are 0 to {limits.MAX_SEED} and a range runs low-high",
                                     param_hint="'--seeds'")
        if len(seeds) + last - first + 1 > MAX_IMAGES:
            raise click.BadParameter(f"more than {MAX_IMAGES} seeds", param_hint="'--seeds'")
        seeds.update(dict.fromkeys(range(first, last + 1)))
    return list(seeds)


@main.command(epilog=FACES_EXAMPLES)
@click.option("-n", "--n", "n", type=click.IntRange(min=1, max=MAX_IMAGES), default=None,
              help=f"number of faces [default: {DEFAULT_FACES}]")
@click.option("-o", "--out", type=OutFolder(), required=True,
              help="output directory (created if missing)")
@click.option("--seed", type=click.IntRange(0, limits.MAX_SEED), default=None,
              help="random seed for the whole run; same seed, same images [default: drawn and printed]")
@click.option("--seeds", default=None, metavar="LIST", callback=parse_seeds,
              help="one face per seed, e.g. 0-15,42: OUT/seed0000.png ...; face_0000.png of --seed S is seedS.png")
@click.option("--batch-size", type=click.IntRange(min=1, max=1024), default=64, show_default=True,
              help="faces per onnxruntime call")
@click.option("--truncation", type=FiniteFloat(0.0, 1.0, min_open=True), default=1.0, show_default=True,
              help="psi: scale latents toward the mean latent; lower = more typical, less varied faces")
@click.option("--filter", "keep", type=FiniteFloat(0.0, 1.0, min_open=True), default=1.0, show_default=True,
              metavar="KEEP", help="draw n / KEEP faces and keep the n the model's discriminator (the bundled "
                                   "models': a critic trained after the GAN) rates most real, in the order drawn: "
                                   "fewer malformed faces, slightly less varied (1 = no filter)")
@click.option("--interpolate", "frames", type=click.IntRange(min=2, max=MAX_IMAGES), default=None,
              help="instead of random faces, write this many frames morphing between two faces")
@click.option("--gif", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"with --interpolate: also write the frames as a looping GIF here (at most {MAX_GIF_FRAMES})")
@click.option("--fps", type=click.IntRange(1, 100), default=25, show_default=True, help="frames per second of --gif")
@click.option("--nrow", type=click.IntRange(min=1, max=GRID_MAX_IMAGES), default=None,
              help="images per grid row [default: about the square root of the images shown]")
@click.option("--grid/--no-grid", default=True, show_default=True,
              help=f"also write grid.png (at most {GRID_MAX_IMAGES} images; frames evenly spaced)")
@click.option("--overwrite", is_flag=True,
              help="replace an earlier run's face_*.png / seed*.png / frame_*.png / grid.png in OUT (other files are "
                   "kept), and the --gif file")
@provider_option
@threads_option
@precision_option
@model_option
def faces(n: int | None, out: Path, seed: int | None, seeds: list[int] | None, batch_size: int, truncation: float,
          keep: float, frames: int | None, gif: Path | None, fps: int, nrow: int | None, grid: bool, overwrite: bool,
          provider: str, provider_options: dict[str, str], threads: int | None, precision: str | None,
          model_dir: Path | None) -> None:
    """Generate faces: OUT/face_0000.png ... and OUT/grid.png (or one face per seed, or interpolation frames)."""
    modes = [flag for flag, value in (("--n", n), ("--seeds", seeds), ("--interpolate", frames)) if value]
    if len(modes) > 1:
        raise click.UsageError(f"use one of --n, --seeds, --interpolate, not {' and '.join(modes)}")
    if seeds is not None and seed is not None:
        raise click.UsageError("--seeds names every face's seed: leave out --seed")
    if gif is not None and frames is None:
        raise click.UsageError("--gif writes interpolation frames: add --interpolate N")
    if keep < 1.0 and (seeds is not None or frames is not None):
        raise click.UsageError("--filter chooses among random faces: use it with --n, not "
                               f"{'--seeds' if seeds is not None else '--interpolate'}")
    if gif is not None and frames > MAX_GIF_FRAMES:
        raise click.UsageError(f"--gif holds at most {MAX_GIF_FRAMES} frames (got --interpolate {frames})")
    with user_errors():
        generator = FaceGenerator.load(model_dir, provider=provider, threads=threads, precision=precision,
                                       provider_options=provider_options)
        if keep < 1.0 and not generator.can_filter:
            raise UserError(f"--filter needs the model's discriminator, and {generator.model_dir} has none "
                            "(export it without --no-discriminator)")
        if keep < 1.0:
            candidate_count(n or DEFAULT_FACES, keep)   # within limits before the output folder is made
        run = RunFolder(out, overwrite)                 # genrt.faces.output: lock, staging, replace at the end
        if gif is not None:
            check_gif_path(gif, out, overwrite)
        with run:                                       # the folder is checked and locked before anything prints
            if seeds is not None:
                total, what = len(seeds), "faces"
                names = [seed_image_name(s) for s in seeds]
                batches = (generator.generate_from_latents(
                    np.concatenate([generator.latents(1, seed=s, truncation=truncation) for s in chunk]))
                    for chunk in (seeds[i:i + batch_size] for i in range(0, total, batch_size)))
            elif frames is not None:
                total, what = frames, "frames"
                names = image_names(total, "frame")
                batches = generator.iter_interpolation(frames, seed=pick_seed(seed), batch_size=batch_size,
                                                       truncation=truncation)
            else:
                total, what = n or DEFAULT_FACES, "faces"
                names = image_names(total, "face")
                batches = generator.iter_batches(total, seed=pick_seed(seed), batch_size=batch_size,
                                                 truncation=truncation, keep=keep)
            shown_in_grid = grid_indices(total, evenly=frames is not None)
            kept = write_images(batches, run.stage, names, set(range(total)) if gif is not None else shown_in_grid,
                                show_bar=total > batch_size)
            written = [f"{total} {what if total > 1 else what[:-1]}"]
            if grid:
                save_grid(kept[sorted(shown_in_grid)] if gif is not None else kept, run.stage / "grid.png",
                          nrow=nrow)
                written.append("grid.png")
            run.commit()
            click.echo(f"wrote {' and '.join(written)} to {out}")
            if gif is not None:                         # while the folder is still locked (its temporary file too)
                save_gif(kept, gif, fps=fps)
                click.echo(f"wrote {gif}")


def check_gif_path(gif: Path, out: Path, overwrite: bool) -> None:
    """--gif must land in an existing folder, on a new name (or with --overwrite), and not on the output folder or
    on an image name genrt writes there: checked before any face is drawn, so no run fails after its images."""
    if not gif.parent.is_dir() and gif.parent.resolve() != out.resolve():     # OUT itself is made by the run
        raise UserError(f"--gif {gif}: the folder {gif.parent} does not exist")
    if gif.is_dir() or gif.resolve() == out.resolve():
        raise UserError(f"--gif {gif} is a folder (the GIF is one file)")
    if gif.resolve().parent == out.resolve() and OWN_FILE.fullmatch(gif.name):
        raise UserError(f"--gif {gif} would replace an image this run writes in {out}; name the GIF otherwise")
    if gif.exists() and not overwrite:
        raise UserError(f"{gif} exists; use --overwrite to replace it or choose another --gif")
    if gif.parent.is_dir():                    # the folder takes a file (save_gif writes a temporary one there first)
        try:
            fd, probe = tempfile.mkstemp(prefix=".genrt-", suffix=".gif.tmp", dir=gif.parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise UserError(f"--gif {gif}: cannot write in {gif.parent}: {e.strerror or e}") from None


def grid_indices(total: int, evenly: bool) -> set[int]:
    """Which images go into grid.png: the first GRID_MAX_IMAGES, or (frames) that many evenly spaced."""
    if not evenly or total <= GRID_MAX_IMAGES:
        return set(range(min(total, GRID_MAX_IMAGES)))
    return {int(round(i)) for i in np.linspace(0, total - 1, GRID_MAX_IMAGES)}


def write_images(batches: Iterator[np.ndarray], out: Path, names: list[str], keep: set[int],
                 show_bar: bool) -> np.ndarray:
    """Stream batches (B, H, W, 3) to OUT/<names[i]>; returns the images whose indices are in `keep`, in order."""
    kept, written = [], 0
    with progress_bar(len(names), "image", show=show_bar) as bar:
        for batch in batches:
            for i, image in enumerate(batch, start=written):
                save_png(image, out / names[i])
            kept.extend(image for i, image in enumerate(batch, start=written) if i in keep)
            written += len(batch)
            bar.update(len(batch))
    if written != len(names):                          # never report images that were not written
        raise GraphRunError(f"the model gave {written} images; {len(names)} were asked for")
    return np.stack(kept)


# ---------------------------------------------------------------- poems

def break_lines(text: str) -> str:
    """One couplet per line: a line break after each sentence-ending mark."""
    for mark in "。？！；":
        text = text.replace(mark, mark + "\n")
    return text


RECOMMENDED = "[default: recommended, see --show-settings]"

POEM_EXAMPLES = """\b
Examples:
  genrt poem 春江花月夜                       # the recommended settings: best of 4 samples, seed 0
  genrt poem 秋思 --num-beams 4 --json        # beam search, printed as JSON
  genrt poem 床前明月光 --continue --greedy --stream   # continue a first line, printed as decoded
  genrt poem --show-settings                  # what each mode decodes with, from the model's manifest
"""

# The decoding modes a user picks on the command line, and the keyword arguments each gives PoemGenerator.options.
SETTINGS_MODES = (("", {}), ("--num-beams 4", {"num_beams": 4}), ("--num-beams 4 --greedy",
                  {"num_beams": 4, "do_sample": False}), ("--do-sample", {"do_sample": True}),
                  ("--greedy", {"do_sample": False}))
SAMPLING_FIELDS = ("best_of", "temperature", "top_k", "top_p", "seed")
SHOWN_FIELDS = ("num_beams", "length_penalty", "do_sample", *SAMPLING_FIELDS, "repetition_penalty",
                "no_repeat_ngram_size", "max_char_repeats", "max_verse_openings", "max_title_echoes",
                "no_repeat_verse", "regular_shape", "max_new_tokens", "min_new_tokens")
SWITCHES = {"do_sample": ("--do-sample", "--greedy"), "no_repeat_verse": ("--no-repeat-verse", "--allow-repeat-verse"),
            "regular_shape": ("--regular-shape", "--free-shape"),
            "idiomatic_doubling": ("--idiomatic-doubling", "--allow-any-doubling")}


def recommended_settings(generator: PoemGenerator) -> dict[str, dict]:
    """Per command-line mode, the settings PoemGenerator.options resolves from the manifest's `generation`
    sections: only those that mode uses (no sampling settings without sampling, no length penalty without
    beams). A sampling mode without a recommended seed shows seed None: a fresh seed is drawn and printed."""
    table = {}
    for flags, kwargs in SETTINGS_MODES:
        opts = generator.options(**kwargs)
        shown = {}
        for name in SHOWN_FIELDS:
            if (name in SAMPLING_FIELDS and not opts.do_sample) or (name == "length_penalty" and not opts.is_beam):
                continue
            if name == "best_of" and opts.is_beam:
                continue
            shown[name] = getattr(opts, name)
        table[f"genrt poem PROMPT {flags}".strip()] = shown
    return table


def settings_as_flags(settings: dict) -> list[str]:
    """{'do_sample': True, 'top_k': 40, 'seed': None} -> '--do-sample --top-k 40 --seed (drawn, printed)'; settings
    that are off by default (one beam, no n-gram rule, no minimum length) are left out."""
    words = []
    for name, value in settings.items():
        if (name, value) in (("num_beams", 1), ("no_repeat_ngram_size", 0), ("min_new_tokens", 0)):
            continue
        if name in SWITCHES:
            words.append(SWITCHES[name][0] if value else SWITCHES[name][1])
        elif name == "seed" and value is None:
            words.append("--seed (drawn, printed)")
        else:
            words.append(f"--{name.replace('_', '-')} {value}")
    return words


def print_settings(generator: PoemGenerator, as_json: bool) -> None:
    table = recommended_settings(generator)
    if as_json:
        click.echo(json.dumps(table, ensure_ascii=False, indent=1))
        return
    click.echo(f"Recommended settings of {generator.model.model_dir} (manifest \"generation\"); an option given "
               f"on the command line wins.")
    for command, settings in table.items():
        lines = [""]
        for flag in settings_as_flags(settings):                 # an option and its value stay on one line
            lines[-1:] = [lines[-1], flag] if len(lines[-1]) + len(flag) > 96 else [f"{lines[-1]} {flag}".strip()]
        click.echo(f"\n{command}\n" + "\n".join(f"  {line}" for line in lines))


@main.command(epilog=POEM_EXAMPLES)
@click.argument("prompts", nargs=-1)
@click.option("--continue", "continue_line", is_flag=True,
              help="PROMPT is the first line of the poem: the model continues it (default: PROMPT is a title)")
@click.option("--max-new-tokens", type=click.IntRange(1, MAX_NEW_TOKENS), default=None, help=RECOMMENDED)
@click.option("--min-new-tokens", type=click.IntRange(0, MAX_NEW_TOKENS), default=None,
              help="no end of poem before this many new characters (with --free-shape, no --form) [default: 0]")
@click.option("--num-beams", type=click.IntRange(1, MAX_NUM_BEAMS), default=None,
              help="beam search, with the model's recommended beam settings (the bundled model samples each step's "
                   "candidates with seed 0; add --greedy for best-first beams) [default: 1]")
@click.option("--length-penalty", type=FiniteFloat(-10, 10), default=None, help=RECOMMENDED)
@click.option("--do-sample/--greedy", default=None,
              help="sample (with the model's recommended sampling settings), or never sample: greedy search, or "
                   "best-first beam search with --num-beams [default: the model's recommended mode, see "
                   "--show-settings]")
@click.option("--temperature", type=FiniteFloat(1e-3, 1e3), default=None, help=RECOMMENDED)
@click.option("--top-k", type=click.IntRange(min=0), default=None, help="0 = off " + RECOMMENDED)
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), default=None, help="1.0 = off " + RECOMMENDED)
@click.option("--repetition-penalty", type=FiniteFloat(1e-3, 1e3), default=None, help="1.0 = off " + RECOMMENDED)
@click.option("--no-repeat-ngram-size", type=click.IntRange(min=0), default=None, help="0 = off " + RECOMMENDED)
@click.option("--max-char-repeats", type=click.IntRange(min=0), default=None,
              help="most times a character may appear in one verse; 0 = off " + RECOMMENDED)
@click.option("--max-verse-openings", type=click.IntRange(min=0), default=None,
              help="most verses one character may open; 0 = off " + RECOMMENDED)
@click.option("--max-title-echoes", type=click.IntRange(min=0), default=None,
              help="most times a two-character piece of the title may recur in the poem; 0 = off " + RECOMMENDED)
@click.option("--no-repeat-verse/--allow-repeat-verse", default=None,
              help="forbid a verse that repeats an earlier one " + RECOMMENDED)
@click.option("--regular-shape/--free-shape", default=None,
              help="without --form: 4 or 8 verses of 5 or 7 characters " + RECOMMENDED)
@click.option("--idiomatic-doubling/--allow-any-doubling", default=None,
              help="double a character (叠字) only where Tang and Song poets do [default: on]")
@click.option("--num-return-sequences", type=click.IntRange(1, MAX_NUM_RETURN_SEQUENCES), default=None,
              help="poems per prompt [default: 1]")
@click.option("--best-of", type=click.IntRange(1, MAX_NUM_RETURN_SEQUENCES), default=None,
              help="with --do-sample: draw this many poems per prompt, print the most likely " + RECOMMENDED)
@click.option("--seed", type=click.IntRange(0, limits.MAX_SEED), default=None,
              help="seed for sampling [default: the model's fixed seed (0 for the bundled model) without options "
                   "and with --num-beams, so a prompt always gives the same poem; with --do-sample one is drawn "
                   "and printed]")
@click.option("--form", default=None, help="五言绝句/七言绝句/五言律诗/七言律诗 (or wujue, qijue, wulv, qilv)")
@click.option("--acrostic", default=None, help="藏头诗: line i starts with the i-th character")
@click.option("--rhyme", type=click.Choice(["modern", "pingshui"]), is_flag=False, flag_value="modern", default=None,
              help="even lines end on one rhyme group: modern (中华新韵-like, the value of a bare --rhyme) or "
                   "pingshui (平水韵); needs --form or --acrostic")
@click.option("--tonal", is_flag=True, default=None,
              help="with --form: the 平仄 of regulated verse (粘对, no 孤平/三平尾), rhyming in 平水韵")
@click.option("--form-token/--no-form-token", default=None,
              help="with --form, also condition the model on the form's token [default: on]")
@click.option("--stream", is_flag=True,
              help="print characters as they are decoded: the same poem as without --stream (a mode that cannot "
                   "stream is refused)")
@click.option("--json", "as_json", is_flag=True, help="print results as JSON")
@click.option("--show-settings", is_flag=True,
              help="print the model's recommended settings for each mode (with --json: as JSON) and exit")
@provider_option
@threads_option
@precision_option
@model_option
def poem(prompts: tuple[str, ...], continue_line: bool, stream: bool, as_json: bool, show_settings: bool,
         provider: str, provider_options: dict[str, str], threads: int | None, precision: str | None,
         model_dir: Path | None, **options) -> None:
    """Write a classical Chinese poem for each PROMPT (a title or theme, or with --continue a first line).
    Options left out take the model directory's recommended settings (--show-settings prints them)."""
    with user_errors():
        require_stdout()
        if show_settings:
            generator = load_poems(model_dir, provider, threads, precision, provider_options)
            return print_settings(generator, as_json)
        given = {k: v for k, v in options.items() if v is not None}
        if not prompts:
            if not given.get("acrostic"):
                raise UserError("give a PROMPT (a title, or a first line with --continue)")
            prompts = (given["acrostic"],)
        if stream and (as_json or len(prompts) > 1):
            raise UserError("--stream prints one poem as text: use one PROMPT and no --json")
        generator = load_poems(model_dir, provider, threads, precision, provider_options)
        given["mode"] = "continue" if continue_line else "title"
        opts = generator.options(**given)                    # validated before anything prints
        if opts.do_sample and opts.seed is None:
            opts = generator.options(**given, seed=pick_seed(None))
        generator.check_prompts(prompts, opts)
        report_dropped(generator, prompts)
        if stream:
            return stream_poem(generator, prompts[0], opts)
        results = generator.generate(list(prompts), opts)
    if as_json:
        click.echo(json.dumps([[asdict(p) for p in per_prompt] for per_prompt in results], ensure_ascii=False,
                              indent=1))
        return
    for per_prompt in results:
        for i, p in enumerate(per_prompt):
            header = p.prompt if len(per_prompt) == 1 else f"{p.prompt} ({i + 1})"
            click.echo(f"《{header}》\n{break_lines(p.text).strip()}\n")
            if not p.finished and opts.min_new_tokens < opts.max_new_tokens:      # a length asked for is no cut
                note(f"genrt: 《{header}》 was cut at {opts.max_new_tokens} new characters (--max-new-tokens) "
                     f"before the poem ended")


def stream_poem(generator: PoemGenerator, prompt: str, opts) -> None:
    """Print one poem piece by piece, decoded with exactly the options the command without --stream uses."""
    try:
        pieces = generator.stream(prompt, opts)              # bad options raise here, before anything prints
    except ValueError as e:
        raise UserError(f"--stream cannot print this mode as it decodes ({' '.join(str(e).split())}); run "
                        f"without --stream, or choose --greedy or --do-sample") from None
    click.echo(f"《{prompt}》")                               # as the command without --stream prints
    last = "\n"
    for piece in pieces:
        text = break_lines(piece)
        click.echo(text, nl=False)
        last = text[-1:] or last
    click.echo("\n" if last != "\n" else "")                # the poem's line ends, then a blank line


SCORE_EXAMPLES = """\b
Examples:
  genrt score 静夜思 床前明月光，疑是地上霜。举头望明月，低头思故乡。
  genrt score 床前明月光 床前明月光，疑是地上霜。 --continue   # the first line is given, not scored
  genrt score --jsonl pairs.jsonl                # {"prompt": ..., "poem": ...} a line
"""


@main.command(epilog=SCORE_EXAMPLES)
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
        require_stdout()
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


REVISE_EXAMPLES = """\b
Examples:
  genrt revise 静夜思 床前明月光，疑是地上霜。举头望明月，低头思故乡。 --line 2
  genrt revise 静夜思 床前明月光，疑是地上霜。举头望明月，低头思故乡。 --line 3 --do-sample --seed 1 -n 2
  genrt revise 春夜 春夜夜深坐，春风入酒旗。东风吹客子，独自对芳枝。 --line 3 --form 五言绝句 --tonal --json
"""


@main.command(epilog=REVISE_EXAMPLES)
@click.argument("prompt")
@click.argument("poem")
@click.option("--line", type=click.IntRange(min=1), required=True, help="the verse to write again (1 = the first)")
@click.option("-n", "--num-alternatives", type=click.IntRange(1, MAX_NUM_BEAMS), default=3, show_default=True,
              help="versions to print, best first by the model's log-probability of the whole poem")
@click.option("--continue", "continue_line", is_flag=True, help="PROMPT is the poem's first line (as genrt poem)")
@click.option("--num-beams", type=click.IntRange(1, MAX_NUM_BEAMS), default=None,
              help="beam search " + RECOMMENDED)
@click.option("--do-sample/--greedy", default=None, help="sample the verse / best-first beams " + RECOMMENDED)
@click.option("--seed", type=click.IntRange(0, limits.MAX_SEED), default=None, help="with --do-sample: the random seed")
@click.option("--form", default=None, help="the poem's form, which the new verse keeps (五言绝句 … or wujue …)")
@click.option("--acrostic", default=None, help="the poem's acrostic, which the new verse keeps")
@click.option("--rhyme", type=click.Choice(["modern", "pingshui"]), is_flag=False, flag_value="modern", default=None,
              help="the poem's rhyme, which the new verse keeps")
@click.option("--tonal", is_flag=True, default=None, help="with --form: the new verse keeps the poem's 平仄")
@click.option("--json", "as_json", is_flag=True, help="print JSON (text and score of each version)")
@provider_option
@threads_option
@precision_option
@model_option
def revise(prompt: str, poem: str, line: int, num_alternatives: int, continue_line: bool, as_json: bool,
           provider: str, provider_options: dict[str, str], threads: int | None, precision: str | None,
           model_dir: Path | None, **options) -> None:
    """Write verse --line of POEM (a poem for PROMPT) again, keeping every other verse; print each version as the
    whole poem on one line, best first."""
    with user_errors():
        require_stdout()
        generator = load_poems(model_dir, provider, threads, precision, provider_options)
        given = {k: v for k, v in options.items() if v is not None}
        given["mode"] = "continue" if continue_line else "title"
        versions = generator.revise(prompt, poem, line, num_alternatives, **given)
        if not versions:
            raise UserError("no version of that verse keeps the poem's form, tones and rhyme; try --do-sample or "
                            "more --num-alternatives")
    if as_json:
        click.echo(json.dumps([asdict(p) for p in versions], ensure_ascii=False, indent=1))
        return
    for p in versions:
        click.echo(p.text)


def read_pair(line: str, number: int) -> tuple[str, str]:
    try:
        item = json.loads(line)
        if isinstance(item["prompt"], str) and isinstance(item["poem"], str):
            return item["prompt"], item["poem"]
    except (json.JSONDecodeError, RecursionError, KeyError, TypeError):
        pass
    raise UserError(f"--jsonl line {number}: expected {{\"prompt\": ..., \"poem\": ...}}") from None


def report_dropped(generator: PoemGenerator, prompts: tuple[str, ...]) -> None:
    """Name on stderr the prompt characters the model cannot see (not in its vocabulary, even simplified)."""
    for prompt in prompts:
        dropped = generator.dropped_chars(prompt)
        if dropped:
            note(f"genrt: not in the model's vocabulary, left out of 《{prompt}》: {char_list(dropped)}")


# ---------------------------------------------------------------- model variants

MODELS_EXAMPLES = """\b
Examples:
  genrt models list                              # every model and precision, and where genrt finds it
  genrt models install fp32 --from .             # from a genrt checkout: the fp32 models (the CUDA default)
"""


@main.group(epilog=MODELS_EXAMPLES)
def models() -> None:
    """The model variants genrt finds by precision: bundled in the package, or installed into the user models
    folder ($GENRT_MODELS, else ~/.genrt/models)."""


@models.command("list", epilog=MODELS_EXAMPLES)
def list_models() -> None:
    """Every model and precision, and the directory genrt opens for it (user models folder first)."""
    for v in find_variants():
        where = "not installed" if v.where is None else f"{'installed' if v.installed else 'bundled'}  {v.where}"
        broken = "" if v.problem is None else f"  BROKEN: {v.problem}"
        click.echo(f"{v.name:6} {v.precision:5} {where}{broken}")


@models.command("install", epilog=MODELS_EXAMPLES)
@click.argument("precision", type=click.Choice(PRECISIONS))
@click.option("--from", "source", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="a genrt checkout (its genrt/models) or a folder of model directories")
@click.option("--model", "names", type=click.Choice(sorted(MODEL_KINDS)), multiple=True,
              help="only this model (repeatable) [default: every model the source has in PRECISION]")
@click.option("--force", is_flag=True, help="replace a variant already installed")
def install_models(precision: str, source: Path, names: tuple[str, ...], force: bool) -> None:
    """Copy the PRECISION variants from a checkout into the user models folder, where genrt finds them by
    precision (checked first, copied whole, then renamed into place)."""
    with user_errors():
        models_dir = source_models_dir(source)
        wanted = names or [n for n in MODEL_KINDS if (models_dir / variant_name(n, precision)).is_dir()]
        if not wanted:
            expected = ", ".join(variant_name(n, precision) for n in MODEL_KINDS)
            raise UserError(f"{models_dir} has no {precision} model ({expected})")
        for name in wanted:
            click.echo(f"installed {install_variant(source, name, precision, force)}")


# ---------------------------------------------------------------- serve

from genrt.serve.command import serve  # noqa: E402  (FastAPI and uvicorn are imported only when it runs)

main.add_command(serve)


if __name__ == "__main__":
    main()
