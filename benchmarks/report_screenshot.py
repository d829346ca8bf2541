"""A screenshot of a ``viewfinder report`` page, for the docs (issue 14).

    python benchmarks/report_screenshot.py REPORT.html [--out docs/images/report_demo.png]
        [--width 1280] [--height 1400] [--expand N]

Opens REPORT.html (file://) in Debian's headless Chromium (``chromium`` + ``chromedriver`` on
PATH: ``apt-get install chromium chromium-driver``; nothing is downloaded), opens the first N
run sections (``--expand``, default 0), and saves the top WIDTH x HEIGHT CSS pixels of the page.
Prints one JSON line: the file written, the page height and the browser's console errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests/
from tests.browser import headless_chromium_or_exit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/images/report_demo.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1400)
    parser.add_argument("--expand", type=int, default=0, help="Open the first N run sections.")
    args = parser.parse_args()
    chrome = headless_chromium_or_exit(args.width, args.height)
    try:
        chrome.get(args.report.resolve().as_uri())
        chrome.execute_script(
            "document.querySelectorAll('details.run').forEach((d, i) => d.open = i < arguments[0])",
            args.expand,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        chrome.save_screenshot(str(args.out))
        height = chrome.execute_script("return document.documentElement.scrollHeight")
        errors = [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        chrome.quit()
    print(json.dumps({"screenshot": str(args.out), "page_height": height, "errors": errors}))


if __name__ == "__main__":
    main()
