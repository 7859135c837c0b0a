"""The page in headless Chromium: type a caption, press Generate, see images."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import running_server
from xmc_service.app import create_app
from xmc_service.settings import Settings

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="needs both Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1000,800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_type_a_caption_and_see_images(tiny_pipeline: Any, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app = create_app(Settings(max_wait_ms=2.0, api_keys=["secret"]), pipeline=tiny_pipeline)
    with running_server(app) as base:
        browser.get(f"{base}/")
        browser.find_element(By.ID, "caption").send_keys("a red circle")
        count = browser.find_element(By.ID, "n")
        count.clear()
        count.send_keys("3")
        button = browser.find_element(By.ID, "generate")
        status = browser.find_element(By.ID, "status")
        button.click()  # no API key yet: the page shows the server's error
        WebDriverWait(browser, 30).until(lambda _: status.text.startswith("Error"))
        assert "API key" in status.text and status.get_attribute("class") == "error"

        browser.find_element(By.ID, "key").send_keys("secret")
        button.click()
        WebDriverWait(browser, 30).until(
            lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#images img")) == 3
        )
        images = browser.find_elements(By.CSS_SELECTOR, "#images img")
        WebDriverWait(browser, 10).until(
            lambda driver: all(
                driver.execute_script("return arguments[0].naturalWidth", image) == 32
                for image in images
            )
        )
        assert images[0].get_attribute("alt") == "a red circle"
        assert "3 image(s)" in status.text and status.get_attribute("class") == ""

        browser.find_element(By.ID, "walk-to").send_keys("a blue square")
        browser.find_element(By.ID, "seed").send_keys("3")
        frames = browser.find_element(By.ID, "frames")
        frames.clear()
        frames.send_keys("4")
        browser.find_element(By.ID, "interpolate").click()
        animation = browser.find_element(By.ID, "animation")
        WebDriverWait(browser, 30).until(
            lambda driver: (
                driver.execute_script("return arguments[0].naturalWidth", animation) == 32
            )
        )
        walk_status = browser.find_element(By.ID, "walk-status").text
        assert walk_status == "4 frames, seeds 3,3", walk_status
        assert animation.get_attribute("alt") == "a red circle → a blue square"
        browser.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 1000
