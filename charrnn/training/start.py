"""How a run starts: a new model, a run resumed exactly, or a new run from a checkpoint's weights.

    run = configure(flags, sources, preset, config_file, resume, init_from)   the settings, checked
    result = start(run, out, reporter, resume=..., init_from=...)            the whole run

`start` reads the corpus (through the token cache), then, by what it starts from:

    new        fit B and T to a short text, size the model (`sizing.right_size`), build a fresh model
    resume     the checkpoint's settings and budget, overridden by those given again; the same run
               goes on bit for bit (`Trainer.resume`)
    init_from  the checkpoint's shape, vocabulary and weights, new settings (fine-tuning)

Resuming and fine-tuning reuse the checkpoint's vocabulary, because the embedding and output
layers are indexed by it: the corpus may use fewer characters than it knows, never more.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from charrnn.text.corpus import opening, split_train_val
from charrnn.text.kinds import DEFAULT_MAX_VOCAB
from charrnn.text.vocab import Vocab, vocab_for_text
from charrnn.training import distributed
from charrnn.training.checkpoint import load_checkpoint, resolve_checkpoint, resolve_resume
from charrnn.training.config import (MODEL_KEYS, TRAIN_KEYS, ModelConfig, RunConfig, TrainConfig, corpus_notice,
                                     fit_to_text, portable_sources, resolve_run_config, resumed_run_config,
                                     write_run_config)
from charrnn.training.loop import Reporter, TrainResult
from charrnn.training.runfolder import RunFolder
from charrnn.training.state import MODEL_FIELDS_FREE
from charrnn.training.trainer import Trainer
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.files import STDIN_NAME
from charrnn.util.showtext import show_chars


def configure(flags: dict, sources: list[str] | None = None, preset: str | None = None, config_file=None,
              resume: str | Path | None = None, init_from: str | Path | None = None) -> tuple[RunConfig, Path | None]:
    """The run's settings (defaults <- preset <- config file <- flags), and the checkpoint `resume` names.

    The corpus is `sources`, else the resumed run's own (`stored_sources`), else the config file's; a
    resumed or fine-tuned run cuts it into tokens as its checkpoint did (`stored_tokens`).
    """
    if resume is not None and init_from is not None:
        raise UsageError("resume and init_from cannot both be given", "resume", "init_from")
    flags = {k: v for k, v in flags.items() if v is not None and v != []}
    if resume is not None:
        resume = resolve_resume(resume)
        if not sources:
            sources, flags["glob"], flags["encoding"] = stored_sources(resume)
    if sources:
        flags["corpus"] = portable_sources(sources)
    if resume is not None or init_from is not None:
        flags["tokens"], flags["max_vocab"] = stored_tokens(resume or resolve_checkpoint(init_from), flags.get("tokens"))
    run = resolve_run_config(flags, preset, config_file)
    if not run.source.corpus:
        raise UsageError("name a corpus to train on: a file, a folder, a catalog name, or - for stdin "
                         "(or corpus in a config file)")
    return run, resume


def start(run: RunConfig, out: Path, reporter: Reporter | None = None, resume: Path | None = None,
          init_from: str | Path | None = None, clear: bool = False) -> TrainResult:
    """Read the corpus, build the trainer (new, resumed or fine-tuned), clear an old run where asked
    (`clear`), write config.yaml and train: the result. Only rank 0 of a torchrun job reports and writes."""
    from charrnn.text.tokens import prepare_corpus

    reporter = reporter or Reporter()
    main = distributed.is_main_process()
    say = reporter.on_info if main else (lambda message: None)
    if resume is None and (notice := corpus_notice(run)):
        say(notice)  # before a byte of it is read: a config someone shared names what it reads (config.py)
    s = run.source
    corpus = prepare_corpus(s.corpus, s.glob, s.encoding, progress=reporter.on_prepare, warn=reporter.on_warning,
                            kind=s.tokens, max_vocab=s.max_vocab)
    meta = {"corpus": corpus.name, "sources": ["-" if f == STDIN_NAME else str(f) for f in corpus.sources],
            "glob": s.glob or None, "encoding": s.encoding,
            "prompt": opening(corpus.vocab.decode(np.asarray(corpus.tokens[:4096]).tolist()))}
    if resume is None:
        run = fitted(run, corpus, init_from is None, say, reporter if main else Reporter())
        meta["config"] = run.to_dict()
    say(f"corpus: {corpus.describe()}")
    note = ""
    if resume is not None:
        trainer = resume_training(resume, corpus, overrides(run), out, reporter, meta)
        say(f"resuming {resume} at step {trainer.step}")
        run = resumed_run_config(trainer.meta.get("config"), trainer.mcfg, trainer.cfg, meta["sources"])
        trainer.meta["config"] = run.to_dict()
        note = f"resumed at step {trainer.step} (budget: steps {trainer.cfg.steps}, epochs {trainer.cfg.epochs}, " \
               f"time {trainer.cfg.time})"
    elif init_from is not None:
        source = resolve_checkpoint(init_from)
        model = {k: getattr(run.model, k) for k in MODEL_KEYS if k in run.flags}
        trainer = init_from_checkpoint(source, corpus, model, run.train, out, reporter, meta)
        say(f"starting from the weights of {source}")
    else:
        trainer = new_trainer(corpus.vocab, corpus.tokens, run.model, run.train, out, reporter, meta)
    if main and clear:  # the old run's files go before the new run writes any (a refused start kept them)
        RunFolder(out).clear()
    if main and trainer.out_dir is not None:  # written once the run is sure to start: a refused start leaves no folder
        write_run_config(out, run, note)
    return trainer.run()


def fitted(run: RunConfig, corpus, new: bool, say, reporter: Reporter) -> RunConfig:
    """`run` with B and T fitted to the corpus (once) and, for a new model, the shape sized for it."""
    from charrnn.training.sizing import right_size

    train, refit = fit_to_text(run.train, len(corpus.tokens))
    run = replace(run, train=train)
    if new:
        run, sizing = right_size(run, len(corpus.tokens), len(corpus.vocab))
        if sizing is not None:
            model = replace(run.model, vocab_size=len(corpus.vocab))
            say(sizing.describe(model, run.given, corpus.vocab.unit, run.train.lr, run.train.min_lr_ratio))
    if refit:
        reporter.on_warning(refit)
    return run


def overrides(run: RunConfig) -> dict:
    """What a resumed run takes from the command line: the training and model settings given there."""
    return {k: getattr(run.train if k in TRAIN_KEYS else run.model, k) for k in run.flags
            if k in TRAIN_KEYS or k in MODEL_KEYS}


def new_trainer(vocab: Vocab, tokens: np.ndarray, model: ModelConfig | dict | None, train: TrainConfig,
                out_dir: str | Path | None, reporter: Reporter | None, meta: dict | None) -> Trainer:
    """A trainer for a new model on `tokens` (N,), its tail held out for validation: built, nothing written yet.
    `train` is used as it is (already fitted to a short text: `fit_to_text`)."""
    train_tokens, val_tokens = split_train_val(tokens, train.val_fraction, vocab.char_counts)
    fields = model.to_dict() if isinstance(model, ModelConfig) else dict(model or {})
    mcfg = ModelConfig(**{**fields, "vocab_size": len(vocab)})
    return Trainer(mcfg, train, vocab, train_tokens, val_tokens, out_dir, reporter, meta)


# ---- carrying on from a checkpoint ---------------------------------------------------------------------


def encode_with_vocab(vocab: Vocab, text: str, checkpoint: str | Path) -> np.ndarray:
    """`text` as ids of the checkpoint's vocabulary (of any kind), or an error listing the characters it lacks."""
    missing = sorted(vocab.unknown(text))
    if missing:
        raise CharrnnError(
            f"the corpus has {len(missing)} character(s) that {checkpoint} was never trained on: {show_chars(missing, 30)} "
            "(its vocabulary is fixed: remove them from the text, or train a new model)"
        )
    return vocab.encode_array(text)


