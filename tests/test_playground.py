"""The playground at / in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium.

Skipped, saying why, where no Chromium is installed; .ci/run installs it so CI runs it.
Screenshots go to the test's temporary folder, or to $CHARRNN_SCREENSHOTS if that is set.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install 'charrnn[serve]'")
pytest.importorskip("selenium", reason="needs selenium (the test extra)")
httpx = pytest.importorskip("httpx")

from tests.serving import live_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no Chromium here: the browser test needs Debian's chromium and chromium-driver "
           "(apt-get install chromium chromium-driver; .ci/run installs them)")


@pytest.fixture(scope="module")
def served(parrot_run):
    with live_server(parrot_run / "best.pt") as (url, app, _):
        yield url, app


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("CHARRNN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(condition, timeout: float = 30, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def fill(driver, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(text)


def generate(driver, url: str, prompt: str, **settings) -> str:
    """Load the page, type the prompt and settings, press Generate, wait for the stream to end; the text shown."""
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    wait_for(lambda: "parrot" in driver.find_element(By.ID, "model").text, what="the model's name")
    fill(driver, "prompt", prompt)
    for name, value in settings.items():
        fill(driver, name, str(value))
    driver.find_element(By.ID, "generate").click()
    output = driver.find_element(By.ID, "output")
    wait_for(lambda: output.get_attribute("data-state") in ("done", "failed"), what="the stream to end")
    assert output.get_attribute("data-state") == "done", driver.find_element(By.ID, "error").text
    return driver.execute_script("return document.getElementById('output-text').textContent")


def test_type_a_prime_generate_and_see_the_apis_text(served, browser, shots):
    from selenium.webdriver.common.by import By

    url, _ = served
    shown = generate(browser, url, "the quick", seed=7, temperature=0.9, length=300)
    api = httpx.post(url + "/v1/completions", json={"prompt": "the quick", "seed": 7, "temperature": 0.9, "top_p": 1,
                                                    "max_tokens": 300}, timeout=60).json()
    assert shown == api["choices"][0]["text"] and len(shown) == 300
    assert browser.find_element(By.ID, "output-prompt").text == "the quick"
    assert "300 characters in" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(shots / "playground.png"))
    browser.find_element(By.ID, "beam").click()  # beam mode: the API's beam search, streamed
    fill(browser, "length", "80")
    browser.find_element(By.ID, "generate").click()
    output = browser.find_element(By.ID, "output")
    wait_for(lambda: output.get_attribute("data-state") == "done", what="the beam search")
    beam = httpx.post(url + "/v1/completions", json={"prompt": "the quick", "width": 5, "max_tokens": 80}).json()
    shown = browser.execute_script("return document.getElementById('output-text').textContent")
    assert shown == beam["choices"][0]["text"]


def test_markup_in_the_prompt_and_the_output_is_shown_as_text(served, browser, shots):
    from selenium.common.exceptions import NoAlertPresentException

    url, _ = served
    prompt = "<script>document.title='pwned'</script>"
    shown = generate(browser, url, prompt, temperature=0, length=200)
    assert "<script>document.title='pwned'</script><img src=x onerror=alert(1)>" in shown  # the model wrote markup
    injected = browser.execute_script("return document.querySelectorAll('#output script, #output img, #output b').length")
    assert injected == 0 and browser.title == "charrnn playground"
    assert browser.execute_script("return document.getElementById('output-prompt').textContent") == prompt
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    browser.save_screenshot(str(shots / "playground-markup.png"))


def test_the_surprise_view_colours_a_pasted_text_with_bits_on_hover(served, browser, shots):
    from selenium.webdriver.common.by import By

    url, _ = served
    browser.get(url + "/")
    browser.find_element(By.ID, "tab-surprise").click()
    text = "the quick brown fox jumps over the lazy cat.\n<b>bold?</b> é"
    fill(browser, "score-text", text)
    browser.find_element(By.ID, "score").click()
    scored = browser.find_element(By.ID, "scored")
    wait_for(lambda: scored.get_attribute("data-state") == "done", what="the scores")
    spans = scored.find_elements(By.TAG_NAME, "span")
    assert len(spans) == len(text) and scored.find_elements(By.TAG_NAME, "b") == []
    titles = [s.get_attribute("title") for s in spans]
    assert titles[0] == "not scored" and titles[-1] == "not scored"  # the first character, and é (never seen)
    cat = text.index("cat")
    bits = [float(t.split()[0]) for t in titles[1:cat] if t.endswith(" bits")]
    assert float(titles[cat].split()[0]) > 4 > max(bits[3:])  # "c" where "dog" should be: a surprise
    assert "bits/char" in browser.find_element(By.ID, "score-summary").text
    browser.save_screenshot(str(shots / "playground-surprise.png"))


def test_readable_at_phone_width(served, browser, shots):
    url, _ = served
    browser.set_window_size(390, 844)
    try:
        generate(browser, url, "the lazy", seed=1, length=120)
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0  # nothing sticks out sideways
        browser.save_screenshot(str(shots / "playground-phone.png"))
    finally:
        browser.set_window_size(1100, 900)
