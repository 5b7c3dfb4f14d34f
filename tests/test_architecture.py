"""The shape of the package, as ARCHITECTURE.md draws it: folders are layers and every import points down, no
import cycles, the light commands never load torch, and the facts that must stay zero stay zero."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


import_graph, package_facts = load_tool("import_graph"), load_tool("package_facts")


def layers() -> dict[str, int]:
    """Folder -> layer, from the table in ARCHITECTURE.md (the one both the document and this test read)."""
    rows = re.findall(r"^\| (\d+) \| `(\w+)/` \|", (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"), re.M)
    return {folder: int(layer) for layer, folder in rows}


def test_the_package_is_folders_only():
    top = {p.name for p in (REPO / "charrnn").iterdir() if not p.name.startswith((".", "__pycache__"))}
    folders = {p for p in top if (REPO / "charrnn" / p).is_dir()}
    assert top - folders == {"__init__.py", "__main__.py"}
    assert folders == set(layers()), "every folder has its row in ARCHITECTURE.md's table, and no other"
    for folder in folders:
        first = (REPO / "charrnn" / folder / "__init__.py").read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith('"""') and first.endswith('"""') and len(first) > 6, f"{folder}: a one-line docstring"


def test_every_import_points_down_the_layers():
    layer, wrong = layers(), []
    for module, targets in import_graph.graph().items():
        here = module.split(".")
        for target in targets:
            there = target.split(".")
            if len(here) > 2 and len(there) > 2 and layer[there[1]] > layer[here[1]]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_a_misplaced_import_would_be_found(tmp_path):
    (tmp_path / "charrnn" / "util").mkdir(parents=True)
    (tmp_path / "charrnn" / "cli").mkdir()
    (tmp_path / "charrnn" / "util" / "a.py").write_text("from charrnn.cli.b import x\n")
    (tmp_path / "charrnn" / "cli" / "b.py").write_text("x = 1\n")
    assert import_graph.graph(tmp_path / "charrnn") == {"charrnn.util.a": {"charrnn.cli.b"}, "charrnn.cli.b": set()}


def test_the_package_has_no_import_cycles():
    assert import_graph.cycles(import_graph.graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("fact", sorted(package_facts.CHECKS))
def test_what_must_stay_zero_stays_zero(fact):
    """Library errors name no flag, threads are set in one place, the token kind is asked only by the
    vocabularies, no locals(), no function over 60 lines, nothing nobody calls (tools/package_facts.py)."""
    assert package_facts.CHECKS[fact](package_facts.sources()) == []


# Run each light command in a fresh interpreter and list the heavy modules it loaded.
PROBE = """
import json, sys
from typer.testing import CliRunner
from charrnn.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = sorted(m for m in ("torch", "charrnn.training.trainer", "charrnn.model.rnn", "charrnn.training.checkpoint")
               if m in sys.modules)
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
