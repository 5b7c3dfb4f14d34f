"""The shape of the package: no import cycles, and the light commands never load torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("import_graph", REPO / "tools" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)


def test_the_package_has_no_import_cycles():
    assert import_graph.cycles(import_graph.graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_foundation_modules_import_nothing_above_them():
    edges = import_graph.graph()
    for leaf in ("charrnn.util.errors", "charrnn.util.files", "charrnn.util.showtext"):
        assert edges[leaf] <= {"charrnn.util.errors", "charrnn.runtime.timing"}, leaf
    for leaf in ("charrnn.runtime.device", "charrnn.runtime.threads", "charrnn.runtime.memory"):
        assert edges[leaf] <= {"charrnn.util.errors", "charrnn.runtime.timing"}, leaf
    assert edges["charrnn.util.console"] <= {"charrnn.util.showtext"}


# Run each light command in a fresh interpreter and list the heavy modules it loaded.
PROBE = """
import json, sys
from typer.testing import CliRunner
from charrnn.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = sorted(m for m in ("torch", "charrnn.training.trainer", "charrnn.model.rnn", "charrnn.training.checkpoint") if m in sys.modules)
print(json.dumps({"exit": result.exit_code, "heavy": heavy}))
"""

LIGHT = [
    ["--help"], ["--version"], ["train", "--help"], ["sample", "-h"], ["beam", "-h"], ["corpus", "list"],
    ["corpus", "stats", "{text}"], ["corpus", "build", "{folder}", "-o", "-"], ["checkpoints", "--help"],
    ["--show-completion", "bash"], ["serve", "-h"], ["chat", "-h"],
]


@pytest.mark.parametrize("args", LIGHT, ids=[" ".join(a) for a in LIGHT])
def test_light_commands_do_not_import_torch(args, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("hello world\n")
    (tmp_path / "t.txt").write_text("some text\n")
    args = [a.format(text=tmp_path / "t.txt", folder=tmp_path / "src") for a in args]
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "CHARRNN_CORPORA": str(tmp_path), "SHELL": "/bin/bash"},
                         timeout=60)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], (args, report)
    assert report["exit"] == 0, (args, out.stderr)
