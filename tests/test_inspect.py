"""eval / score / cells: the figures agree with training, and the features are right on snippets."""

import json
import math
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.inspect.cells import check_kind, correlations, record, record_by_steps
from charrnn.training.checkpoint import load_checkpoint
from charrnn.util.errors import UsageError
from charrnn.cli import app
from charrnn.inspect.features import guess_syntax, line_position, scan, word_start
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.inspect.surprise import encode_known
from charrnn.text.vocab import Vocab

from .conftest import TINY_TEXT, fifo_with

runner = CliRunner()
CPU = ["--threads", "1", "--device", "cpu"]


def bits(values) -> str:
    return "".join(str(int(v)) for v in values)


# ---- features on hand-made snippets -----------------------------------------------------------


def test_string_with_escaped_quote_ends_at_the_real_quote():
    text = r'x = "a\"b"; y'
    #        x   =   " a \ " b " ;   y
    assert bits(scan(text, "c").in_string) == "0000111110000"


def test_single_quotes_and_a_string_never_spans_lines():
    text = "c = '\"'; s = \"open\nnext"
    f = scan(text, "c").in_string
    assert bits(f[4:7]) == "110"  # '"' is a char literal: the " inside does not open a string
    assert f[text.index("open")] == 1 and f[text.index("\n")] == 0 and f[-1] == 0


def test_comment_with_a_quote_inside_and_comment_marks_inside_a_string():
    text = '/* it\'s */ "/* no */" // don\'t\nx'
    f = scan(text, "c")
    assert bits(f.in_comment[:11]) == "01111111100"  # from the '*' of /* to the '*' of */
    assert f.in_string[:11].sum() == 0  # the apostrophe in the comment opens no string
    inside = text.index('"/*')
    assert f.in_comment[inside : inside + 10].sum() == 0  # /* inside a string is not a comment
    assert f.in_comment[text.index("don")] == 1 and f.in_comment[-1] == 0
    assert f.in_string[text.index("t\n")] == 0  # don't inside a // comment


def test_nested_brace_and_paren_depth_ignore_strings_and_never_go_negative():
    text = "} f(a[1]) { if (x) { s = \"}\"; } }"
    f = scan(text, "c")
    assert f.brace_depth[0] == 0  # an unmatched closer does not go below zero
    assert f.paren_depth[text.index("1")] == 2
    assert f.brace_depth[text.index("if")] == 1
    assert f.brace_depth[text.index('"}"') + 1] == 2  # the } inside the string is not counted
    assert f.brace_depth[-3] == 1 and f.brace_depth[-1] == 0


def test_line_position_resets_at_newline():
    assert list(line_position("ab\ncd\n\ne")) == [1, 2, 0, 1, 2, 0, 0, 1]


def test_word_starts():
    assert bits(word_start("an apple, 2 x_y\nz")) == "10010000001010001"


def test_latex_comments_and_syntax_guess():
    text = "a \\% b % note {\n\\begin{x}"
    assert guess_syntax(text) == "latex" and guess_syntax("int x; /* c */") == "c"
    f = scan(text, "latex")
    assert f.in_comment[text.index("\\%") + 1] == 0  # an escaped percent is not a comment
    assert f.in_comment[text.index("note")] == 1 and f.in_comment[text.index("\\begin")] == 0
    assert f.brace_depth[text.index("note") + 6] == 0  # braces in a comment are not counted
    assert f.in_string.sum() == 0