def tokens_for(vocab: Vocab, data, checkpoint: str | Path) -> np.ndarray:
    """Text, or a prepared `tokens.Corpus`, as ids of the checkpoint's `vocab`: a corpus of that vocabulary as it
    is (its memory map), one whose ids are all tokens of it re-mapped (`vocab.ids_of`), any other re-encoded."""
    if isinstance(data, str):
        return encode_with_vocab(vocab, data, checkpoint)
    if data.vocab == vocab:
        return data.tokens
    lut = vocab.ids_of(data.vocab)  # corpus id -> checkpoint id, or None when the two cut text differently
    if lut is not None:
        missing = [p for p, i in zip(data.vocab.pieces, lut) if i < 0]
        if missing:
            encode_with_vocab(vocab, "".join(missing), checkpoint)  # raises, naming them
        return lut[np.asarray(data.tokens)]
    return encode_with_vocab(vocab, data.vocab.decode(np.asarray(data.tokens).tolist()), checkpoint)


def stored_sources(checkpoint: str | Path) -> tuple[list[str], list[str] | None, str]:
    """The corpus a run was trained on, as recorded by `charrnn train`: (sources, globs, encoding)."""
    meta = load_checkpoint(checkpoint).get("meta") or {}
    sources = meta.get("sources")
    if not sources:
        raise UsageError(f"{checkpoint} does not record its corpus: name the corpus again to resume it")
    if "-" in sources:
        raise UsageError("this run was trained on standard input: give the same text on standard input (-) again "
                         "to resume it")
    gone = [s for s in sources if not Path(s).exists()]
    if gone:
        raise CharrnnError(f"the run's corpus {gone[0]} is no longer there: name the corpus again to resume it")
    return list(sources), meta.get("glob"), meta.get("encoding", "utf-8")


