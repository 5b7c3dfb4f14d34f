"""charrnn chat: the state carries across turns, commands change settings live; through a pipe and in tmux."""

from __future__ import annotations

import os
from dataclasses import replace
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import torch

from charrnn.generation.chat import Conversation
from charrnn.generation.settings import CHAT, Sampling
from charrnn.training.checkpoint import load_model
from charrnn.generation.stops import StopScanner
from tests.conftest import REPO


def test_stop_scanner_never_shows_the_stop_string():
    scanner = StopScanner(["\n\n"])
    shown = [scanner.feed(c) for c in "ab\nc\n\nxyz"]
    assert shown == ["a", "b", "", "\nc", "", "", "", "", ""] and scanner.stopped
    scanner = StopScanner(["END", "xy"])
    assert "".join(scanner.feed(c) for c in "aEN") == "a" and scanner.flush() == "EN"
    assert StopScanner([]).feed("abc") == "abc"


def greedy_after(model, vocab, text: str, n: int) -> str:
    """The greedy continuation of `text`, read in one forward pass (the reference for carried state)."""
    out, ids = "", vocab.encode(text)
    with torch.inference_mode():
        logits, state = model(torch.tensor([ids]))
        logits = logits[:, -1]
        for _ in range(n):
            nxt = logits.argmax(-1)
            out += vocab.chars[int(nxt)]
            logits, state = model.step(nxt, state)
    return out


def test_the_state_carries_from_turn_to_turn(tiny_run):
    loaded = load_model(tiny_run)
    chat = Conversation(loaded.model, loaded.vocab, Sampling(30, temperature=0, seed=1))
    chat.read("the quick brown\n")
    first = "".join(chat.reply())
    chat.read("the lazy\n")
    second = "".join(chat.reply())
    whole = "\n" + "the quick brown\n" + first + "the lazy\n"
    assert second == greedy_after(loaded.model, loaded.vocab, whole, 30)
    chat.reset()
    chat.read("the quick brown\n")
    assert "".join(chat.reply()) == first  # /reset: back to the start state


def test_an_answer_ends_at_the_stop_string_and_beam_answers_too(parrot_run):
    loaded = load_model(parrot_run)
    chat = Conversation(loaded.model, loaded.vocab, Sampling(200, temperature=0, stop=("dog.",), seed=1))
    chat.read("the quick brown fox jumps over the lazy dog.\n")
    answer = "".join(chat.reply())
    assert answer.endswith("dog.") and len(answer) < 200
    chat.settings = replace(chat.settings, width=3)
    chat.read("the quick\n")
    beamed = "".join(chat.reply())
    assert beamed.endswith("dog.") and 0 < len(beamed) < 200
    assert chat.read("é and ü") == ["é", "ü"]  # characters it never saw are dropped and named


def test_a_beam_too_big_for_memory_is_refused_and_the_chat_goes_on(tiny_run):
    from typer.testing import CliRunner

    from charrnn.cli import app
    from charrnn.cli.chat import command

    result = CliRunner().invoke(app, ["chat", str(tiny_run), "--threads", "1", "--beam", str(10**20)], input="")
    assert result.exit_code == 2 and result.stderr.startswith("error: --beam 100,000,000,000,000,000,000 with this model")
    assert result.stderr.endswith("lower --beam\n") and result.stderr.count("\n") == 1
    loaded = load_model(tiny_run)
    chat = Conversation(loaded.model, loaded.vocab, replace(CHAT, seed=1))
    note = command(chat, f"/beam {10**20}")
    assert note.startswith("/beam 100,000,000,000,000,000,000 with this model needs about") and chat.settings.width == 0
    assert command(chat, "/beam 3") == "beam 3"
    assert "lower /length or /beam" in command(chat, f"/length {10**12}") and chat.settings.length == 500  # 3 beams that long


def run_chat(tiny_run, lines: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charrnn", "chat", str(tiny_run), "--threads", "1", *args],
                          input=lines, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_chat_through_a_pipe(parrot_run):
    lines = ("the quick brown fox\n/temp 0\nthe quick brown fox\n/length 10\nthe quick\n/length 100\n/beam 2\n"
             "the quick brown fox\n/top-p 2\n/temp 1e308\n/temp nan\n/bogus\n/reset\n/help\n")
    result = run_chat(parrot_run, lines, "--seed", "1", "--stop", "dog.", "--temp", "0.5")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    answers = result.stdout.split("\n\n")
    assert len(answers) == 5 and answers[-1] == ""  # one answer per typed line, each ending in a blank line
    assert answers[1] == " jumps over the lazy "  # greedy after /temp 0, ended before the stop string
    assert 0 < len(answers[2]) <= 10  # /length 10
    assert answers[3] == " jumps over the lazy "  # /beam 2
    assert result.stderr.count("/temp must be a number from 0 to 100 (0 = greedy)") == 2  # 1e308, nan: refused
    for note in ("temperature 0.0", "length 10", "beam 2", "/top-p must be a number > 0 and <= 1", "unknown command /bogus",
                 "/top-p P"):  # ... and the /help list
        assert note in result.stderr, note
    assert "\n  /top-p P" in result.stderr and "\\x0a" not in result.stderr  # the /help list: a command a line
    assert not result.stderr.startswith(">")  # no prompts when stdin is not a terminal


def test_chat_in_tmux(tiny_run):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    sock = f"charrnn-test-{uuid.uuid4().hex[:8]}"  # our own tmux server: nothing else is touched
    tmux = ["tmux", "-L", sock]
    command = f"{sys.executable} -m charrnn chat {tiny_run} --seed 1 --temp 0 -n 30 --threads 1; echo CHAT-EXITED $?; sleep 30"
    env = {**os.environ, "TERM": "xterm"}
    subprocess.run([*tmux, "new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", command], check=True, cwd=REPO, env=env)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "chat"], capture_output=True, text=True).stdout

    def wait_for(text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (shown := screen()):
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared on the screen:\n{screen()}")

    try:
        wait_for("Ctrl-D leaves")
        wait_for("\n>")  # the prompt (capture-pane drops its trailing space)
        subprocess.run([*tmux, "send-keys", "-t", "chat", "the quick brown fox", "Enter"], check=True)
        shown = wait_for("the quick brown fox\n", 30)
        time.sleep(0.5)
        subprocess.run([*tmux, "send-keys", "-t", "chat", "/temp 0.5", "Enter"], check=True)
        wait_for("temperature 0.5")
        subprocess.run([*tmux, "send-keys", "-t", "chat", "C-d"], check=True)
        shown = wait_for("CHAT-EXITED 0")
        assert "Traceback" not in shown
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
