"""`genrt serve` under load, faults and scale-out, on loopback only, bounded in clients and time.

    python -m benchmarks.serve_load                                  # every phase (about 4 minutes)
    python -m benchmarks.serve_load --phases direct,served,mix       # some of them (results merged by phase)

Phases (each starts its own `genrt serve` process with the bundled models, except direct):
  direct   the engine alone in this process: CLIENTS threads submit poems for --short seconds -> tokens/s
  served   the same poems through HTTP (plain and streamed) at the same concurrency -> tokens/s, and its ratio to
           direct (the engine's own token count, read from /metrics, so both count alike)
  mix      CLIENTS clients for --seconds: plain and streamed poems, scores and faces -> requests/s, tokens/s,
           p50/p99; every answer checked against what the generators give for that request alone (seeded), so a
           lost, duplicated or mixed-up answer shows; errors other than 429 counted; server memory sampled
  faults   mid-stream disconnects, malformed JSON, oversize bodies and slow readers beside normal clients; then
           the engine must be idle (cancelled rows freed) and the service healthy
  sigterm  SIGTERM under load: every request the server logged is answered whole, and it exits 0
  scaleout the default server (an engine process per lane), the engine in the server's process
           (--engine-in-process), and 2 replicas (`--workers 2 --threads 1`: uvicorn's workers on one port),
           each against the direct engine's poem characters/s
Results: benchmarks/results/serve_load.json and .md (machine, versions, date as data).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np

from genrt.serve.sse import parse_events

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("春江花月夜", "秋思", "静夜思", "山居秋暝", "登高", "春晓", "送别", "江雪", "月夜", "春望", "夜泊", "边塞",
           "赠友人", "望岳", "秋夕", "寒食")
SEEDS = (0, 1, 2, 3)
POEM_OPTIONS = {"do_sample": True, "max_new_tokens": 64}       # + seed: every request is reproducible
MIX = (("poem", 0.40), ("stream", 0.30), ("score", 0.15), ("faces", 0.15))
FACE_SEEDS = tuple(range(8))
FACES_N = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- what each request must get (computed alone)

class Expected:
    """Per seeded request, the answer the generators give for it alone."""

    def __init__(self):
        import genrt
        from genrt.serve.config import ServeConfig  # noqa: F401 (the serve extra is installed)
        from genrt.serve.routes import render_faces
        from genrt.serve.schemas import FacesRequest
        self.poems_generator = genrt.PoemGenerator.load()
        faces = genrt.FaceGenerator.load()
        self.poems = {}
        for seed in SEEDS:                            # one call per seed: a prompt's poem does not depend on the batch
            for prompt, (poem,) in zip(PROMPTS, self.poems_generator.generate(list(PROMPTS), seed=seed,
                                                                               **POEM_OPTIONS)):
                self.poems[(prompt, seed)] = poem.text
        self.score_pairs = [(p, self.poems[(p, 0)]) for p in PROMPTS[:8]]
        self.scores = [s.logprob for s in self.poems_generator.score([p for p, _ in self.score_pairs],
                                                                     [q for _, q in self.score_pairs])]
        self.faces = {seed: hashlib.sha256(render_faces(faces, FacesRequest(n=FACES_N, seed=seed), seed)).hexdigest()
                      for seed in FACE_SEEDS}


# ---------------------------------------------------------------- a served process

class Server:
    """`genrt serve` on a free loopback port; its log lines are read (and counted) as they come."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "genrt", "serve", "--port", str(self.port), *args],
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                                        cwd=ROOT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("genrt serve exited: " + "".join(self.lines[-5:]))
            time.sleep(0.2)
        raise RuntimeError("genrt serve did not become ready")

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def rss_mb(self) -> float:
        """Resident memory of the server and its workers or engine processes, MB."""
        return sum(self.rss_by_process_mb())

    def rss_by_process_mb(self) -> list[float]:
        """Resident memory of the server, then of each process it started, MB."""
        sizes = []
        for pid in [self.process.pid, *children(self.process.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                sizes.append(int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS:"))) / 1024)
            except (OSError, StopIteration):
                pass
        return sizes

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the server and its workers so far."""
        total = 0
        for pid in [self.process.pid, *children(self.process.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])           # utime, stime in clock ticks
            except (OSError, IndexError):
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def engine_tokens(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(float(l.split()[-1]) for l in text.splitlines()
                   if l.startswith("genrt_engine_generated_tokens_total"))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=120)
        self.reader.join(10)
        return code

    def logged(self, needle: str) -> int:
        return sum(needle in line for line in self.lines)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# ---------------------------------------------------------------- clients

class Tally:
    def __init__(self):
        self.latency: dict[str, list[float]] = {}
        self.status: dict[str, int] = {}
        self.mismatches: list[str] = []
        self.errors: list[str] = []
        self.chars = 0
        self.answered = 0

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.status[str(status)] = self.status.get(str(status), 0) + 1
        if status == 200:
            self.latency.setdefault(kind, []).append(seconds)
            self.answered += 1
        elif status != 429:
            self.errors.append(f"{kind}: {status}")

    def summary(self, seconds: float) -> dict:
        every = [s for values in self.latency.values() for s in values]
        def pct(values, q):
            return round(float(np.percentile(values, q)) * 1e3, 1) if values else None
        return {"seconds": round(seconds, 1), "answered": self.answered,
                "requests_per_s": round(self.answered / seconds, 2),
                "chars_per_s": round(self.chars / seconds, 1), "status": self.status,
                "errors_other_than_429": len(self.errors), "mismatched": len(self.mismatches),
                "mismatch_examples": self.mismatches[:3], "error_examples": self.errors[:3],
                "p50_ms": pct(every, 50), "p99_ms": pct(every, 99),
                "by_kind": {k: {"count": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)}
                            for k, v in sorted(self.latency.items())}}


async def one_request(client: httpx.AsyncClient, kind: str, rng: random.Random, expected: Expected,
                      tally: Tally) -> None:
    start = time.perf_counter()
    if kind in ("poem", "stream"):
        prompt, seed = rng.choice(PROMPTS), rng.choice(SEEDS)
        body = {"prompt": prompt, "seed": seed, **POEM_OPTIONS, "stream": kind == "stream"}
        r = await client.post("/v1/poems", json=body)
        if r.status_code == 200:
            if kind == "stream":
                events = parse_events(r.text)
                text = "".join(d["text"] for n, d in events if n == "piece")
                done = events[-1][1]["poem"]["text"] if events[-1][0] == "done" else None
                ok = text == done == expected.poems[(prompt, seed)]
            else:
                (poem,) = r.json()["poems"][0]
                text, ok = poem["text"], poem["text"] == expected.poems[(prompt, seed)] and poem["prompt"] == prompt
            tally.chars += len(text)
            if not ok:
                tally.mismatches.append(f"{kind} {prompt} seed {seed}: {text!r}")
    elif kind == "score":
        i = rng.randrange(len(expected.score_pairs))
        prompt, poem = expected.score_pairs[i]
        r = await client.post("/v1/score", json={"prompts": [prompt], "poems": [poem]})
        if r.status_code == 200 and abs(r.json()["scores"][0]["logprob"] - expected.scores[i]) > 1e-3:
            tally.mismatches.append(f"score {prompt}")
    else:
        seed = rng.choice(FACE_SEEDS)
        r = await client.post("/v1/faces", json={"n": FACES_N, "seed": seed})
        if r.status_code == 200 and hashlib.sha256(r.content).hexdigest() != expected.faces[seed]:
            tally.mismatches.append(f"faces seed {seed}")
    tally.add(kind, r.status_code, time.perf_counter() - start)
    if r.status_code == 429:
        await asyncio.sleep(float(r.headers.get("retry-after", "1")))


async def run_clients(url: str, clients: int, seconds: float, mix, expected: Expected, tally: Tally,
                      stop_on_refusal: bool = False) -> float:
    deadline = time.monotonic() + seconds
    kinds, weights = zip(*mix)

    async def client_loop(i: int) -> None:
        rng = random.Random(i)
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.monotonic() < deadline:
                try:
                    await one_request(client, rng.choices(kinds, weights)[0], rng, expected, tally)
                except httpx.ConnectError:
                    if stop_on_refusal:
                        return
                    tally.errors.append("connect")
                except httpx.TransportError as e:
                    if stop_on_refusal:          # a keep-alive connection closed under a new request
                        return
                    tally.errors.append(type(e).__name__)
    start = time.monotonic()
    await asyncio.gather(*(client_loop(i) for i in range(clients)))
    return time.monotonic() - start


# ---------------------------------------------------------------- phases

def phase_direct(args, expected: Expected) -> dict:
    from genrt.poems.engine import PoemEngine
    engine = PoemEngine(expected.poems_generator, max_rows=64, max_queued=256)
    deadline, answered, mismatched, chars = time.monotonic() + args.short, [0], [0], [0]

    def client(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < deadline:
            prompt, seed = rng.choice(PROMPTS), rng.choice(SEEDS)
            (poem,) = engine.submit(prompt, seed=seed, **POEM_OPTIONS).result()
            answered[0] += 1
            chars[0] += len(poem.text)
            mismatched[0] += poem.text != expected.poems[(prompt, seed)]
    before, start, cpu = engine.stats()["tokens_generated"], time.monotonic(), time.process_time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds, cpu = time.monotonic() - start, time.process_time() - cpu
    tokens = engine.stats()["tokens_generated"] - before
    engine.close()
    return {"clients": args.clients, "seconds": round(seconds, 1), "requests": answered[0],
            "mismatched": mismatched[0], "tokens_per_s": round(tokens / seconds, 1),
            "requests_per_s": round(answered[0] / seconds, 2), "chars_per_s": round(chars[0] / seconds, 1),
            "cores_busy": round(cpu / seconds, 2)}


def phase_served(args, expected: Expected, results: dict) -> dict:
    server = Server()
    try:
        tally, before = Tally(), server.engine_tokens()
        server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
        seconds = asyncio.run(run_clients(server.url, args.clients, args.short, (("poem", 0.5), ("stream", 0.5)),
                                          expected, tally))
        server_cpu, client_cpu = server.cpu_seconds() - server_cpu, time.process_time() - client_cpu
        tokens = server.engine_tokens() - before
    finally:
        server.stop()
    # the clients share the cores with the server: how much of them each side used (cores busy on average)
    out = {**tally.summary(seconds), "tokens_per_s": round(tokens / seconds, 1),
           "server_cores_busy": round(server_cpu / seconds, 2), "client_cores_busy": round(client_cpu / seconds, 2)}
    direct = results.get("direct", {}).get("tokens_per_s")
    if direct:
        out["ratio_to_direct"] = round(out["tokens_per_s"] / direct, 3)
    return out


def interleaved_rounds(args, expected: Expected) -> dict:
    """direct, served, direct, served, ...: each served run against the direct run just before it (a single
    direct run moves by several per cent between runs on a shared machine). -> the last round's phases, with
    every round's figures."""
    directs, serveds = [], []
    for i in range(args.rounds):
        print(f"round {i + 1}: direct, served ...", flush=True)
        directs.append(phase_direct(args, expected))
        serveds.append(phase_served(args, expected, {"direct": directs[-1]}))
    ratios = [s["ratio_to_direct"] for s in serveds]
    return {"direct": {**directs[-1], "rounds_tokens_per_s": [d["tokens_per_s"] for d in directs]},
            "served": {**serveds[-1], "rounds_ratio_to_direct": ratios,
                       "median_ratio_to_direct": round(float(np.median(ratios)), 3)}}


def phase_mix(args, expected: Expected) -> dict:
    server = Server()
    memory: list[float] = []
    by_process: list[list[float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            by_process.append(server.rss_by_process_mb())
            memory.append(sum(by_process[-1]))
    sampler = threading.Thread(target=sample)
    try:
        tally, before = Tally(), server.engine_tokens()
        sampler.start()
        seconds = asyncio.run(run_clients(server.url, args.clients, args.seconds, MIX, expected, tally))
        done.set()
        sampler.join()
        tokens = server.engine_tokens() - before
        logged = server.logged('"POST /v1/')
    finally:
        done.set()
        server.stop()
    quarter = max(1, len(memory) // 4)
    return {**tally.summary(seconds), "clients": args.clients, "tokens_per_s": round(tokens / seconds, 1),
            "server_logged_requests": logged,
            "memory_mb": {"first_quarter_mean": round(float(np.mean(memory[:quarter])), 1),
                          "last_quarter_mean": round(float(np.mean(memory[-quarter:])), 1),
                          "max": round(max(memory), 1), "samples": len(memory),
                          "every_10_s": [round(m, 1) for m in memory[9::10]],
                          "by_process_every_10_s": [[round(m) for m in row] for row in by_process[9::10]]}}


async def faults(url: str, expected: Expected) -> dict:
    counts = {"disconnects": 0, "malformed_400": 0, "oversize_413": 0, "slow_readers_whole": 0}

    async def disconnect_mid_stream(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async with client.stream("POST", "/v1/poems", json={"prompt": PROMPTS[i % 16], "seed": 0, "stream": True,
                                                                **POEM_OPTIONS}) as r:
                async for _ in r.aiter_bytes():
                    break                                  # first piece, then leave
            counts["disconnects"] += 1

    async def malformed(client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/poems", content=b'{"prompt": [', headers={"content-type": "application/json"})
        counts["malformed_400"] += r.status_code == 400

    async def oversize(client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/poems", json={"prompt": "春" * 200_000})
        counts["oversize_413"] += r.status_code == 413

    async def slow_reader(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            prompt = PROMPTS[i]
            async with client.stream("POST", "/v1/poems", json={"prompt": prompt, "seed": 1, "stream": True,
                                                                **POEM_OPTIONS}) as r:
                chunks = []
                async for chunk in r.aiter_text():
                    chunks.append(chunk)
                    await asyncio.sleep(0.3)
            events = parse_events("".join(chunks))
            if "".join(d["text"] for n, d in events if n == "piece") == expected.poems[(prompt, 1)]:
                counts["slow_readers_whole"] += 1

    tally = Tally()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(
            run_clients(url, 16, 15, MIX, expected, tally),
            *(disconnect_mid_stream(i) for i in range(20)),
            *(malformed(client) for _ in range(20)),
            *(oversize(client) for _ in range(10)),
            *(slow_reader(i) for i in range(4)))
        await asyncio.sleep(1.0)
        health = await client.get("/healthz")
    stats = health.json()["engine"]
    return {**counts, "normal_clients": tally.summary(15), "healthy_after": health.status_code == 200,
            "engine_after": {k: stats[k] for k in ("queued", "active_requests", "active_rows")}}


def phase_faults(args, expected: Expected) -> dict:
    server = Server()
    try:
        out = asyncio.run(faults(server.url, expected))
    finally:
        out["exit_code"] = server.stop()
    return out


def phase_sigterm(args, expected: Expected) -> dict:
    server = Server()
    tally = Tally()

    def terminate() -> None:
        time.sleep(5)
        server.process.send_signal(signal.SIGTERM)
    killer = threading.Thread(target=terminate)
    killer.start()
    seconds = asyncio.run(run_clients(server.url, 32, 60, (("poem", 0.5), ("stream", 0.5)), expected, tally,
                                      stop_on_refusal=True))
    killer.join()
    code = server.stop()
    logged = server.logged('"POST /v1/poems"')
    return {"clients": 32, "sigterm_after_s": 5, "ran_s": round(seconds, 1), "server_logged": logged,
            "answered_whole": tally.answered, "mismatched": len(tally.mismatches),
            "every_accepted_answered": logged == tally.answered and not tally.errors, "exit_code": code}


def phase_scaleout(args, expected: Expected, results: dict) -> dict:
    """The default server (an engine process per lane), the engine in the server's own process, and two uvicorn
    workers (one lane each); each one's poem characters/s against the engine's direct ones (the direct phase),
    as a worker's /metrics counts only its own tokens."""
    out = {}
    for name, flags in (("one server, an engine process per lane (the default)", ("--threads", "2")),
                        ("one server, the engine in its process", ("--threads", "2", "--engine-in-process")),
                        ("2 uvicorn workers, 1 lane each", ("--workers", "2", "--threads", "1"))):
        server = Server(*flags)
        try:
            tally = Tally()
            seconds = asyncio.run(run_clients(server.url, args.clients, args.short,
                                              (("poem", 0.5), ("stream", 0.5)), expected, tally))
            memory = server.rss_mb()
        finally:
            server.stop()
        out[name] = {**tally.summary(seconds), "memory_mb": round(memory, 1), "flags": " ".join(flags)}
        direct = results.get("direct", {}).get("chars_per_s")
        if direct:
            out[name]["chars_ratio_to_direct"] = round(out[name]["chars_per_s"] / direct, 3)
    return out


PHASES = {"direct": phase_direct, "served": phase_served, "mix": phase_mix, "faults": phase_faults,
          "sigterm": phase_sigterm, "scaleout": phase_scaleout}


# ---------------------------------------------------------------- report

def machine() -> dict:
    from benchmarks.__main__ import machine_info
    info = machine_info()
    info.pop("cpu_flags", None)
    for package in ("fastapi", "uvicorn", "starlette", "httpx", "prometheus_client"):
        info[package] = metadata.version(package)
    return info


def markdown(result: dict) -> str:
    m, r = result["machine"], result["phases"]
    lines = ["# genrt serve under load", "",
             f"{m['cpu']}, {m['cores']} cores; Python {m['python']}, onnxruntime {m['onnxruntime']}, fastapi "
             f"{m['fastapi']}, uvicorn {m['uvicorn']}; {m['date']}; bundled int8 models, loopback, clients in one "
             f"process beside the server (they share the cores). "
             + "; ".join(f"`{c}`" for c in result.get("commands", [])), ""]
    if "direct" in r or "served" in r:
        d, s = r.get("direct", {}), r.get("served", {})
        lines += ["## Served vs direct (poems only, the engine's token count)", "",
                  "| | clients | s | requests/s | tokens/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
        if d:
            lines.append(f"| engine direct | {d['clients']} | {d['seconds']} | {d['requests_per_s']} | "
                         f"{d['tokens_per_s']} | | |")
        if s:
            lines.append(f"| HTTP (plain + SSE) | {result['clients']} | {s['seconds']} | {s['requests_per_s']} | "
                         f"{s['tokens_per_s']} | {s['p50_ms']} | {s['p99_ms']} |")
        if "ratio_to_direct" in s:
            lines += ["", f"Served / direct tokens/s: **{s['ratio_to_direct']:.1%}** (target ≥ 90 %)."]
        if "rounds_ratio_to_direct" in s:
            lines += ["", f"Interleaved rounds (direct, then served, {len(s['rounds_ratio_to_direct'])} times; the "
                          f"table shows the last): served / direct "
                          f"{', '.join(f'{x:.1%}' for x in s['rounds_ratio_to_direct'])}; median "
                          f"**{s['median_ratio_to_direct']:.1%}** (direct tokens/s "
                          f"{', '.join(f'{t:,.0f}' for t in r.get('direct', {}).get('rounds_tokens_per_s', []))})."]
        if "server_cores_busy" in s:
            lines += ["", f"Cores busy on average (CPU time / wall time): engine direct {d.get('cores_busy', '–')}; "
                          f"served: server {s['server_cores_busy']}, clients {s['client_cores_busy']}."]
        lines.append("")
    if "mix" in r:
        x = r["mix"]
        lines += [f"## Mixed load: {x['clients']} clients, {x['seconds']} s", "",
                  f"- {x['answered']} answered, **{x['requests_per_s']} requests/s**, **{x['tokens_per_s']} "
                  f"tokens/s**, p50 {x['p50_ms']} ms, p99 {x['p99_ms']} ms; status counts {x['status']}",
                  f"- errors other than 429: **{x['errors_other_than_429']}**; answers that differ from the "
                  f"request's own result alone (lost, duplicated or mixed): **{x['mismatched']}**; the server "
                  f"logged {x['server_logged_requests']} requests",
                  f"- server memory: {x['memory_mb']['first_quarter_mean']} MB mean in the first quarter, "
                  f"{x['memory_mb']['last_quarter_mean']} MB in the last, max {x['memory_mb']['max']} MB"
                  + (f"; every 10 s: {', '.join(f'{m:.0f}' for m in x['memory_mb']['every_10_s'])}"
                     if x["memory_mb"].get("every_10_s") else "")
                  + (f" (by process, the server first: "
                     f"{' → '.join('/'.join(map(str, row)) for row in x['memory_mb']['by_process_every_10_s'])})"
                     if x["memory_mb"].get("by_process_every_10_s") else ""), "",
                  "| kind | answered | p50 ms | p99 ms |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['count']} | {v['p50_ms']} | {v['p99_ms']} |" for k, v in x["by_kind"].items()]
        lines.append("")
    if "faults" in r:
        f = r["faults"]
        lines += ["## Faults (beside 16 normal clients for 15 s)", "",
                  f"- mid-stream disconnects: {f['disconnects']}/20; malformed JSON → 400: {f['malformed_400']}/20; "
                  f"oversize bodies → 413: {f['oversize_413']}/10; slow readers answered whole: "
                  f"{f['slow_readers_whole']}/4",
                  f"- normal clients: {f['normal_clients']['answered']} answered, errors other than 429: "
                  f"{f['normal_clients']['errors_other_than_429']}, mismatched: {f['normal_clients']['mismatched']}",
                  f"- after: healthy {f['healthy_after']}, engine {f['engine_after']} (cancelled rows freed); "
                  f"exit code after SIGTERM {f['exit_code']}", ""]
    if "sigterm" in r:
        t = r["sigterm"]
        lines += ["## SIGTERM under load", "",
                  f"{t['clients']} clients, SIGTERM after {t['sigterm_after_s']} s: the server logged "
                  f"{t['server_logged']} poem requests and {t['answered_whole']} were answered whole "
                  f"(mismatched {t['mismatched']}); every accepted request answered: "
                  f"**{t['every_accepted_answered']}**; "
                  f"exit code {t['exit_code']}.", ""]
    if "scaleout" in r:
        lines += ["## Process layouts and scale-out (2 replicas on one port: uvicorn workers), poems only", "",
                  "| | requests/s | poem chars/s | / engine direct | p50 ms | p99 ms | errors | memory MB |",
                  "|---|---|---|---|---|---|---|---|"]
        if r.get("direct", {}).get("chars_per_s"):
            lines.append(f"| engine direct (one process, 2 lanes, no HTTP) | {r['direct']['requests_per_s']} | "
                         f"{r['direct']['chars_per_s']} | 100 % | | | | |")
        for name, v in r["scaleout"].items():
            ratio = f"{v['chars_ratio_to_direct']:.1%}" if "chars_ratio_to_direct" in v else ""
            lines.append(f"| {name} | {v['requests_per_s']} | {v['chars_per_s']} | {ratio} | {v['p50_ms']} | "
                         f"{v['p99_ms']} | {v['errors_other_than_429']} | {v['memory_mb']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60, help="the mixed load's length")
    parser.add_argument("--short", type=float, default=20, help="direct, served and each scale-out run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="direct and served alternated this many times (each ratio against its own direct run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 300 and 0 < args.short <= 120 and 1 <= args.rounds <= 10):
        parser.error("bounded runs only: 1-256 clients, --seconds <= 300, --short <= 120, --rounds <= 10")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(unknown)}")
    # some phases: merged into the last results (each phase replaced whole); every phase: a fresh report
    merge = args.out.exists() and set(phases) != set(PHASES)
    result = json.loads(args.out.read_text()) if merge else {"phases": {}}
    command = "python -m benchmarks.serve_load " + " ".join(argv if argv is not None else sys.argv[1:])
    result.update({"machine": machine(), "clients": args.clients,
                   "commands": sorted({*result.get("commands", []), command.strip()})})
    expected = Expected()
    if args.rounds > 1 and {"direct", "served"} <= set(phases):
        result["phases"].update(interleaved_rounds(args, expected))
        phases = [p for p in phases if p not in ("direct", "served")]
    for name in phases:
        started = time.monotonic()
        print(f"{name} ...", flush=True)
        fn = PHASES[name]
        result["phases"][name] = (fn(args, expected, result["phases"]) if name in ("served", "scaleout")
                                  else fn(args, expected))
        print(f"{name}: {json.dumps(result['phases'][name], ensure_ascii=False)[:400]} "
              f"({time.monotonic() - started:.0f} s)",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    args.out.with_suffix(".md").write_text(markdown(result) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
