"""Share a model as .safetensors: export, load anywhere a checkpoint is taken, same logits; damage is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_model
from charrnn.cli import app
from charrnn.util.errors import CharrnnError
from charrnn.export.write import export as export_inference

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    return export_inference(tiny_run / "best.pt", tmp_path_factory.mktemp("st") / "model.safetensors")


def test_export_then_load_gives_identical_logits(tiny_run, exported):
    original, shared = load_model(tiny_run / "best.pt"), load_model(exported)
    assert shared.vocab == original.vocab
    assert shared.model.config == original.model.config
    ids = torch.tensor([original.vocab.encode("the quick brown fox jumps")])  # (1, T)
    with torch.inference_mode():
        assert torch.equal(shared.model(ids)[0], original.model(ids)[0])
    # what a Rust or JAX reader sees: plain tensors, and the vocabulary and config as JSON in the metadata
    from safetensors import safe_open

    with safe_open(str(exported), "pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(original.model.state_dict())
    assert json.loads(meta["vocab"]) == {"chars": original.vocab.chars}
    assert json.loads(meta["model_config"])["hidden"] == 32


def test_every_command_takes_the_safetensors_file(tiny_run, exported):
    args = ["-n", "80", "--seed", "3", "--prime", "the ", "--threads", "1"]
    from_pt = runner.invoke(app, ["sample", str(tiny_run / "best.pt"), *args])
    from_st = runner.invoke(app, ["sample", str(exported), *args])
    assert from_st.exit_code == 0, from_st.output
    assert from_st.stdout == from_pt.stdout and len(from_st.stdout) >= 80
    beam = runner.invoke(app, ["beam", str(exported), "--width", "3", "-n", "20", "--threads", "1"])
    assert beam.exit_code == 0, beam.output
    shown = runner.invoke(app, ["checkpoints", "show", str(exported), "--json"])
    assert json.loads(shown.stdout)["model_config"]["hidden"] == 32
    listed = runner.invoke(app, ["checkpoints", "list", str(exported.parent), "--json"])
    assert [c["name"] for c in json.loads(listed.stdout)] == ["model.safetensors"]


def tamper(data: bytes, how: str) -> bytes:
    size = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + size]
    if how == "length":  # the header claims more bytes than the file has
        return (size + 10_000).to_bytes(8, "little") + data[8:]
    if how == "json":  # a byte of the JSON header changed
        i = header.index(b'"__metadata__"')
        return data[:8] + header[:i] + b"{" + header[i + 1 :] + data[8 + size :]
    if how == "metadata":  # the header is still valid JSON, but the charrnn config inside it is not
        i = header.index(b'vocab_size')  # in the string "{\"vocab_size\": ...}"
        return data[:8] + header[: i - 2] + b"??" + header[i:] + data[8 + size :]
    if how == "truncated":
        return data[: len(data) // 2]
    raise ValueError(how)


@pytest.mark.parametrize("how,says", [("length", "not a valid safetensors file"), ("json", "not a valid safetensors file"),
                                      ("metadata", "damaged header"), ("truncated", "not a valid safetensors file")])
def test_a_tampered_file_is_one_clear_error(exported, tmp_path, how, says):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(tamper(exported.read_bytes(), how))
    with pytest.raises(CharrnnError, match=says):
        load_model(bad)
    result = runner.invoke(app, ["sample", str(bad), "-n", "5"])
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], result.stderr


def test_a_tampered_file_stops_the_command_with_one_line_and_no_traceback(exported, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(tamper(exported.read_bytes(), "json"))
    result = subprocess.run([sys.executable, "-m", "charrnn", "sample", str(bad), "-n", "5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_plain_safetensors_file_is_not_taken_for_a_model(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(other))
    with pytest.raises(CharrnnError, match="not a charrnn model"):
        load_model(other)


def test_an_export_cannot_be_resumed_and_names_its_format(tiny_run, exported, tmp_path):
    with pytest.raises(CharrnnError, match=r"\*\.pt, \*\.safetensors, \*\.html, \*\.onnx"):
        export_inference(tiny_run / "best.pt", tmp_path / "model.bin")
    from charrnn.training.trainer import Trainer

    with pytest.raises(CharrnnError, match="inference-only"):
        Trainer.resume(exported, None, None)


def test_an_export_names_the_files_a_run_read_but_not_where_they_were(tiny_run, tmp_path):
    """The corpus a model learnt from stays known by name; the folders of the machine that trained it do not."""
    from charrnn.training.checkpoint import load_checkpoint, write_checkpoint

    ckpt = load_checkpoint(tiny_run / "best.pt")
    ckpt["meta"] = {"sources": ["/home/someone/secret/corpus.txt"], "init_from": "/home/someone/runs/x/best.pt",
                    "config": {"corpus": ["/home/someone/secret/corpus.txt"]}}
    write_checkpoint(tmp_path / "with-paths.pt", ckpt)
    for suffix in (".pt", ".safetensors", ".html"):
        dest = export_inference(tmp_path / "with-paths.pt", tmp_path / f"out{suffix}")
        assert b"/home/someone" not in dest.read_bytes()
        assert b"corpus.txt" in dest.read_bytes() or suffix == ".html"  # (a page names no source)
