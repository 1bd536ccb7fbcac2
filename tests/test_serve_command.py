"""genrt.serve.command: `genrt serve` as a process (loopback, tiny models): it prints its URL, logs one line per
request, writes nothing to disk, and on SIGTERM answers every request it accepted, then exits 0."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from genrt.cli import main  # noqa: E402
from genrt.serve import command  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_bad_model_directory_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("Error: ")


def test_an_address_it_cannot_listen_on_is_one_line_before_the_models_load(monkeypatch):
    monkeypatch.setattr("genrt.serve.service.load_models", lambda config: pytest.fail("models loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(main, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert f"cannot listen on 127.0.0.1:{port}" in r.output and "in use" in r.output
    r = CliRunner().invoke(main, ["serve", "--host", "203.0.113.5", "--port", str(free_port())])
    assert r.exit_code == 2 and "cannot listen on 203.0.113.5" in r.output


def test_without_the_serve_extra_it_names_the_install(monkeypatch):
    monkeypatch.setattr(command, "missing_packages", lambda: ["fastapi", "uvicorn"])
    r = CliRunner().invoke(main, ["serve"])
    assert r.exit_code == 2 and "fastapi, uvicorn" in r.output and "serve" in r.output


def test_serve_tunes_its_allocator_first(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(command, "bound_malloc_arenas", lambda: calls.append("arenas"))
    monkeypatch.setattr(command, "retain_freed_memory", lambda: calls.append("retain"))
    r = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and calls == ["arenas", "retain"]


def test_serve_process_sigterm_answers_what_it_accepted(tmp_path, tiny_poems_dir, tiny_faces_model):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    port = free_port()
    env = {**os.environ, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", "GENRT_API_KEY": "k",
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "genrt", "serve", "--port", str(port), "--threads", "1",
                                "--model", str(tiny_poems_dir), "--faces-model", str(tiny_faces_model)],
                               cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"}
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert httpx.post(f"{url}/v1/faces", json={"n": 2, "seed": 1}, headers=auth).status_code == 200
        answers, refused, lost = [], [], []

        def ask(i):                                    # requests one after another until the server is gone
            with httpx.Client(headers=auth, timeout=30) as client:
                while True:
                    try:
                        r = client.post(f"{url}/v1/poems", json={"prompt": "春江", "num_beams": 4,
                                                                 "stream": i % 2 == 0})
                        answers.append(r)
                    except httpx.ConnectError:
                        refused.append(i)
                        return
                    except httpx.TransportError as e:  # a keep-alive connection closed under a new request
                        lost.append(e)
                        return
        clients = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in clients:
            t.start()
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        for t in clients:
            t.join(30)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert len(refused) + len(lost) == 8 and len(answers) > 8
    for r in answers:                                     # accepted: answered whole
        assert r.status_code == 200
        assert r.text.rstrip().endswith("}") and ("event: done" in r.text or r.json()["poems"])
    assert f"genrt serve: http://127.0.0.1:{port}/" in err
    # every request the server took in (one log line each) was answered whole: what was lost was never accepted
    assert err.count('"POST /v1/poems"') == err.count('"POST /v1/poems" 200') == len(answers)
    assert '"POST /v1/faces" 200' in err
    assert "Traceback" not in err
    assert list(home.iterdir()) == [] and list(work.iterdir()) == []   # nothing written to disk


def test_the_log_says_what_was_loaded_and_the_bounds(tmp_path, tiny_poems_dir, tiny_faces_model):
    from genrt.faces import FaceGenerator
    from genrt.poems.engine import PoemEngine
    from genrt.poems.generator import PoemGenerator
    from genrt.serve.config import ServeConfig
    from genrt.serve.service import Models
    poems = PoemGenerator.load(tiny_poems_dir, provider="cpu", threads=1)
    faces = FaceGenerator.load(tiny_faces_model, provider="cpu", threads=1)
    with PoemEngine(poems, max_rows=8) as engine:
        line = command.models_line(Models(poems, faces, engine), ServeConfig(max_rows=8, max_queued=5))
    assert f"poems {tiny_poems_dir} (fp32, cpu, 1 lane, the engine in this process)" in line
    assert f"faces {tiny_faces_model} (fp32" in line and "at most 8 rows a lane, 5 queued" in line
