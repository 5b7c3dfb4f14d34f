"""charrnn's `llm` plugin, through the real `llm` package: its CLI lists the runs and writes with them.

llm loads its plugins first; where charrnn is installed its entry point (pyproject.toml) registers
the plugin module, and where it is not (a checkout on PYTHONPATH) the test registers the same
module. `llm` keeps its logs in the test's temporary folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

llm = pytest.importorskip("llm", reason="needs llm (the test extra)")

from click.testing import CliRunner  # noqa: E402

from tests.conftest import REPO  # noqa: E402


@pytest.fixture
def plugin(monkeypatch, tmp_path):
    """charrnn's plugin registered with llm, llm's files in a temporary folder, and no extra run folders."""
    from llm.plugins import load_plugins, pm

    import charrnn.serve.llm_plugin as module

    load_plugins()  # an installed charrnn's entry point registers the module under its own name

    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm-user"))
    monkeypatch.delenv("CHARRNN_LLM_RUNS", raising=False)
    registered = not pm.is_registered(module)
    if registered:
        pm.register(module, name="charrnn-test")
    yield module
    if registered:
        pm.unregister(module)


@pytest.fixture
def runs(in_tmp, tiny_run, monkeypatch):
    """./checkpoints/tiny here, and elsewhere/more/small named in CHARRNN_LLM_RUNS (copies of the tiny run)."""
    shutil.copytree(tiny_run, in_tmp / "checkpoints" / "tiny")
    shutil.copytree(tiny_run, in_tmp / "elsewhere" / "more" / "small")
    (in_tmp / "elsewhere" / "notes").mkdir()  # holds no checkpoint: not a run
    monkeypatch.setenv("CHARRNN_LLM_RUNS", f"{in_tmp / 'nowhere'}:{in_tmp / 'elsewhere'}")
    return in_tmp


def llm_cli(*args: str):
    from llm.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_llm_models_lists_the_runs_here_and_in_the_configured_folders(plugin, runs, monkeypatch):
    result = llm_cli("models")
    assert result.exit_code == 0, result.output
    ours = [line for line in result.output.splitlines() if line.startswith("charrnn")]
    assert ours == ["charrnn: charrnn/tiny (checkpoints/tiny)",
                    f"charrnn: charrnn/more/small ({runs / 'elsewhere' / 'more' / 'small'})"]
    found = []
    plugin.register_models(found.append)  # llm's hook, as llm calls it: a model per run, loaded when prompted
    assert [(m.model_id, m.folder, m.loaded) for m in found] == [
        ("charrnn/tiny", Path("checkpoints/tiny"), None),
        ("charrnn/more/small", runs / "elsewhere" / "more" / "small", None)]
    monkeypatch.setenv("CHARRNN_LLM_RUNS", str(runs / "elsewhere" / "more" / "small"))  # a run folder itself
    assert "charrnn: charrnn/small (" in llm_cli("models").output


def test_a_prompt_streams_what_charrnn_sample_writes_with_the_options_mapped(plugin, runs, tiny_run):
    from charrnn import load_model, sample_text

    loaded = load_model(tiny_run)
    result = llm_cli("-m", "charrnn/tiny", "the quick", "-o", "temperature", "0.8", "-o", "length", "120",
                     "-o", "seed", "3", "-o", "top_k", "5")
    expected = sample_text(loaded.model, loaded.vocab, 120, "the quick", temperature=0.8, seed=3, top_k=5)
    assert result.exit_code == 0 and result.output == expected + "\n"  # llm ends the stream with a line break
    stopped = llm_cli("-m", "charrnn/more/small", "the quick", "-o", "temperature", "0", "-o", "stop", "o")
    expected = sample_text(loaded.model, loaded.vocab, 500, "the quick", temperature=0, stop=("o",))
    assert stopped.output == expected + "\n" and expected.endswith("o") and len(expected) < 500  # kept, as sample


@pytest.mark.parametrize("option, value", [("temperature", "-1"), ("top_p", "0"), ("top_k", "many"),
                                           ("length", "-5"), ("seed", str(2**64)), ("unk", "maybe")])
def test_a_refused_option_is_llms_usual_error_with_charrnns_message(plugin, runs, option, value):
    from charrnn.generation.settings import Sampling
    from charrnn.util.errors import UsageError

    number = {"temperature": -1.0, "top_p": 0.0, "length": -5, "seed": 2**64}
    with pytest.raises(UsageError) as refused:
        Sampling(**{option: number.get(option, value)})
    result = llm_cli("-m", "charrnn/tiny", "the quick", "-o", option, value)
    assert result.exit_code == 1
    assert result.output == f"Error: {option}\n  Value error, {refused.value}\n"


def test_a_prompt_the_model_cannot_read_is_refused_unless_unk_skip(plugin, runs):
    refused = llm_cli("-m", "charrnn/tiny", "the quick é", "-o", "length", "5")
    assert refused.exit_code == 1 and refused.output.startswith("Error: ") and "'é'" in refused.output
    assert "unk=skip" in refused.output  # the option that lets it through, by its name
    skipped = llm_cli("-m", "charrnn/tiny", "the quick é", "-o", "length", "5", "-o", "unk", "skip")
    assert skipped.exit_code == 0 and len(skipped.output) == 6


def test_a_conversation_continues_the_whole_text_and_usage_counts_tokens(plugin, runs, tiny_run):
    from charrnn import load_model, sample_text
    from charrnn.generation.sampling import prompt_tokens

    loaded = load_model(tiny_run)
    conversation = llm.get_model("charrnn/tiny").conversation()
    first = conversation.prompt("the quick", temperature=0, length=20).text()
    second = conversation.prompt(" the", temperature=0, length=15)
    prime = "the quick" + first + " the"
    assert second.text() == sample_text(loaded.model, loaded.vocab, 15, prime, temperature=0)
    assert second.usage().input == len(prime) and second.usage().output == 15  # the prompt's own characters, as
    assert prompt_tokens(loaded.vocab, prime) == len(prime)  # the server's usage counts them (not the "\n" read first)


def test_the_plugin_is_declared_by_charrnn_and_lists_runs_without_torch(tmp_path):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["llm"] == {"charrnn": "charrnn.serve.llm_plugin"}
    assert any(d.startswith("llm") for d in project["optional-dependencies"]["test"])
    from charrnn.serve.llm_plugin import CHECKPOINT_SUFFIXES
    from charrnn.training.checkpoint import MODEL_SUFFIXES

    assert CHECKPOINT_SUFFIXES == MODEL_SUFFIXES
    code = ("import sys, llm; from llm.plugins import load_plugins, pm; import charrnn.serve.llm_plugin as p; "
            "load_plugins(); pm.is_registered(p) or pm.register(p); "
            "print([m.model.model_id for m in llm.get_models_with_aliases() if 'charrnn' in str(m.model)]); "
            "print('torch' in sys.modules)")
    (tmp_path / "checkpoints" / "run").mkdir(parents=True)
    (tmp_path / "checkpoints" / "run" / "best.pt").write_bytes(b"")  # listed by its name: nothing is read
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "LLM_USER_PATH": str(tmp_path / "llm-user")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.splitlines() == ["['charrnn/run']", "False"], out.stderr
