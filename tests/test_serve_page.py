"""The page at / in a real headless browser (Debian's chromium driven by playwright; skipped where either is
missing): load it, write a poem for a title and see it stream in with its 平仄 marks, draw a grid of faces."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from genrt.serve.app import create_app  # noqa: E402
from genrt.serve.config import ServeConfig  # noqa: E402
from tests.serve_fakes import real_models, tiny_generators, uvicorn_server  # noqa: F401,E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a system chromium (apt-get install chromium)")



@pytest.fixture
def page_url(real_models):
    with uvicorn_server(create_app(ServeConfig(), real_models)) as url:
        yield f"{url}/"


def test_page_writes_a_poem_and_draws_faces(page_url):
    outside = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(page_url) and
                not r.url.startswith(("blob:", "data:")) else None)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_url)
        page.fill("#prompt", "春江")
        page.click("#write")
        page.wait_for_selector('#poem[data-done="true"]', timeout=20_000)
        chars = page.locator("#poem .char").count()
        marks = page.locator("#poem .tone").all_text_contents()
        assert chars > 0 and len(marks) == chars
        assert page.locator("#poem h2").text_content() == "《春江》"
        assert "log-probability" in page.text_content("#poem-status")
        # a character beyond the Basic Multilingual Plane is one cell, and the marks after it stay in place
        cells = page.evaluate("""() => { const v = new PoemView("t"); v.add("𪩘月明。", "仄仄平。");
            return Array.from(document.querySelectorAll("#poem .char")).map(
                (c) => [c.children[0].textContent, c.children[1].textContent]); }""")
        assert cells == [["𪩘", "仄"], ["月", "仄"], ["明", "平"], ["。", "\u00a0"]]
        assert page.get_attribute("#poem", "data-done") is None            # a new poem is not done yet
        page.click("#tab-faces")
        page.fill("#face-seed", "3")
        page.click("#draw")
        page.wait_for_selector("#grid:not([hidden])", timeout=20_000)
        assert page.evaluate("document.getElementById('grid').naturalWidth") == 4 * 64 + 5 * 2
        assert "seed 3" in page.text_content("#faces-status")
        page.check("#face-filter")
        page.click("#draw")
        page.wait_for_selector("#faces-status:has-text('best half')", timeout=20_000)    # the CSP allows no eval
        browser.close()
    assert not errors and not outside
