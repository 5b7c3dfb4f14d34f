"""The exported web page (`charrnn.export.html`): one file that writes what torch writes, and nothing else.

The page is opened from disk (file://) in headless Chromium (Debian's chromium + chromium-driver, driven
by Selenium, as in test_playground); those tests are skipped, saying why, where no Chromium is installed.
With temperature 0 the page must write exactly what `sample_text` writes: for LSTM, GRU and RNN
character models, a word model and a byte model.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import time
import unicodedata
from pathlib import Path

import pytest

from charrnn.export.html import default_prompt, export_html, page_name
from charrnn.generation.sampling import sample_text
from charrnn.text.bytevocab import ByteVocab
from charrnn.text.vocab import Vocab
from charrnn.text.wordvocab import split_words
from charrnn.training.checkpoint import load_checkpoint, load_model
from charrnn.util.errors import CharrnnError
from tests.conftest import PARROT_TEXT, TINY_TEXT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no Chromium here: the browser tests need Debian's chromium and chromium-driver "
           "(apt-get install chromium chromium-driver)")

# A text with 2-, 3- and 4-byte characters, for the byte model: its page must never write broken UTF-8.
BYTE_TEXT = "Grüße aus Köln, naïve café: 東京 ☕ 🎉\n" * 40
STATIC = Path(__file__).resolve().parent.parent / "charrnn" / "export" / "static"


def train(folder: Path, text: str, model: dict, kind: str = "char", steps: int = 80) -> Path:
    """A small run trained through the library in a second or two: its best.pt."""
    from charrnn import TrainConfig, train_on_text

    cfg = TrainConfig(steps=steps, batch_size=8, seq_len=32, lr=1e-2, eval_every=steps, sample_every=0, threads=1,
                      precision="fp32", device="cpu")
    train_on_text(text, model, cfg, folder, kind=kind)
    return folder / "best.pt"


@pytest.fixture(scope="module")
def runs(tiny_run, parrot_run, tmp_path_factory) -> dict[str, Path]:
    """Checkpoints of every cell and vocabulary kind the page runs."""
    made = lambda name, *args, **kw: train(tmp_path_factory.mktemp(name), *args, **kw)  # noqa: E731
    return {
        "lstm": tiny_run / "best.pt",  # 2 layers
        "parrot": parrot_run / "best.pt",  # 1 layer; its text holds <script> and <img onerror>
        "gru": made("gru", TINY_TEXT, {"cell": "gru", "layers": 2, "hidden": 24, "embed": 8}),
        "rnn": made("rnn", TINY_TEXT, {"cell": "rnn", "layers": 2, "hidden": 21, "embed": 7}),  # rows of 7, 21, 42
        "word": made("word", PARROT_TEXT, {"layers": 1, "hidden": 32, "embed": 16}, kind="word"),
        "byte": made("byte", BYTE_TEXT, {"layers": 1, "hidden": 48, "embed": 16}, kind="byte", steps=150),
    }


@pytest.fixture(scope="module")
def pages(runs, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pages")
    return {name: export_html(load_checkpoint(path), folder / f"{name}.html") for name, path in runs.items()}


# ---- the file ------------------------------------------------------------------------------------


def test_the_page_is_one_file_that_names_no_path(pages, runs):
    html = re.sub(r'(id="(weights|kernel)">)[^<]*', r"\1", pages["lstm"].read_text(encoding="utf-8"))  # base64 aside
    assert not re.search(r"""\s(src|href|action)\s*=""", html)  # nothing to load: no src=, href= or action=
    assert str(runs["lstm"].parent) not in html and "/tmp" not in html and str(Path.home()) not in html
    assert "<title>charrnn</title>" in html  # the model's name is set as text by the page, never written as HTML


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_every_inline_script_and_the_style_are_allowed_by_their_hash_and_nothing_else_is(pages):
    html = pages["parrot"].read_text(encoding="utf-8")
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
    rules = dict(rule.strip().split(" ", 1) for rule in policy.split(";"))
    assert rules["default-src"] == "'none'" and "unsafe-inline" not in policy
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)  # the page's own: the data blocks have a type
    assert len(scripts) == 4
    assert rules["script-src"].split() == ["'wasm-unsafe-eval'", *map(sha256_source, scripts)]
    assert rules["style-src"] == sha256_source(re.search(r"<style>(.*?)</style>", html, re.S).group(1))


def test_the_data_blocks_cannot_be_closed_by_the_text_they_hold(pages):
    html = pages["parrot"].read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="model">(.*?)</script>', html, re.S).group(1)
    assert "<" not in block and ">" not in block and '"\\u003c"' in block  # the vocabulary's "<" is escaped


def test_the_prompt_is_the_runs_sample_prime_else_a_capital_letter_else_nothing():
    chars = Vocab("\n ABab")
    assert default_prompt({"train_config": {"sample_prime": "ROMEO:"}}, chars) == "ROMEO:"
    assert default_prompt({"meta": {"config": {"sample_prime": "JULIET:"}}}, chars) == "JULIET:"
    assert default_prompt({}, chars) == "A"
    assert default_prompt({}, Vocab("\n ab")) == ""
    assert default_prompt({}, ByteVocab()) == ""


def test_the_name_is_never_a_path():
    assert page_name("", {"meta": {"corpus": "/home/me/texts/poems"}}, Path("x/out.html")) == "poems"
    assert page_name("", {}, Path("/somewhere/shakespeare.html")) == "shakespeare"
    assert page_name("C:\\data\\novel", {}, Path("a.html")) == "novel"


def test_a_model_too_big_for_a_page_is_refused_before_its_weights_are_read(tmp_path):
    huge = {"model_config": {"vocab_size": 100, "layers": 8, "hidden": 4096}, "vocab": {"chars": "ab"}}
    with pytest.raises(CharrnnError, match="too many for a web page"):
        export_html(huge, tmp_path / "huge.html")
    assert not (tmp_path / "huge.html").exists()


def test_the_webassembly_kernel_is_its_source_assembled():
    wasmtime = pytest.importorskip("wasmtime", reason="assembling matvec.wat needs wasmtime (pip install wasmtime)")
    assert bytes(wasmtime.wat2wasm((STATIC / "matvec.wat").read_text())) == (STATIC / "matvec.wasm").read_bytes()


# ---- in the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="needs selenium (the test extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 30, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def open_page(driver, page: Path) -> None:
    driver.get(page.as_uri())
    wait_for(lambda: js(driver, "return document.body.dataset.state") != "loading", what="the weights")
    assert js(driver, "return document.body.dataset.state") == "ready", js(driver, "return $('error').textContent")


def press_generate(driver, prompt: str, **settings) -> None:
    """Set the prompt and settings (element id -> value; others keep the page's defaults) and press Generate."""
    js(driver, "document.getElementById('prompt').value = arguments[0]", prompt)
    for name, value in settings.items():
        js(driver, "document.getElementById(arguments[0]).value = arguments[1]", name.replace("_", "-"), str(value))
    js(driver, "document.getElementById('generate').click()")


def written(driver, prompt: str, **settings) -> str:
    """What the page writes for `prompt` with `settings`, once it is done."""
    press_generate(driver, prompt, **settings)
    wait_for(lambda: js(driver, "return document.getElementById('output').dataset.state") != "running",
             what="the text")
    assert js(driver, "return document.getElementById('output').dataset.state") == "done"
    assert js(driver, "return document.getElementById('error').textContent") == ""
    return js(driver, "return document.getElementById('output-text').textContent")


GREEDY = [("lstm", "the quick", 300), ("parrot", "the", 300), ("gru", "the lazy", 300), ("rnn", "", 300),
          ("word", "the quick brown", 120), ("byte", "Grüße", 300)]


@needs_browser
@pytest.mark.parametrize("name,prompt,length", GREEDY, ids=[g[0] for g in GREEDY])
def test_greedy_text_is_what_torch_writes(name, prompt, length, runs, pages, browser):
    loaded = load_model(runs[name])
    expected = sample_text(loaded.model, loaded.vocab, length, prime=prompt, temperature=0)
    open_page(browser, pages[name])
    assert written(browser, prompt, temperature=0, length=length) == expected
    assert js(browser, "return model.net.kernel.simd")  # Chromium ran the WebAssembly product


@needs_browser
def test_the_page_shows_the_models_facts_as_text(pages, browser):
    open_page(browser, pages["byte"])
    assert js(browser, "return document.getElementById('facts').textContent").startswith("LSTM 1×48 · 256 bytes · ")
    assert browser.title == "byte · charrnn"
    assert js(browser, "return document.getElementById('prompt').value") == ""  # bytes tell no first letter


@needs_browser
def test_the_page_fetches_and_sends_nothing(pages, browser):
    import json

    browser.get_log("performance"), browser.get_log("browser")  # forget what came before
    open_page(browser, pages["lstm"])
    written(browser, "the", temperature=0.8, seed=3, length=200)
    assert js(browser, "return performance.getEntriesByType('resource').length") == 0
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
    assert urls <= {pages["lstm"].as_uri()}
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []  # every script and the style ran: their hashes are right


@needs_browser
def test_markup_the_model_writes_is_shown_as_text(pages, browser):
    open_page(browser, pages["parrot"])
    title = browser.title
    shown = written(browser, "<b>bold</b>", temperature=0, length=300)
    assert "<script>document.title='pwned'</script><img src=x onerror=alert(1)>" in shown  # the model wrote markup
    assert browser.title == title
    assert js(browser, "return document.querySelectorAll('script').length") == 7  # 3 data blocks and 4 scripts
    assert js(browser, "return document.querySelectorAll('#output *').length") == 2  # its two spans, nothing inside
    assert js(browser, "return document.getElementById('output-prompt').textContent") == "<b>bold</b>"


@needs_browser
def test_a_seed_gives_the_same_text_every_time(pages, browser):
    open_page(browser, pages["lstm"])
    settings = {"temperature": 1.5, "top_k": 10, "top_p": 0.95, "length": 200}
    first = written(browser, "the", seed=42, **settings)
    assert written(browser, "the", seed=42, **settings) == first and len(first) == 200
    assert written(browser, "the", seed=43, **settings) != first


@needs_browser
def test_top_k_1_a_tiny_temperature_and_a_tiny_top_p_are_greedy(pages, browser):
    open_page(browser, pages["gru"])
    greedy = written(browser, "the", temperature=0, length=100)
    assert written(browser, "the", temperature=1, top_k=1, seed=5, length=100) == greedy
    assert written(browser, "the", temperature="1e-320", top_k=0, seed=5, length=100) == greedy  # logits / T overflow
    assert written(browser, "the", temperature=1, top_k=0, top_p="1e-300", seed=5, length=100) == greedy


@needs_browser
def test_stop_ends_a_long_sample_and_the_text_streams_before_that(pages, browser):
    open_page(browser, pages["lstm"])
    press_generate(browser, "the", temperature=0.8, length=200_000)
    wait_for(lambda: js(browser, "return document.getElementById('output-text').textContent.length") > 0,
             what="the first characters")
    assert js(browser, "return document.getElementById('generate').textContent") == "Stop"
    js(browser, "document.getElementById('generate').click()")
    wait_for(lambda: js(browser, "return document.getElementById('output').dataset.state") == "stopped",
             timeout=5, what="Stop")
    assert 0 < len(js(browser, "return document.getElementById('output-text').textContent")) < 200_000
    assert js(browser, "return document.getElementById('generate').textContent") == "Generate"


@needs_browser
def test_unknown_prompt_characters_are_skipped_and_told(runs, pages, browser):
    loaded = load_model(runs["lstm"])
    expected = sample_text(loaded.model, loaded.vocab, 50, prime="the §quick", temperature=0, unk="skip")
    open_page(browser, pages["lstm"])
    assert written(browser, "the §quick", temperature=0, length=50) == expected
    assert '"§"' in js(browser, "return document.getElementById('note').textContent")


@needs_browser
def test_bad_settings_are_refused_with_a_message(pages, browser):
    open_page(browser, pages["lstm"])
    press_generate(browser, "the", temperature=-1)
    assert "temperature" in js(browser, "return document.getElementById('error').textContent")


def every_assigned_character(below: int) -> str:
    """Every code point below `below` that Python's Unicode database assigns, in threes between spaces."""
    chars = [chr(i) for i in range(below) if unicodedata.category(chr(i)) not in ("Cn", "Cs")]
    return " ".join("".join(chars[i:i + 3]) for i in range(0, len(chars), 3))


@needs_browser
def test_the_word_vocabulary_cuts_text_as_python_does(runs, pages, browser):
    vocab = load_model(runs["word"]).vocab
    texts = ["the quick brown fox", "don't  stop\n\n  now", "x_y 42 ²³ Ⅻ 3.5", "\u00a0a\u2003b\x1cc\x85d\ufeffe",
             "the quickest, brownish dog!", "e\u0301 o'er 'tis", every_assigned_character(0x3100)]
    open_page(browser, pages["word"])
    for text in texts:
        assert js(browser, "return Array.from(arguments[0].matchAll(WORD_RE), (m) => m[0])", text) == split_words(text)
        kept = "".join(c for c in text if c in vocab)
        assert js(browser, "return model.vocab.encode(arguments[0])", kept) == vocab.encode(kept), text


@needs_browser
def test_where_webassembly_may_not_run_the_javascript_product_writes_the_same(runs, pages, browser, tmp_path):
    loaded = load_model(runs["gru"])
    expected = sample_text(loaded.model, loaded.vocab, 300, prime="the", temperature=0)
    page = tmp_path / "no-wasm.html"
    page.write_text(pages["gru"].read_text(encoding="utf-8").replace("'wasm-unsafe-eval' ", ""), encoding="utf-8")
    open_page(browser, page)
    assert not js(browser, "return model.net.kernel.simd")
    assert written(browser, "the", temperature=0, length=300) == expected


@needs_browser
def test_the_webassembly_and_javascript_products_agree(pages, browser):
    open_page(browser, pages["lstm"])
    diff = js(browser, """
        const net = model.net, w = net.layers[1].w, rows = net.G, cols = 2 * net.H;
        const again = new Float32Array(rows);
        net.joined.set(net.joined.map((_, i) => Math.sin(i)));
        net.kernel.matvec(w, rows, cols, net.joined, net.layers[1].x, 0, net.gates);
        matvec(w, rows, cols, net.joined, net.layers[1].x, 0, again);
        return Math.max(...net.gates.map((v, i) => Math.abs(v - again[i])));""")
    assert diff < 1e-4

