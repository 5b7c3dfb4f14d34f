"""The first hour's small things: piped tables end their lines with the text, piped `cells` shows the values,
`plot` refuses a PNG it would not write, eval/score/cells tell their progress, eval times threads once."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import charrnn.runtime.threads
import charrnn.util.console
from charrnn.cli import app
from charrnn.inspect.cells import RECORD_BLOCK, record, record_by_steps
from charrnn.inspect.evaluation import char_nll, evaluate
from charrnn.model.rnn import CharRNN, ModelConfig

from .conftest import TINY_TEXT

runner = CliRunner()


def trailing_blanks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line != line.rstrip()]


def test_piped_tables_end_each_line_with_its_text(in_tmp, tiny_run):
    (in_tmp / "t.txt").write_text(TINY_TEXT + "a much longer last line, longer than every other line here\n")
    stats = runner.invoke(app, ["corpus", "stats", "t.txt"])
    assert stats.exit_code == 0 and "commonest" in stats.stdout and trailing_blanks(stats.stdout) == []
    listing = runner.invoke(app, ["corpus", "list"])
    assert "shakespeare" in listing.stdout and trailing_blanks(listing.stdout) == []
    score = runner.invoke(app, ["score", str(tiny_run), "t.txt", "--no-text"])
    assert "most surprising spans" in score.stdout and trailing_blanks(score.stdout) == []


def test_a_terminal_still_gets_the_table_as_rich_draws_it():
    from charrnn.cli.common import OutConsole, Trimmed, result_table

    table = result_table("t", ["a", "b"])
    table.add_row("x", "a long value")
    table.add_row("a long key", "y")
    plain, trimmed = io.StringIO(), io.StringIO()
    Console(file=plain, width=60).print(table)
    OutConsole(file=trimmed, width=60).print(table)  # not a terminal: trimmed
    assert trimmed.getvalue() == "\n".join(line.rstrip() for line in plain.getvalue().split("\n"))
    assert trailing_blanks(plain.getvalue())  # (what rich does by itself: pads the last column)
    screen = io.StringIO()
    Console(file=screen, width=60, force_terminal=True).print(Trimmed(table))
    assert "a long value" in screen.getvalue()


def test_piped_cells_shows_a_value_for_each_character_and_where_some_were_skipped(in_tmp, tiny_run):
    text = "the (quick) brown fox\njumps over the lazy dog.\n" * 3
    (in_tmp / "t.txt").write_text(text)
    result = runner.invoke(app, ["cells", str(tiny_run), "t.txt", "--unit", "1:3", "--show-chars", "30"])
    assert result.exit_code == 0, result.stderr
    assert "6 character(s) outside the model's vocabulary were skipped" in result.stdout
    rows = result.stdout.split("  value  character\n", 1)[1].strip().splitlines()
    values = [r.split() for r in rows if not r.startswith("skipped")]
    assert len(values) == 30 and all(-1.0 <= float(v) <= 1.0 for v, _ in values)
    assert {c for _, c in values} <= {"space", "\\n", *(repr(c) for c in text)}
    at = rows.index("skipped  '('")  # the character left out, where it was
    assert rows[at - 1].endswith("space") and rows[at + 1].endswith("'q'")


def test_plot_refuses_an_out_it_would_not_write(in_tmp, tiny_run):
    result = runner.invoke(app, ["plot", str(tiny_run), "-o", "x.png", "--no-png"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--out names a PNG to write and --no-png writes none" in result.stderr
    assert not (in_tmp / "x.png").exists()


def tiny_model(cell: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=7, hidden=8, embed=4, layers=2, cell=cell)).eval()


def test_evaluate_and_char_nll_tell_their_progress_and_end_at_the_total():
    model, tokens = tiny_model(), np.random.default_rng(0).integers(0, 7, 700)
    runs = (lambda p: evaluate(model, tokens, 4, 32, progress=p), lambda p: char_nll(model, tokens, 64, progress=p))
    for run in runs:
        told: list[tuple[int, int]] = []
        run(lambda done, total: told.append((done, total)))
        done = [d for d, _ in told]
        assert len(told) > 2 and done == sorted(done) and told[-1][0] == told[-1][1]
    quiet = evaluate(model, tokens, 4, 32).nll_nats
    assert evaluate(model, tokens, 4, 32, progress=lambda d, t: None).nll_nats == quiet  # telling changes nothing


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recording_in_blocks_is_the_same_recording(cell):
    model, tokens = tiny_model(cell), np.random.default_rng(1).integers(0, 7, RECORD_BLOCK + 300)
    told: list[tuple[int, int]] = []
    rec = record(model, tokens, lambda done, total: told.append((done, total)))
    assert told[-1] == (2 * len(tokens), 2 * len(tokens)) and len(told) == 4  # 2 layers x 2 blocks
    ref = record_by_steps(model, tokens)
    assert np.allclose(rec.h, ref.h, atol=1e-5)
    assert cell == "gru" or np.allclose(rec.c, ref.c, atol=1e-5)


def test_progress_is_a_bar_on_a_terminal_and_nothing_in_a_pipe(in_tmp, tiny_run, monkeypatch):
    (in_tmp / "t.txt").write_text(TINY_TEXT * 3)
    for command in ("eval", "score", "cells"):
        piped = runner.invoke(app, [command, str(tiny_run), "t.txt", "--threads", "1"])
        assert piped.exit_code == 0 and piped.stderr == "", (command, piped.stderr)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80)
    monkeypatch.setattr(charrnn.util.console, "err_console", lambda: terminal)
    for command, words in (("eval", "reading the text"), ("score", "scoring the text"), ("cells", "recording")):
        assert runner.invoke(app, [command, str(tiny_run), "t.txt", "--threads", "1"]).exit_code == 0
        assert words in screen.getvalue() and "100%" in screen.getvalue(), command


def test_eval_chooses_threads_on_the_text_itself_silently_and_keeps_nothing(in_tmp, tiny_run, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "cache"))
    monkeypatch.setattr(charrnn.runtime.threads, "default_threads", lambda: 2)  # 1 and 2 to choose from
    (in_tmp / "t.txt").write_text(TINY_TEXT * 3)
    paced = runner.invoke(app, ["eval", str(tiny_run), "t.txt", "-t", "16"])
    assert paced.exit_code == 0 and paced.stderr == ""
    assert not (in_tmp / "cache" / "tune.json").exists()  # no verdict outlives the run
    one = runner.invoke(app, ["eval", str(tiny_run), "t.txt", "-t", "16", "--threads", "1"])
    assert paced.stdout.splitlines()[0] == one.stdout.splitlines()[0]  # the same figure


def test_the_pace_tries_each_count_then_keeps_the_faster_and_tries_again_when_it_slows(monkeypatch):
    from charrnn.runtime.threads import Pace

    counts, now, told = [], [0.0], []
    monkeypatch.setattr(charrnn.runtime.threads, "set_threads", counts.append)
    pace = Pace([1, 2], lambda done, total: told.append(done), clock=lambda: now[0])
    for block, seconds in enumerate([1.0, 0.5, 0.5, 0.5, 2.0, 1.0, 1.0], 1):  # 2 threads: 2x; then a core is taken
        now[0] += seconds
        pace(block * 10, 70)
    # the first block at 1 thread, the second at 2, then 2 until a block at 2 ran 4x slower: both tried again
    assert counts == [1, 2, 2, 2, 2, 1, 2, 1]
    assert told == [10, 20, 30, 40, 50, 60, 70]
