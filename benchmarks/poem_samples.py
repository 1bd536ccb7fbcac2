"""README's sample table: real outputs of a poem model for fixed prompts and CLI options.

    python -m benchmarks.poem_samples [--model genrt/models/poems_int8] [--out benchmarks/results/poem_samples.md]

Every row runs `genrt poem --json --model DIR PROMPT OPTIONS...` through click's runner, so the table shows exactly
what the command line gives (the no-options and `--num-beams` modes are seeded by the model's recommended settings;
the sampled rows name their seed). Prints the markdown table and writes it to --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TITLES = ("春江花月夜", "秋思", "登高", "送友人")
MODES: tuple[tuple[str, ...], ...] = ((), ("--num-beams", "4"), ("--do-sample", "--seed", "1"), ("--greedy",),
                                      ("--num-beams", "4", "--greedy"))
EXTRA_ROWS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("床前明月光", ("--continue",), "--continue"),
    ("春夜", ("--form", "七言绝句", "--rhyme"), "--form 七言绝句 --rhyme"),
    ("四季", ("--acrostic", "春夏秋冬", "--form", "qijue"), "--acrostic 春夏秋冬 --form qijue"),
    ("靜夜思", (), "no options (traditional input)"),
)


def sample_rows() -> list[tuple[str, tuple[str, ...], str]]:
    """(prompt, CLI options, label) of every row, in table order."""
    rows = [(title, mode, " ".join(mode) or "no options") for title in TITLES for mode in MODES]
    return rows + list(EXTRA_ROWS)


def run_row(model_dir: str, prompt: str, options: tuple[str, ...]) -> str:
    """The poem `genrt poem` writes for one prompt and options (its JSON output's text)."""
    from click.testing import CliRunner

    from genrt.cli import main
    result = CliRunner().invoke(main, ["poem", "--json", "--model", model_dir, prompt, *options])
    if result.exit_code != 0:
        raise RuntimeError(f"genrt poem {prompt} {' '.join(options)} failed: {result.output}")
    (per_prompt,) = json.loads(result.stdout)
    return per_prompt[0]["text"]


def markdown(model_dir: str, rows: list[tuple[str, str, str]]) -> str:
    lines = [f"Model {model_dir}.", "", "| prompt | decoding | poem |", "|---|---|---|"]
    lines += [f"| {prompt} | {label} | {text} |" for prompt, label, text in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="genrt/models/poems_int8")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/poem_samples.md"))
    args = parser.parse_args(argv)
    rows = [(prompt, label, run_row(args.model, prompt, options)) for prompt, options, label in sample_rows()]
    text = markdown(args.model, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
