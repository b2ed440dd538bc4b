"""The web console in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven
by Selenium) against a real `punktfunk serve --gamestream` and the real Moonlight client.

Phone-sized window (390x844). Log in; a Moonlight client waits in pairing, the console shows
it and takes the PIN, the client is paired (and a second one); its stream appears on Home with
a live fps figure from the event stream; the second client's launch is refused
(max_sessions=1) with the reason, which Home shows; "End session" there stops the client; a
setting changed on the Settings page lands in host.env. Screenshots of each step are kept
under the test's tmp dir (and under $PF_ARTIFACTS_DIR when set).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console_client import password_from
from gs_host import BASE_PORT, Host, drive, finish_drive, start_drive

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CONSOLE_PORT = BASE_PORT + 42
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian chromium and chromium-driver"
)
PIN = "5678"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    h = Host(tmp_path_factory.mktemp("console-browser"), "--display", "pattern",
             "--console-port", str(CONSOLE_PORT), "--max-sessions", "1")  # fmt: skip
    deadline = time.monotonic() + 30
    while "console.ready" not in h.log.read_text():
        assert time.monotonic() < deadline and h.proc.poll() is None, h.log.read_text()[-3000:]
        time.sleep(0.2)
    yield h
    h.stop()
    h.kill()


@pytest.fixture(scope="module")
def browser(host: Host) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=390,844", "--ignore-certificate-errors"):  # fmt: skip
        options.add_argument(arg)  # the console's certificate is the host's self-signed one
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Shots:
    def __init__(self, driver: webdriver.Chrome, where: Path) -> None:
        self.driver, self.where = driver, where
        where.mkdir(parents=True, exist_ok=True)
        extra = os.environ.get("PF_ARTIFACTS_DIR")
        self.extra = Path(extra) / "console" if extra else None

    def take(self, name: str) -> None:
        path = self.where / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)


def _wait(driver: webdriver.Chrome, what, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(what)


def test_console_pairs_shows_ends_and_configures(host: Host, browser: webdriver.Chrome,
                                                 tmp_path: Path) -> None:  # fmt: skip
    shots = Shots(browser, tmp_path / "screens")
    tmp = host.state.parent
    browser.get(f"https://127.0.0.1:{CONSOLE_PORT}/")
    _wait(browser, lambda d: d.find_element(By.ID, "password").is_displayed())
    browser.find_element(By.ID, "password").send_keys(password_from(host.log.read_text()))
    browser.find_element(By.ID, "login-btn").click()
    _wait(browser, lambda d: d.find_element(By.ID, "nav").is_displayed())
    shots.take("1-home")

    # Pair: Moonlight waits with its PIN; the console shows it waiting and takes the PIN.
    # A second client pairs the same way (it is refused a stream below: max_sessions=1).
    for where, pin in ((tmp, PIN), (tmp / "second", "2468")):
        browser.get(f"https://127.0.0.1:{CONSOLE_PORT}/#pair")
        pairing = start_drive(where, "--pair-only", "--pin", pin)
        try:
            _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#waiting .waiting-client"))
            shots.take("2-waiting")
            field = browser.find_element(By.ID, "pin")
            field.clear()
            field.send_keys(pin)
            browser.find_element(By.ID, "pair-btn").click()
            result = finish_drive(pairing, timeout=60)
        finally:
            if pairing.poll() is None:
                pairing.kill()
        assert result.get("paired") is True, result
    browser.find_element(By.CSS_SELECTOR, 'a[href="#clients"]').click()
    _wait(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#clients-table .client-row")) == 2
    )
    shots.take("3-clients")

    # Stream: the session shows on Home with a live fps figure; End session stops the client.
    stream = start_drive(tmp, "--until-terminated", "--mode", "640x480x30", "--seconds", "60")
    try:
        browser.find_element(By.CSS_SELECTOR, 'a[href="#home"]').click()
        fps = _wait(browser, lambda d: [float(e.text) for e in
                                        d.find_elements(By.CSS_SELECTOR, "#sessions .fps")
                                        if e.text.replace(".", "").isdigit() and
                                        float(e.text) > 0], timeout=60)  # fmt: skip
        assert fps[0] > 0
        refused = drive(tmp / "second", "--launch-only")
        assert refused["launched"] is False and "max_sessions" in refused["launch_error"], refused
        _wait(browser, lambda d: "max_sessions" in d.find_element(By.ID, "refusal-note").text)
        time.sleep(3)  # a few points on the chart for the screenshot
        shots.take("4-live-session")
        browser.find_element(By.CSS_SELECTOR, "#sessions .end-btn").click()
        result = finish_drive(stream, timeout=60)
    finally:
        if stream.poll() is None:
            stream.kill()
    assert result["terminated"] is True and result["decoded"] > 0, result
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#sessions .session"))
    shots.take("5-ended")

    # Settings: change one, see it in host.env.
    browser.find_element(By.CSS_SELECTOR, 'a[href="#settings"]').click()
    knob = '[data-setting="bitrate_max_kbps"]'
    setting = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, knob))
    setting.clear()
    setting.send_keys("80000")
    browser.find_element(By.ID, "settings-save").click()
    _wait(browser, lambda d: "saved" in d.find_element(By.ID, "settings-result").text)
    shots.take("6-settings")
    assert "PUNKTFUNK_BITRATE_MAX_KBPS=80000" in (tmp / "none.env").read_text()
    print(f"screenshots: {shots.where}")
