"""Benchmark JSON -> markdown tables and a PNG bar chart (pillow only)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def faces_table(rows: list[dict]) -> list[str]:
    faces = [r for r in rows if r["model"] == "faces"]
    if not faces:
        return []
    out = ["| engine | provider | precision | threads | n | median ms | p90 ms | images/s | load s | peak RSS MB |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(faces, key=lambda r: (r["n"], r["engine"], r["provider"], r["precision"], r["threads"])):
        out.append(f"| {r['engine']} | {r['provider']} | {r['precision']} | {r['threads']} | {r['n']} | "
                   f"{_fmt(r['median_ms'])} | {_fmt(r['p90_ms'])} | {r['images_per_s']:.0f} | {r['load_s']:.2f} | "
                   f"{r['peak_rss_mb']:.0f} |")
    return out


def poems_table(rows: list[dict]) -> list[str]:
    poems = [r for r in rows if r["model"] == "poems" and r["search"] != "first-token"]
    if not poems:
        return []
    out = ["| engine | provider | precision | threads | search | batch | cache | ms/token (median) | p90 ms/token | "
           "tokens/s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(poems, key=lambda r: (r["engine"], r["provider"], r["precision"], r["threads"], r["search"],
                                          r["batch"], r["cache"])):
        out.append(f"| {r['engine']} | {r['provider']} | {r['precision']} | {r['threads']} | {r['search']} | "
                   f"{r['batch']} | {r['cache']} | {_fmt(r['ms_per_token'])} | {_fmt(r['p90_ms'] / r['new_tokens'])} "
                   f"| {r['tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    first = [r for r in rows if r["model"] == "poems" and r["search"] == "first-token"]
    if first:
        out += ["", "| provider | precision | threads | time to first token, median ms | model load s |",
                "|---|---|---|---|---|"]
        out += [f"| {r['provider']} | {r['precision']} | {r['threads']} | {_fmt(r['median_ms'])} | {r['load_s']:.2f} |"
                for r in first]
    return out


def write_markdown(result: dict, path: Path) -> None:
    m = result["machine"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} logical cores), onnxruntime {m['onnxruntime']}, "
             f"torch {m['torch']}, numpy {m['numpy']}; median and p90 over repeated runs after warm-up, fixed seeds"
             + (" (quick run: few repeats)" if result["quick"] else "") + ".", ""]
    if faces_table(result["rows"]):
        lines += ["### Faces (latency per call of n images)", ""] + faces_table(result["rows"]) + [""]
    if poems_table(result["rows"]):
        lines += ["### Poems (64 new characters per sequence, <eos> banned so every run has the same length)", ""]
        lines += poems_table(result["rows"]) + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_png(result: dict, path: Path) -> None:
    """Bars of ms/token for batch-1 poem decoding and ms/call for faces n=16, one bar per configuration."""
    bars = [(f"poems {r['engine']} {r['precision']} t{r['threads']} {r['search']} {r['cache']}", r["ms_per_token"])
            for r in result["rows"] if r["model"] == "poems" and r.get("batch") == 1 and "ms_per_token" in r]
    bars += [(f"faces {r['engine']} {r['precision']} t{r['threads']} n=16", r["median_ms"])
             for r in result["rows"] if r["model"] == "faces" and r["n"] == 16]
    width, row_h, label_w = 900, 22, 430
    img = Image.new("RGB", (width, 40 + row_h * max(1, len(bars))), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), "ms per token (poems, batch 1) / ms per call (faces, n=16) - shorter is faster", fill="black")
    top = max((v for _, v in bars), default=1.0)
    for i, (label, value) in enumerate(bars):
        y = 35 + i * row_h
        draw.text((10, y + 4), label, fill="black")
        w = int((width - label_w - 80) * value / top)
        draw.rectangle([label_w, y + 3, label_w + w, y + row_h - 3], fill=(70, 130, 180))
        draw.text((label_w + w + 5, y + 4), f"{value:.3g}", fill="black")
    img.save(path)
