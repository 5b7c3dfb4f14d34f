"""A tiny model of each token kind through the command line: train -> sample -> beam -> eval -> score -> cells,
resume and export; bits per character from `eval` equal the training log's."""

import json
import math
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint, load_model
from charrnn.generation.settings import Sampling
from charrnn.cli import app
from charrnn.text.corpus import split_train_val
from charrnn.generation.sampling import sample_text
from charrnn.text.vocab import Vocab

runner = CliRunner()
KINDS = ["char", "word", "byte"]
TEXT = ("ROMEO: But soft, what light through yonder window breaks?\n"
        "JULIET: O Romeo, Romeo! wherefore art thou Romeo? Café au lait, naïve — 日本語 ✓\n\n") * 24
TRAIN = ["--steps", "30", "--hidden", "32", "--embed", "8", "-b", "4", "-t", "16", "--lr", "1e-2", "--threads", "1",
         "--precision", "fp32", "--eval-every", "15", "--sample-every", "15", "--device", "cpu"]
CPU = ["--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """kind -> (run folder, training stderr, held-out tail text), trained through the CLI."""
    root = tmp_path_factory.mktemp("kinds")
    corpus = root / "play.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = {}
    for kind in KINDS:
        result = runner.invoke(app, ["train", str(corpus), "--tokens", kind, "-o", str(root / kind), *TRAIN])
        assert result.exit_code == 0, result.stderr
        vocab = load_model(root / kind).vocab
        _, val = split_train_val(vocab.encode_array(TEXT), 0.1, vocab.char_counts)
        tail = root / f"{kind}-tail.txt"
        tail.write_text(vocab.decode(val), encoding="utf-8")
        out[kind] = (root / kind, result.stderr, tail)
    return out


def run_json(*args) -> dict:
    result = runner.invoke(app, [*args, "--json", *CPU])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_recorded_and_followed(runs, kind):
    run, log, _ = runs[kind]
    ckpt = load_checkpoint(run / "best.pt")
    vocab = Vocab.from_dict(ckpt["vocab"])
    assert vocab.kind == kind and ckpt["model_config"]["vocab_size"] == len(vocab)
    assert ckpt["format_version"] == (1 if kind == "char" else 2)
    assert ckpt["meta"]["config"]["tokens"] == kind
    assert f"tokens: {kind}" in (run / "config.yaml").read_text()
    if kind == "word":
        assert len(vocab.words) > 20 and " Romeo" in vocab.words  # words, not just characters
        assert "nats/token" in log and "bits/token" in log
    if kind == "byte":
        assert len(vocab) == 256


@pytest.mark.parametrize("kind", KINDS)
def test_eval_bits_per_char_equal_the_training_log(runs, kind):
    run, log, tail = runs[kind]
    vals = [float(v) for v in re.findall(r"= (\d+\.\d+) bits/char", log)]
    ckpt = load_checkpoint(run / "last.pt")
    stored = [r for r in ckpt["metrics"] if r.get("val_bpc") is not None][-1]
    out = run_json("eval", str(run / "last.pt"), str(tail))
    assert out["bits_per_char"] == pytest.approx(stored["val_bpc"], rel=1e-6)
    assert f"{out['bits_per_char']:.3f}" == f"{vals[-1]:.3f}"  # the figure the log printed
    assert out["bits_per_token"] == pytest.approx(stored["val_bpt"], rel=1e-6)
    assert out["chars"] < len(tail.read_text()) <= out["chars"] + 10  # all but the first token's characters
    if kind == "char":
        assert out["bits_per_token"] == out["bits_per_char"]
    else:
        assert out["tokens"] != out["chars"]
    # score spreads each token's bits over its characters: they add up to the one-stream total
    scored = run_json("score", str(run / "last.pt"), str(tail))
    exact = run_json("eval", str(run / "last.pt"), str(tail), "--batch-size", "1")
    assert scored["total_bits"] == pytest.approx(exact["nll_nats"] / math.log(2), rel=1e-6)
    assert scored["chars"] == exact["chars"] and scored["bits_per_char"] == pytest.approx(exact["bits_per_char"])
    cells = run_json("cells", str(run), str(tail), "--top", "2")
    assert cells["chars"] == len(tail.read_text())


@pytest.mark.parametrize("kind", KINDS)
def test_sample_and_beam_follow_the_checkpoint(runs, kind):
    run, _, _ = runs[kind]
    m = load_model(run)
    result = runner.invoke(app, ["sample", str(run), "-n", "60", "--seed", "4", "--prime", "JULIET:", *CPU])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "JULIET:" + sample_text(m.model, m.vocab, 60, prime="JULIET:", seed=4)  # the prime, echoed
    assert result.stdout and "\ufffd" not in result.stdout
    stopped = runner.invoke(app, ["sample", str(run), "-n", "200", "--seed", "1", "--stop", "!", "-N", "4",
                                  "--separator", "@@", "--temp", "0.7", *CPU])
    assert stopped.exit_code == 0, stopped.stderr
    samples = stopped.stdout.split("@@")
    assert len(samples) == 4 and any("!" in s for s in samples)
    for sample in samples:
        assert "!" not in sample or sample.index("!") == len(sample) - 1  # each ends at its first "!"
    beam = runner.invoke(app, ["beam", str(run), "-w", "3", "-n", "20", "--prime", "ROMEO:", "--top", "2", *CPU])
    assert beam.exit_code == 0, beam.stderr
    assert beam.stdout and "\ufffd" not in beam.stdout and beam.stderr.count("bits/char") == 2


@pytest.mark.parametrize("kind", ["word", "byte"])
def test_resume_and_export_work_for_every_kind(runs, kind, tmp_path):
    import shutil

    run, _, _ = runs[kind]
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = runner.invoke(app, ["train", "--resume", str(copy), "--steps", "40", "--threads", "1"])
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(copy / "last.pt")["step"] == 40
    wrong = runner.invoke(app, ["train", "--resume", str(copy), "--steps", "50", "--tokens", "char"])
    assert wrong.exit_code == 2 and f"a {kind} model" in wrong.stderr
    export = runner.invoke(app, ["checkpoints", "export", str(copy), "-o", str(tmp_path / "small.pt")])
    assert export.exit_code == 0, export.stderr
    a = runner.invoke(app, ["sample", str(copy / "best.pt"), "-n", "40", "--seed", "2", *CPU]).stdout
    b = runner.invoke(app, ["sample", str(tmp_path / "small.pt"), "-n", "40", "--seed", "2", *CPU]).stdout
    assert a == b and a
    safe = runner.invoke(app, ["checkpoints", "export", str(copy), "-o", str(tmp_path / "small.safetensors")])
    if safe.exit_code == 0:  # (needs the safetensors package)
        c = runner.invoke(app, ["sample", str(tmp_path / "small.safetensors"), "-n", "40", "--seed", "2", *CPU])
        assert c.stdout == a, c.stderr
    listed = runner.invoke(app, ["checkpoints", "list", str(tmp_path), "--json"])
    rows = json.loads(listed.stdout)
    assert {r["tokens"] for r in rows} == {kind} and all(r["val_bpt"] is not None for r in rows)


def test_byte_model_pipes_valid_utf8_for_many_seeds(runs):
    run, _, _ = runs["byte"]
    m = load_model(run)
    with torch.no_grad():  # a hot, barely trained model: it would write stray continuation bytes if it could
        texts = [sample_text(m.model, m.vocab, 150, seed=seed, temperature=2.0) for seed in range(60)]
    for text in texts:
        assert "\ufffd" not in text and text.encode("utf-8").decode("utf-8") == text
    assert any(ord(c) > 127 for text in texts for c in text)  # it does write multi-byte characters
    for seed in range(15):  # and what reaches the pipe is valid UTF-8, byte for byte
        result = runner.invoke(app, ["sample", str(run), "-n", "120", "--seed", str(seed), "--temp", "2", *CPU])
        assert result.exit_code == 0 and "\ufffd" not in result.stdout_bytes.decode("utf-8")


def test_tokens_in_a_config_file_and_bad_values(tmp_path):
    (tmp_path / "c.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "run.yaml").write_text(f"corpus: {tmp_path / 'c.txt'}\ntokens: word\nmax_vocab: 60\n")
    result = runner.invoke(app, ["train", "-c", str(tmp_path / "run.yaml"), "-o", str(tmp_path / "r"), *TRAIN[:2],
                                 "--hidden", "16", "--embed", "4", "-b", "2", "-t", "8", "--threads", "1"])
    assert result.exit_code == 0, result.stderr
    vocab = load_model(tmp_path / "r").vocab
    assert vocab.kind == "word" and len(vocab) == 60
    bad = runner.invoke(app, ["train", str(tmp_path / "c.txt"), "--tokens", "bpe"])
    assert bad.exit_code == 2 and "--tokens must be one of char, word, byte" in bad.stderr
    assert np.array_equal(np.unique(vocab.char_counts), [1, *sorted(set(vocab.char_counts) - {1})])


def test_two_processes_train_a_word_model_like_one(tmp_path):
    import subprocess
    import sys

    from .conftest import env_without_threads

    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    args = ["t.txt", "--tokens", "word", "--steps", "12", "--hidden", "16", "--embed", "8", "-b", "4", "-t", "8",
            "--threads", "1", "--precision", "fp32", "--eval-every", "6", "--sample-every", "0", "--device", "cpu"]
    run = lambda *cmd: subprocess.run([*cmd], cwd=tmp_path, capture_output=True, text=True,  # noqa: E731
                                      env=env_without_threads(), timeout=180)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "charrnn", "train", *args, "-o", "two", "--overwrite"]
    two = run(*torchrun)
    if two.returncode and "Signal 6 (SIGABRT)" in two.stderr:  # seen 2 times in ~20 runs on a loaded 2-core
        two = run(*torchrun)  # machine, a gloo rank aborting with no Python error; cause not found: one retry
    assert two.returncode == 0, two.stderr[-3000:]
    one = run(sys.executable, "-m", "charrnn", "train", *args, "-o", "one")
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("one", "two"))
    for x, y in zip(a["metrics"], b["metrics"]):  # training log and validation, in bits per character
        for key in ("bpc", "val_bpc", "val_bpt"):
            if x.get(key) is not None:
                assert x[key] == pytest.approx(y[key], abs=1e-5), key
    assert a["metrics"][-1]["val_bpc"] != a["metrics"][-1]["val_bpt"]


@pytest.mark.parametrize("kind", ["word", "byte"])
def test_serve_writes_what_sample_writes_and_chat_answers(runs, kind):
    pytest.importorskip("starlette", reason="needs the serve extra: pip install 'charrnn[serve]'")
    import httpx

    from charrnn.generation.chat import Conversation
    from charrnn.generation.settings import Sampling
    from charrnn.generation.sampling import generate_batch

    from .serving import live_server

    run, _, _ = runs[kind]
    m = load_model(run)
    with live_server(run / "best.pt") as (url, _, _):
        body = {"prompt": "ROMEO:", "max_tokens": 60, "n": 3, "seed": 9, "temperature": 1.5}
        api = httpx.post(url + "/v1/completions", json=body, timeout=60).json()
        card = httpx.get(url + "/v1/models", timeout=60).json()["data"][0]["charrnn"]
        beam = httpx.post(url + "/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 20, "width": 3},
                          timeout=60).json()
    batch = [""] * 3
    for pieces in generate_batch(m.model, m.vocab, Sampling(n=3, length=60, temperature=1.5, seed=9), "ROMEO:"):  # charrnn sample -N 3
        batch = [t + p for t, p in zip(batch, pieces)]
    assert [c["text"] for c in api["choices"]] == batch and all("\ufffd" not in t for t in batch)
    assert card["tokens"] == kind and card["vocab_size"] == len(m.vocab)
    from charrnn.generation.beam import beam_search

    assert beam["choices"][0]["text"] == beam_search(m.model, m.vocab, "ROMEO:", width=3, length=20)[0].text
    chat = Conversation(m.model, m.vocab, Sampling(80, temperature=1.5, stop=("!",), seed=3))
    chat.read("JULIET: O Romeo\n")
    answer = "".join(chat.reply())
    assert answer and "\ufffd" not in answer and ("!" not in answer or answer.index("!") == len(answer) - 1)


def test_a_word_checkpoint_whose_vocabulary_does_not_fit_is_refused(runs, tmp_path):
    from charrnn.training.checkpoint import checkpoint_bytes
    from charrnn.util.errors import CharrnnError

    ckpt = load_checkpoint(runs["word"][0] / "best.pt")
    for vocab, message in [({**ckpt["vocab"], "words": ckpt["vocab"]["words"][:-1]}, "ids but the model"),
                           ({"kind": "bpe"}, "unknown vocabulary kind 'bpe'"), ({"kind": "byte"}, "256 ids")]:
        path = tmp_path / "bad.pt"
        path.write_bytes(checkpoint_bytes({**ckpt, "vocab": vocab}))  # stamped afresh: only the vocabulary is wrong
        with pytest.raises(CharrnnError, match=message):
            load_checkpoint(path)
