"""The served page in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver, opens ``viewfinder serve``'s page, uploads a demo image and sees the
prediction the API gives for it (a classify run, a VQA run's question box, the API-key flow).

Nothing is downloaded: the browser and driver are the system's (``.ci/run`` installs them where it
is root with apt-get), Selenium Manager is never asked for one, and the server listens on a free
loopback port. Without a browser the module skips, saying what to install.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import viewfinder
from tests.browser import BROWSER, DRIVER, NO_BROWSER, headless_chromium
from tests.smoke.conftest import FAST

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (BROWSER and DRIVER), reason=NO_BROWSER)]

WAIT_S = 30  # bounds every wait on the page
API_KEY = "browser-test-key"
QUESTION = "What shape is the yellow object?"
TINY = {**FAST, "epochs": 1}


@pytest.fixture(scope="module")
def runs(demo_data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny classify run and a tiny VQA run, trained once for the module."""
    out = tmp_path_factory.mktemp("browser_runs")
    shapes = viewfinder.train("classify", data=str(demo_data.classify), model="cnn",
                              output_dir=str(out), progress=False, **TINY)  # fmt: skip
    vqa = viewfinder.train("vqa", data=str(demo_data.vqa), model="cnn", min_count=1,
                           output_dir=str(out), progress=False, **TINY)  # fmt: skip
    return {"shapes": shapes.path, "vqa": vqa.path}


@pytest.fixture(scope="module")
def image(demo_data) -> Path:
    """One test-split demo image (a star)."""
    return sorted((demo_data.classify / "test" / "star").iterdir())[0]


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    browser = headless_chromium(1100, 700, timeout_s=WAIT_S)
    yield browser
    browser.quit()


@contextmanager
def serving(specs: list[str], api_key: str | None = None) -> Iterator[str]:
    """``viewfinder serve``'s app on uvicorn in a thread, on a free 127.0.0.1 port; its URL."""
    import uvicorn

    from viewfinder.serve.app import ServeSettings, create_app
    from viewfinder.serve.server import load_runs

    app = create_app(load_runs(specs), ServeSettings(api_key=api_key))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # held from here on: no other process can take the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, thread)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_healthy(url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert thread.is_alive(), "the server thread stopped while starting"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url}/health did not answer within {WAIT_S} s")


def api_predict(url: str, run: str, image: Path, **fields: str) -> dict[str, Any]:
    """What the HTTP API answers for the same upload (the page must show exactly this)."""
    headers = {"X-API-Key": API_KEY}
    with open(image, "rb") as f:
        files = {"image": (image.name, f, "image/png")}
        response = httpx.post(f"{url}/v1/runs/{run}/predict", files=files, data=fields,
                              headers=headers, timeout=WAIT_S)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait_for(driver: Any, condition: Any, what: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(condition, message=f"waiting for {what}")


def open_page(driver: Any, url: str) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url + "/")
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete",
             "the page to load")  # fmt: skip


def upload(driver: Any, image: Path) -> None:
    """Choose the file as the drop zone's file dialog would (the input is hidden, not absent)."""
    by_id(driver, "file").send_keys(str(image.resolve()))
    wait_for(driver, lambda d: by_id(d, "preview").get_attribute("src"), "the preview")


def press_predict(driver: Any) -> str:
    """Press Predict and wait until the page shows an answer or an error; which one it was."""
    wait_for(driver, lambda d: by_id(d, "go").is_enabled(), "Predict to be enabled")
    by_id(driver, "go").click()  # the click handler marks #result busy before it returns
    wait_for(driver, lambda d: by_id(d, "result").get_attribute("data-state") in ("done", "error"),
             "the prediction")  # fmt: skip
    return by_id(driver, "result").get_attribute("data-state")


def predict_on_page(driver: Any) -> None:
    """Press Predict and wait for the rendered answer (an error shown fails with its text)."""
    assert press_predict(driver) == "done", by_id(driver, "result").text


