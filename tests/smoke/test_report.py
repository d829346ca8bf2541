"""``viewfinder report`` on real tiny runs of every task family (classify, a classify fold set,
iqa+caption, vqa), then the page in Debian's headless Chromium: every section visible, sorting
works, the console is clean.

The browser is the system's (``.ci/run`` installs ``chromium`` and ``chromium-driver`` where it is
root with apt-get); Selenium Manager is never asked for one (explicit binary and driver paths), so
nothing is downloaded. Without a browser the browser test skips, saying what to install.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import viewfinder
from tests.browser import BROWSER, DRIVER, NO_BROWSER, headless_chromium
from tests.helpers import run_cli
from tests.smoke.conftest import FAST
from viewfinder.report import build_report

TASK_IDS = ("classify", "iqa-caption", "vqa")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny runs (one a 2-fold set), each evaluated where the task has views; trained once."""
    out = tmp_path_factory.mktemp("report_runs")
    common = {
        "model": "cnn",
        "output_dir": str(out),
        "progress": False,
        "precision_probe": False,
        **FAST,
    }  # no numerics probe: seconds of timing per new model and size
    shapes = viewfinder.train("classify", data=str(demo_data.classify), **common)
    shapes.evaluate(split="test")
    viewfinder.train("classify", data=str(demo_data.classify), folds=2, name="folded",
                     **{**common, "epochs": 1})  # fmt: skip
    quality = viewfinder.train("iqa+caption", data=str(demo_data.iqa), min_count=1, **common)
    quality.evaluate(split="test")
    questions = viewfinder.train("vqa", data=str(demo_data.vqa), min_count=1, **common)
    questions.evaluate(split="test")
    return out


@pytest.fixture(scope="module")
def report(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, count = build_report([runs], tmp_path_factory.mktemp("report") / "report.html")
    assert count == 4
    return path


def test_report_of_real_runs(report: Path) -> None:
    text = report.read_text()
    for task in TASK_IDS:
        for kind in ("comparison", "curves", "runs"):
            assert f'id="{kind}-{task}"' in text
    assert text.count('<details class="run"') == 4
    # each evaluated run shows its views; the fold set says how to make its views
    assert text.count('class="task-section"') == 3
    assert text.count('class="task-section missing"') == 1
    for view in ("Per class", "Most confident mistakes", "Folds", "Error by MOS range",
                 "Captions", "Accuracy per answer type", "First "):  # fmt: skip
        assert view in text, view
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "http://" not in text and "https://" not in text
    # the classify comparison lists the run and the fold set (compare's rows, fit column)
    table = text.split('id="comparison-classify"')[1].split("</table>")[0]
    assert table.split("<tbody>")[1].count("<tr>") == 2 and ">fit" in table


def test_cli_writes_the_named_file(runs: Path, tmp_path: Path) -> None:
    done = run_cli("report", str(runs / "vqa"), str(runs / "iqa+caption"), "-o", "out/r.html",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "report of 2 runs written to out/r.html" in done.stdout
    assert (tmp_path / "out" / "r.html").stat().st_size > 10_000


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if not (BROWSER and DRIVER):
        pytest.skip(NO_BROWSER)
    browser = headless_chromium(1280, 900)
    yield browser
    browser.quit()


def _column(driver: Any, table: Any, index: int) -> list[str]:
    return [row.find_elements("tag name", "td")[index].get_attribute("data-v")
            for row in table.find_elements("css selector", "tbody tr")]  # fmt: skip


def test_report_in_a_browser(report: Path, driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.get(report.resolve().as_uri())
    driver.find_element(By.ID, "toggle-runs").click()  # open every run's section
    for task in TASK_IDS:
        for kind in ("task", "comparison", "curves", "runs"):
            assert driver.find_element(By.ID, f"{kind}-{task}").is_displayed(), (kind, task)
    sections = driver.find_elements(By.CSS_SELECTOR, "details.run")
    assert len(sections) == 4 and all(s.get_attribute("open") for s in sections)
    for element in driver.find_elements(By.CSS_SELECTOR, "section.task-section, table, figure"):
        driver.execute_script("arguments[0].scrollIntoView()", element)
        assert element.is_displayed()
    # every inline image decoded (a broken data URI has naturalWidth 0)
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || !i.naturalWidth).length"
    )
    assert broken == 0
    # a click on a header sorts the comparison (first click: descending)
    table = driver.find_element(By.CSS_SELECTOR, "#comparison-classify table")
    header = table.find_elements(By.TAG_NAME, "th")[2]  # loss
    driver.execute_script("arguments[0].scrollIntoView()", header)
    header.click()
    values = [float(v) for v in _column(driver, table, 2)]
    assert values == sorted(values, reverse=True)
    header.click()
    assert [float(v) for v in _column(driver, table, 2)] == sorted(values)
    assert driver.save_screenshot(str(tmp_path / "report.png"))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
