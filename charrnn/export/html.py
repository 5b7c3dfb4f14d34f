"""A trained model as one web page that writes text with no server: `export_html(checkpoint, "model.html")`.

The page is a single file: opened from disk (file://) or served as it is, it reads its own
weights and runs the network in JavaScript, so it works offline and sends nothing anywhere.

    <head>  Content-Security-Policy  default-src 'none': nothing may be fetched, sent or framed; each
                                     inline script and the style run only if their sha256 (computed
                                     here) matches, so no injected markup could run a script
            <style>                  serve/static/base.css (the playground's look), then static/page.css
    <body>  the form                 static/page.html: prompt, temperature, top-k, top-p, length, seed
            <script type="application/json" id="model">   name, facts, config, vocabulary, weight manifest
            <script type="text/plain" id="weights">       the weights, fp32 in base64 (see `layout`)
            <script type="text/plain" id="kernel">        static/matvec.wasm in base64: the SIMD product
            <script>  static/step.js     the network one token at a time, as `CharRNN.step`
            <script>  static/sample.js   greedy or temperature, top-k, top-p; a seeded generator; the UTF-8 guard
            <script>  static/vocab.js    a prompt -> ids (char, word, byte), ids -> text
            <script>  static/page.js     the form: read the model, stream the text, Stop

The policy's one allowance beyond the hashes, 'wasm-unsafe-eval', lets the page compile the
WebAssembly it holds (where a browser refuses, the same product runs in JavaScript, ~4x slower).
The data blocks have types a browser never runs, and their JSON escapes "<", ">" and "&", so no
string can close a block. Nothing names the training machine: no paths, a file name at most.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import resources
from pathlib import Path

from charrnn.export.layout import page_weights
from charrnn.generation.sampling import default_prime
from charrnn.generation.settings import MAX_TEMP
from charrnn.model.config import ModelConfig
from charrnn.text.bytevocab import NEXT
from charrnn.text.vocab import Vocab
from charrnn.training.checkpoint import latest_val_bpc
from charrnn.util.errors import CharrnnError
from charrnn.util.files import atomic_write_text

SCRIPTS = ("step.js", "sample.js", "vocab.js", "page.js")  # run in this order: each uses the ones before it
MAX_PARAMS = 50_000_000  # 270 MB of base64 to parse and decode: minutes to open, and near what a browser can hold
MAX_LENGTH = 1_000_000  # tokens one click may write
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def export_html(checkpoint: dict, dest: str | Path, name: str = "") -> Path:
    """Write `checkpoint` (a dict as `load_checkpoint` returns it) as one self-contained HTML page at `dest`,
    titled `name` (see `page_name`); a CharrnnError for a model too big for a page. Returns `dest`."""
    dest = Path(dest)
    config = ModelConfig(**checkpoint["model_config"])
    if config.num_params() > MAX_PARAMS:
        raise CharrnnError(f"the model has {config.num_params():,} parameters: too many for a web page "
                           f"(at most {MAX_PARAMS:,}: it would take minutes to open, if a browser held it at all)")
    tensors, weights = page_weights(checkpoint)
    spec = page_spec(checkpoint, config, page_name(name, checkpoint, dest), tensors)
    atomic_write_text(dest, render_page(spec, base64.b64encode(weights).decode("ascii")))
    return dest


def page_name(name: str, checkpoint: dict, dest: Path) -> str:
    """The title: `name`, else the corpus's name, else the page's file name; never a path (its last part)."""
    chosen = name or str((checkpoint.get("meta") or {}).get("corpus") or "") or dest.stem
    return re.split(r"[\\/]", chosen.rstrip("\\/"))[-1] or dest.stem


def page_spec(checkpoint: dict, config: ModelConfig, name: str, tensors: list[list]) -> dict:
    """What page.js reads from the model block, `tensors` the weights' manifest."""
    vocab = Vocab.from_dict(checkpoint["vocab"])
    return {
        "name": name,
        "facts": model_facts(checkpoint, config, vocab),
        "unit": vocab.unit,
        "config": {"cell": config.cell, "layers": config.layers, "hidden": config.hidden, "embed": config.embed,
                   "vocab_size": config.vocab_size},
        "vocab": vocab_spec(vocab),
        "prompt": default_prompt(checkpoint, vocab),
        "limits": {"temperature": MAX_TEMP, "length": MAX_LENGTH},
        "tensors": tensors,
    }


