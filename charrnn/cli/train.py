"""`charrnn train`: read a corpus, train a model, save checkpoints."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import typer

from charrnn.cli.common import app, guarded
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.training.sizing import LADDER
from charrnn.text.kinds import DEFAULT_MAX_VOCAB

EXAMPLES = """
[bold]Examples[/]

  charrnn train corpus.txt --time 120
  charrnn train shakespeare --preset tiny
  charrnn train warpeace --config runs/wp.yaml --lr 1e-3
  charrnn train --config checkpoints/shakespeare/config.yaml
  charrnn train src/ --glob '**/*.c' --glob '**/*.h' --cell gru --layers 3
  cat *.tex | charrnn train - -o checkpoints/latex
  charrnn train --resume checkpoints/shakespeare
  charrnn train poems.txt --init-from checkpoints/shakespeare --steps 500
  charrnn train corpus.txt --save-every 1000 --keep 5
  charrnn train warpeace --tokens word --max-vocab 8000 --time 300
  charrnn train chat-logs.txt --tokens byte

Settings are layered, later winning: defaults <- --preset <- --config FILE
<- flags. Presets: tiny (seconds), small (CPU minutes), medium, large (GPU),
and one per catalog corpus (--preset linux). Each run folder gets a
config.yaml with every setting: pass it to --config to repeat the run.
"""

_DEFAULTS = {f.name: f.default for cls in (ModelConfig, TrainConfig) for f in fields(cls)}


def opt(*names: str, help: str, field: str | None = None, shown: str | None = None):
    """A Typer option whose default is None (so we can tell given from not given), showing the config
    default, or `shown` where the default is not one number (a sized shape)."""
    field = field or names[0].lstrip("-").replace("-", "_")
    default = _DEFAULTS.get(field)
    return typer.Option(None, *names, help=help,
                        show_default=shown or (str(default) if default is not None else False))


SIZED = "sized for the text, budget and machine"
LR_SHOWN = f"{_DEFAULTS['lr']:g}; when sized: " + ", ".join(
    f"{lr:g} for {' and '.join(str(s) for s in LADDER if s.lr == lr)}"
    for lr in dict.fromkeys(s.lr for s in LADDER) if lr != _DEFAULTS["lr"])


def corpus_name(sources: list[str]) -> str:
    """A run name from the corpus: the file or folder name (without suffix), 'stdin' or 'pipe'."""
    from charrnn.text.corpus import source_name

    return source_name(sources[0])


def default_out_dir(name: str, root: Path = Path("checkpoints"), lock: bool = True):
    """(checkpoints/<name>, its lock), or <name>-2, -3 ... if that folder holds a run or another run is using it.

    Taking the folder's lock is what claims it, so two runs started at once on the same corpus
    get two folders. `lock=False` only names the folder (for processes that do not write).
    """
    from charrnn.training.runfolder import RunFolder
    from charrnn.training.runlock import FolderInUse

    n = 1
    while True:
        folder = RunFolder(root / (name if n == 1 else f"{name}-{n}"))
        n += 1
        if folder.holds_run():
            continue
        if not lock:
            return folder.path, None
        try:
            held = folder.lock()
        except FolderInUse:
            continue
        if not folder.holds_run():  # nobody finished a run there between the look and the lock
            return folder.path, held
        held.release()


def check_out(out: str | None) -> Path | None:
    """The --out folder as given, refusing an empty name and the root of the file system."""
    if out is None:
        return None
    if not out.strip():
        raise UsageError("--out is empty: name a folder for the run")
    path = Path(out)
    if path.resolve() == Path(path.resolve().anchor):
        raise UsageError(f"--out {out} is the root of the file system: name a folder for the run")
    if path.exists() and not path.is_dir():
        raise CharrnnError(f"--out {out} is a file, not a folder: name a folder for the run")
    return path


def claim_out_dir(out: Path | None, name: str, resume: Path | None, overwrite: bool):
    """(the run folder, its lock, whether an old run there must be cleared first), locked before anything is written."""
    from charrnn.training.runfolder import RunFolder

    if out is None and resume is None:
        return *default_out_dir(name), False
    folder = RunFolder(out if out is not None else resume.parent)
    lock = folder.lock()  # a second writer stops here, with the holder's pid
    same = resume is not None and folder.path.resolve() == resume.parent.resolve()
    if not same and folder.holds_run() and not overwrite:
        lock.release()
        files = folder.run_files()
        raise CharrnnError(f"{folder} already holds a run's files ({', '.join(files[:4])}{', ...' if len(files) > 4 else ''}): "
                           f"choose another --out, or pass --overwrite to replace them")
    return folder.path, lock, overwrite and not same


@app.command(epilog=EXAMPLES)
@guarded
def train(
    sources: list[str] = typer.Argument(None, help="Text files, folders (see --glob), catalog names (shakespeare, linux, ...), or - for stdin. May be omitted with a --config file that names a corpus, or with --resume (the run's own corpus is read again).", show_default=False),
    config: str = typer.Option(None, "--config", "-c", help="YAML file of settings (keys as the flags, e.g. `hidden: 256`); flags override it.", show_default=False),
    preset: str = typer.Option(None, "--preset", help="Named settings: tiny, small, medium, large, or a catalog corpus name.", show_default=False),
    glob: list[str] = typer.Option(None, "--glob", help="File pattern inside folders, repeatable (e.g. '**/*.c').", show_default=False),
    out: str = typer.Option(None, "--out", "-o", help="Run folder. Default: checkpoints/<corpus name> (a new -2, -3 ... if taken).", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow --out to be a folder that already holds a run."),
    encoding: str = typer.Option(None, "--encoding", help="Text encoding of the corpus.", show_default="utf-8"),
    tokens: str = typer.Option(None, "--tokens", help="What the model reads and writes: char (one per character), word (words, numbers, punctuation, whitespace; rare words spelled by character) or byte (UTF-8 bytes, 256 ids). Losses are in bits per character either way.", show_default="char"),
    max_vocab: int = typer.Option(None, "--max-vocab", help="--tokens word: vocabulary size, the corpus's characters included (the most frequent tokens fill the rest).", show_default=str(DEFAULT_MAX_VOCAB)),
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
    init_from: str = typer.Option(None, "--init-from", help="Start a new run from this checkpoint's weights (fine-tuning); the corpus may only use characters it knows.", show_default=False),
) -> None:
    """Train a character-level (or word- or byte-level) model on text and save checkpoints (best.pt, last.pt)."""
    from charrnn.training.config import resolve_run_config
    from charrnn.runtime.threads import check_threads

    given = {k: v for k, v in locals().items() if k in _DEFAULTS and v is not None}
    if resume is not None and init_from is not None:
        raise UsageError("pass --resume or --init-from, not both")
    out = check_out(out)
    if threads is not None:
        check_threads(threads)
    sources, resume = _sources(given, sources, glob, encoding, tokens, max_vocab, resume, init_from)
    run = resolve_run_config(given, preset, config)
    if not run.corpus:
        raise UsageError("name a corpus to train on: a file, a folder, a catalog name, or - for stdin "
                         "(or `corpus:` in a --config file)")
    sources = sources or run.corpus
    name = corpus_name(sources)
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks and writes
    if main:
        out, lock, clear = claim_out_dir(out, name, resume, overwrite)  # held until the run ends
    else:
        out, lock, clear = out or (resume.parent if resume is not None else default_out_dir(name, lock=False)[0]), None, False
    try:
        resize = lambda base: resolve_run_config(given, preset, config, base)  # noqa: E731
        result = _train(run, resume, init_from, given, out, name, main, clear, resize)
    finally:
        if lock is not None:
            lock.release()
    if result.stopped_by in ("save_error", "nan") and result.error:
        raise CharrnnError(result.error)
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        raise typer.Exit(130 if result.stopped_by == "SIGINT" else 143)
    if result.stopped_by == "nan":
        raise typer.Exit(1)


def _sources(given: dict, sources, glob, encoding, tokens, max_vocab, resume, init_from):
    """Put where the text comes from, and how it is cut into tokens, into `given`: from the flags, or
    from the checkpoint of --resume (its own corpus unless one is named) and --init-from.
    Returns (the sources named, the checkpoint --resume names, resolved)."""
    from charrnn.training.config import portable_sources

    if resume is not None:
        from charrnn.training.checkpoint import resolve_resume
        from charrnn.training.resume import stored_sources

        resume = resolve_resume(resume)
        if not sources:
            sources, glob, encoding = stored_sources(resume)
    given.update(corpus=portable_sources(sources or []), glob=glob or [], encoding=encoding, tokens=tokens,
                 max_vocab=max_vocab)
    if resume is not None or init_from is not None:  # the corpus is cut into tokens as the checkpoint's was
        from charrnn.training.checkpoint import resolve_checkpoint
        from charrnn.training.resume import stored_tokens

        given.update(zip(("tokens", "max_vocab"), stored_tokens(resume or resolve_checkpoint(init_from), tokens)))
    return sources, resume


def _train(run, resume, init_from, given: dict, out: Path, name: str, main: bool, clear: bool, resize):
    """Prepare the corpus, size the model (no shape flags: `charrnn.training.sizing`), build the trainer, clear
    an old run (--overwrite), write config.yaml, train: the result."""
    from charrnn.cli.progress import ConsoleReporter, prepare_with_progress
    from charrnn.training.config import MODEL_KEYS, fit_to_text, resumed_run_config, write_run_config
    from charrnn.util.console import info, warn
    from charrnn.util.files import STDIN_NAME
    from charrnn.training.trainer import new_trainer

    corpus = prepare_with_progress(run.corpus, run.glob, run.encoding or "utf-8", run.tokens, run.max_vocab)  # token ids, memory-mapped from the cache
    meta = {"corpus": name, "sources": ["-" if s == STDIN_NAME else str(s) for s in corpus.sources], "glob": run.glob or None,
            "encoding": run.encoding}
    if resume is None and init_from is None:  # a resumed or fine-tuned run keeps its checkpoint's shape
        from charrnn.training.sizing import right_size

        run, sizing = right_size(run, len(corpus.tokens), len(corpus.vocab), resize)
        if sizing is not None and main:
            unit = "characters" if run.tokens == "char" else "tokens"
            info(sizing.describe(run.model, len(corpus.vocab), run.given, unit, run.train.lr, run.train.min_lr_ratio))
    if resume is None:  # a resumed run keeps the configuration it was started with
        run.train, refit = fit_to_text(run.train, len(corpus.tokens))
        if refit and main:
            warn(refit)
        meta["config"] = run.to_dict()
    if main:
        info(f"corpus: {corpus.describe()}")
    if resume is not None:
        from charrnn.training.resume import resume_training

        trainer = resume_training(resume, corpus, given, out, ConsoleReporter(), meta)
        if main:
            info(f"resuming {resume} at step {trainer.step}")
            resumed = resumed_run_config(trainer.meta.get("config"), trainer.mcfg, trainer.cfg, meta["sources"])
            trainer.meta["config"] = resumed.to_dict()
            if trainer.out_dir is not None:
                write_run_config(trainer.out_dir, resumed, note=f"resumed at step {trainer.step} (budget: "
                                 f"steps {trainer.cfg.steps}, epochs {trainer.cfg.epochs}, time {trainer.cfg.time})")
    elif init_from is not None:
        from charrnn.training.checkpoint import resolve_checkpoint
        from charrnn.training.resume import init_from_checkpoint

        source = resolve_checkpoint(init_from)
        explicit_model = {k: v for k, v in given.items() if k in MODEL_KEYS}
        trainer = init_from_checkpoint(source, corpus, explicit_model, run.train, out, ConsoleReporter(), meta)
        if main:
            info(f"starting from the weights of {source}")
    else:
        trainer = new_trainer(corpus.vocab, corpus.tokens, run.model, run.train, out, ConsoleReporter(), meta=meta)
    if main and clear:  # the old run's files go before the new run writes any (a refused start kept them)
        from charrnn.training.runfolder import RunFolder

        RunFolder(out).clear()
    if main and resume is None:  # written once the run is sure to start: a refused start leaves no folder
        write_run_config(out, run)
    return trainer.run()
