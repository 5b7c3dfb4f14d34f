"""Nested metadata (issue 33, item 5): a checkpoint's contents are bounded in depth and size before anything
walks them recursively, so a .safetensors of 100,000 nested lists or a .pt 20,000 lists deep is one clear error,
and `checkpoints list` shows it as one bad row."""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.training.checkpoint import load_checkpoint, run_identity
from charrnn.training.config import load_config_file
from charrnn.training.payload import MAX_DEPTH, check_bounds
from charrnn.training.safetensors_io import json_nesting
from charrnn.util.errors import CharrnnError

runner = CliRunner()


def deep_list(depth: int) -> list:
    top = inner = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return top


def laughs(levels: int) -> list:
    """A list holding one list ten times, that one another ten times...: 10^levels items by reference, a few bytes."""
    x: list = [0]
    for _ in range(levels):
        x = [x] * 10
    return x


@pytest.fixture(scope="module")
def bad_files(tiny_run, tmp_path_factory):
    """The issue's files, from a real run: metadata 100,000 lists deep (.safetensors), meta 20,000 deep (.pt),
    and a .pt whose meta repeats one list by reference 10^30 times; beside them one good checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import load, save

    folder = tmp_path_factory.mktemp("nested")
    runner.invoke(app, ["checkpoints", "export", str(tiny_run / "best.pt"), "-o", str(folder / "good.safetensors")])
    with safe_open(str(folder / "good.safetensors"), "pt") as f:
        metadata = f.metadata()
    metadata["meta"] = "[" * 100_000 + "]" * 100_000
    (folder / "deep.safetensors").write_bytes(save(load((folder / "good.safetensors").read_bytes()), metadata))
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # (pickle writes nested lists recursively; torch's loader reads them without)
    try:
        torch.save({**ckpt, "meta": {**ckpt["meta"], "deep": deep_list(20_000)}}, folder / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    torch.save({**ckpt, "meta": {**ckpt["meta"], "laughs": laughs(30)}}, folder / "laughs.pt")
    torch.save(ckpt, folder / "last.pt")
    return folder


@pytest.mark.parametrize("name, words", [("deep.safetensors", "its metadata meta is nested more than 48 levels deep"),
                                         ("deep.pt", "its contents are nested more than 48 levels deep"),
                                         ("laughs.pt", r"its contents hold more items than its file has bytes \(.*\): "
                                          "they repeat containers by reference")])
def test_each_bad_file_is_one_clear_error(bad_files, name, words):
    started = time.perf_counter()
    with pytest.raises(CharrnnError, match=f"{name} is damaged: {words}"):
        load_checkpoint(bad_files / name)
    assert time.perf_counter() - started < 5  # refused by its size, not walked 10^30 times


def test_the_bounds_admit_every_real_checkpoint(tiny_run, bad_files):
    for path in (tiny_run / "best.pt", tiny_run / "last.pt", bad_files / "good.safetensors"):
        assert load_checkpoint(path)["model_config"]
    check_bounds(deep_list(MAX_DEPTH))  # as deep as allowed
    with pytest.raises(CharrnnError, match="nested more than"):
        check_bounds(deep_list(MAX_DEPTH + 2))


def test_json_nesting_is_counted_without_recursion():
    assert json_nesting('{"a": [1, {"b": "[[[[["}], "c": "\\"]]"}', 10) == 3  # brackets inside strings do not count
    assert json_nesting("[" * 1_000_000 + "]" * 1_000_000, 48) == 49  # stops past the limit
    json.loads('{"a": [1, {"b": "[[[[["}], "c": "\\"]]"}')  # (the example is valid JSON)


def test_listing_shows_one_bad_row_each_and_the_good_ones(bad_files):
    result = runner.invoke(app, ["checkpoints", "list", str(bad_files), "--json"])
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["last.pt"]["error"] is None and rows["good.safetensors"]["error"] is None
    assert all("nested" in rows[n]["error"] or "by reference" in rows[n]["error"]
               for n in ("deep.pt", "deep.safetensors", "laughs.pt"))


@pytest.mark.parametrize("argv", [["sample", "F", "-n", "5"], ["beam", "F", "-n", "5"], ["eval", "F", "TEXT"],
                                  ["score", "F", "TEXT"], ["checkpoints", "show", "F"],
                                  ["checkpoints", "export", "F", "-o", "OUT"],
                                  ["train", "TEXT", "--init-from", "F", "--steps", "1", "-o", "OUT"]])
def test_every_command_refuses_them_in_one_line(bad_files, tmp_path, argv):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    for name in ("deep.safetensors", "deep.pt"):
        paths = {"F": str(bad_files / name), "TEXT": str(text), "OUT": str(tmp_path / "out.safetensors")}
        result = runner.invoke(app, [paths.get(a, a) for a in argv])
        assert result.exit_code == 1, (argv, name, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert "nested more than 48 levels deep" in result.stderr


def test_a_deeply_nested_config_is_a_yaml_error_not_a_traceback(tmp_path):
    (tmp_path / "deep.yaml").write_text("hidden: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(CharrnnError, match="nested more than 32 levels deep"):
        load_config_file(tmp_path / "deep.yaml")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("cell: " + "[" * 5000 + "]" * 5000 + "\n")
    assert run_identity(tmp_path / "run") is None  # (prune then keeps every snapshot: none is known to be the run's)
