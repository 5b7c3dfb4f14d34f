"""`charrnn beam`: the model's most likely continuation, found by beam search, streamed to stdout."""

from __future__ import annotations

import typer

from charrnn.cli.common import (CONTINUATION_ONLY, NEWEST_CHECKPOINT, PRIME, PRIME_FILE, PRIME_NOTE, THREADS, UNK, app,
                                device_option, emit_json, examples, guarded, inference, read_prime)

EXAMPLES = examples(
    "charrnn beam --width 5",
    'charrnn beam checkpoints/shakespeare/best.pt --width 8 -n 300 --prime "KING RICHARD III:"',
    "charrnn beam --width 5 --top 3 --json | jq .",
    "charrnn beam --width 5 --stop $'\\n\\n' --no-repeat 12",
    'charrnn beam --prime "ROMEO:" --continuation-only -n 100 | tr a-z A-Z',
    then=PRIME_NOTE)


@app.command(epilog=EXAMPLES)
@guarded
def beam(
    checkpoint: str = NEWEST_CHECKPOINT,
    width: int = typer.Option(5, "--width", "-w", help="Beams kept at each step (1 = greedy)."),
    length: int = typer.Option(500, "--length", "-n", help="Tokens to generate, at most: characters (words or bytes for a word or byte model)."),
    prime: str = PRIME,
    prime_file: str = PRIME_FILE,
    continuation_only: bool = CONTINUATION_ONLY,
    stop: list[str] = typer.Option(None, "--stop", help="A beam that writes this string is finished (repeatable).", show_default=False),
    length_penalty: float = typer.Option(0.0, "--length-penalty", help="Rank beams by logprob / length**ALPHA (0 = total log-prob, 1 = per character)."),
    no_repeat: int = typer.Option(0, "--no-repeat", help="Forbid a beam to write any N-character sequence twice (0 = off)."),
    top: int = typer.Option(None, "--top", help="Report the K best beams with their scores (stderr, or all in --json); the text on stdout then ends with a line break.", show_default=False),
    json_: bool = typer.Option(False, "--json", help="Print the beams and their scores as JSON on stdout (nothing else)."),
    unk: str = UNK,
    device: str = device_option(),
    precision: str = typer.Option("auto", "--precision", help="Matrices while searching: auto (the fastest kernel measured on this machine at this width, remembered), fp32 (exact), bf16 (what charrnn serve --precision bf16 scores), bf16-packed or int8."),
    threads: int = THREADS,
) -> None:
    """Write the continuation the model finds most likely (beam search), streamed to stdout.

    The text all beams already agree on is printed at once; the rest when search ends.
    """
    from charrnn.generation.beam import beam_search
    from charrnn.generation.settings import Sampling
    from charrnn.util.console import TextWriter

    settings = Sampling(length=length, stop=tuple(stop or ()), unk=unk, width=width, top=1 if top is None else top,
                        no_repeat=no_repeat, length_penalty=length_penalty)
    prime_text = read_prime(prime, prime_file)
    with inference(checkpoint, device, threads, prime_text, settings, precision, keep=True) as (loaded, kernel):
        writer = TextWriter()
        echo = "" if continuation_only else prime_text  # printed before the text, exactly as given
        if not json_:
            writer.write(echo)
        beams = beam_search(loaded.model, loaded.vocab, prime_text, settings, None if json_ else writer.write, kernel)
    if json_:
        emit_json(beams_report(loaded, prime_text, settings, kernel, beams), indent=2)
    elif (writer.tty or top) and not (echo + (beams[0].text if beams else "")).endswith("\n"):
        writer.write("\n")  # end the last line: the prompt, or the ranking that follows, starts on its own
    writer.finish()
    if top and not json_:
        show_ranking(beams, echo)


def beams_report(loaded, prime: str, settings, kernel: str, beams) -> dict:
    s = settings
    return {
        "checkpoint": str(loaded.path), "prime": prime, "width": s.width, "length": s.length, "stop": list(s.stop),
        "length_penalty": s.length_penalty, "no_repeat": s.no_repeat, "precision": kernel,
        "beams": [{**b.to_dict(), "score": b.score(s.length_penalty)} for b in beams],
    }


def show_ranking(beams, echo: str) -> None:
    """The --top beams with their scores, on stderr."""
    from charrnn.util.console import err_console, shown

    for rank, b in enumerate(beams, 1):
        end = "stopped" if b.finished else f"{len(b.text)} chars"
        err_console().print(f"#{rank}  {b.logprob:.2f} nats  {b.bits_per_char:.3f} bits/char  ({end})", style="bold")
        err_console().print(shown(echo + b.text, keep="\n\t"))  # on stderr, for a person: escapes shown, not run
