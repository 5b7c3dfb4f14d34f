import subprocess
import sys

import pytest
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint, load_model
from charrnn.cli import app
from charrnn.generation.sampling import sample_text

from .conftest import TINY_TEXT, env_without_threads, fifo_with

runner = CliRunner()


def test_sample_stdout_is_the_prime_then_the_generated_text(tiny_run):
    result = runner.invoke(app, ["sample", str(tiny_run), "-n", "80", "--seed", "3", "--prime", "the "])
    assert result.exit_code == 0, result.output
    m = load_model(tiny_run)
    continuation = sample_text(m.model, m.vocab, 80, prime="the ", seed=3)
    assert result.stdout == "the " + continuation  # one text, as char-rnn and nanoGPT print it
    only = runner.invoke(app, ["sample", str(tiny_run), "-n", "80", "--seed", "3", "--prime", "the ", "--continuation-only"])
    assert only.stdout == continuation


def test_the_echoed_prime_is_the_text_given(tiny_run):
    """The model reads a line break before the prime and never reads unknown characters (--unk skip);
    what is printed is the prime exactly as given."""
    result = runner.invoke(app, ["sample", str(tiny_run), "-n", "5", "--seed", "1", "--prime", "Zthe", "--unk", "skip"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Zthe") and len(result.stdout) == 4 + 5
    several = runner.invoke(app, ["sample", str(tiny_run), "-n", "5", "--seed", "1", "-p", "the", "-N", "3", "--separator", "|"])
    assert [s[:3] for s in several.stdout.split("|")] == ["the"] * 3


def test_sample_defaults_to_newest_run(tiny_run, in_tmp):
    import shutil

    shutil.copytree(tiny_run, in_tmp / "checkpoints" / "x")
    result = runner.invoke(app, ["sample", "-n", "20", "--temp", "0"])
    assert result.exit_code == 0
    assert len(result.stdout) == 20
    val = load_model(tiny_run).facts().split("val ")[1]
    assert result.stderr == f"using checkpoints/x/best.pt (step 80, val {val})\n"  # which run was taken, on stderr
    assert runner.invoke(app, ["beam", "-n", "5"]).stderr.startswith("using checkpoints/x/best.pt (step 80, val")
    named = runner.invoke(app, ["sample", "checkpoints/x", "-n", "5"])
    assert named.exit_code == 0 and named.stderr == ""  # a checkpoint named on the command line needs no note


def test_paths_in_messages_show_control_characters_escaped(tiny_run, in_tmp):
    import shutil

    shutil.copytree(tiny_run, in_tmp / "checkpoints" / "red\x1b[31mrun\n")
    result = runner.invoke(app, ["sample", "-n", "5"])
    assert result.exit_code == 0 and "\x1b" not in result.stderr
    assert result.stderr.startswith("using checkpoints/red\\x1b[31mrun\\x0a/best.pt (step 80")  # one line


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--temp", "-1"], 2, "--temp"),
        (["-n", "-5"], 2, "--length"),
        (["--prime", "QZ@"], 1, "not in the model's vocabulary"),
        (["--top-p", "0"], 2, "--top-p"),
    ],
)
def test_sample_errors(tiny_run, args, code, message):
    result = runner.invoke(app, ["sample", str(tiny_run), *args])
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_checkpoint(in_tmp):
    result = runner.invoke(app, ["sample"])
    assert result.exit_code == 1 and "no trained model found" in result.stderr
    result = runner.invoke(app, ["sample", "nope.pt"])
    assert result.exit_code == 1 and "no checkpoint at nope.pt" in result.stderr


def test_train_cli_from_stdin_then_sample(in_tmp):
    result = runner.invoke(
        app,
        ["train", "-", "--steps", "20", "--hidden", "16", "--embed", "8", "-b", "4", "-t", "16", "--threads", "1"],
        input=TINY_TEXT,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # progress goes to stderr only
    assert (in_tmp / "checkpoints" / "stdin" / "best.pt").is_file()
    assert "val" in result.stderr
    again = runner.invoke(app, ["sample", "-n", "10"])
    assert again.exit_code == 0 and len(again.stdout) == 10


@pytest.mark.parametrize(
    "data, message",
    [(b"", "empty"), (b"\xff\xfe\x00\x01binary\x00", "UTF-16"), (b"a", "single character")],
)
def test_train_bad_corpus_one_line_error(in_tmp, data, message):
    (in_tmp / "c.txt").write_bytes(data)
    result = runner.invoke(app, ["train", "c.txt", "--steps", "1"])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]


