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


def shown(driver) -> list[str]:
    """The text of each choice on the page (what the model wrote, without the prompt)."""
    return driver.execute_script("return [...document.querySelectorAll('#output .choice .text')]"
                                 ".map(e => e.textContent)")


def press_generate(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "generate").click()
    output = driver.find_element(By.ID, "output")
    wait_for(lambda: output.get_attribute("data-state") in ("done", "failed"), what="the stream to end")
    assert output.get_attribute("data-state") == "done", driver.find_element(By.ID, "error").text


def generate(driver, url: str, prompt: str, **settings) -> str:
    """Load the page, type the prompt and settings (by element id), press Generate, wait for the stream to end;
    the text shown (of the first choice)."""
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    wait_for(lambda: "parrot" in driver.find_element(By.ID, "model").text, what="the model's name")
    fill(driver, "prompt", prompt)
    for name, value in settings.items():
        fill(driver, name.replace("_", "-"), str(value))
    press_generate(driver)
    return shown(driver)[0]


def api(url: str, **body) -> dict:
    return httpx.post(url + "/v1/completions", json=body, timeout=60).json()


def test_type_a_prime_generate_and_see_the_apis_text(served, browser, shots):
    from selenium.webdriver.common.by import By

    url, _ = served
    text = generate(browser, url, "the quick", seed=7, temperature=0.9, length=300)
    same = api(url, prompt="the quick", seed=7, temperature=0.9, top_p=1, top_k=0, max_tokens=300)
    assert text == same["choices"][0]["text"] and len(text) == 300
    assert browser.execute_script("return document.querySelector('#output .prompt').textContent") == "the quick"
    assert "300 characters in" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(shots / "playground.png"))
    browser.find_element(By.ID, "beam").click()  # beam mode: the API's beam search, streamed
    fill(browser, "length", "80")
    press_generate(browser)
    beam = api(url, prompt="the quick", width=5, max_tokens=80)
    assert shown(browser) == [beam["choices"][0]["text"]]


def test_markup_in_the_prompt_and_the_output_is_shown_as_text(served, browser, shots):
    from selenium.common.exceptions import NoAlertPresentException

    url, _ = served
    prompt = "<script>document.title='pwned'</script>"
    generate(browser, url, prompt, temperature=0, length=200, n=2)
    texts = shown(browser)
    assert len(texts) == 2 and texts[0] == texts[1]  # greedy: both choices write the same
    assert "<script>document.title='pwned'</script><img src=x onerror=alert(1)>" in texts[0]  # the model wrote markup
    injected = browser.execute_script("return document.querySelectorAll('#output script, #output img, #output b')"
                                      ".length")
    assert injected == 0 and browser.title == "charrnn playground"
    prompts = browser.execute_script("return [...document.querySelectorAll('#output .prompt')].map(e => e.textContent)")
    assert prompts == [prompt, prompt]
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    browser.save_screenshot(str(shots / "playground-markup.png"))


def test_the_card_names_the_unit_and_offers_its_prompt_and_an_older_card_falls_back(served, browser):
    """The card's unit and prompt are shown; a server whose card lacks them: "characters" and the vocabulary's
    first capital letter. Whatever the card holds is shown as text (a markup model id runs nothing)."""
    from selenium.webdriver.common.by import By

    url, _ = served
    card = httpx.get(url + "/v1/models").json()["data"][0]["charrnn"]
    assert card["unit"] == "characters" and card["prompt"] == ""  # the parrot's text has no capital letter
    browser.get(url + "/")
    model = browser.find_element(By.ID, "model")
    wait_for(lambda: "parrot" in model.text, what="the model's name")
    assert model.text.endswith(f"vocabulary: {card['vocab_size']} characters")
    assert browser.find_element(By.ID, "length-unit").text == "(characters)"
    older = {"id": "<img src=x onerror=alert(1)>", "charrnn": {"cell": "lstm", "layers": 1, "hidden": 8,
                                                                "vocab_size": 5, "vocab": "\nab:Xy"}}
    browser.execute_script(
        "const card = arguments[0];"
        "window.fetch = async () => new Response(JSON.stringify({data: [card]}));"
        "document.getElementById('prompt').value = '';"
        "return describeModel();", older)
    assert model.text == "<img src=x onerror=alert(1)> · lstm 1×8 · vocabulary: 5 characters"
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == "X"
    assert browser.execute_script("return document.querySelectorAll('header img').length") == 0


