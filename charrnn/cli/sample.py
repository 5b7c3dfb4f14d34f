"""`charrnn sample`: stream text from a trained model to stdout."""

from __future__ import annotations

import typer

from charrnn.cli.common import app, guarded, read_prime

EXAMPLES = """
[bold]Examples[/]

  charrnn sample --temp 0.8
  charrnn sample checkpoints/shakespeare/best.pt -n 2000 --prime "ROMEO:" --seed 1 | head -c 300
  echo "First Citizen:" | charrnn sample --prime-file - --temp 0.5
"""


@app.command(epilog=EXAMPLES)
@guarded
def sample(
    checkpoint: str = typer.Argument(None, help="Checkpoint file or run folder. Default: the newest run under ./checkpoints.", show_default=False),
    length: int = typer.Option(500, "--length", "-n", help="Characters to generate."),
    temp: float = typer.Option(1.0, "--temp", "--temperature", help="Sampling temperature (0 = greedy argmax)."),
    prime: str = typer.Option(None, "--prime", "-p", help="Text to start from (run through the model first; not printed).", show_default=False),
    prime_file: str = typer.Option(None, "--prime-file", help="Read the prime from a file, or - for stdin.", show_default=False),
    seed: int = typer.Option(None, "--seed", help="Random seed (same seed, same text).", show_default=False),
    top_k: int = typer.Option(0, "--top-k", help="Sample only from the k most likely characters (0 = off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Sample only from the smallest set holding this much probability."),
    stop: list[str] = typer.Option(None, "--stop", help="Stop after generating this string (repeatable).", show_default=False),
    unk: str = typer.Option("error", "--unk", help="Prime characters the model never saw: error or skip."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, mps or auto."),
) -> None:
    """Generate text from a trained model, streamed to stdout as it is written."""
    import torch

    from charrnn.checkpoint import load_model
    from charrnn.console import TextWriter
    from charrnn.errors import UsageError
    from charrnn.sampling import check_sampling_args, generate
    from charrnn.train import resolve_device

    check_sampling_args(length, temp, top_k, top_p)
    if unk not in ("error", "skip"):
        raise UsageError("--unk must be error or skip")
    prime_text = read_prime(prime, prime_file)
    torch.set_num_threads(1)  # batch-1 stepping: tiny matmuls, threads only add overhead
    loaded = load_model(checkpoint, resolve_device(device))
    writer = TextWriter()
    for ch in generate(loaded.model, loaded.vocab, length, prime_text, temp, top_k, top_p, seed, stop or (), unk):
        if not writer.write(ch):
            break
    if not writer.closed and writer.tty:
        writer.write("\n")
    writer.finish()