def stored_tokens(checkpoint: str | Path, asked: str | None = None) -> tuple[str, int]:
    """How a run cut its corpus into tokens: (kind, max_vocab). `asked`, a token kind given again, must agree."""
    ckpt = load_checkpoint(checkpoint, mmap=True)  # (the weights are not read)
    vocab = Vocab.from_dict(ckpt["vocab"])
    if asked is not None and asked != vocab.kind:
        raise UsageError(f"tokens {asked} does not fit {checkpoint}, a {vocab.kind} model: leave tokens out "
                         "(a model reads the tokens it was trained on)", "tokens")
    stored = ((ckpt.get("meta") or {}).get("config") or {}).get("max_vocab")
    return vocab.kind, int(stored or len(vocab))


def _from_checkpoint(checkpoint: str | Path, text, given: dict, allowed: tuple) -> tuple[dict, Vocab, np.ndarray]:
    """The checkpoint, its vocabulary and `text` as its ids. `given` loses its model settings: those in
    `allowed` may differ from the checkpoint's, any other must equal it (the weights have its shape)."""
    ckpt = load_checkpoint(checkpoint)
    stored = ckpt["model_config"]
    for key in [k for k in given if k in stored and k not in allowed]:
        if given[key] != stored[key]:
            raise UsageError(f"{key} {given[key]} does not fit {checkpoint}, whose model has {key} {stored[key]}: "
                             f"leave {key} out (the checkpoint's model shape is used)", key)
        del given[key]
    vocab = Vocab.from_dict(ckpt["vocab"])
    return ckpt, vocab, tokens_for(vocab, text, checkpoint)