def model_facts(checkpoint: dict, config: ModelConfig, vocab) -> str:
    """`LSTM 2×256 · 65 characters · 946,625 parameters · step 1,000 · val 2.338 bits/char`."""
    facts = [f"{config.cell.upper()} {config.layers}×{config.hidden}", f"{len(vocab):,} {vocab.unit}",
             f"{config.num_params():,} parameters"]
    if isinstance(checkpoint.get("step"), int):
        facts.append(f"step {checkpoint['step']:,}")
    val = latest_val_bpc(checkpoint)
    if val is not None:
        facts.append(f"val {val:.3f} bits/char")
    return " · ".join(facts)


def vocab_spec(vocab) -> dict:
    """The vocabulary as vocab.js reads it: its kind, the text of each id, where a prompt starts (bytes: UTF-8's
    automaton instead of texts)."""
    utf8 = vocab.guard(1) is not None  # bytes: only those that continue valid UTF-8 may be drawn
    return {"kind": vocab.kind, "start": default_prime(vocab), "pieces": [] if utf8 else list(vocab.pieces),
            "utf8_next": NEXT.tolist() if utf8 else None}  # (8, 256): the state after each byte, -1: not allowed


def default_prompt(checkpoint: dict, vocab) -> str:
    """The prompt the page starts with: how a line of the model's own text starts (its checkpoint keeps it),
    else the run's live-sample prime if it set one, else the first capital letter of the vocabulary, else
    nothing (a byte model's vocabulary has no characters of its own to tell what its text looks like)."""
    if (checkpoint.get("meta") or {}).get("prompt"):
        return checkpoint["meta"]["prompt"]
    for config in (checkpoint.get("train_config"), (checkpoint.get("meta") or {}).get("config")):
        prime = config.get("sample_prime") if isinstance(config, dict) else None
        if isinstance(prime, str) and prime:
            return prime
    return next((c for c in vocab.chars if c.isupper()), "")


def script_json(data) -> str:
    """JSON that is safe inside a <script> block: no "<", ">" or "&" (nothing can close the block), ASCII only."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def sha256_source(text: str) -> str:
    """A CSP source allowing the inline script or style whose text is exactly `text`."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_policy(scripts: list[str], style: str) -> str:
    """Nothing external of any kind; only these scripts and this style, by hash."""
    return "; ".join([
        "default-src 'none'",
        "script-src 'wasm-unsafe-eval' " + " ".join(sha256_source(s) for s in scripts),
        "style-src " + sha256_source(style),
        "base-uri 'none'",
        "form-action 'none'",
    ])


def static_bytes(name: str) -> bytes:
    return resources.files("charrnn.export").joinpath("static", name).read_bytes()


def static_text(name: str) -> str:
    return static_bytes(name).decode("utf-8")


def render_page(spec: dict, weights_base64: str) -> str:
    """The page's HTML: the template with its style, data and scripts put in (each placeholder once, in one pass)."""
    scripts = [static_text(name) for name in SCRIPTS]
    base = resources.files("charrnn.serve").joinpath("static", "base.css").read_text("utf-8")
    style = base + static_text("page.css")
    values = {
        "csp": content_policy(scripts, style),
        "style": style,
        "model": script_json(spec),
        "weights": weights_base64,
        "kernel": base64.b64encode(static_bytes("matvec.wasm")).decode("ascii"),
        "scripts": "\n".join(f"<script>{s}</script>" for s in scripts),
    }
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], static_text("page.html"))
