"""`charrnn sample`: stream text from a trained model to stdout."""

from __future__ import annotations

import typer

from charrnn.cli.common import app, guarded, read_prime, say_which_model

EXAMPLES = """
[bold]Examples[/]

  charrnn sample --temp 0.8
  charrnn sample checkpoints/shakespeare --prime "ROMEO:" | head -c 300
  echo "First Citizen:" | charrnn sample --prime-file - --temp 0.5
  charrnn sample --num-samples 4 --stop $'\\n\\n' --top-p 0.9
  charrnn sample checkpoints/linux --highlight c
  charrnn sample -N 3 --separator '\\n----\\n' > samples.txt
  charrnn sample --prime "ROMEO:" --continuation-only | wc -c

The prime is printed first, so the output reads as one text (--continuation-only
leaves it out).

--num-samples draws the samples together in one batch; --stop ends each one
on its own. On a terminal the samples get headers and --highlight colours
C or LaTeX (auto: from the training corpus); piped, output is plain text,
the samples joined by --separator (line breaks a sample ends with count
toward it).
"""


def unescape(text: str) -> str:
    """`\\n`, `\\t` and `\\\\` typed on a command line -> newline, tab, backslash."""
    return text.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\0", "\\")


@app.command(epilog=EXAMPLES)
@guarded
def sample(
    checkpoint: str = typer.Argument(None, help="Checkpoint file or run folder. Default: the newest run under ./checkpoints.", show_default=False),
    length: int = typer.Option(500, "--length", "-n", help="Characters to generate (per sample)."),
    temp: float = typer.Option(1.0, "--temp", "--temperature", help="Sampling temperature (0 = greedy argmax)."),
    prime: str = typer.Option(None, "--prime", "-p", help="Text to start from: the model reads it first, and it is printed before what the model writes.", show_default=False),
    prime_file: str = typer.Option(None, "--prime-file", help="Read the prime from a file, or - for stdin.", show_default=False),
    seed: int = typer.Option(None, "--seed", help="Random seed (same seed, same text).", show_default=False),
    top_k: int = typer.Option(0, "--top-k", help="Sample only from the k most likely characters (0 = off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Sample only from the smallest set holding this much probability."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop after generating this string (repeatable; per sample).", show_default=False),
    continuation_only: bool = typer.Option(False, "--continuation-only", help="Print only what the model writes, not the prime before it."),
    num_samples: int = typer.Option(1, "--num-samples", "-N", help="Samples to generate together in one batch."),
    separator: str = typer.Option("\\n\\n", "--separator", help="Written between samples when stdout is not a terminal (\\n, \\t understood)."),
    highlight: str = typer.Option("auto", "--highlight", help="Colour code on a terminal: auto (from the training corpus), c, latex or none. Never when piped."),
    unk: str = typer.Option("error", "--unk", help="Prime characters the model never saw: error or skip."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps or auto."),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0 = auto: times 1 thread and one per core, keeps the faster)."),
) -> None:
    """Generate text from a trained model, streamed to stdout as it is written."""
    import sys

    import torch

    from charrnn.checkpoint import load_model
    from charrnn.console import err_console
    from charrnn.errors import UsageError
    from charrnn.highlight import language_for, make_writer
    from charrnn.runtime import resolve_device
    from charrnn.sampling import (
        check_sampling_args, generate, generate_batch, prime_ids_for, separator_after, tune_threads,
    )

    check_sampling_args(length, temp, top_k, top_p)
    if unk not in ("error", "skip"):
        raise UsageError("--unk must be error or skip")
    if num_samples < 1:
        raise UsageError("--num-samples must be at least 1")
    language = language_for(highlight)  # check the value before loading anything
    prime_text = read_prime(prime, prime_file)
    if threads < 0:
        raise UsageError("--threads must be >= 0 (0 = auto)")
    torch.set_num_threads(1)
    loaded = load_model(checkpoint, resolve_device(device))
    say_which_model(loaded)
    prime_ids_for(loaded.vocab, prime_text, unk)  # a prime the model cannot read is an error before anything is printed
    torch.set_num_threads(threads or tune_threads(loaded.model, num_samples))
    writer = make_writer(language_for(highlight, loaded.checkpoint))
    echo = "" if continuation_only else prime_text  # printed before each sample, exactly as given

    def end_sample(text: str) -> None:
        if writer.tty and not text.endswith("\n"):
            writer.write("\n")
        if hasattr(writer, "end_sample"):
            writer.end_sample()

    def header(i: int) -> None:  # on a terminal only: a rule on stderr, between the samples on stdout
        if writer.tty and num_samples > 1:
            sys.stdout.flush()
            err_console().rule(f"sample {i + 1} of {num_samples}", style="dim")

    if num_samples == 1:
        last = echo[-1:]
        writer.write(echo)
        for last in generate(loaded.model, loaded.vocab, length, prime_text, temp, top_k, top_p, seed, stop or (), unk):
            if not writer.write(last):
                break
        if not writer.closed:
            end_sample(last)
        writer.finish()
        return

    # Several samples are drawn in lockstep: the first is streamed, the others are kept and written after it.
    texts = [echo] * num_samples
    header(0)
    writer.write(echo)
    batch = generate_batch(loaded.model, loaded.vocab, num_samples, length, prime_text, temp, top_k, top_p, seed, stop or (), unk)
    for chars in batch:
        for i, ch in enumerate(chars):
            texts[i] += ch
        if chars[0] and not writer.write(chars[0]):
            break
    for i in range(1, num_samples):
        if writer.closed:
            break
        if writer.tty:
            end_sample(texts[i - 1])
        else:
            writer.write(separator_after(texts[i - 1], unescape(separator)))
        header(i)
        writer.write(texts[i])
    if not writer.closed:
        end_sample(texts[-1])
    writer.finish()