def resume_training(checkpoint: str | Path, text, overrides: dict | None = None, out_dir: str | Path | None = None,
                    reporter: Reporter | None = None, meta: dict | None = None) -> Trainer:
    """A trainer that continues `checkpoint` (`Trainer.resume`) on `text` (a string or a prepared
    `tokens.Corpus`). `overrides`: TrainConfig fields to change (the budget, say); `meta`: entries merged in."""
    overrides = dict(overrides or {})
    ckpt, vocab, tokens = _from_checkpoint(checkpoint, text, overrides, allowed=())
    val_fraction = overrides.get("val_fraction", ckpt.get("train_config", {}).get("val_fraction", 0.1))
    train_tokens, val_tokens = split_train_val(tokens, val_fraction, vocab.char_counts)
    ckpt["meta"] = {**(ckpt.get("meta") or {}), **(meta or {})}
    trainer = Trainer.resume(ckpt, train_tokens, val_tokens, out_dir or Path(checkpoint).parent, reporter, overrides)
    done = trainer.total_steps is not None and trainer.step >= trainer.total_steps
    if done or (trainer.cfg.time and trainer.elapsed >= trainer.cfg.time):
        raise UsageError(f"{checkpoint} has already used its whole budget (step {trainer.step}): "
                         "give a bigger steps, epochs or time to train longer", "steps", "epochs", "time")
    return trainer


def init_from_checkpoint(checkpoint: str | Path, text, model_overrides: dict | None, train_config: TrainConfig,
                         out_dir: str | Path | None = None, reporter: Reporter | None = None,
                         meta: dict | None = None) -> Trainer:
    """A new run (step 0, fresh optimizer and schedule) whose model starts from `checkpoint`'s weights.

    The model shape is the checkpoint's; only MODEL_FIELDS_FREE (dropout) may be changed.
    """
    model_overrides = dict(model_overrides or {})
    ckpt, vocab, tokens = _from_checkpoint(checkpoint, text, model_overrides, MODEL_FIELDS_FREE)
    train_tokens, val_tokens = split_train_val(tokens, train_config.val_fraction, vocab.char_counts)
    mcfg = ModelConfig(**{**ckpt["model_config"], **model_overrides})
    meta = {**(meta or {}), "init_from": Path(checkpoint).name, "init_from_step": ckpt.get("step")}
    trainer = Trainer(mcfg, train_config, vocab, train_tokens, val_tokens, out_dir, reporter, meta)
    trainer.model.load_state_dict(ckpt["model"])  # in place: the optimizer already holds these parameters
    return trainer


# ---- the whole thing in one call (the Python API) -----------------------------------------------------


def train_on_text(text: str, model_config: dict | None = None, train_config: TrainConfig | None = None,
                  out_dir: str | Path | None = None, reporter: Reporter | None = None, meta: dict | None = None,
                  kind: str = "char", max_vocab: int = DEFAULT_MAX_VOCAB) -> tuple[Trainer, TrainResult]:
    """Build the vocabulary of `kind` (`text/kinds.py`) from `text`, hold out its tail, and train: the trainer
    (its `.model` is the trained model) and the result. `model_config`: ModelConfig fields but vocab_size.
    For a corpus too big for memory, use `charrnn.text.tokens.prepare_corpus` and `train_on_tokens`.
    """
    vocab = vocab_for_text(text, kind, max_vocab)
    return train_on_tokens(vocab, vocab.encode_array(text), model_config, train_config, out_dir, reporter, meta)


def train_on_tokens(vocab: Vocab, tokens: np.ndarray, model_config: dict | None = None,
                    train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
                    reporter: Reporter | None = None, meta: dict | None = None) -> tuple[Trainer, TrainResult]:
    """Train on token ids `tokens` (N,), e.g. the memory map of a `Corpus` (never read whole), its tail held
    out for validation, B and T fitted to a short text first (`fit_to_text`)."""
    train, refit = fit_to_text(train_config or TrainConfig(), len(tokens))
    if refit and reporter is not None:
        reporter.on_warning(refit)
    trainer = new_trainer(vocab, tokens, model_config, train, out_dir, reporter, meta)
    return trainer, trainer.run()
