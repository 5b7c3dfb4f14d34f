"""What charrnn shows a person never runs what a file holds (issue 19, attacks 3 and 4): control characters
are shown as escapes (\\x1b) on stderr and in tables, and a string from a file is never read as rich markup.
Generated text on stdout is the product and stays raw."""

from __future__ import annotations

import copy
import json

import torch
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.cli.progress import ConsoleReporter, sample_panel
from charrnn.training.payload import CHECKSUM_KEY, checksum
from charrnn.cli.render import rich_text


runner = CliRunner()
EVIL = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\x9b31m\u202e"  # set title, clear, clipboard, C1 CSI, bidi


def crafted(tmp_path, tiny_run, edit) -> str:
    """A copy of the tiny run's best.pt with `edit` applied and its checksum recomputed (a self-consistent file)."""
    ckpt = copy.deepcopy(load_checkpoint(tiny_run / "best.pt"))
    edit(ckpt)
    ckpt[CHECKSUM_KEY] = {"blake2b": checksum(ckpt)}
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, run / "best.pt")
    return str(run / "best.pt")


def no_raw_controls(text: str) -> None:
    for c in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert c not in text, repr(text[:300])


def test_score_shows_a_texts_escapes_instead_of_running_them(tmp_path, tiny_run):
    (tmp_path / "x.txt").write_text("the quick " + EVIL + " brown fox\n")
    result = runner.invoke(app, ["score", str(tiny_run), str(tmp_path / "x.txt"), "--threads", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    no_raw_controls(result.stdout + result.stderr)  # the report is on stdout, notes on stderr: neither runs it
    assert "\\x1b]0;pwned" in result.stdout and "\\x1b[2J" in result.stdout
    text = rich_text("a\x1bb\n", [None] * 4)
    assert text.plain == "a\\x1bb\n"


def test_checkpoints_show_prints_a_crafted_corpus_name_visibly(tmp_path, tiny_run):
    path = crafted(tmp_path, tiny_run, lambda c: c.setdefault("meta", {}).update(corpus=EVIL + "[/bold]"))
    result = runner.invoke(app, ["checkpoints", "show", path])
    assert result.exit_code == 0, result.stderr
    no_raw_controls(result.stdout)
    assert "pwned" in result.stdout and "[/bold]" in result.stdout  # shown (YAML writes ESC as \\e), as text


def test_markup_in_a_checkpoint_field_is_shown_not_parsed(tmp_path, tiny_run):
    crafted(tmp_path, tiny_run, lambda c: c["model_config"].update(cell="[/bold]"))
    bad = tmp_path / "runs" / "s"
    bad.mkdir()
    torch.save({**torch.load(tmp_path / "runs" / "r" / "best.pt", weights_only=True),
                "model_config": {**load_checkpoint(tiny_run / "best.pt")["model_config"],
                                 "cell": "[link=https://evil.example/x]lstm[/link]"}}, bad / "last.pt")
    (tmp_path / "runs" / "ok").mkdir()
    (tmp_path / "runs" / "ok" / "best.pt").write_bytes((tiny_run / "best.pt").read_bytes())
    result = runner.invoke(app, ["checkpoints", "list", str(tmp_path / "runs")])
    assert result.exit_code == 0 and result.exception is None, result.stderr
    assert "[/bold]" in result.stdout and "[link=https://evil.example/x]" in result.stdout  # shown, as text
    assert "lstm 2x32" in result.stdout  # the good file is listed as usual
    assert result.stdout.count("unreadable") == 2  # each bad file is one bad row


def test_error_messages_show_file_names_visibly(in_tmp):
    result = runner.invoke(app, ["train", "bin\x1b[2Jary.c", "--steps", "1"])
    assert result.exit_code == 1
    no_raw_controls(result.stderr)
    assert "bin\\x1b[2Jary.c" in result.stderr


def test_the_live_sample_shows_escapes_on_a_terminal_and_in_a_log(tmp_path):
    panel = sample_panel("line one " + EVIL + "\nline two", 100)
    assert "\\x1b]0;pwned" in panel.renderable.plain and "\x1b" not in panel.renderable.plain
    import io

    from rich.console import Console

    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, force_terminal=False), live=False)
    reporter.on_sample({"step": 5, "sample": "x" + EVIL})
    no_raw_controls(out.getvalue())


def test_generated_text_on_stdout_stays_raw(tmp_path):
    from charrnn import TrainConfig, train_on_text

    text = ("ab\x1bc" * 200)
    cfg = TrainConfig(steps=60, batch_size=4, seq_len=16, lr=2e-2, eval_every=60, threads=1, precision="fp32",
                      sample_every=0)
    train_on_text(text, {"hidden": 16, "embed": 8, "layers": 1}, cfg, tmp_path / "run")
    result = runner.invoke(app, ["sample", str(tmp_path / "run"), "-n", "40", "--temp", "0", "--prime", "ab",
                                 "--threads", "1"])
    assert result.exit_code == 0 and "\x1b" in result.stdout  # the product, byte for byte


def test_every_json_output_escapes_what_a_terminal_would_act_on(tmp_path, tiny_run):
    hostile = "\x9b31m\u202e\x7f"  # C1 CSI, a bidi override, DEL: json.dumps leaves them raw unless told
    path = tmp_path / f"na{hostile}mé.txt"
    path.write_text(f"the quick {hostile} brown fox é\n")
    cpu = ["--threads", "1", "--device", "cpu"]
    commands = [["corpus", "stats", str(path), "--top", "30"], ["eval", str(tiny_run), str(path), *cpu],
                ["score", str(tiny_run), str(path), *cpu], ["cells", str(tiny_run), str(path), *cpu],
                ["beam", str(tiny_run), "-n", "3", "--prime", f"the{hostile}é", "--unk", "skip", "--threads", "1"],
                ["checkpoints", "list", str(tiny_run)], ["checkpoints", "show", str(tiny_run)]]
    for args in commands:
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, (args, result.stderr)
        assert not {"\x9b", "\u202e", "\x7f"} & set(result.stdout), args
        data = json.loads(result.stdout)  # the same strings come back
        if args[0] != "checkpoints":
            assert all(e in result.stdout for e in ("\\u009b", "\\u202e", "\\u007f")), args
            assert data.get("source", str(path)) == str(path) and "é" in result.stdout, args  # letters stay letters
