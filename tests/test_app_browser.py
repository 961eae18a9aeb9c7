"""The web app in a real headless browser (Debian's chromium through selenium): load the page, upload
an image and an audio file, click Animate, wait for the video element, and check that the page's
screenshot shows it. `.ci/run` installs chromium when it runs as root and then requires this test
(ASVA_BROWSER_TEST=required); elsewhere it runs when a chromium and its driver are found."""

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.app_server import serve
from tests.sampling_checkpoint import media, tiny_checkpoint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("ASVA_BROWSER_TEST") == "required"

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER) and not REQUIRED,
                                reason="no chromium + chromedriver here (.ci/run installs them when root)")


@pytest.fixture
def browser():
  assert CHROMIUM and DRIVER, "ASVA_BROWSER_TEST=required but chromium or chromedriver is missing"
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
              "--autoplay-policy=no-user-gesture-required"):
    options.add_argument(arg)
  driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
  try:
    yield driver
  finally:
    driver.quit()


def shot(element) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"))


def test_page_uploads_animates_and_shows_the_video(browser, tmp_path):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import WebDriverWait
  files = media(2.0)
  with serve(tiny_checkpoint(), tmp_path / "server.log") as (url, _):
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    wait.until(ec.element_to_be_clickable((By.ID, "animate")))
    before = shot(browser.find_element(By.ID, "result-video"))
    browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(files["image"]))
    browser.find_element(By.CSS_SELECTOR, "#audio input[type=file]").send_keys(str(files["audio"]))
    # both uploads done: each file block then shows its file's size
    wait.until(lambda d: all("KB" in d.find_element(By.ID, block).text for block in ("image", "audio")))
    browser.find_element(By.ID, "animate").click()
    video = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result-video video")))
    wait.until(lambda d: video.get_attribute("src") and d.execute_script("return arguments[0].readyState", video) >= 2)
    assert "12 frames at 6 fps" in browser.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")
    browser.save_screenshot(str(tmp_path / "page.png"))
    after = shot(browser.find_element(By.ID, "result-video"))
  # the video block now shows the animation's frame (the tiny random model's colourful noise), not the
  # empty placeholder it showed before
  colours = lambda a: len(np.unique(a.reshape(-1, 3), axis=0))
  assert colours(after) > 4 * colours(before) and colours(after) > 200
  assert before.shape != after.shape or np.abs(after.astype(int) - before.astype(int)).mean() > 5
