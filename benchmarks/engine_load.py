"""PoemEngine under open-loop load: requests arrive as a Poisson process at increasing rates.

    python -m benchmarks.engine_load [--rates 2 4 8 16 32] [--seconds 20] [--threads 2]
                                     [--out benchmarks/results/engine_load.json]

Open loop, as a service sees it: arrivals do not wait for answers. The mix is 70 % requests with no options (the
model's recommended best-of-4 sampling), 20 % `num_beams=4` and 10 % `do_sample=True`, over 48 titles, seeded.
Per offered rate: requests answered per second, characters per second (the characters of the returned poems),
p50/p99 latency (submit to last piece) and time to first character (submit to the first piece, which for beams
and best-of is the first character every candidate agrees on), and how many were refused (queue full). Writes
JSON, a markdown table and a PNG plot of latency against the offered rate. Run as a command, the process keeps
freed memory for reuse first, as an app serving many callers would (genrt.allocator).
"""
from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.report import save_report
from benchmarks.timing import cpu_info

ROOT = Path(__file__).resolve().parents[1]
TITLES = ("春江花月夜 秋思 静夜思 山居秋暝 夜泊枫桥 送别 江南春 登高 春晓 秋夕 夜雨寄北 山行 月下独酌 黄鹤楼 长安古意 塞下曲 "
          "咏柳 游子吟 凉州词 出塞 鹿柴 竹里馆 相思 杂诗 宿建德江 望庐山瀑布 早发白帝城 赠汪伦 望天门山 绝句 江雪 寻隐者不遇 "
          "题西林壁 晓出净慈寺 泊船瓜洲 梅花 春日 观书有感 示儿 小池 秋浦歌 清明 乌衣巷 滁州西涧 枫桥夜泊 登鹳雀楼 "
          "秋夜将晓 江畔独步寻花").split()
MIX = ((0.7, {}), (0.2, {"num_beams": 4}), (0.1, {"do_sample": True}))
MODE_NAMES = ("no options", "num_beams=4", "do_sample")


async def _client(engine, title: str, options: dict, submitted: float, record: list) -> None:
    from genrt.poems.engine import EngineFull
    try:
        handle = engine.submit(title, **options)
    except EngineFull:
        record.append({"refused": True})
        return
    first = None
    async for piece in handle.apieces():
        if first is None and piece:
            first = time.perf_counter()
    poems = await handle.aresult()
    done = time.perf_counter()
    record.append({"latency": done - submitted, "first": (first or done) - submitted, "chars": len(poems[0].text)})


async def _run_rate(engine, rate: float, seconds: float, seed: int, titles: tuple[str, ...] = TITLES) -> dict:
    rng = np.random.default_rng(seed)
    record, tasks = [], []
    start = time.perf_counter()
    at = 0.0
    while True:
        at += rng.exponential(1.0 / rate)
        if at > seconds:
            break
        mode = rng.choice(len(MIX), p=[p for p, _ in MIX])
        title = titles[rng.integers(len(titles))]
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # latency counts from the scheduled arrival, so that a late wake-up of this loop is not left out
        tasks.append(asyncio.create_task(_client(engine, title, MIX[mode][1], start + at, record)))
    offered_end = time.perf_counter()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    done = [r for r in record if not r.get("refused")]
    lat = np.array([r["latency"] for r in done]) * 1e3
    first = np.array([r["first"] for r in done]) * 1e3
    return {"offered_per_s": rate, "requests": len(record), "answered": len(done),
            "refused": len(record) - len(done), "offered_s": offered_end - start, "wall_s": wall,
            "answered_per_s": len(done) / wall, "chars_per_s": sum(r["chars"] for r in done) / wall,
            "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p99_ms": float(np.percentile(lat, 99)),
            "first_char_p50_ms": float(np.percentile(first, 50)), "first_char_p99_ms": float(np.percentile(first, 99))}


def turn_up(rows: list[dict], factor: float = 2.0) -> float | None:
    """The lowest offered rate whose p50 latency is `factor` times the lightest load's: where queueing starts."""
    base = rows[0]["latency_p50_ms"]
    return next((r["offered_per_s"] for r in rows if r["latency_p50_ms"] > factor * base), None)


def allocator_setting() -> str:
    """How this process's malloc treats freed memory (genrt.allocator), for the report."""
    import os
    return "malloc keeps freed memory" if os.environ.get("MALLOC_TRIM_THRESHOLD_") else "glibc defaults"


