"""`charrnn train`: read a corpus, train a model, save checkpoints."""

from __future__ import annotations

from dataclasses import fields

import typer

from charrnn.cli.common import app, examples, guarded
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.util.errors import CharrnnError
from charrnn.util.files import PROCESS_START
from charrnn.training.sizing import LADDER
from charrnn.text.kinds import DEFAULT_MAX_VOCAB

EXAMPLES = examples(
    "charrnn train corpus.txt --time 120",
    "charrnn train shakespeare --preset tiny",
    "charrnn train warpeace --config runs/wp.yaml --lr 1e-3",
    "charrnn train --config checkpoints/shakespeare/config.yaml",
    "charrnn train src/ --glob '**/*.c' --glob '**/*.h' --cell gru --layers 3",
    "cat *.tex | charrnn train - -o checkpoints/latex",
    "charrnn train --resume checkpoints/shakespeare",
    "charrnn train poems.txt --init-from checkpoints/shakespeare --steps 500",
    "charrnn train corpus.txt --save-every 1000 --keep 5",
    "charrnn train warpeace --tokens word --max-vocab 8000 --time 300",
    "charrnn train chat-logs.txt --tokens byte",
    then="""Settings are layered, later winning: defaults <- --preset <- --config FILE
<- flags. Presets: tiny (seconds), small (CPU minutes), medium, large (GPU),
and one per catalog corpus (--preset linux). Each run folder gets a
config.yaml with every setting: pass it to --config to repeat the run.""")

_DEFAULTS = {f.name: f.default for cls in (ModelConfig, TrainConfig) for f in fields(cls)}
SOURCE_FLAGS = ("glob", "encoding", "tokens", "max_vocab")  # where the text comes from (the corpus is an argument)


def opt(*names: str, help: str, shown: str | None = None):
    """A Typer option whose default is None (so we can tell given from not given), showing the config
    default, or `shown` where the default is not one number (a sized shape)."""
    default = _DEFAULTS.get(names[0].lstrip("-").replace("-", "_"))
    return typer.Option(None, *names, help=help, show_default=shown or (str(default) if default is not None else False))


SIZED = "sized for the text, budget and machine"
LR_SHOWN = f"{_DEFAULTS['lr']:g}; when sized: " + ", ".join(
    f"{lr:g} for {' and '.join(str(s) for s in LADDER if s.lr == lr)}"
    for lr in dict.fromkeys(s.lr for s in LADDER) if lr != _DEFAULTS["lr"])