def test_n_texts_side_by_side_each_streamed_as_the_api_writes_them(served, browser, shots):
    from selenium.webdriver.common.by import By

    url, _ = served
    generate(browser, url, "the lazy", seed=11, temperature=1.5, top_k=12, length=60, n=3)
    same = api(url, prompt="the lazy", seed=11, temperature=1.5, top_k=12, n=3, max_tokens=60)
    texts = shown(browser)
    assert texts == [c["text"] for c in sorted(same["choices"], key=lambda c: c["index"])]
    assert len(set(texts)) == 3  # three different draws, not one repeated
    boxes = browser.find_elements(By.CSS_SELECTOR, "#output .choice")
    assert len({b.location["y"] for b in boxes}) == 1 and len({b.location["x"] for b in boxes}) == 3  # one row
    assert "3 texts, 180 characters in all" in browser.find_element(By.ID, "status").text
    browser.save_screenshot(str(shots / "playground-n.png"))


def test_stop_strings_end_a_sample_and_a_beam_search_with_no_repeat(served, browser):
    from selenium.webdriver.common.by import By

    url, _ = served
    # Two stop strings, one a line: "jumps" and a line break typed as \n. Like OpenAI's, the text ends before it.
    text = generate(browser, url, "the quick", temperature=0, length=200, stop="jumps\n\\n")
    same = api(url, prompt="the quick", temperature=0, max_tokens=200, stop=["jumps", "\n"])
    assert text == same["choices"][0]["text"] == " brown fox "
    assert "stopped at the stop string" in browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "beam").click()
    for name, value in {"width": 4, "top": 2, "no-repeat": 6, "stop": "\\n"}.items():
        fill(browser, name, str(value))
    press_generate(browser)
    beams = api(url, prompt="the quick", width=4, top=2, no_repeat=6, stop=["\n"], max_tokens=200)
    texts = shown(browser)
    assert texts == [c["text"] for c in sorted(beams["choices"], key=lambda c: c["index"])]
    assert all(len(t) < 100 for t in texts)  # each ended at a line break (\n read as one), not at 200 characters
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#output .caption")]
    assert len(captions) == 2 and captions[0].startswith("choice 1 · ")


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


@pytest.fixture(scope="module")
def word_served(tmp_path_factory):
    """A tiny word-token model of the parrot's text, its checkpoint offering how a line of that text starts."""
    from charrnn import TrainConfig, train_on_text
    from charrnn.text.corpus import opening
    from tests.conftest import PARROT_TEXT

    out = tmp_path_factory.mktemp("words")
    cfg = TrainConfig(steps=60, batch_size=4, seq_len=16, lr=2e-2, eval_every=60, sample_every=0, threads=1,
                      precision="fp32", device="cpu")
    train_on_text(PARROT_TEXT, {"hidden": 32, "embed": 8, "layers": 1}, cfg, out, kind="word",
                  meta={"prompt": opening(PARROT_TEXT)})
    with live_server(out / "best.pt") as (url, _, _):
        yield url


def test_a_word_model_is_described_in_word_tokens_with_its_own_prompt(word_served, browser):
    from selenium.webdriver.common.by import By

    card = httpx.get(word_served + "/v1/models").json()["data"][0]["charrnn"]
    assert card["unit"] == "word tokens" and card["prompt"] == "the quick brown fox"
    browser.get(word_served + "/")
    model = browser.find_element(By.ID, "model")
    wait_for(lambda: "parrot" in model.text, what="the model's name")
    assert model.text.endswith(f"vocabulary: {card['vocab_size']} word tokens")
    assert browser.find_element(By.ID, "length-unit").text == "(word tokens)"
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == "the quick brown fox"  # offered as is
    fill(browser, "temperature", "0")
    fill(browser, "length", "12")
    press_generate(browser)
    same = api(word_served, prompt="the quick brown fox", temperature=0, max_tokens=12)
    text = same["choices"][0]["text"]
    assert shown(browser) == [text]
    status = browser.find_element(By.ID, "status").text  # the server's count, in the model's unit
    assert status.startswith(f"{same['usage']['completion_tokens']} word tokens ({len(text)} characters) in ")


def test_readable_at_phone_width(served, browser, shots):
    from selenium.webdriver.common.by import By

    url, _ = served
    browser.set_window_size(390, 844)
    try:
        generate(browser, url, "the lazy", seed=1, length=120, n=2)
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0  # nothing sticks out sideways
        boxes = browser.find_elements(By.CSS_SELECTOR, "#output .choice")
        assert len(boxes) == 2 and boxes[0].location["y"] < boxes[1].location["y"]  # one below the other
        browser.save_screenshot(str(shots / "playground-phone.png"))
    finally:
        browser.set_window_size(1100, 900)
