"""The playground page with the bundled models, in Debian's chromium through playwright: write a poem (七言绝句,
平仄) and draw faces, checking each appears, then save a screenshot of each tab.

    python scripts/serve_page.py                       # docs/serve.png and docs/serve_faces.png
Needs the serve extra, `pip install playwright` and a system chromium (apt-get install chromium); no browser is
downloaded. The server runs in this process on a free loopback port.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from genrt.serve.app import create_app
from genrt.serve.config import ServeConfig
from genrt.serve.service import load_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    parser.add_argument("--title", default="春江花月夜")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs a system chromium: apt-get install chromium")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServeConfig()
    server = uvicorn.Server(uvicorn.Config(create_app(config, load_models(config)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 900, "height": 760}, device_scale_factor=1)
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#prompt", args.title)
            page.select_option("#form", "七言绝句")
            page.check("#tonal")
            page.click("#write")
            page.wait_for_selector('#poem[data-done="true"]', timeout=60_000)
            poem = "".join(page.locator("#poem .char > span:first-child").all_text_contents())
            print(f"poem: {poem}  ({page.text_content('#poem-status')})")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            page.click("#tab-faces")
            page.click("#draw")
            page.wait_for_selector("#grid:not([hidden])", timeout=60_000)
            print(f"faces: {page.text_content('#faces-status')}")
            faces_out = args.out.with_name(args.out.stem + "_faces" + args.out.suffix)
            page.screenshot(path=str(faces_out), full_page=True)
            browser.close()
        print(f"wrote {args.out} and {faces_out}")
    finally:
        server.should_exit = True
        thread.join(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