@pytest.mark.parametrize("command", ["sample {run} -n 200000 --seed 1", "checkpoints show {run}"])
def test_pipe_into_head_ends_quietly(tiny_run, command):
    """The reader stops early: no traceback, no message, status 0 (generated text or a rich report alike)."""
    cmd = f'set -o pipefail; "{sys.executable}" -m charrnn {command.format(run=tiny_run)} | head -c 10'
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, env=env_without_threads(), timeout=120)
    assert len(proc.stdout) == 10
    assert b"Traceback" not in proc.stderr and b"rror" not in proc.stderr, proc.stderr.decode()
    assert proc.returncode == 0, proc.stderr.decode()


def test_help_has_examples_and_short_flag():
    result = runner.invoke(app, ["sample", "-h"])
    assert result.exit_code == 0 and "Examples" in result.stdout


def test_sample_puts_the_thread_setting_back(tiny_run):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        result = runner.invoke(app, ["sample", str(tiny_run), "-n", "20", "--seed", "1", "--threads", "0"])
        assert result.exit_code == 0, result.stderr
        assert torch.get_num_threads() == 1  # the command's choice did not leak into the process
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("args, says", [
    (["sample", "--bogus"], "No such option: --bogus (see charrnn sample -h)"),
    (["train", "x.txt", "--hidden", "big"], "Invalid value for '--hidden'"),
    (["nosuch"], "No such command 'nosuch' (see charrnn -h)"),
    (["checkpoints", "nosuch"], "(see charrnn checkpoints -h)"),
    (["sample", "--tem", "1"], "Possible options: --temp"),
])
def test_a_mistake_in_the_command_line_is_one_line_and_exit_2(args, says):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and says in result.stderr


def test_a_prime_file_may_be_a_pipe_but_not_a_folder(tiny_run, tmp_path):
    """`--prime-file <(printf the)` names a pipe (/dev/fd/63): it is read, never called missing."""
    pipe = fifo_with(tmp_path / "prime", b"the ")
    result = runner.invoke(app, ["sample", str(tiny_run), "--prime-file", str(pipe), "-n", "5", "--seed", "1"])
    assert result.exit_code == 0 and result.stdout.startswith("the "), result.stderr
    folder = runner.invoke(app, ["sample", str(tiny_run), "--prime-file", str(tmp_path), "-n", "5"])
    assert folder.exit_code == 1 and folder.stderr == f"error: {tmp_path} is a folder: --prime-file reads one text file\n"


def test_a_log_reader_that_goes_away_does_not_stop_training(tmp_path):
    """`charrnn train ... 2>&1 | head -4`: the log is dropped from then on; the run finishes and saves."""
    (tmp_path / "c.txt").write_text(TINY_TEXT * 20)
    cmd = (f'set -o pipefail; "{sys.executable}" -m charrnn train c.txt -o run --steps 200 --hidden 16 --embed 8 '
           f'--layers 1 -b 4 -t 16 --threads 1 --precision fp32 2>&1 | head -4')
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, cwd=tmp_path, env=env_without_threads(), timeout=120)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 4, proc.stdout.decode()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 200


@pytest.mark.parametrize("out", ["-", "/dev/stdout"])
def test_corpus_build_into_head_ends_quietly(tmp_path, out):
    for i in range(40):  # more than a pipe holds (64 KB), so the build is still writing when head leaves
        (tmp_path / f"f{i}.txt").write_text(TINY_TEXT * 20)
    cmd = f'set -o pipefail; "{sys.executable}" -m charrnn corpus build "{tmp_path}" -o {out} | head -c 5'
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, env=env_without_threads(), timeout=120)
    assert proc.returncode == 0 and len(proc.stdout) == 5 and proc.stderr == b"", proc.stderr.decode()
