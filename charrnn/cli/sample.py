"""`charrnn sample`: stream text from a trained model to stdout."""

from __future__ import annotations

import typer

from charrnn.cli.common import (CONTINUATION_ONLY, NEWEST_CHECKPOINT, PRIME, PRIME_FILE, PRIME_NOTE, THREADS, UNK, app,
                                device_option, examples, guarded, inference, read_prime, show_path)

EXAMPLES = examples(
    "charrnn sample --temp 0.8",
    'charrnn sample checkpoints/shakespeare --prime "ROMEO:" | head -c 300',
    'echo "First Citizen:" | charrnn sample --prime-file - --temp 0.5',
    "charrnn sample --num-samples 4 --stop $'\\n\\n' --top-p 0.9",
    "charrnn sample checkpoints/linux --highlight c",
    "charrnn sample -N 3 --separator '\\n----\\n' > samples.txt",
    "charrnn sample checkpoints/names -N 10 --stop $'\\n'",
    "charrnn sample -N 20 --stop $'\\n\\n' -o poems/",
    'charrnn sample --prime "ROMEO:" --continuation-only | wc -c',
    then=PRIME_NOTE + """

--num-samples draws the samples together in one batch; --stop ends each one
on its own. On a terminal the samples get headers and --highlight colours
C or LaTeX (auto: from the training corpus); piped, output is plain text,
the samples joined by --separator (line breaks a sample ends with count
toward it).

A --stop that ends a line makes each sample a line: one per line, no
headers, no blank line between. --out-dir writes each sample to a file of
its own instead.""")


def unescape(text: str) -> str:
    """`\\n`, `\\t` and `\\\\` typed on a command line -> newline, tab, backslash."""
    return text.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\0", "\\")


