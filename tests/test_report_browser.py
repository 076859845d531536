"""report.html as a reader's browser sees it: headless Chromium driven by selenium.

Checks what a text check of the HTML cannot: the page loads without console errors,
fetches nothing beyond its own file (charts are data URIs), and every chart decodes.
A full-page screenshot is left in results/test-output/ for a person to look at.

Needs selenium plus Debian's chromium and chromium-driver (.ci/run installs them);
skipped otherwise.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chromium.webdriver import ChromiumDriver as WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "results" / "test-output" / "report-browser.png"
LOCAL_SCHEMES = ("file:", "data:")

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

# Skip at import time, before the module fixture spends seconds building the report.
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
)
for _binary, _package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
    if not _binary.exists():
        pytest.skip(f"{_binary} is missing (apt-get install {_package})", allow_module_level=True)


@dataclass
class PageLoad:
    """What one navigation left in the browser's logs."""

    console: list[dict[str, Any]]
    requests: list[str]  # URLs of Network.requestWillBeSent, in order

    @property
    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.console if e["level"] == "SEVERE"]

    @property
    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module, quit at teardown even when a test fails."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # explicit paths: selenium-manager never runs
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    try:
        browser.set_page_load_timeout(15)
        # Chromium opens on its new-tab page, whose chrome:// requests would land in the
        # first test's log; leave it for a blank page before any test drains the logs.
        browser.get("about:blank")
        yield browser
    finally:
        browser.quit()


def load(driver: WebDriver, url: str) -> PageLoad:
    """Navigate to `url` (get() returns after the load event, so images have settled)
    and return the logs of that navigation alone."""
    driver.get_log("browser")  # reading a log drains it: drop what earlier pages left
    driver.get_log("performance")
    driver.get(url)
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    return PageLoad(console=driver.get_log("browser"), requests=requests)


def test_foreign_request_is_caught(driver: WebDriver, tmp_path: Path) -> None:
    """The network and console checks below can fail: a page with a remote image trips both.
    Port 9 (discard) on loopback refuses at once, so this costs nothing."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><title>leaky</title><img src="http://127.0.0.1:9/x.png">')
    loaded = load(driver, page.as_uri())
    assert page.as_uri() in loaded.requests  # the log sees the page itself
    assert loaded.foreign_requests == ["http://127.0.0.1:9/x.png"]
    assert loaded.console_errors, "a failed image load should be a SEVERE console entry"


def test_report_in_browser(
    driver: WebDriver, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = built / "report.html"
    loaded = load(driver, html.as_uri())

    assert loaded.console_errors == []
    assert html.as_uri() in loaded.requests, "performance log recorded no request"
    assert loaded.foreign_requests == []

    run_id = json.loads((built / "metadata.json").read_text())["run_id"]
    assert driver.execute_script(
        "return Array.from(document.querySelectorAll('h1'), h => h.textContent)"
    ) == [f"sockbench report: {run_id}"]

    images = driver.execute_script(
        "return Array.from(document.images, i =>"
        " ({alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth}))"
    )
    listed = re.findall(
        r"^!\[[^\]]*\]\(charts/[^)]+\)$", (built / "report.md").read_text(), flags=re.MULTILINE
    )
    assert listed, "report.md lists no chart"
    assert len(images) == len(listed)
    broken = [i["alt"] for i in images if not (i["complete"] and i["naturalWidth"] > 0)]
    assert broken == []

    save_screenshot(driver, SCREENSHOT)
    with capsys.disabled():  # shown even when the test passes
        print(f"\nscreenshot of report.html: {SCREENSHOT}")


def save_screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page, not just the viewport: clip to the content size."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
