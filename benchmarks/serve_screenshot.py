"""A screenshot of ``viewfinder serve``'s page after one prediction, for the docs (issue 13).

    python benchmarks/serve_screenshot.py RUN IMAGE [--question Q]
        [--out docs/images/serve_page.png] [--width 1100] [--height 700]

Serves RUN (a run folder, or NAME=FOLDER as ``viewfinder serve`` takes it) on a free 127.0.0.1
port, opens the page in Debian's headless Chromium (``chromium`` + ``chromedriver`` on PATH:
``apt-get install chromium chromium-driver``; nothing is downloaded), uploads IMAGE (and asks Q,
for a VQA run), presses Predict and saves a full-page screenshot at a WIDTH x HEIGHT viewport
(taller when the page is). Prints one JSON line: the file written and the prediction shown.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests/
from tests.browser import headless_chromium_or_exit, set_viewport  # noqa: E402

WAIT_S = 60


def start_server(spec: str) -> tuple[str, Any, threading.Thread]:
    """The app of ``viewfinder serve SPEC`` on uvicorn in a thread; its URL, server and thread."""
    import uvicorn

    from viewfinder.serve.app import ServeSettings, create_app
    from viewfinder.serve.server import load_runs

    app = create_app(load_runs([spec]), ServeSettings())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sys.exit("the server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def screenshot(
    spec: str, image: Path, question: str | None, out: Path, size: tuple[int, int]
) -> dict[str, str]:
    """Serve, upload, predict, save; the prediction the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, server, thread = start_server(spec)
    chrome = headless_chromium_or_exit(*size)
    try:
        chrome.get(url + "/")
        wait = WebDriverWait(chrome, WAIT_S)
        wait.until(lambda d: d.find_element(By.ID, "run").get_attribute("value"))
        chrome.find_element(By.ID, "file").send_keys(str(image.resolve()))
        if question:
            chrome.find_element(By.ID, "question").send_keys(question)
        wait.until(lambda d: d.find_element(By.ID, "go").is_enabled())
        chrome.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-state")
                   in ("done", "error"))  # fmt: skip
        result = chrome.find_element(By.ID, "result")
        if result.get_attribute("data-state") != "done":
            sys.exit(f"the page showed an error: {result.text}")
        shown = {e.get_attribute("id").removeprefix("prediction-"): e.text
                 for e in chrome.find_elements(By.CSS_SELECTOR, "[id^=prediction-]")}  # fmt: skip
        chrome.execute_script("document.activeElement.blur()")  # no focus ring in the picture
        full = chrome.execute_script("return document.documentElement.scrollHeight")
        set_viewport(chrome, size[0], max(size[1], int(full)))
        out.parent.mkdir(parents=True, exist_ok=True)
        if not chrome.save_screenshot(str(out)):
            sys.exit(f"{out}: the screenshot was not written")
        return shown
    finally:
        chrome.quit()
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="run folder, or NAME=FOLDER")
    parser.add_argument("image", type=Path, help="the image to upload")
    parser.add_argument("--question", help="the question, for a VQA run")
    parser.add_argument("--out", type=Path, default=Path("docs/images/serve_page.png"))
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=700)
    args = parser.parse_args()
    if not args.image.is_file():
        sys.exit(f"{args.image}: image not found")
    shown = screenshot(args.run, args.image, args.question, args.out, (args.width, args.height))
    print(json.dumps({"out": str(args.out), "prediction": shown}))


if __name__ == "__main__":
    main()
