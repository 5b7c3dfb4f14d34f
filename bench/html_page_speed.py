"""How fast the exported web page writes, in headless Chromium, opened from disk as a person would.

    python bench/html_page_speed.py checkpoints/shakespeare/best.pt -n 3000 --repeats 3

Exports the checkpoint with `export_html` to a temporary folder, opens the page (file://), and
presses Generate `--repeats` times (temperature 0.8, seed 1, after a warm-up of 200 characters),
first with the page's own WebAssembly SIMD product, then with its JavaScript fallback (the
product swapped in the open page). Prints the page's and the checkpoint's sizes, the seconds
until the page is ready, and the best characters/s of each product (as the page's status counts
them: the text it showed, divided by the time from the click to the last character, slices and
yields to the browser included). Needs Debian's chromium and chromium-driver, and selenium.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from charrnn.export.html import export_html
from charrnn.training.checkpoint import load_checkpoint

DONE = "return document.getElementById('output').dataset.state"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def chars_per_second(driver, length: int) -> float:
    """Press Generate for `length` tokens and wait: the characters per second the page reports."""
    driver.execute_script("document.getElementById('length').value = arguments[0];"
                          "document.getElementById('generate').click()", str(length))
    time.sleep(0.05)
    while driver.execute_script(DONE) == "running":
        time.sleep(0.05)
    chars, ms = driver.execute_script("return [document.getElementById('output-text').textContent.length,"
                                      "Number(document.getElementById('output').dataset.ms)]")
    return 1000 * chars / ms


def measure(checkpoint: Path, length: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        page = export_html(load_checkpoint(checkpoint), Path(folder) / "page.html")
        row = {"html_bytes": page.stat().st_size, "checkpoint_bytes": checkpoint.stat().st_size}
        driver = browser()
        try:
            t0 = time.perf_counter()
            driver.get(page.as_uri())
            while driver.execute_script("return document.body.dataset.state") == "loading":
                time.sleep(0.01)
            row["ready_seconds"] = time.perf_counter() - t0
            row["simd"] = driver.execute_script("return model.net.kernel.simd")
            driver.execute_script("document.getElementById('temperature').value = '0.8';"
                                  "document.getElementById('seed').value = '1'")
            chars_per_second(driver, 200)  # warm-up: the JIT compiles the loops
            row["wasm_chars_per_s"] = max(chars_per_second(driver, length) for _ in range(repeats))
            driver.execute_script("model.net.kernel.matvec = matvec")  # the fallback, on the same arrays
            chars_per_second(driver, 200)
            row["js_chars_per_s"] = max(chars_per_second(driver, length) for _ in range(repeats))
        finally:
            driver.quit()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("-n", "--length", type=int, default=3000, help="characters per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    row = measure(args.checkpoint, args.length, args.repeats)
    print(f"page {row['html_bytes']:,} bytes, checkpoint {row['checkpoint_bytes']:,} bytes; "
          f"ready in {row['ready_seconds']:.2f} s")
    print(f"WebAssembly SIMD ({'used' if row['simd'] else 'NOT available'}): {row['wasm_chars_per_s']:,.0f} chars/s")
    print(f"JavaScript fallback: {row['js_chars_per_s']:,.0f} chars/s")


if __name__ == "__main__":
    main()
