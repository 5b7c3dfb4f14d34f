"""ONNX export: the graph computes what `CharRNN.step` does, carries its vocabulary, and the docs' loop samples with it."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnxruntime as ort  # noqa: E402

from charrnn.export.onnx import export_onnx, metadata, onnx_matches_torch  # noqa: E402
from charrnn.generation.sampling import sample_text  # noqa: E402
from charrnn.training.checkpoint import load_checkpoint, load_model  # noqa: E402
from charrnn import TrainConfig, train_on_text  # noqa: E402
from charrnn.util.errors import CharrnnError  # noqa: E402
from tests.conftest import REPO, TINY_TEXT  # noqa: E402

CELLS = ("lstm", "gru", "rnn")


@pytest.fixture(scope="module", params=CELLS)
def exported(request, tiny_run, tmp_path_factory):
    """(run folder, .onnx file) for each cell: the shared tiny LSTM, and a GRU and an RNN trained here (~1 s each)."""
    run = tiny_run
    if request.param != "lstm":
        run = tmp_path_factory.mktemp(request.param)
        cfg = TrainConfig(steps=40, batch_size=4, seq_len=32, threads=1, precision="fp32", device="cpu")
        train_on_text(TINY_TEXT, {"cell": request.param, "hidden": 32, "embed": 8}, cfg, run)
    dest = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert export_onnx(load_checkpoint(run / "best.pt"), dest) == dest
    return run, dest


def ort_session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options)


def docs_sampler():
    """The `sample` function of docs/onnx.md, run from its text."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "onnx.md").read_text(encoding="utf-8"), re.S)
    namespace = {}
    exec(next(b for b in blocks if "def sample(" in b), namespace)
    return namespace["sample"]


def test_the_graph_gives_the_logits_of_torch_over_1000_greedy_steps(exported):
    run, path = exported
    assert onnx_matches_torch(load_checkpoint(run / "best.pt"), path, steps=1000, prime="the") < 1e-4


def test_inputs_and_outputs_are_named_and_the_batch_is_free(exported):
    run, path = exported
    model = load_model(run).model
    session = ort_session(path)
    names = ["h", "c"] if model.config.cell == "lstm" else ["h"]
    assert [i.name for i in session.get_inputs()] == ["token", *names]
    assert [o.name for o in session.get_outputs()] == ["logits", *(f"{n}_out" for n in names)]
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        token = torch.randint(0, model.config.vocab_size, (batch,), generator=generator)
        state = tuple(torch.randn(s.shape, generator=generator) for s in model.init_state(batch))  # (L, B, H)
        with torch.no_grad():
            logits, new_state = model.step(token, state)
        got = session.run(None, {"token": token.numpy(), **{n: s.numpy() for n, s in zip(names, state)}})
        for want, have in zip((logits, *new_state), got):
            assert have.shape == tuple(want.shape)
            assert np.abs(have - want.numpy()).max() < 1e-5


def test_the_metadata_reads_back_to_the_vocabulary_and_config(exported):
    run, path = exported
    loaded = load_model(run)
    meta = ort_session(path).get_modelmeta().custom_metadata_map
    assert json.loads(meta["charrnn.vocab"]) == loaded.vocab.to_dict()
    assert "".join(json.loads(meta["charrnn.pieces"])) == loaded.vocab.chars
    assert json.loads(meta["charrnn.model_config"]) == loaded.model.config.to_dict()


def test_the_file_holds_no_path_of_the_training_machine(exported):
    run, path = exported
    data = path.read_bytes()
    for fragment in (str(run), str(REPO), str(path.parent), "site-packages", "stack_trace"):
        assert fragment.encode() not in data, fragment
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temporary file left beside it


def test_the_docs_loop_writes_the_greedy_text_of_charrnn_sample(exported):
    run, path = exported
    loaded = load_model(run)
    sample = docs_sampler()
    for prime in ("", "the "):
        want = sample_text(loaded.model, loaded.vocab, 200, prime=prime, temperature=0)
        assert sample(str(path), 200, temperature=0, prime=prime) == want


def test_the_docs_loop_samples_at_a_temperature(exported):
    run, path = exported
    text = docs_sampler()(str(path), 100, temperature=0.8, prime="the", seed=1)
    assert len(text) == 100 and set(text) <= set(load_model(run).vocab.chars)


def test_a_byte_model_lists_its_256_bytes_as_pieces():
    meta = metadata({"vocab": {"kind": "byte"}, "model_config": {"vocab_size": 256, "hidden": 8, "embed": 4}})
    assert json.loads(meta["charrnn.pieces"]) == [chr(b) for b in range(256)]
    assert json.loads(meta["charrnn.vocab"]) == {"kind": "byte"}


@pytest.mark.parametrize("package", ["onnx", "onnxscript"])
def test_a_missing_package_says_how_to_install_it(package, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # `import onnx` now raises ImportError
    with pytest.raises(CharrnnError, match=re.escape("pip install 'charrnn[onnx]'")) as e:
        export_onnx(load_checkpoint(tiny_run / "best.pt"), tmp_path / "model.onnx")
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_checking_without_onnxruntime_says_how_to_install_it(exported, monkeypatch):
    run, path = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(CharrnnError, match=re.escape("pip install 'charrnn[onnx]'")):
        onnx_matches_torch(load_checkpoint(run / "best.pt"), path)