@app.command(epilog=EXAMPLES)
@guarded
def train(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, help="Text files, folders (see --glob), catalog names (shakespeare, linux, ...), or - for stdin. May be omitted with a --config file that names a corpus, or with --resume (the run's own corpus is read again).", show_default=False),
    config: str = typer.Option(None, "--config", "-c", help="YAML file of settings (keys as the flags, e.g. `hidden: 256`); flags override it.", show_default=False),
    preset: str = typer.Option(None, "--preset", help="Named settings: tiny, small, medium, large, or a catalog corpus name.", show_default=False),
    glob: list[str] = opt("--glob", help="File pattern inside folders, repeatable (e.g. '**/*.c')."),
    out: str = typer.Option(None, "--out", "-o", help="Run folder. Default: checkpoints/<corpus name> (a new -2, -3 ... if taken).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow --out to be a folder that already holds a run."),
    encoding: str = opt("--encoding", help="Text encoding of the corpus.", shown="utf-8"),
    tokens: str = opt("--tokens", help="What the model reads and writes: char (one per character), word (words, numbers, punctuation, whitespace; rare words spelled by character) or byte (UTF-8 bytes, 256 ids). Losses are in bits per character either way.", shown="char"),
    max_vocab: int = opt("--max-vocab", help="--tokens word: vocabulary size, the corpus's characters included (the most frequent tokens fill the rest).", shown=str(DEFAULT_MAX_VOCAB)),
    cell: str = opt("--cell", help="Recurrent cell: lstm, gru or rnn."),
    layers: int = opt("--layers", help="Stacked recurrent layers.", shown=SIZED),
    hidden: int = opt("--hidden", help="Hidden units per layer.", shown=SIZED),
    embed: int = opt("--embed", help="Character embedding size.", shown=SIZED),
    dropout: float = opt("--dropout", help="Dropout between layers and before the output.", shown=SIZED),
    batch_size: int = opt("--batch-size", "-b", help="Parallel streams per step."),
    seq_len: int = opt("--seq-len", "-t", help="Characters per step to back-propagate through."),
    lr: float = opt("--lr", help="Peak learning rate (AdamW, warm-up then cosine decay to 5% of it; 1% when sized).",
                   shown=LR_SHOWN),
    steps: int = opt("--steps", help="Stop after this many steps."),
    epochs: float = opt("--epochs", help="Stop after this many passes over the text (default 10 if no budget is given)."),
    time: float = opt("--time", help="Stop after this many seconds, the final validation included; the learning-rate schedule fits the budget."),
    clip: float = opt("--clip", help="Global gradient-norm clip (0 = off)."),
    weight_decay: float = opt("--weight-decay", help="AdamW decoupled weight decay on the weight matrices."),
    eval_every: int = opt("--eval-every", help="Steps between validation passes and saves (200; when sized for --time, spaced to ~5% of the budget)."),
    patience: int = opt("--patience", help="Stop early after this many validations without a new best (0 = never)."),
    eval_chars: int = opt("--eval-chars", help="Validate on the first this-many held-out characters (0 = all)."),
    sample_every: int = opt("--sample-every", help="Steps between live samples shown while training (0 = off)."),
    val_fraction: float = opt("--val-fraction", help="Tail of the corpus held out for validation."),
    device: str = opt("--device", help="auto, cpu, cuda or mps."),
    precision: str = opt("--precision", help="auto, fp32, bf16 or fp16 (auto: on a CPU, fp32 or bf16 autocast, whichever the first steps run faster; bf16/fp16 autocast on a GPU)."),
    threads: int = opt("--threads", help="CPU threads (0 = auto: 1 or one per core, timed on the first steps and re-checked as training goes)."),
    seed: int = opt("--seed", help="Random seed."),
    save_every: int = opt("--save-every", help="Also keep a snapshot step-NNNNNN.pt every N steps (0 = off)."),
    keep: int = opt("--keep", help="Snapshots to keep; older ones are deleted (never best.pt or last.pt)."),
    resume: str = typer.Option(None, "--resume", help="Continue a run exactly where it stopped: its folder (last.pt) or a checkpoint. Settings and budget come from it; options given here override.", show_default=False),
    init_from: str = typer.Option(None, "--init-from", help="Start a new run from this checkpoint's weights (fine-tuning); characters (or words) it never saw are added to its vocabulary.", show_default=False),
) -> None:
    """Train a character-level (or word- or byte-level) model on text and save checkpoints (best.pt, last.pt)."""
    from charrnn.cli.progress import ConsoleReporter
    from charrnn.runtime.threads import check_threads
    from charrnn.training.start import train_from

    if threads is not None:
        check_threads(threads)
    flags = {k: v for k, v in ctx.params.items() if k in _DEFAULTS or k in SOURCE_FLAGS}
    exit_for(train_from(flags, sources, preset, config, out, overwrite, resume, init_from, ConsoleReporter(),
                        PROCESS_START))


def exit_for(result) -> None:
    """A run's end as the command's exit: a failed save or divergence is an error (1), a signal 130 or 143."""
    if result.stopped_by in ("save_error", "nan") and result.error:
        raise CharrnnError(result.error)
    code = {"SIGINT": 130, "SIGTERM": 143, "nan": 1}.get(result.stopped_by)
    if code:
        raise typer.Exit(code)
