"""`semcomp app` in a real browser: headless Chromium loads the rate–distortion page.

Runs wherever Chromium and chromedriver are installed (CI installs Debian's
``chromium`` and ``chromium-driver`` and sets ``SEMCOMP_REQUIRE_BROWSER=1``, so
a missing browser fails there instead of skipping).
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import app_answers, serving_app

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
    # no GPU here: WebGL (plotly's Scattergl draws the per-candidate points) through
    # SwiftShader, which recent Chromium only allows when asked to
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
]


@pytest.fixture
def running_app(all_methods_study, tmp_path):
    """``(url, process)`` of `semcomp app` on a free port, in a process group of its own."""
    with serving_app(all_methods_study, tmp_path / "app.log") as running:
        yield running


def save_screenshot(driver, tmp_path: Path, name: str) -> Path:
    """A screenshot in the test's folder, and in ``$SEMCOMP_ARTIFACTS`` when set (CI keeps it)."""
    screenshot = tmp_path / name
    driver.save_screenshot(str(screenshot))
    artifacts = os.environ.get("SEMCOMP_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, Path(artifacts) / name)
    print(f"screenshot: {screenshot}")
    return screenshot


def chromium(tmp_path: Path):
    """A headless Chromium (selenium driver) with a profile in the test's folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_rate_distortion_page_renders_in_chromium(running_app, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    url, server = running_app
    driver = chromium(tmp_path)
    try:
        assert driver.execute_script(
            "return !!document.createElement('canvas').getContext('webgl')"
        ), "no WebGL in this Chromium: the per-candidate points (Scattergl) would not be drawn"
        driver.get(f"{url}/rate_distortion")
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
        screenshot = save_screenshot(driver, tmp_path, "rate_distortion.png")
        assert screenshot.stat().st_size > 10_000

        # per-image points: every candidate, drawn by WebGL on a canvas
        choice = driver.find_element(By.XPATH, "//label[.//p[text()='per-image points']]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", choice)
        choice.click()
        wait.until(
            ready.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot canvas.gl-canvas"))
        )
        # the aggregated curves (SVG) are gone: the chart now holds only the WebGL points
        wait.until(lambda _: not driver.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace"))
        assert "WebGL is not supported" not in driver.find_element(By.TAG_NAME, "body").text
        save_screenshot(driver, tmp_path, "rate_distortion_points.png")
    finally:
        driver.quit()

    server.terminate()  # as a user stops it: SIGTERM to `semcomp app` only, not its group
    server.wait(timeout=20)
    deadline = time.monotonic() + 10
    while app_answers(url) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not app_answers(url), "the Streamlit server outlived `semcomp app`"


def test_a_crafted_study_makes_the_browser_fetch_nothing_from_elsewhere(
    crafted_study, beacon, tmp_path
):
    """Markdown images in the study name, a method name and the captions, pointing at
    another local port: every page shows them as text and the browser never asks it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    root, strings = crafted_study
    with serving_app(root, tmp_path / "app.log") as (url, _):
        driver = chromium(tmp_path)
        try:
            wait = WebDriverWait(driver, 90)
            for page, shown in (
                ("", strings["study"]),
                ("/explorer", strings["caption"]),
                ("/rate_distortion", strings["study"]),
            ):
                driver.get(f"{url}{page}")
                # the sidebar's study line, and on the explorer the candidate's image
                drawn = "[data-testid='stSidebar'] [data-testid='stCaptionContainer']"
                if page == "/explorer":
                    drawn = "[data-testid='stImage'] img"
                wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, drawn)))
                time.sleep(2)  # time for any image the page holds to be requested
                assert beacon.requests == [], page
                body = driver.find_element(By.TAG_NAME, "body").text
                assert shown in body and strings["study"] in body, page  # shown as text
            save_screenshot(driver, tmp_path, "crafted_study_explorer.png")
        finally:
            driver.quit()
    assert beacon.requests == []