def markdown(report: dict) -> str:
    cpu = report["cpu"]
    lines = [f"{cpu['model']} ({', '.join(cpu['flags'])}); {report['model']} ({report['precision']}), "
             f"{report['threads']} threads, max {report['max_rows']} rows; {report['seconds']:g} s of Poisson arrivals "
             f"per rate; mix: 70 % no options, 20 % num_beams=4, 10 % do_sample; onnxruntime "
             f"{report['onnxruntime']}; {report.get('allocator', 'glibc defaults')}; {report['date']}.", "",
             "| offered req/s | arrived req/s | answered req/s | characters/s | p50 latency ms | p99 latency ms | "
             "p50 first character ms | p99 first character ms | refused |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        # the Poisson draw's own rate (requests over the offered span): at light load it differs from the nominal
        arrived = r["requests"] / r["offered_s"] if r.get("offered_s") else float("nan")
        lines.append(f"| {r['offered_per_s']:g} | {arrived:.2f} | {r['answered_per_s']:.2f} | "
                     f"{r['chars_per_s']:,.0f} | {r['latency_p50_ms']:,.0f} | {r['latency_p99_ms']:,.0f} | "
                     f"{r['first_char_p50_ms']:,.0f} | "
                     f"{r['first_char_p99_ms']:,.0f} | {r['refused']} |")
    best = max(report["rows"], key=lambda r: r["chars_per_s"])
    knee = report["latency_turns_up_at"]
    lines += ["", f"Throughput at saturation: {best['answered_per_s']:.2f} requests/s, {best['chars_per_s']:,.0f} "
              f"characters/s (offered {best['offered_per_s']:g}/s). "
              + (f"p50 latency turns up (over twice the lightest load's) at {knee:g} requests/s."
                 if knee is not None else "p50 latency stays within twice the lightest load's at every rate.")]
    return "\n".join(lines) + "\n"


def write_png(report: dict, path: Path) -> None:
    """p50 and p99 latency and p50 first character against the offered rate (log-scaled latency)."""
    rows = report["rows"]
    w, h, left, bottom, top, right = 720, 420, 70, 50, 40, 20
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    rates = [r["offered_per_s"] for r in rows]
    series = [("p50 latency", "latency_p50_ms", (70, 130, 180)), ("p99 latency", "latency_p99_ms", (200, 80, 60)),
              ("p50 first character", "first_char_p50_ms", (60, 160, 90))]
    values = [r[k] for _, k, _ in series for r in rows]
    lo, hi = np.log10(max(1.0, min(values))), np.log10(max(values)) + 0.05
    xs = lambda rate: left + (w - left - right) * (np.log2(rate) - np.log2(rates[0])) / max(  # noqa: E731
        1e-9, np.log2(rates[-1]) - np.log2(rates[0]))
    ys = lambda ms: h - bottom - (h - bottom - top) * (np.log10(max(ms, 1.0)) - lo) / max(1e-9, hi - lo)  # noqa: E731
    draw.line([left, top, left, h - bottom, w - right, h - bottom], fill="black")
    draw.text((left, 10), "PoemEngine under Poisson load: latency (ms, log) against offered requests/s", fill="black")
    for rate in rates:
        draw.text((xs(rate) - 8, h - bottom + 8), f"{rate:g}", fill="black")
    for ms in (10, 100, 1000, 10000, 100000):
        if lo <= np.log10(ms) <= hi:
            draw.text((8, ys(ms) - 6), f"{ms:,}", fill="black")
            draw.line([left - 4, ys(ms), left, ys(ms)], fill="black")
    for i, (name, key, color) in enumerate(series):
        points = [(xs(r["offered_per_s"]), ys(r[key])) for r in rows]
        draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        draw.text((w - 200, top + 14 * i), name, fill=color)
    draw.text((w // 2 - 60, h - 20), "offered requests per second", fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> dict:
    import onnxruntime
    from genrt.poems.engine import PoemEngine
    from genrt.poems.generator import PoemGenerator
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=20.0, help="arrivals per rate (then the queue drains)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", type=Path, default=None, help="poem model directory (default: bundled)")
    parser.add_argument("--max-rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engine_load.json")
    args = parser.parse_args(argv)
    gen = PoemGenerator.load(args.model, provider="cpu", threads=args.threads)
    rows = []
    with PoemEngine(gen, max_rows=args.max_rows, max_queued=100_000) as engine:
        engine.generate(TITLES[:4])                                             # warm-up
        for i, rate in enumerate(sorted(args.rates)):
            rows.append(asyncio.run(_run_rate(engine, rate, args.seconds, args.seed + i)))
            print(rows[-1])
    report = {"cpu": cpu_info(), "model": "bundled" if args.model is None else args.model.name,
              "precision": gen.manifest.precision, "threads": gen.model.encoder.get_session_options()
              .intra_op_num_threads, "max_rows": args.max_rows, "seconds": args.seconds,
              "onnxruntime": onnxruntime.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows,
              "latency_turns_up_at": turn_up(rows), "allocator": allocator_setting()}
    save_report(args.out, report, markdown(report))
    write_png(report, args.out.with_suffix(".png"))
    return report


if __name__ == "__main__":
    from genrt.allocator import retain_freed_memory
    retain_freed_memory()                 # what an app decoding for many callers does (genrt.allocator)
    main()