def test_hash_comments_python_shell_yaml_perl():
    python = 'import os  # the "os" module\nx = "a # b"  # real\ny = a // 2\n'
    shell = "#!/bin/sh\necho a#b ${#v} $# # note\n"
    assert guess_syntax(python) == guess_syntax(shell) == guess_syntax("key: value  # why\n") == "hash"
    assert guess_syntax("#include <stdio.h>\n#define N 2\nint x; // c\n") == "c"  # directives are not comments
    f = scan(python, "hash")
    assert f.in_comment[python.index("the")] == 1 and f.in_string[python.index('"os"') + 1] == 0  # quotes in comments
    assert f.in_string[python.index("a # b")] == 1 and f.in_comment[python.index("a # b") + 2] == 0  # # in a string
    assert f.in_comment[python.index("real")] == 1 and f.in_comment[python.index("// 2")] == 0  # // is not a comment
    g = scan(shell, "hash")
    assert g.in_comment[1] == 1  # the shebang line
    assert [g.in_comment[shell.index(s) + len(s) - 1] for s in ("a#", "${#", "$#")] == [0, 0, 0]
    assert g.in_comment[shell.index("note")] == 1


def test_correlation_is_one_for_a_copy_and_zero_for_a_constant():
    rng = np.random.default_rng(0)
    feature = rng.random(50)
    acts = np.stack([feature * 3 + 1, -feature, np.ones(50), rng.random(50)], axis=1)  # (N, 4)
    r = correlations(acts, feature)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0) and r[2] == 0.0 and abs(r[3]) < 1
    assert np.all(correlations(acts, np.zeros(50)) == 0.0)  # a feature that does not apply: 0, not NaN


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recording_matches_the_step_path(cell):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=7, cell=cell, layers=2, hidden=12, embed=5)).eval()
    tokens = np.random.default_rng(1).integers(0, 7, 60)
    fast, slow = record(model, tokens), record_by_steps(model, tokens)
    assert np.allclose(fast.h, slow.h, atol=1e-5)
    assert (fast.c is None) == (cell == "gru") and (fast.c is None or np.allclose(fast.c, slow.c, atol=1e-5))
    if cell == "gru":
        with pytest.raises(UsageError, match="no cell state"):
            check_kind("c", model)


# ---- the commands ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def val_file(tiny_run, tmp_path_factory):
    """The held-out tail that training validated on (train_on_text keeps the last 10%)."""
    n_val = int(len(TINY_TEXT) * 0.1)
    path = tmp_path_factory.mktemp("val") / "val.txt"
    path.write_text(TINY_TEXT[len(TINY_TEXT) - n_val :], encoding="utf-8")
    return path


def run_json(*args, input=None) -> dict:
    result = runner.invoke(app, [*args, "--json", *CPU], input=input)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_eval_reproduces_the_training_validation_figure(tiny_run, val_file):
    stored = load_checkpoint(tiny_run / "best.pt")["best_val_bpc"]
    out = run_json("eval", str(tiny_run / "best.pt"), str(val_file), "--device", "cpu")  # where it was trained
    assert out["bits_per_char"] == pytest.approx(stored, rel=1e-6)
    assert out["chars"] == len(val_file.read_text()) - 1 and out["oov_chars"] == 0
    assert out["nats_per_char"] == pytest.approx(out["bits_per_char"] * math.log(2))
    assert out["perplexity"] == pytest.approx(math.exp(out["nats_per_char"]))


def test_score_sums_to_the_eval_total_for_one_stream(tiny_run, val_file):
    scored = run_json("score", str(tiny_run), str(val_file))
    total = run_json("eval", str(tiny_run), str(val_file), "--batch-size", "1")
    per_char = scored["bits"]
    assert per_char[0] is None and all(b is not None for b in per_char[1:])  # the first char is not scored
    assert sum(per_char[1:]) == pytest.approx(total["nll_nats"] / math.log(2), rel=1e-9)
    assert scored["chars"] == total["chars"]


def test_unknown_characters_are_skipped_and_counted(tiny_run):
    text = "the lazy dög jumps ÖVER the fox é.\n"
    out = run_json("eval", str(tiny_run), "-", input=text)
    assert out["oov"] == {"ö": 1, "Ö": 1, "V": 1, "E": 1, "R": 1, "é": 1} and out["oov_chars"] == 6
    assert out["chars_read"] == len(text) and out["chars"] == len(text) - 6 - 1
    scored = run_json("score", str(tiny_run), "-", input=text)
    assert scored["bits"][text.index("ö")] is None and scored["bits"][text.index("ö") + 1] is not None
    assert scored["oov_chars"] == 6
    result = runner.invoke(app, ["eval", str(tiny_run), "-", *CPU], input=text)
    assert "6 character(s) outside the model's vocabulary were skipped" in result.stdout


