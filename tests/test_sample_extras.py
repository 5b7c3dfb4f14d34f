"""Sampling extras: several samples in one batch, stop strings per sample, highlighting only on a terminal."""

from __future__ import annotations

import io
import re

import pytest
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_model
from charrnn.generation.settings import Sampling
from charrnn.cli import app
from charrnn.util.errors import UsageError
from charrnn.cli.highlight import HighlightWriter, language_for, make_writer
from charrnn.generation.sampling import generate_batch, separator_after

runner = CliRunner()


def sample(run, *args):
    result = runner.invoke(app, ["sample", str(run), *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_batch_samples_are_deterministic_for_a_seed(tiny_run):
    m = load_model(tiny_run)

    def batch(seed):
        texts = [""] * 4
        for chars in generate_batch(m.model, m.vocab, Sampling(n=4, length=60, temperature=1.0, seed=seed), "the "):
            texts = [t + c for t, c in zip(texts, chars)]
        return texts

    first = batch(5)
    assert first == batch(5)  # sample i of a batch is the same every time for a seed
    assert len(set(first)) == 4 and all(len(t) == 60 for t in first)
    assert first != batch(6)


def test_num_samples_piped_uses_the_separator(tiny_run):
    out = sample(tiny_run, "-n", "40", "--seed", "2", "--num-samples", "3", "--separator", "\\n@@\\n")
    parts = out.split("\n@@\n")
    assert len(parts) == 3 and all(len(p) == 40 for p in parts)
    assert out == sample(tiny_run, "-n", "40", "--seed", "2", "--num-samples", "3", "--separator", "\\n@@\\n")


def test_a_stop_string_ending_in_line_breaks_counts_toward_the_separator(tiny_run):
    out = sample(tiny_run, "-n", "300", "--seed", "1", "-N", "3", "--stop", ".\n\n")  # default separator: a blank line
    assert out.count("\n\n") == 2 and "\n\n\n" not in out  # one blank line between samples, not two
    out = sample(tiny_run, "-n", "300", "--seed", "1", "-N", "3", "--stop", "\n", "--separator", "\n\n")
    assert out.count("\n\n") == 2 and "\n\n\n" not in out  # a separator given is kept
    assert separator_after("a.\n\n", "\n\n") == "" and separator_after("a.", "\n\n") == "\n\n"
    assert separator_after("a.\n", "\n----\n") == "----\n" and separator_after("a.\n", "|") == "|"


def test_stop_applies_to_each_sample(tiny_run):
    out = sample(tiny_run, "-n", "300", "--seed", "1", "-N", "4", "--stop", "o", "--stop", "e", "--separator", "|")
    parts = out.split("|")
    assert len(parts) == 4
    for p in parts:  # each sample ends at its own first stop string
        assert p[-1] in "oe" and "o" not in p[:-1] and "e" not in p[:-1]


def test_an_empty_stop_string_is_refused_as_beam_refuses_it(tiny_run):
    for command in ("sample", "beam"):
        result = runner.invoke(app, [command, str(tiny_run), "--stop", "x", "--stop", "", "--prime", "the"])
        assert result.exit_code == 2 and result.stdout == "", command  # before anything, the prime included, is written
        assert result.stderr == "error: --stop strings must not be empty\n", command


def test_piped_output_is_never_highlighted(tiny_run):
    plain = sample(tiny_run, "-n", "200", "--seed", "4", "--highlight", "none")
    for choice in ("c", "latex", "auto"):
        assert sample(tiny_run, "-n", "200", "--seed", "4", "--highlight", choice) == plain
    assert "\x1b" not in plain


def test_bad_highlight_value(tiny_run):
    result = runner.invoke(app, ["sample", str(tiny_run), "--highlight", "rust"])
    assert result.exit_code == 2 and "--highlight must be one of auto, c, latex, none" in result.stderr


@pytest.mark.parametrize(
    "meta, expected",
    [
        ({"corpus": "linux"}, "c"),
        ({"corpus": "latex"}, "latex"),
        ({"corpus": "shakespeare"}, None),
        ({"corpus": "src", "config": {"corpus": ["src"], "glob": ["**/*.c", "**/*.h"]}}, "c"),
        ({"corpus": "book", "config": {"corpus": ["/x/book.tex"], "glob": []}}, "latex"),
        ({}, None),
    ],
)
def test_auto_language_from_what_the_model_was_trained_on(meta, expected):
    assert language_for("auto", {"meta": meta}) == expected
    assert language_for("none", {"meta": meta}) is None


def test_unknown_choice():
    with pytest.raises(UsageError):
        language_for("python")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_highlighting_on_a_terminal_redraws_each_line_in_colour():
    assert not isinstance(make_writer("c", io.StringIO()), HighlightWriter)  # not a terminal: plain writer
    term = FakeTerminal()
    writer = make_writer("c", term)
    assert isinstance(writer, HighlightWriter)
    code = "/* a comment\n   still one */\nint main(void) {\n\treturn 0;\n}"
    for ch in code:
        writer.write(ch)
    writer.finish()
    out = term.getvalue()
    redraws = out.split("\r\x1b[J")[1:]  # each completed line is written again after "start of line, clear"
    assert len(redraws) == 5
    strip = lambda s: re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)  # noqa: E731
    assert [strip(r).split("\n")[0] for r in redraws] == ["/* a comment", "   still one */", "int main(void) {",
                                                          "        return 0;", "}"]
    assert all("\x1b[" in r for r in redraws)  # coloured
    # the comment's second line is coloured as a comment, like its first (the lexer sees the lines before)
    colour = lambda r: re.match(r"\x1b\[([0-9;]*)m", r).group(1)  # noqa: E731
    assert colour(redraws[1]) == colour(redraws[0]) != colour(redraws[2])


def test_a_stop_at_a_line_break_gives_one_sample_per_line(tiny_run):
    """`charrnn sample -N 10 --stop $'\\n'`: a list, one sample a line, no blank line between."""
    out = sample(tiny_run, "-n", "300", "--seed", "3", "-N", "10", "--stop", "\n")
    lines = out.splitlines()
    assert len(lines) == 10 and all(lines) and out.endswith("\n"), out
    assert out == sample(tiny_run, "-n", "300", "--seed", "3", "-N", "10", "--stop", "\n", "--separator", "")
    cut = sample(tiny_run, "-n", "5", "--seed", "3", "-N", "4", "--stop", "\n")  # too short to reach the stop
    assert len(cut.splitlines()) == 4 and "\n\n" not in cut


def test_out_writes_each_sample_to_its_own_file_and_never_over_one(tiny_run, tmp_path):
    args = ["-n", "30", "--seed", "5", "-N", "12", "-p", "the"]
    piped = sample(tiny_run, *args, "--separator", "|").split("|")
    result = runner.invoke(app, ["sample", str(tiny_run), *args, "-o", str(tmp_path / "s")])
    assert result.exit_code == 0 and result.stdout == "" and "wrote 12 sample(s)" in result.stderr
    files = sorted((tmp_path / "s").iterdir())
    assert [f.name for f in files] == [f"sample-{i:02d}.txt" for i in range(1, 13)]
    assert [f.read_text() for f in files] == piped  # the same samples, the prime before each, as on stdout
    files[3].write_text("mine")
    again = runner.invoke(app, ["sample", str(tiny_run), *args, "--seed", "6", "-o", str(tmp_path / "s")])
    assert again.exit_code == 1 and "12 of the 12 sample files are already there" in again.stderr
    assert "--force" in again.stderr and files[3].read_text() == "mine"
    forced = runner.invoke(app, ["sample", str(tiny_run), *args, "-o", str(tmp_path / "s"), "--force"])
    assert forced.exit_code == 0 and files[3].read_text() == piped[3]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f.name for f in files]  # no temporary left
