"""Loading never runs code from a file, and every kind of bad file gets its own clear message."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
import torch
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint, load_model
from charrnn.cli import app
from charrnn.util.errors import CharrnnError

runner = CliRunner()


class WritesMarker:
    """Unpickling this calls open(path, "w"): if the loader ran it, the marker file would appear."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def malicious(tmp_path, tiny_run):
    """A real checkpoint with one extra entry that runs code when unpickled unsafely."""
    ckpt = torch.load(tiny_run / "best.pt", weights_only=True)
    ckpt["meta"] = {"note": WritesMarker(tmp_path / "PWNED")}
    torch.save(ckpt, tmp_path / "evil.pt")
    return tmp_path / "evil.pt"


def test_malicious_checkpoint_is_refused_and_its_code_does_not_run(tmp_path, tiny_run):
    path = malicious(tmp_path, tiny_run)
    with pytest.raises(CharrnnError, match=r"refused to load .*evil.pt: it asks to run Python code \(.*open\)"):
        load_model(path)
    result = runner.invoke(app, ["sample", str(path), "-n", "5"])
    assert result.exit_code == 1 and "refused to load" in result.stderr and "Nothing from it was run" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert not (tmp_path / "PWNED").exists()
    # the same file through an unsafe loader would have run the code: the test can fail
    torch.load(path, weights_only=False)
    assert (tmp_path / "PWNED").exists()


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _zip_not_torch(_good: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes/readme.txt", "hello")
    return buf.getvalue()


def _torch_not_checkpoint(_good: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save(torch.zeros(3), buf)
    return buf.getvalue()


def _newer_format(good: bytes) -> bytes:
    ckpt = torch.load(io.BytesIO(good), weights_only=True)
    ckpt["format_version"] = 99
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "make, message",
    [
        (_truncated, "is truncated or corrupted"),
        (lambda good: os.urandom(4096), "is not a charrnn checkpoint (not a torch zip archive)"),
        (lambda good: b"", "is empty (0 bytes)"),
        (_zip_not_torch, "is a zip archive but not a torch checkpoint"),
        (_torch_not_checkpoint, "is a torch file but not a charrnn checkpoint"),
        (_newer_format, "was written by a newer charrnn (checkpoint format 99"),
    ],
    ids=["truncated", "random-bytes", "empty", "zip-not-torch", "tensor-not-checkpoint", "format-99"],
)
def test_bad_files_each_get_their_own_message(tmp_path, tiny_run, make, message):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(make((tiny_run / "best.pt").read_bytes()))
    with pytest.raises(CharrnnError) as e:
        load_checkpoint(bad)
    assert message in str(e.value)
    result = runner.invoke(app, ["sample", str(bad), "-n", "5"])
    assert result.exit_code == 1 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.stderr


GPU_TAGGING = []  # while it holds True, storages are saved tagged "cuda:0" (`tag_as_cuda`)


def tag_as_cuda(obj) -> str | None:
    """torch's location tagger (a public hook, `register_package`): "cuda:0" for a CPU storage while asked to,
    else None (torch's own taggers then tag it as usual)."""
    return "cuda:0" if GPU_TAGGING and getattr(obj, "device", None) is not None and obj.device.type == "cpu" else None


torch.serialization.register_package(-1, tag_as_cuda, lambda obj, location: None)


def test_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path, tiny_run):
    """Storages tagged "cuda:0" (as a GPU run writes them) load here because map_location is cpu."""
    ckpt = torch.load(tiny_run / "best.pt", weights_only=True)
    GPU_TAGGING.append(True)
    try:
        torch.save(ckpt, tmp_path / "gpu.pt")
    finally:
        GPU_TAGGING.clear()
    assert b"cuda:0" in (tmp_path / "gpu.pt").read_bytes()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # what a loader without map_location would do
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    loaded = load_model(tmp_path / "gpu.pt")
    original = load_model(tiny_run / "best.pt")
    x = torch.randint(0, len(original.vocab), (2, 20))
    assert next(loaded.model.parameters()).device.type == "cpu"
    assert torch.equal(loaded.model(x)[0], original.model(x)[0])