def test_score_prints_brackets_literally_and_lists_spans(tiny_run):
    text = "the [bold]lazy[/] dog [Exit Hamlet]\nthe quick brown fox.\n"
    result = runner.invoke(app, ["score", str(tiny_run), "-", "--top", "3", *CPU], input=text)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # the report is the result: on stdout, plain when piped
    assert "the [bold]lazy[/] dog [Exit Hamlet]" in result.stdout and "\x1b" not in result.stdout
    assert "most surprising spans" in result.stdout and "bits/char" in result.stdout
    as_json = runner.invoke(app, ["score", str(tiny_run), "-", "--json", *CPU], input=text)
    json.loads(as_json.stdout)  # with --json stdout is only the JSON; the summary goes to stderr
    assert "bits/char" in as_json.stderr


def test_html_pages_are_written(tiny_run, val_file, tmp_path):
    page = tmp_path / "score.html"
    result = runner.invoke(app, ["score", str(tiny_run), "-", "--html", str(page), "--no-text", *CPU],
                           input="the <b>lazy</b> & dog\n")
    assert result.exit_code == 0, result.stderr
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and " bits'" in html
    assert ">&lt;</span>" in html and "<b>" not in html and ">&amp;</span>" in html  # the text is escaped
    assert "<h2>most surprising spans</h2>" in html and html.count("<tr>") >= 2  # the table the terminal shows
    assert "<code>&#x27;" in html  # span texts escaped too
    cells_page = tmp_path / "cells.html"
    result = runner.invoke(app, ["cells", str(tiny_run), str(val_file), "--html", str(cells_page), *CPU])
    assert result.exit_code == 0, result.stderr
    assert "in_string" in cells_page.read_text() and "background:" in cells_page.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.html", "score.html"]  # no temporary files left


def test_cells_json_ranks_units_for_every_feature(tiny_run):
    out = run_json("cells", str(tiny_run), "-", "--top", "4", input=TINY_TEXT)
    assert out["chars"] == len(TINY_TEXT) and out["kinds"] == ["h", "c"]
    assert set(out["features"]) == {"in_string", "in_comment", "brace_depth", "paren_depth", "line_position", "word_start"}
    for name in ("line_position", "word_start"):
        feature = out["features"][name]
        rs = [abs(u["r"]) for u in feature["units"]]
        assert len(rs) == 4 and rs == sorted(rs, reverse=True) and 0 < rs[0] <= 1.0 and not feature["never_changes"]
    for name in ("in_string", "in_comment", "brace_depth", "paren_depth"):  # no quotes, comments or brackets
        assert out["features"][name] == {**out["features"][name], "never_changes": True, "units": []}


def test_cells_says_when_a_feature_never_changes(tiny_run):
    result = runner.invoke(app, ["cells", str(tiny_run), "-", *CPU], input=TINY_TEXT)
    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "in_comment (inside a comment" in out and "never changes in this text, so no unit can track it" in out
    assert "in_comment" not in out.split("never changes")[-1] and "r = +0.000" not in out
    one = run_json("cells", str(tiny_run), "-", "--unit", "1:0", "--kind", "h", input=TINY_TEXT)
    assert one["unit"]["correlations"]["in_string"] is None and one["unit"]["correlations"]["line_position"] is not None


