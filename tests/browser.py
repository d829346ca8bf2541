"""Headless Chromium for the browser tests and the screenshot scripts in benchmarks/: Debian's
``chromium`` and ``chromedriver`` (``.ci/run`` installs them), driven by Selenium with explicit
paths, so Selenium Manager never tries to download a browser or driver."""

from __future__ import annotations

import shutil
from typing import Any

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NO_BROWSER = (
    "no headless browser: install Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver) to run the browser tests"
)


def headless_chromium(width: int, height: int, *, timeout_s: float = 30.0) -> Any:
    """A headless Chromium with an exact ``width`` x ``height`` CSS-pixel viewport (a headless
    window's size includes its hidden browser UI) and the console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (BROWSER and DRIVER):
        raise RuntimeError(NO_BROWSER)
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--hide-scrollbars", f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    chrome.set_page_load_timeout(timeout_s)
    set_viewport(chrome, width, height)
    return chrome


def set_viewport(chrome: Any, width: int, height: int) -> None:
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def headless_chromium_or_exit(width: int, height: int) -> Any:
    """``headless_chromium`` for scripts: no browser exits with the install command."""
    import sys

    try:
        return headless_chromium(width, height)
    except RuntimeError as err:
        sys.exit(str(err))
