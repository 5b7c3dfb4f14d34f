"""`charrnn train` on bad inputs, `corpus build`, `corpus stats`, `corpus get` from a mirror."""

import json
import os

import pytest
import yaml
from typer.testing import CliRunner

import charrnn.text.catalog
from charrnn.text.catalog import CorpusEntry
from charrnn.cli import app
from charrnn.text.corpus import source_name

from .conftest import SHARED, fifo_with, one_corpus_catalog

runner = CliRunner()

TINY_ARGS = ["--steps", "2", "--hidden", "8", "--embed", "4", "-b", "2", "-t", "8", "--threads", "1"]

# (name, file bytes, text every user sees in the one error line)
BAD_INPUTS = [
    ("empty file", b"", "c.txt is empty: give it some text"),
    ("PNG image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "c.txt is a PNG image, not text"),
    ("ELF executable", b"\x7fELF\x02\x01\x01\x00" + bytes(8), "c.txt is an ELF executable, not text"),
    ("Latin-1 text", "café au lait\n".encode("latin-1"), "not valid UTF-8: 0xe9 at byte offset 3, line 1"),
    ("UTF-16 text", "hello world\n".encode("utf-16"), "looks like UTF-16 text"),
    ("UTF-16 without BOM", "hello world\n".encode("utf-16-le"), "pass --encoding utf-16-le"),
    ("NUL bytes", b"hello\x00world\n", "NUL bytes (the first at byte offset 5)"),
    ("UTF-8 cut mid-character", "abc 你好".encode()[:-1], "ends in the middle of a UTF-8 character"),
    ("whitespace only", b"  \n\t\n   \n", "holds only whitespace"),
    ("one character", b"a", "holds a single character"),
]


@pytest.mark.parametrize("data, message", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_exit_1(in_tmp, data, message):
    (in_tmp / "c.txt").write_bytes(data)
    result = runner.invoke(app, ["train", "c.txt", *TINY_ARGS])
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (in_tmp / "checkpoints").exists()


def test_a_folder_with_binary_files_trains_on_its_text(in_tmp):
    """Like `corpus build`, training on a folder skips the files that are not text and says so."""
    src = in_tmp / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "m.py").write_text("print('hello world')\n" * 30)
    (src / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\xa7\r\r\n\x00\x00\x00\x00" + bytes(40))
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    result = runner.invoke(app, ["train", "src", *TINY_ARGS])
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("corpus:"))
    assert "src/m.py; " in line and "skipped 2 binary file(s) in folders (" in line
    assert "src/__pycache__/m.cpython-311.pyc, " in line and "src/logo.png)" in line
    alone = runner.invoke(app, ["train", "src/__pycache__/m.cpython-311.pyc", *TINY_ARGS])  # named on its own: an error
    assert alone.exit_code == 1 and "has NUL bytes" in alone.stderr
    none = runner.invoke(app, ["train", "src/__pycache__", *TINY_ARGS])
    assert none.exit_code == 1 and "src/__pycache__: all 1 matching files are binary" in none.stderr


def test_other_encodings_train_with_encoding_option(in_tmp):
    (in_tmp / "latin.txt").write_bytes("café crème brûlée\n".encode("latin-1") * 40)
    result = runner.invoke(app, ["train", "latin.txt", "--encoding", "latin-1", *TINY_ARGS])
    assert result.exit_code == 0, result.stderr
    bad = runner.invoke(app, ["train", "latin.txt", "--encoding", "klingon", *TINY_ARGS])
    assert bad.exit_code == 2 and "unknown encoding 'klingon'" in bad.stderr


@pytest.mark.parametrize("command", [["train", *TINY_ARGS], ["corpus", "stats"]], ids=["train", "stats"])
def test_codecs_that_do_not_decode_text_are_one_line_errors(in_tmp, command):
    """hex, rot13 ... are codecs Python knows but not text encodings; unicode_escape can decode to a
    lone surrogate, which is no character; punycode fails without saying where."""
    (in_tmp / "c.txt").write_bytes(b"ab\\udfffcd and some more text.\n" * 4)
    cases = [("hex", 2, "'hex' is not a text encoding"), ("rot13", 2, "'rot13' is not a text encoding"),
             ("unicode_escape", 1, "c.txt is not valid unicode-escape: it decodes to U+DFFF (character 2)"),
             ("punycode", 1, "c.txt is not valid punycode: ")]
    for encoding, code, message in cases:
        result = runner.invoke(app, [*command, "c.txt", "--encoding", encoding])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == code and len(lines) == 1 and message in lines[0], (encoding, result.stderr)
        assert lines[0].startswith("error: ") and "Traceback" not in result.stderr


def test_names_that_are_not_utf8_train_and_are_written_escaped(in_tmp):
    """A name with byte 0xff (U+DCFF in Python) is a file like any other: it trains, its run folder
    holds a config.yaml, the token cache and an export record it; messages show it as \\udcff."""
    corpus, out = os.fsdecode(b"bad\xffname.txt"), os.fsdecode(b"run\xff")
    try:
        (in_tmp / corpus).write_text("a corpus whose name is not UTF-8\n" * 40)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system only takes UTF-8 names")
    result = runner.invoke(app, ["train", corpus, "-o", out, *TINY_ARGS])
    assert result.exit_code == 0, result.stderr
    assert "/bad\\udcffname.txt; encoded" in result.stderr
    assert "--config run\\udcff/config.yaml" in (in_tmp / out / "config.yaml").read_text(encoding="utf-8")
    export = runner.invoke(app, ["checkpoints", "export", out, "-o", "small.safetensors"])
    assert export.exit_code == 0, export.stderr
    (in_tmp / corpus).write_bytes(b"\xef\xbb\xbf" + (in_tmp / corpus).read_bytes())  # a BOM: stats lists the name
    stats = runner.invoke(app, ["corpus", "stats", corpus, "--json"])
    assert stats.exit_code == 0 and json.loads(stats.stdout_bytes.decode("utf-8"))["bom"] == [corpus]


def test_emoji_cjk_and_combining_characters_train_and_sample(in_tmp):
    (in_tmp / "u.txt").write_text("猫が🙂好き。e\u0301\n" * 60, encoding="utf-8")
    args = ["--steps", "150", "--hidden", "32", "--embed", "8", "-b", "4", "-t", "16", "--lr", "1e-2",
            "--threads", "1", "--eval-every", "150", "-o", "run"]
    assert runner.invoke(app, ["train", "u.txt", *args]).exit_code == 0
    result = runner.invoke(app, ["sample", "run", "--temp", "0", "--prime", "猫", "-n", "18"])
    assert result.exit_code == 0
    assert result.stdout == "猫が🙂好き。e\u0301\n猫が🙂好き。e\u0301\n猫"  # code points, never half a character


def test_build_is_sorted_skips_binary_and_non_utf8(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "b.c").write_text("int b;\n")
    (src / "a.h").write_text("int a;")  # no final newline: one is added
    (src / "sub" / "c.c").write_bytes("\ufeff/* ü */\n".encode())  # BOM dropped
    (src / "blob.c").write_bytes(b"\x7fELF\x02\x01\x01\x00")
    (src / "old.c").write_bytes("/* caf\xe9 */\n".encode("latin-1"))
    (src / "notes.txt").write_text("not matched\n")
    out = src / "corpus.c"  # inside the tree and matching the glob: never read into itself
    for again in ([], ["--force"]):  # a second build replaces its output only with --force
        result = runner.invoke(app, ["corpus", "build", str(src), "--glob", "**/*.c", "--glob", "**/*.h", "-o", str(out),
                                     *again])
        assert result.exit_code == 0, result.stderr
        assert out.read_text() == "int a;\nint b;\n/* ü */\n"
    refused = runner.invoke(app, ["corpus", "build", str(src), "--glob", "**/*.c", "-o", str(src / "b.c")])
    assert refused.exit_code == 1 and "b.c already exists" in refused.stderr and "--force" in refused.stderr
    assert (src / "b.c").read_text() == "int b;\n"  # one of its own sources: not replaced by the others' text
    assert "3 files" in result.stderr and "1 binary (blob.c)" in result.stderr and "1 not UTF-8 (old.c)" in result.stderr
    assert sorted(p.name for p in src.iterdir()) == ["a.h", "b.c", "blob.c", "corpus.c", "notes.txt", "old.c", "sub"]
    piped = runner.invoke(app, ["corpus", "build", str(src), "--glob", "*.h", "-o", "-"])
    assert piped.stdout == "int a;\n"


@pytest.mark.parametrize("command", [["train", *TINY_ARGS], ["corpus", "stats"], ["corpus", "build", "-o", "-"]],
                         ids=["train", "stats", "build"])
def test_a_glob_selects_inside_the_folder_only(in_tmp, command):
    """The same rule in all three commands: an absolute glob or one with '..' is a usage error,
    never a traceback, nor a way to read files beside or above the folder."""
    (in_tmp / "src").mkdir()
    (in_tmp / "src" / "a.txt").write_text("inside the folder\n" * 40)
    (in_tmp / "secret.txt").write_text("outside the folder\n" * 40)
    for glob, message in [("/etc/*", "--glob '/etc/*' must be relative to the folder, e.g. '**/*.txt'"),
                          ("../*.txt", "--glob '../*.txt' must stay inside the folder (no '..')"),
                          ("", "--glob '' names no files")]:
        result = runner.invoke(app, [*command, "src", "--glob", glob])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert message in lines[0] and "outside the folder" not in result.stdout
    assert not (in_tmp / "checkpoints").exists()
    assert runner.invoke(app, [*command, "src", "--glob", "./*.txt"]).exit_code == 0
    assert runner.invoke(app, [*command, "src", "--glob", "**"]).exit_code == 0  # '**': every file, not folders only


def test_a_pipe_trains_like_stdin_and_is_never_called_missing(in_tmp):
    """`charrnn train poems.fifo` (a named pipe): read once, spooled like stdin, its run named after
    it, and kept in config.yaml as it was given; stats reads one too."""
    pipe = fifo_with(in_tmp / "poems.fifo", ("read from a pipe\n" * 40).encode())
    result = runner.invoke(app, ["train", str(pipe), *TINY_ARGS])
    assert result.exit_code == 0, result.stderr
    assert f"from {pipe}; encoded" in result.stderr and "checkpoints in checkpoints/poems/" in result.stderr
    assert yaml.safe_load((in_tmp / "checkpoints" / "poems" / "config.yaml").read_text())["corpus"] == [str(pipe)]
    again = fifo_with(in_tmp / "again", b"ab\n" * 5)
    stats = runner.invoke(app, ["corpus", "stats", str(again), "--json"])
    assert stats.exit_code == 0 and json.loads(stats.stdout)["characters"] == 15
    build = runner.invoke(app, ["corpus", "build", str(in_tmp / "checkpoints" / "poems" / "config.yaml"), "-o", "-"])
    assert build.exit_code == 1 and "config.yaml is not a folder: corpus build reads a folder of files" in build.stderr


def test_stats_counts_and_oddities(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes(b"\xef\xbb\xbfab\r\nab\r\nzz\xffz\n")
    result = runner.invoke(app, ["corpus", "stats", str(f), "--json"])
    assert result.exit_code == 0
    s = json.loads(result.stdout)
    assert (s["bytes"], s["characters"], s["lines"], s["vocabulary"]) == (16, 12, 3, 5)
    assert s["crlf"] == 2 and s["bom"] == [str(f)]
    assert s["invalid"] == 1 and s["invalid_at"] == [{"file": str(f), "offset": 13}]
    assert list(s["commonest"])[:2] == ["\n", "z"] and s["commonest"]["z"] == 3  # ties: code point order
    human = runner.invoke(app, ["corpus", "stats", "-"], input="[bold]x[/]\n")
    assert human.exit_code == 0 and human.stderr == "" and "'['" in human.stdout  # no markup eaten
    commonest = next(line for line in human.stdout.splitlines() if line.startswith("commonest"))
    assert "'[' 2  ']' 2" in commonest and "\\x" not in commonest  # its own separators are not escaped as data


def test_stats_top_must_be_at_least_1(tmp_path):
    (tmp_path / "x.txt").write_text("abc\n")
    for top in ("0", "-1"):
        result = runner.invoke(app, ["corpus", "stats", str(tmp_path / "x.txt"), "--top", top, "--json"])
        assert result.exit_code == 2 and result.stdout == "" and result.stderr == "error: --top must be at least 1\n"


def test_tables_go_to_stdout_plain_one_line_per_row():
    """`charrnn corpus list | grep war` finds the row: the table is the result, on stdout, without colour."""
    result = runner.invoke(app, ["corpus", "list"])
    assert result.exit_code == 0 and result.stderr == ""
    row = [line for line in result.stdout.splitlines() if "war" in line]
    assert len(row) == 1 and "(Project Gutenberg #2600, headings removed)" in row[0] and "\x1b" not in result.stdout
    stats = runner.invoke(app, ["corpus", "stats", "-"], input="hello\n")
    assert stats.stderr == "" and "vocabulary" in stats.stdout and "characters" in stats.stdout


@pytest.fixture
def tiny_catalog(tmp_path, monkeypatch):
    """A catalog with one entry 'tiny' whose text lies in a mirror folder; fetched files go to tmp."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    entry = one_corpus_catalog(monkeypatch, mirror, "tiny", b"a tiny corpus for tests\n" * 20)
    monkeypatch.setenv("CHARRNN_CORPORA", str(tmp_path / "corpora"))
    return mirror, entry


def test_list_at_80_columns_shows_the_fetched_path_whole(tiny_catalog, in_tmp, monkeypatch):
    import io

    from rich.console import Console

    from charrnn.cli.corpus import catalog_table

    mirror, entry = tiny_catalog
    long = CorpusEntry("tiny", "a corpus for tests with a description long enough to need wrapping " * 2,
                       entry.url, entry.sha256, entry.bytes, "public domain")
    monkeypatch.setattr(charrnn.text.catalog, "load_catalog", lambda: {"tiny": long})
    monkeypatch.setenv("CHARRNN_CORPORA", "corpora")
    assert runner.invoke(app, ["corpus", "get", "tiny", "--mirror", str(mirror)]).exit_code == 0
    screen = io.StringIO()
    Console(file=screen, width=80).print(catalog_table())
    assert "corpora/tiny.txt" in screen.getvalue() and "…" not in screen.getvalue()
    assert max(len(line) for line in screen.getvalue().splitlines()) <= 80


def test_get_from_a_mirror_and_train_by_name(tiny_catalog, in_tmp, monkeypatch):
    mirror, entry = tiny_catalog
    result = runner.invoke(app, ["corpus", "get", "tiny", "--mirror", str(mirror)])
    assert result.exit_code == 0 and "sha256 verified" in result.stderr
    assert len(result.stderr.splitlines()) == 1  # piped: the one line, no blank line from the progress bar
    assert charrnn.text.catalog.local_path("tiny").read_bytes() == (mirror / "tiny.txt").read_bytes()
    charrnn.text.catalog.local_path("tiny").unlink()
    monkeypatch.setenv("CHARRNN_MIRROR", str(mirror))  # the name alone fetches it, as `train tiny` does
    assert runner.invoke(app, ["train", "tiny", *TINY_ARGS]).exit_code == 0
    assert (in_tmp / "checkpoints" / "tiny" / "best.pt").is_file()
    for command in ("eval", "score", "cells"):  # and every command that reads a text takes the name too
        result = runner.invoke(app, [command, "checkpoints/tiny", "tiny"])
        assert result.exit_code == 0, (command, result.stderr)


def test_sha256_mismatch_is_refused_and_nothing_is_left(tiny_catalog):
    mirror, _ = tiny_catalog
    (mirror / "tiny.txt").write_bytes(b"tampered with, for test\n" * 20)  # the catalog's size, other bytes
    result = runner.invoke(app, ["corpus", "get", "tiny", "--mirror", str(mirror)])
    assert result.exit_code == 1 and "sha256 mismatch" in result.stderr and "Traceback" not in result.stderr
    folder = charrnn.text.catalog.corpora_dir()
    assert not folder.exists() or list(folder.iterdir()) == []  # no file, no .part


@pytest.mark.skipif(not (SHARED / "shakespeare.txt").is_file(), reason="needs ../shared/corpora")
def test_stats_match_the_published_numbers():
    s = json.loads(runner.invoke(app, ["corpus", "stats", str(SHARED / "shakespeare.txt"), "--json"]).stdout)
    assert (s["bytes"], s["characters"], s["vocabulary"], s["lines"]) == (1_115_394, 1_115_394, 65, 40_000)
    assert s["oddities"] == []


def test_stdin_is_spooled_once_and_cached_like_a_file(in_tmp, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "cache"))
    text = "stdin text to learn from\n" * 30
    first = runner.invoke(app, ["train", "-", *TINY_ARGS], input=text)
    second = runner.invoke(app, ["train", "-", *TINY_ARGS], input=text)
    assert first.exit_code == second.exit_code == 0
    assert "encoded in" in first.stderr and "cached tokens" in second.stderr
    assert list((in_tmp / "cache" / "spool").iterdir()) == []  # the spooled copy is removed


def test_bash_process_substitution_is_named_pipe():
    """bash's `<(cmd)` hands a command /dev/fd/63, a link to 'pipe:[81234]': no name to take."""
    read, write = os.pipe()
    try:
        assert source_name(f"/dev/fd/{read}") == "pipe"
    finally:
        os.close(read)
        os.close(write)


def test_a_folder_leaves_out_links_out_of_it(in_tmp):
    """A downloaded tree with a link to a private file: `train` and `corpus stats` on the folder
    read the tree, not the file the link leads to, and say which they left out; named on its own
    the file is read."""
    secret = in_tmp / "secret.txt"
    secret.write_text("PRIVATE KEY " * 50 + "\n")
    tree = in_tmp / "tree"
    tree.mkdir()
    (tree / "poem.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 30)
    (tree / "notes.txt").symlink_to(secret)
    result = runner.invoke(app, ["train", "tree", *TINY_ARGS])
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("corpus:"))
    assert "tree/poem.txt; " in line and "skipped 1 symbolic link(s) out of their folder (" in line
    assert line.endswith("tree/notes.txt): name a file to read it") and "secret" not in line
    stats = json.loads(runner.invoke(app, ["corpus", "stats", "tree", "--json"]).stdout)
    assert stats["characters"] == 44 * 30 and [p.endswith("tree/notes.txt") for p in stats["outside"]] == [True]
    assert any("symbolic link(s) out of their folder" in o for o in stats["oddities"])
    alone = json.loads(runner.invoke(app, ["corpus", "stats", "tree/notes.txt", "--json"]).stdout)
    assert alone["characters"] == 12 * 50 + 1
    (tree / "poem.txt").unlink()
    only_link = runner.invoke(app, ["train", "tree", *TINY_ARGS])
    assert only_link.exit_code == 1 and "tree matching **/* is a symbolic link out of it (notes.txt)" in only_link.stderr