def test_cells_one_unit_and_bad_units(tiny_run):
    out = run_json("cells", str(tiny_run), "-", "--unit", "2:5", "--kind", "h", input=TINY_TEXT)
    assert out["unit"]["layer"] == 2 and out["unit"]["index"] == 5 and out["unit"]["kind"] == "h"
    assert set(out["unit"]["correlations"]) == set(out["features"])
    for bad, message in [("3:0", "layers 1..2"), ("1:32", "units 0..31"), ("x", "LAYER:INDEX")]:
        result = runner.invoke(app, ["cells", str(tiny_run), "-", "--unit", bad, *CPU], input=TINY_TEXT)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_encode_known_counts_unknowns():
    enc = encode_known(Vocab("ab"), "abxaby")
    assert list(enc.tokens) == [0, 1, 0, 1] and enc.oov == {"x": 1, "y": 1} and enc.oov_count == 2


@pytest.mark.parametrize("command", ["eval", "score", "cells"])
def test_help_has_examples(command):
    result = runner.invoke(app, [command, "-h"])
    assert result.exit_code == 0 and "Examples" in result.stdout


def test_eval_errors_are_one_line(tiny_run, tmp_path):
    result = runner.invoke(app, ["eval", str(tiny_run), str(tmp_path / "nope.txt")])
    assert result.exit_code == 1 and "no such file" in result.stderr and "Traceback" not in result.stderr
    result = runner.invoke(app, ["eval", str(tiny_run), "-", *CPU], input="ÉÉÉ")
    assert result.exit_code == 1 and "nothing to predict" in result.stderr


def test_a_name_that_is_not_utf8_is_escaped_in_json_and_html(tiny_run, tmp_path):
    """Byte 0xff in a file name is U+DCFF in Python: written raw, the JSON would not be UTF-8."""
    path = tmp_path / os.fsdecode(b"bad\xffname.txt")
    try:
        path.write_text(TINY_TEXT[:300], encoding="utf-8")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system only takes UTF-8 names")
    for command in ("eval", "score", "cells"):
        result = runner.invoke(app, [command, str(tiny_run), str(path), "--json", *CPU])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout_bytes.decode("utf-8"))["source"] == str(path)  # the same name read back
    page = tmp_path / "page.html"
    result = runner.invoke(app, ["score", str(tiny_run), str(path), "--html", str(page), *CPU])
    assert result.exit_code == 0, result.stderr
    assert "bad\\udcffname.txt</title>" in page.read_text(encoding="utf-8")


def test_a_pipe_is_read_and_a_folder_is_called_a_folder(tiny_run, tmp_path):
    """`charrnn eval RUN <(cmd)` reads the pipe as it reads -; neither a pipe nor a folder is 'no such file'."""
    pipe = fifo_with(tmp_path / "pipe", TINY_TEXT[:300].encode())
    assert run_json("eval", str(tiny_run), str(pipe))["chars"] == 299  # 300 characters, 299 predicted
    for command in ("eval", "score", "cells"):
        result = runner.invoke(app, [command, str(tiny_run), str(tmp_path), *CPU])
        assert result.exit_code == 1 and result.stderr == f"error: {tmp_path} is a folder: {command} reads one text file\n"


def test_evaluation_blocks_are_bounded_for_large_vocabularies(monkeypatch):
    """A corpus of thousands of distinct characters must not allocate B x 256 x V logits at once."""
    import numpy as np
    import torch

    from charrnn.inspect import evaluation as ev
    from charrnn.model.rnn import CharRNN, ModelConfig

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=3000, hidden=16, embed=8))
    tokens = np.random.default_rng(0).integers(0, 3000, 2000)
    whole = ev.evaluate(model, tokens, batch_size=4, seq_len=256)
    seen = []
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x, s=None: seen.append(x.shape) or real_forward(x, s))
    from charrnn.runtime import memory

    monkeypatch.setattr(memory, "LOGITS_BUDGET", 4 * 3000 * 50)
    small = ev.evaluate(model, tokens, batch_size=4, seq_len=256)
    assert max(t for _, t in seen) <= 50  # blocks shortened to the budget
    assert small.nll_nats == pytest.approx(whole.nll_nats, rel=1e-6)  # same figure: the state is carried
