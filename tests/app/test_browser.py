"""`semcomp app` in a real browser: headless Chromium loads the rate–distortion page.

Runs wherever Chromium and chromedriver are installed (CI installs Debian's
``chromium`` and ``chromium-driver`` and sets ``SEMCOMP_REQUIRE_BROWSER=1``, so
a missing browser fails there instead of skipping).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SEMCOMP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SEMCOMP_CHROMEDRIVER", "/usr/bin/chromedriver")
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not HAVE_BROWSER and not os.environ.get("SEMCOMP_REQUIRE_BROWSER"),
        reason=f"no {CHROMIUM} / {CHROMEDRIVER} (set SEMCOMP_REQUIRE_BROWSER=1 to fail instead)",
    ),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def running_app(all_methods_study, tmp_path):
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "semcomp",
            "app",
            str(all_methods_study),
            "--port",
            str(port),
            "--no-browser",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"semcomp app did not start: {(tmp_path / 'app.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def test_rate_distortion_page_renders_in_chromium(running_app, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"{running_app}/rate_distortion")
        wait = WebDriverWait(driver, 90)
        wait.until(
            ready.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot .main-svg"))
        )
        curve_point = wait.until(
            ready.presence_of_element_located((By.CSS_SELECTOR, ".scatterlayer .points path"))
        )
        assert driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", curve_point)
        webdriver.ActionChains(driver).move_to_element(curve_point).click().perform()
        image = wait.until(
            ready.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stImage'] img"))
        )
        wait.until(
            lambda _: driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", image
            )
        )
        screenshot = tmp_path / "rate_distortion.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
    finally:
        driver.quit()
