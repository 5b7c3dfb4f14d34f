"""`charrnn chat`: a prompt loop; each line you type is read into the model, and it answers.

Only the answers go to stdout, so a piped conversation (`printf '...' | charrnn chat > answers.txt`)
keeps only them. The conversation itself (state, settings, answers) is `generation.chat.Conversation`.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import typer

from charrnn.cli.common import NEWEST_CHECKPOINT, THREADS, app, device_option, examples, guarded, inference, shape, show_path

EXAMPLES = examples(
    "charrnn chat checkpoints/shakespeare",
    "charrnn chat --temp 0.5 --length 300 --seed 1",
    "printf 'ROMEO:\\n/temp 0.3\\nJULIET:\\n' | charrnn chat checkpoints/shakespeare > answers.txt",
    then="""Type a line and press Enter: it is read into the model, which answers until a blank
line (--stop) or --length characters. The state carries on from turn to turn.
/help lists the commands (/temp, /top-p, /beam, /length, /reset, ...); Ctrl-D leaves.""")

COMMANDS = """commands:
  /temp T       sampling temperature (0 = greedy)
  /top-p P      sample from the smallest set of characters holding probability P (1 = off)
  /top-k K      sample from the K most likely characters (0 = off)
  /beam N       answer with the best of a beam search of width N (0 = sample again)
  /length N     the most characters in one answer
  /stop TEXT    an answer ends at TEXT (\\n understood); /stop alone: only /length ends it
  /reset        forget the conversation (back to the start state)
  /settings     show the settings
  /help         this list
  Ctrl-D or /quit leaves; Ctrl-C stops an answer. Start a line with // to type a /."""

SETTINGS = {  # command -> (the Sampling field it sets, its type, its name in notes and /settings)
    "/temp": ("temperature", float, "temperature"), "/top-p": ("top_p", float, "top-p"),
    "/top-k": ("top_k", int, "top-k"), "/beam": ("width", int, "beam"), "/length": ("length", int, "length"),
}
COMMAND_OF = {field: name for name, (field, _, _) in SETTINGS.items()} | {"stop": "/stop"}  # a setting in errors


def read_line(prompt: str) -> str | None:
    """The next line typed (without its line break), or None at the end of input (Ctrl-D)."""
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            import readline  # noqa: F401  (line editing and history for input())

            return input(prompt)
        if sys.stdin.isatty():
            sys.stderr.write(prompt)
            sys.stderr.flush()
    except EOFError:
        return None
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\n")


def command(conversation, line: str) -> str | None:
    """Carry out a /command; the note to show, or None to leave."""
    from charrnn.cli.sample import unescape
    from charrnn.util.errors import CharrnnError

    name, _, arg = line.strip().partition(" ")
    name, arg = {"/temperature": "/temp"}.get(name, name), arg.strip()
    if name in ("/quit", "/exit"):
        return None
    if name == "/help":
        return COMMANDS
    if name == "/reset":
        conversation.reset()
        return "the conversation starts again"
    if name == "/settings":
        s = conversation.settings
        return ", ".join(f"{shown} {getattr(s, field)!r}" for field, _, shown in SETTINGS.values()) + f", stop {s.stop!r}"
    if name == "/stop":
        stop = unescape(line.strip()[len("/stop ") :]) if arg else ""
        conversation.settings = replace(conversation.settings, stop=(stop,) if stop else ())
        return f"answers end at {stop!r}" if arg else "answers end only at /length"
    if name not in SETTINGS:
        return f"unknown command {name}: /help lists them"
    field, kind, shown = SETTINGS[name]
    try:
        value = kind(arg)
    except ValueError:
        return f"{name} needs a number"
    try:
        changed = replace(conversation.settings, **{field: value})
        check_beam_memory(conversation.model, changed, conversation.vocab)
    except CharrnnError as e:
        return e.naming(COMMAND_OF)
    conversation.settings = changed
    return f"{shown} {value}" + (" (beam search off: sampling)" if field == "width" and not value else "")


def check_beam_memory(model, settings, vocab) -> None:
    """Refuse a beam search that could not fit in memory (width beams, each keeping `length` characters)
    before it starts, as `charrnn beam --width` does; sampling needs no such check."""
    from charrnn.generation.sampling import check_batch_memory

    if settings.width:
        check_batch_memory(model, settings, keep=True, vocab=vocab)


@app.command(epilog=EXAMPLES)
@guarded
def chat(
    checkpoint: str = NEWEST_CHECKPOINT,
    temperature: float = typer.Option(0.8, "--temp", "--temperature", help="Sampling temperature (0 = greedy)."),
    top_k: int = typer.Option(0, "--top-k", help="Sample only from the k most likely characters (0 = off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Sample only from the smallest set holding this much probability."),
    length: int = typer.Option(500, "--length", "-n", help="The most characters in one answer."),
    stop: str = typer.Option("\\n\\n", "--stop", help="An answer ends at this string, not shown (\\n understood; default: a blank line)."),
    width: int = typer.Option(0, "--beam", help="Answer with the best of a beam search of this width (0 = sample)."),
    seed: int = typer.Option(None, "--seed", help="Random seed (the same seed and lines, the same answers).", show_default=False),
    device: str = device_option(),
    threads: int = THREADS,
) -> None:
    """Talk with a model: each line you type is read into it, and it answers; the state carries on."""
    from charrnn.cli.sample import unescape
    from charrnn.generation.chat import Conversation
    from charrnn.generation.settings import Sampling
    from charrnn.util.console import info

    stops = (unescape(stop),) if stop else ()
    settings = Sampling(length, temperature, top_k, top_p, seed, stops, width=width)
    with inference(checkpoint, device, threads, "", replace(settings, unk="skip", width=0), "fp32") as (loaded, _):
        check_beam_memory(loaded.model, settings, loaded.vocab)  # (chat steps CharRNN.step)
        conversation = Conversation(loaded.model, loaded.vocab, settings)
        if sys.stdin.isatty():
            info(f"chatting with {show_path(loaded.path)} ({shape(loaded)}): type a line and press Enter; "
                 "/help lists the commands; Ctrl-D leaves")
        converse(conversation)


def converse(conversation) -> None:
    """The prompt loop: a /command changes settings, any other line is read in and answered, until Ctrl-D."""
    from charrnn.util.console import TextWriter, info, warn
    from charrnn.util.showtext import show_chars

    writer = TextWriter()
    while not writer.closed:
        line = read_line("> ")
        if line is None:
            break
        if line.startswith("/") and not line.startswith("//"):
            note = command(conversation, line)
            if note is None:
                break
            for note_line in note.splitlines():  # (each shown as text: control characters escaped)
                info(note_line)
            continue
        dropped = conversation.read((line[1:] if line.startswith("//") else line) + "\n")
        if dropped:
            warn(f"dropped characters the model never saw: {show_chars(dropped)}")
        answer(conversation, writer)
    writer.finish()


def answer(conversation, writer) -> None:
    """Stream the model's answer, without its stop string, then a blank line; Ctrl-C cuts it short."""
    from charrnn.util.console import info
    from charrnn.generation.stops import StopScanner

    scanner, last = StopScanner(conversation.settings.stop), ""
    try:
        for piece in conversation.reply():
            text = scanner.feed(piece)
            last = text or last
            if text and not writer.write(text):
                return
        rest = scanner.flush()  # held back, but no stop string came: it belongs to the answer
        if rest:
            last = rest
            writer.write(rest)
    except KeyboardInterrupt:
        info("(answer stopped)")
    writer.write("\n" if last.endswith("\n") else "\n\n")  # every answer ends with a blank line
