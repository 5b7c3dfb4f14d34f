"""`charrnn train`: read a corpus, train a model, save checkpoints."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from charrnn.cli.common import app, guarded
from charrnn.errors import CharrnnError, UsageError
from charrnn.model import ModelConfig
from charrnn.train import TrainConfig

EXAMPLES = """
[bold]Examples[/]

  charrnn train corpus.txt --time 120
  charrnn train src/ --glob '**/*.c' --glob '**/*.h' --cell gru --layers 3
  cat *.tex | charrnn train - -o checkpoints/latex
  charrnn train --resume checkpoints/shakespeare
  charrnn train poems.txt --init-from checkpoints/shakespeare --steps 500
  charrnn train corpus.txt --save-every 1000 --keep 5
"""

_DEFAULTS = {f.name: f.default for cls in (ModelConfig, TrainConfig) for f in fields(cls)}


def opt(*names: str, help: str, field: str | None = None):
    """A Typer option whose default is None (so we can tell given from not given), showing the config default."""
    field = field or names[0].lstrip("-").replace("-", "_")
    default = _DEFAULTS.get(field)
    return typer.Option(None, *names, help=help, show_default=str(default) if default is not None else False)


def corpus_name(sources: list[str]) -> str:
    """A run name from the corpus: the file or folder name (without suffix), or 'stdin'."""
    first = sources[0]
    if first == "-":
        return "stdin"
    return Path(first).resolve().stem or "corpus"


def default_out_dir(name: str, root: Path = Path("checkpoints")) -> Path:
    """checkpoints/<name>, or <name>-2, -3 ... if that folder already holds a run."""
    candidate, n = root / name, 1
    while any(candidate.glob("*.pt")):
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate


MODEL_KEYS = ("cell", "layers", "hidden", "embed", "dropout")


@app.command(epilog=EXAMPLES)
@guarded
def train(
    sources: list[str] = typer.Argument(None, help="Text files, folders (see --glob), catalog names (shakespeare, linux, ...), or - for stdin. With --resume: optional (the run's own corpus is read again).", show_default=False),
    glob: list[str] = typer.Option(None, "--glob", help="File pattern inside folders, repeatable (e.g. '**/*.c').", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder. Default: checkpoints/<corpus name> (a new -2, -3 ... if taken).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow --out to be a folder that already holds a run."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of the corpus."),
    cell: str = opt("--cell", help="Recurrent cell: lstm, gru or rnn."),
    layers: int = opt("--layers", help="Stacked recurrent layers."),
    hidden: int = opt("--hidden", help="Hidden units per layer."),
    embed: int = opt("--embed", help="Character embedding size."),
    dropout: float = opt("--dropout", help="Dropout between layers and before the output."),
    batch_size: int = opt("--batch-size", "-b", help="Parallel streams per step."),
    seq_len: int = opt("--seq-len", "-t", help="Characters per step to back-propagate through."),
    lr: float = opt("--lr", help="Peak learning rate (AdamW, warm-up then cosine decay)."),
    steps: int = opt("--steps", help="Stop after this many steps."),
    epochs: float = opt("--epochs", help="Stop after this many passes over the text (default 10 if no budget is given)."),
    time: float = opt("--time", help="Stop after this many seconds; the learning-rate schedule fits the budget."),
    clip: float = opt("--clip", help="Global gradient-norm clip (0 = off)."),
    eval_every: int = opt("--eval-every", help="Steps between validation passes and saves."),
    val_fraction: float = opt("--val-fraction", help="Tail of the corpus held out for validation."),
    device: str = opt("--device", help="auto, cpu, cuda or mps."),
    precision: str = opt("--precision", help="auto, fp32, bf16 or fp16 (auto: bf16 autocast where the hardware is fast at it)."),
    threads: int = opt("--threads", help="CPU threads (0 = one per core)."),
    seed: int = opt("--seed", help="Random seed."),
    save_every: int = opt("--save-every", help="Also keep a snapshot step-NNNNNN.pt every N steps (0 = off)."),
    keep: int = opt("--keep", help="Snapshots to keep; older ones are deleted (never best.pt or last.pt)."),
    resume: str = typer.Option(None, "--resume", help="Continue a run exactly where it stopped: its folder (last.pt) or a checkpoint. Settings and budget come from it; options given here override.", show_default=False),
    init_from: str = typer.Option(None, "--init-from", help="Start a new run from this checkpoint's weights (fine-tuning); the corpus may only use characters it knows.", show_default=False),
) -> None:
    """Train a character-level model on text and save checkpoints (best.pt, last.pt)."""
    from charrnn.console import ConsoleReporter, info
    from charrnn.corpus import read_text
    from charrnn.train import train_on_text

    given = {k: v for k, v in locals().items() if k in _DEFAULTS and v is not None}
    mcfg = {k: v for k, v in given.items() if k in MODEL_KEYS}
    from charrnn.catalog import resolve_source

    if resume is not None and init_from is not None:
        raise UsageError("pass --resume or --init-from, not both")
    if not sources and resume is None:
        raise UsageError("name a corpus to train on: a file, a folder, a catalog name, or - for stdin")
    if resume is not None:
        from charrnn.checkpoint import resolve_resume
        from charrnn.resume import stored_sources

        resume = resolve_resume(resume)
        if not sources:
            sources, glob, encoding = stored_sources(resume)
    name = corpus_name(sources)
    text = read_text([resolve_source(s) for s in sources], glob, encoding)
    meta = {"corpus": name, "sources": [s if s == "-" else str(Path(resolve_source(s)).resolve()) for s in sources],
            "glob": glob or None, "encoding": encoding}
    if out is None and resume is None:
        out = default_out_dir(name)
    elif out is not None and any(Path(out).glob("*.pt")) and not overwrite and not (resume and Path(out).resolve() == resume.parent.resolve()):
        raise CharrnnError(f"{out} already holds a run: choose another --out, or pass --overwrite")
    info(f"corpus: {len(text):,} characters from {', '.join(sources) if len(sources) <= 3 else f'{len(sources)} sources'}")
    if resume is not None:
        from charrnn.resume import resume_training

        trainer = resume_training(resume, text, given, out, ConsoleReporter(), meta)
        info(f"resuming {resume} at step {trainer.step}")
        result = trainer.run()
    elif init_from is not None:
        from charrnn.checkpoint import resolve_checkpoint
        from charrnn.resume import init_from_checkpoint

        source = resolve_checkpoint(init_from)
        tcfg = TrainConfig(**{k: v for k, v in given.items() if k not in MODEL_KEYS})
        trainer = init_from_checkpoint(source, text, mcfg, tcfg, out, ConsoleReporter(), meta)
        info(f"starting from the weights of {source}")
        result = trainer.run()
    else:
        tcfg = TrainConfig(**{k: v for k, v in given.items() if k not in MODEL_KEYS})
        _, result = train_on_text(text, mcfg, tcfg, out, ConsoleReporter(), meta=meta)
    if result.stopped_by == "save_error":
        raise CharrnnError(result.error)
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        raise typer.Exit(130 if result.stopped_by == "SIGINT" else 143)
    if result.stopped_by == "nan":
        raise typer.Exit(1)
