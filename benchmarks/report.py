"""Benchmark JSON -> markdown tables and a PNG bar chart (pillow only)."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def model_name(row: dict) -> str:
    """The model directory's name for genrt rows (two int8 variants share a precision), '-' for baselines."""
    return Path(row["model_dir"]).name if row.get("model_dir") else "-"


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
    out = ["| engine | model | provider | precision | threads | search | batch | cache | new tokens | "
           "ms/token (median) | p90 ms/token | tokens/s | peak RSS MB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(poems, key=lambda r: (r["engine"], model_name(r), r["provider"], r["precision"], r["threads"],
                                          r["search"], r["batch"], r["new_tokens"], r["cache"])):
        out.append(f"| {r['engine']} | {model_name(r)} | {r['provider']} | {r['precision']} | {r['threads']} | "
                   f"{r['search']} | "
                   f"{r['batch']} | {r['cache']} | {r['new_tokens']} | {_fmt(r['ms_per_token'])} | "
                   f"{_fmt(r['p90_ms'] / (r['batch'] * r['new_tokens']))} "
                   f"| {r['tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    first = [r for r in rows if r["model"] == "poems" and r["search"] == "first-token"]
    if first:
        out += ["", "| model | provider | precision | threads | time to first token, median ms | model load s |",
                "|---|---|---|---|---|---|"]
        out += [f"| {model_name(r)} | {r['provider']} | {r['precision']} | {r['threads']} | {_fmt(r['median_ms'])} | "
                f"{r['load_s']:.2f} |" for r in first]
    return out


def _lookup(rows: list[dict], **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def target_lines(rows: list[dict]) -> list[str]:
    """The ratios the project's targets are stated in, computed from the rows above (same run, same weights)."""
    out = []
    for r in rows:
        if not (r["model"] == "poems" and r["engine"] == "genrt" and r["search"] == "greedy" and r["batch"] == 1
                and r["cache"] == "kv"):
            continue
        key = dict(provider=r["provider"], precision=r["precision"], threads=r["threads"], model_dir=r.get("model_dir"))
        label = (f"{model_name(r)} ({r['provider']} {r['precision']}) {r['threads']} thread(s), "
                 f"{r['new_tokens']} new characters")
        rec = _lookup(rows, model="poems", engine="genrt", search="greedy", batch=1, cache="recompute",
                      new_tokens=r["new_tokens"], **key)
        if rec:
            out.append(f"- poems, {label}: KV cache {rec['ms_per_token'] / r['ms_per_token']:.1f}x faster per token "
                       f"than re-running the decoder over the prefix")
        if r["new_tokens"] != 64:
            continue
        torch_row = _lookup(rows, model="poems", engine="torch-eager", threads=r["threads"])
        if torch_row:
            out.append(f"- poems, {label}: {torch_row['ms_per_token'] / r['ms_per_token']:.1f}x faster per token "
                       f"than a torch eager loop without cache (fp32)")
        ct2 = _lookup(rows, model="poems", engine="ctranslate2", precision=r["precision"], threads=r["threads"])
        if ct2:
            out.append(f"- poems, {label}: {r['tokens_per_s']:.0f} tokens/s vs CTranslate2 {ct2['tokens_per_s']:.0f} "
                       f"({r['tokens_per_s'] / ct2['tokens_per_s']:.2f}x)")
        for search, what in (("beam4", "beam 4"), ("beam4-sampled", "sampled beam 4 (the recommended --num-beams)")):
            beam = _lookup(rows, model="poems", engine="genrt", search=search, batch=1, **key)
            if beam:
                out.append(f"- poems, {label}: {what} costs {beam['ms_per_token'] / r['ms_per_token']:.2f}x greedy "
                           f"per token")
    for r in rows:
        if r["model"] == "faces" and r["engine"] == "genrt" and r["n"] in (1, 16):
            torch_row = _lookup(rows, model="faces", engine="torch-eager", threads=r["threads"], n=r["n"])
            if torch_row:
                out.append(f"- faces n={r['n']}, {r['provider']} {r['precision']} {r['threads']} thread(s): "
                           f"{r['median_ms']:.2f} ms per call, {torch_row['median_ms'] / r['median_ms']:.1f}x "
                           f"torch eager")
    return out


def save_report(out: Path, report: dict, text: str) -> None:
    """A benchmark's report: the JSON at `out`, its markdown beside it (same name, .md), the markdown printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


def write_markdown(result: dict, path: Path) -> None:
    m = result["machine"]
    flags = ", ".join(m.get("cpu_flags") or []) or "none of the listed kernel flags"
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} logical cores; {flags}), onnxruntime "
             f"{m['onnxruntime']}, torch {m['torch']}, numpy {m['numpy']}; median and p90 over repeated runs after "
             f"warm-up, fixed seeds" + (" (quick run: few repeats)" if result["quick"] else "") + ".", ""]
    ops = result.get("graph_ops") or {}
    if ops:
        lines += ["Graphs measured (onnxruntime kernels by op type): " + "; ".join(
            f"{d} " + ", ".join(f"{g}: " + " ".join(f"{op} x{n}" for op, n in list(counts.items())[:4])
                               for g, counts in graphs.items()) for d, graphs in ops.items()) + ".", ""]
    if faces_table(result["rows"]):
        lines += ["### Faces (latency per call of n images)", ""] + faces_table(result["rows"]) + [""]
    if poems_table(result["rows"]):
        lines += ["### Poems (new characters per sequence as listed; <eos> banned so every run has the same length)", ""]
        lines += poems_table(result["rows"]) + [""]
    targets = target_lines(result["rows"])
    if targets:
        lines += ["### Against the targets", ""] + targets + [""]
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


# ---------------------------------------------------------------- execution providers side by side

def _case(row: dict) -> str:
    return f"n={row['n']}" if row["model"] == "faces" else f"{row['search']}, batch {row['batch']}"


def _rate(row: dict) -> str:
    return f"{row['images_per_s']:.0f} images/s" if row["model"] == "faces" else f"{row['tokens_per_s']:.0f} tokens/s"


def _ms(row: dict) -> str:
    return _fmt(row["median_ms"]) if row["model"] == "faces" else f"{_fmt(row['ms_per_token'])} per token"


def providers_table(rows: list[dict]) -> list[str]:
    """One table for every provider measured (CPU, OpenVINO, CUDA; torch eager where measured), each row saying
    what ran it; 'vs CPU' = the CPU provider's time for the same model, case and precision over this row's
    (above 1 = faster than the CPU provider; torch rows against genrt's CPU fp32)."""
    def key(r):
        return (r["model"], r.get("n", 0), r.get("search", ""), r.get("batch", 0), r["precision"],
                r["engine"] != "genrt", r["provider"] != "cpu", r["provider"])   # the CPU provider first
    out = ["| model | case | engine, provider | precision | ran on | median ms | throughput | vs CPU |",
           "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=key):
        cpu = _lookup(rows, engine="genrt", provider="cpu", model=r["model"], n=r.get("n"), search=r.get("search"),
                      batch=r.get("batch"), precision="fp32" if r["engine"] != "genrt" else r["precision"])
        ratio = f"{cpu['median_ms'] / r['median_ms']:.2f}x" if cpu else "-"
        out.append(f"| {r['model']} | {_case(r)} | {r['engine']}, {r['provider']} | {r['precision']} | "
                   f"{r.get('ran_on', '-')} | {_ms(r)} | {_rate(r)} | {ratio} |")
    return out


def placement_lines(rows: list[dict]) -> list[str]:
    """Where each graph's nodes ran, once per (model directory, provider)."""
    seen, out = set(), []
    for r in rows:
        k = (r.get("model_dir"), r["provider"])
        if r.get("placed") and k not in seen:
            seen.add(k)
            out.append(f"- {model_name(r)} on {r['provider']}: {r['placed']}")
    return out


def providers_markdown(result: dict | None, gpu: dict | None = None) -> str:
    """benchmarks.providers' result and/or benchmarks.gpu_check's -> markdown: one table for both."""
    rows = (list(result["rows"]) if result else []) + (list(gpu["rows"]) if gpu else [])
    lines = []
    tests = (gpu or {}).get("tests")
    if tests:
        failed = ", ".join(tests.get("failed_tests") or [])
        lines += [f"CUDA tests (pytest -m cuda): {tests['passed']} passed, {tests['failed']} failed, "
                  f"{tests['errors']} errors, {tests['skipped']} skipped in {tests['seconds']:.0f} s"
                  + (f" (failed: {failed})" if failed else "") + ".", ""]
    if gpu and gpu.get("missing"):
        lines += ["Not measured (the child process failed): " + "; ".join(gpu["missing"]) + ".", ""]
    for res, what in ((result, "CPU providers"), (gpu, "CUDA")):
        if not res:
            continue
        m = res["machine"]
        wheels = ", ".join(f"{k} {v}" for k, v in (m.get("onnxruntime_wheels") or {}).items())
        lines += [f"{what}: measured {m['date']} on {m['cpu']} ({m['cores']} logical cores; "
                  f"{', '.join(m.get('cpu_flags') or []) or 'none of the listed kernel flags'}"
                  + (f"; {m['gpu']}" if m.get("gpu") else "") + f"), {wheels or 'onnxruntime ' + m['onnxruntime']}"
                  + (f", OpenVINO {m['openvino']}" if m.get("openvino") else "")
                  + (f", torch {m['torch']}" if m.get("torch") else "")
                  + f", numpy {m['numpy']}; {res.get('threads', '-')} thread(s); median after warm-up, fixed seeds"
                  + (" (quick run: few repeats)" if res.get("quick") else "") + ".", ""]
    lines += ["### Providers side by side", ""] + providers_table(rows) + [""]
    placed = placement_lines(rows)
    if placed:
        lines += ["### Where the nodes ran (onnxruntime's node placement at load)", ""] + placed + [""]
    return "\n".join(lines)