def console_errors(driver: Any, allowed: str | None = None) -> list[str]:
    """SEVERE browser-console entries (failed requests, script errors) but those matching the
    ``allowed`` regular expression."""
    entries = driver.get_log("browser")
    return [e["message"] for e in entries if e["level"] == "SEVERE"
            and not (allowed and re.search(allowed, e["message"]))]  # fmt: skip


def test_page_classifies_an_uploaded_image(driver, runs, image, tmp_path):
    from selenium.webdriver.common.by import By

    with serving([f"shapes={runs['shapes']}"]) as url:
        expected = api_predict(url, "shapes", image)
        open_page(driver, url)
        wait_for(driver, lambda d: by_id(d, "run").get_attribute("value") == "shapes", "the runs")
        assert "cnn" in by_id(driver, "runinfo").text
        assert not by_id(driver, "questionbox").is_displayed()
        assert not by_id(driver, "keybox").is_displayed()
        assert not by_id(driver, "go").is_enabled()  # nothing chosen yet
        upload(driver, image)
        assert by_id(driver, "preview").is_displayed()
        predict_on_page(driver)

        label = expected["prediction"]["label"]
        assert by_id(driver, "prediction-label").text == label
        bars = driver.find_elements(By.CSS_SELECTOR, "#result .bar")
        assert len(bars) == len(expected["top_k"]) == 5
        names = [b.find_element(By.CSS_SELECTOR, ".name").text for b in bars]
        assert names == [item["label"] for item in expected["top_k"]]
        assert names[0] == label
        width = bars[0].find_element(By.CSS_SELECTOR, ".fill").value_of_css_property("width")
        assert float(width.removesuffix("px")) > 0
        assert "shapes (classify)" in by_id(driver, "result").text
        shot = tmp_path / "serve_page.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
        assert console_errors(driver) == []


def test_vqa_run_asks_for_a_question_and_answers(driver, runs, image):
    from selenium.webdriver.support.ui import Select

    with serving([f"shapes={runs['shapes']}", f"vqa={runs['vqa']}"]) as url:
        expected = api_predict(url, "vqa", image, question=QUESTION)
        open_page(driver, url)
        wait_for(driver, lambda d: by_id(d, "run").get_attribute("value"), "the runs")
        assert not by_id(driver, "questionbox").is_displayed()
        Select(by_id(driver, "run")).select_by_value("vqa")
        assert by_id(driver, "questionbox").is_displayed()
        upload(driver, image)
        assert not by_id(driver, "go").is_enabled()  # a VQA run needs its question
        by_id(driver, "question").send_keys(QUESTION)
        predict_on_page(driver)

        assert by_id(driver, "prediction-answer").text == str(expected["prediction"]["answer"])
        assert "vqa (vqa)" in by_id(driver, "result").text
        assert console_errors(driver) == []


def test_api_key_is_asked_for_then_used(driver, runs, image):
    with serving([f"shapes={runs['shapes']}"], api_key=API_KEY) as url:
        expected = api_predict(url, "shapes", image)
        open_page(driver, url)
        wait_for(driver, lambda d: by_id(d, "keybox").is_displayed(), "the API key box")
        assert "API key" in by_id(driver, "result").text
        upload(driver, image)
        assert not by_id(driver, "go").is_enabled()  # no key, no runs yet
        by_id(driver, "key").send_keys("wrong-key")
        assert press_predict(driver) == "error"
        assert "API key was refused" in by_id(driver, "result").text
        by_id(driver, "key").clear()
        by_id(driver, "key").send_keys(API_KEY)
        predict_on_page(driver)  # Predict loads the runs with the key, then predicts

        assert by_id(driver, "prediction-label").text == expected["prediction"]["label"]
        assert by_id(driver, "run").get_attribute("value") == "shapes"
        # only the requests for the runs without the key, and with the wrong one, were refused
        assert console_errors(driver, allowed=r"/v1/runs - .* status of 401\b") == []