@app.command(epilog=EXAMPLES)
@guarded
def sample(
    checkpoint: str = NEWEST_CHECKPOINT,
    length: int = typer.Option(500, "--length", "-n", help="Tokens to generate per sample: characters (words or bytes for a word or byte model)."),
    temperature: float = typer.Option(1.0, "--temp", "--temperature", help="Sampling temperature (0 = greedy argmax)."),
    prime: str = PRIME,
    prime_file: str = PRIME_FILE,
    seed: int = typer.Option(None, "--seed", help="Random seed (same seed, same text).", show_default=False),
    top_k: int = typer.Option(0, "--top-k", help="Sample only from the k most likely characters (0 = off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Sample only from the smallest set holding this much probability."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop after generating this string (repeatable; per sample).", show_default=False),
    continuation_only: bool = CONTINUATION_ONLY,
    n: int = typer.Option(1, "--num-samples", "-N", help="Samples to generate together in one batch."),
    separator: str = typer.Option(None, "--separator", show_default=False, help=(
        "Written between samples when stdout is not a terminal (\\n, \\t understood). Default: a blank line; "
        "a line break when --stop ends a line.")),
    out: str = typer.Option(None, "--out-dir", "-o", show_default=False, help=(
        "Write sample i to DIR/sample-i.txt (numbered from 1, atomically), not to stdout.")),
    force: bool = typer.Option(False, "--force", help="Replace sample files that --out-dir finds already there."),
    highlight: str = typer.Option("auto", "--highlight", help="Colour code on a terminal: auto (from the training corpus), c, latex or none. Never when piped."),
    unk: str = UNK,
    device: str = device_option(),
    threads: int = THREADS,
    precision: str = typer.Option("auto", "--precision", help="Matrices while stepping: auto (the fastest kernel measured on this machine, remembered; fp32 for greedy text, --temp 0), fp32 (exact: what `charrnn serve` writes), bf16 (what `charrnn serve --precision bf16` writes), bf16-packed or int8."),
) -> None:
    """Generate text from a trained model, streamed to stdout as it is written."""
    from charrnn.cli.highlight import language_for, make_writer
    from charrnn.generation.settings import Sampling

    settings = Sampling(length, temperature, top_k, top_p, seed, tuple(stop or ()), n, unk)
    language_for(highlight)  # check the value before loading anything
    prime_text = read_prime(prime, prime_file)
    files = sample_files(out, n, force) if out is not None else None  # refused before the model is loaded
    with inference(checkpoint, device, threads, prime_text, settings, precision, keep=n > 1) as (loaded, kernel):
        echo = "" if continuation_only else prime_text  # printed before each sample, exactly as given
        if files is not None:
            write_files(files, [echo + text for text in draw_all(loaded, settings, prime_text, kernel)])
            return
        writer = make_writer(language_for(highlight, loaded.checkpoint))
        lines = ends_lines(settings.stop)
        sep = unescape(separator) if separator is not None else "\n" if lines else "\n\n"
        write_samples(loaded, writer, echo, sep, settings, prime_text, kernel, headers=not lines)
        writer.finish()


def ends_lines(stops) -> bool:
    """Whether the stop strings make each sample a line: every one ends with a line break, its only one."""
    return bool(stops) and all(s.endswith("\n") and "\n" not in s[:-1] for s in stops)


def sample_files(folder: str, n: int, force: bool) -> list:
    """The files --out-dir writes: folder/sample-01.txt ... (numbered from 1, as wide as n); refused where one is
    already there, unless `force`."""
    from pathlib import Path

    from charrnn.util.errors import CharrnnError

    width = len(str(n))
    files = [Path(folder) / f"sample-{i:0{width}d}.txt" for i in range(1, n + 1)]
    there = [f for f in files if f.exists() or f.is_symlink()]
    if there and not force:
        raise CharrnnError(f"{len(there)} of the {n} sample files are already there ({show_path(there[0])} ...): "
                           "pass --force to replace them, or name another folder")
    return files


def draw_all(loaded, settings, prime: str, kernel: str) -> list[str]:
    """Every sample's whole text, drawn together in one batch."""
    from charrnn.generation.sampling import generate_batch

    texts: list[list[str]] = [[] for _ in range(settings.n)]
    for pieces in generate_batch(loaded.model, loaded.vocab, settings, prime, kernel):
        for kept, piece in zip(texts, pieces):
            kept.append(piece)
    return ["".join(t) for t in texts]


def write_files(files: list, texts: list[str]) -> None:
    """Each text to its file, atomically (a file is whole or not there); say where they went."""
    from charrnn.util.console import info
    from charrnn.util.files import atomic_write_text

    for path, text in zip(files, texts):
        atomic_write_text(path, text)
    last = f" ... {files[-1].name}" if len(files) > 1 else ""
    info(f"wrote {len(files)} sample(s) to {show_path(files[0].parent)}: {files[0].name}{last}")


def end_sample(writer, text: str) -> None:
    """On a terminal, end the sample's last line (the prompt starts on its own); tell a highlighter."""
    if writer.tty and not text.endswith("\n"):
        writer.write("\n")
    if hasattr(writer, "end_sample"):
        writer.end_sample()


def write_samples(loaded, writer, echo: str, separator: str, settings, prime: str, kernel: str,
                  headers: bool = True) -> None:
    """Draw the samples in lockstep: the first is streamed as it comes, the others are kept and written after
    it (on a terminal under a header each unless not `headers`, piped joined by `separator`)."""
    import sys

    from charrnn.generation.sampling import generate_batch, separator_after
    from charrnn.util.console import err_console

    def header(i: int) -> None:  # on a terminal only: a rule on stderr, between the samples on stdout
        if writer.tty and n > 1 and headers:
            sys.stdout.flush()
            err_console().rule(f"sample {i + 1} of {n}", style="dim")

    n, room = settings.n, max(len(separator), 1)
    end, kept = echo[-room:], [echo] * (n - 1)  # the first sample's end (what follows it depends on), the others
    header(0)
    writer.write(echo)
    for chars in generate_batch(loaded.model, loaded.vocab, settings, prime, kernel):
        end = (end + chars[0])[-room:]
        for i, ch in enumerate(chars[1:]):
            kept[i] += ch
        if chars[0] and not writer.write(chars[0]):
            break
    for i, text in enumerate(kept, 1):
        if writer.closed:
            break
        if writer.tty:
            end_sample(writer, end)
        else:
            writer.write(separator_after(end, separator))
        header(i)
        writer.write(text)
        end = text
    if not writer.closed:
        end_sample(writer, end)
