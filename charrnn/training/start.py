"""How a run starts: a new model, a run resumed exactly, or a new run from a checkpoint's weights.

    result = train_from(flags, sources, preset, config_file, out, ...)      `charrnn train`: all of the below
    run = configure(flags, sources, preset, config_file, resume, init_from)   the settings, checked
    result = start(run, out, reporter, resume=..., init_from=...)            the run

`start` reads the corpus (through the token cache), then, by what it starts from:

    new        fit B and T to a short text, size the model (`sizing.right_size`), build a fresh model
    resume     the checkpoint's settings and budget, overridden by those given again; the same run
               goes on bit for bit (`Trainer.resume`)
    init_from  the checkpoint's shape, vocabulary and weights, new settings (fine-tuning)

Resuming reuses the checkpoint's vocabulary, because the embedding and output layers are indexed
by it: the corpus may use fewer characters than it knows, never more. Fine-tuning extends it
(`vocab.extended`): characters (for a word model, words too) the checkpoint never saw get new
embedding and output rows, initialised as a new model's; every other weight carries over.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from charrnn.text.corpus import opening, source_name, split_train_val
from charrnn.text.kinds import DEFAULT_MAX_VOCAB, check_kind
from charrnn.text.vocab import Vocab, vocab_class
from charrnn.training import distributed
from charrnn.training.checkpoint import load_checkpoint, resolve_checkpoint, resolve_resume
from charrnn.training.config import (MODEL_KEYS, TRAIN_KEYS, ModelConfig, RunConfig, TrainConfig, corpus_notice,
                                     fit_to_text, portable_sources, resolve_run_config, resumed_run_config,
                                     write_run_config)
from charrnn.training.loop import Reporter, TrainResult
from charrnn.training.runfolder import RunFolder, check_out, claim_out_dir
from charrnn.training.state import MODEL_FIELDS_FREE
from charrnn.training.trainer import Trainer
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.files import STDIN_NAME
from charrnn.util.showtext import show_chars, visible


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


def train_from(flags: dict, sources: list[str] | None = None, preset: str | None = None, config_file=None,
               out: str | None = None, overwrite: bool = False, resume: str | Path | None = None,
               init_from: str | Path | None = None, reporter: Reporter | None = None,
               started: float | None = None) -> TrainResult:
    """The whole of `charrnn train`: the settings (`configure`), the run folder (claimed, locked, before anything is
    written: `runfolder.claim_out_dir`), the run (`start`). `flags` holds the settings given on the command line;
    a time budget counts from `started` (wall clock; the command's start: `util.files.PROCESS_START`), else now."""
    started = time.time() if started is None else started
    run, resume = configure(flags, sources, preset, config_file, resume, init_from)
    name = source_name(run.source.corpus[0])
    out, lock, clear = claim_out_dir(check_out(out), name, resume, overwrite, distributed.is_main_process())
    try:  # the folder stays locked until the run ends
        return start(run, out, reporter, resume, init_from, clear, started)
    finally:
        if lock is not None:
            lock.release()


def start(run: RunConfig, out: Path, reporter: Reporter | None = None, resume: Path | None = None,
          init_from: str | Path | None = None, clear: bool = False, started: float | None = None) -> TrainResult:
    """Read the corpus, build the trainer (new, resumed or fine-tuned), clear an old run where asked
    (`clear`), write config.yaml and train: the result. Only rank 0 of a torchrun job reports and writes.
    The seconds since `started` (default: now) count toward a time budget: a 10 s run takes 10 s in all."""
    from charrnn.text.tokens import prepare_corpus

    started = time.time() if started is None else started
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
    sized = None
    if resume is None:
        run, sized = fitted(run, corpus, init_from is None, say, reporter if main else Reporter())
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
        if sized is not None:
            expect_speed(trainer, *sized)
    trainer.clock.elapsed += time.time() - started  # reading the corpus, sizing, building: the budget's too
    if main and clear:  # the old run's files go before the new run writes any (a refused start kept them)
        RunFolder(out).clear()
    if main and trainer.out_dir is not None:  # written once the run is sure to start: a refused start leaves no folder
        write_run_config(out, run, note)
    return trainer.run()


def fitted(run: RunConfig, corpus, new: bool, say, reporter: Reporter) -> tuple[RunConfig, tuple | None]:
    """`run` with B and T fitted to the corpus (once) and, for a new model, the shape sized for it; and what
    sized it, (the Sizing, its Probe), or None."""
    from charrnn.training.sizing import right_size

    train, refit = fit_to_text(run.train, len(corpus.tokens))
    run, sized = replace(run, train=train), None
    if new:
        run, sizing, probe = right_size(run, len(corpus.tokens), len(corpus.vocab), reporter.on_status)
        reporter.on_status(None)
        if sizing is not None:
            model = replace(run.model, vocab_size=len(corpus.vocab))
            say(sizing.describe(model, run.given, corpus.vocab.unit, run.train.lr, run.train.min_lr_ratio))
            sized = (sizing, probe)
    if refit:
        reporter.on_warning(refit)
    return run, sized


def expect_speed(trainer: Trainer, sizing, probe) -> None:
    """The run checks the speed the shape was chosen for against its own steps: a figure off by more than the
    noise is corrected."""
    if probe is not None and sizing.rate:
        def check(actual: float, setting: tuple[str, int]) -> None:
            message = probe.correct(sizing.shape, actual, setting)
            if message:
                trainer.reporter.on_tune(message)

        trainer.speed.expect(check)


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
            "(a resumed run keeps its vocabulary: remove them from the text, or start a new run from its weights "
            "with init_from, which adds them)", "init_from"
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


def _checked_checkpoint(checkpoint: str | Path, given: dict, allowed: tuple) -> tuple[dict, Vocab]:
    """The checkpoint and its vocabulary. `given` loses its model settings: those in `allowed` may differ from
    the checkpoint's, any other must equal it (the weights have its shape)."""
    ckpt = load_checkpoint(checkpoint)
    stored = ckpt["model_config"]
    for key in [k for k in given if k in stored and k not in allowed]:
        if given[key] != stored[key]:
            raise UsageError(f"{key} {given[key]} does not fit {checkpoint}, whose model has {key} {stored[key]}: "
                             f"leave {key} out (the checkpoint's model shape is used)", key)
        del given[key]
    return ckpt, Vocab.from_dict(ckpt["vocab"])


def extended_vocab(ckpt: dict, vocab: Vocab, text) -> tuple[Vocab, list[int]]:
    """`vocab` grown by what `text` (a string or a prepared `tokens.Corpus`) has and it lacks, and the ids added:
    a corpus brings its own vocabulary; a string's is built as the checkpoint's was (its kind and max_vocab)."""
    if not isinstance(text, str):
        return vocab.extended(text.vocab)
    max_vocab = ((ckpt.get("meta") or {}).get("config") or {}).get("max_vocab") or DEFAULT_MAX_VOCAB
    return vocab.extended(type(vocab).from_text(text, int(max_vocab)))


def carried_weights(stored: dict, fresh: dict, old: Vocab, new: Vocab) -> dict:
    """The checkpoint's weights `stored` for a model whose vocabulary grew from `old` to `new` (`fresh`: a new
    model's weights, that shape): each vocabulary row (embedding, output weight and bias) goes to its piece's
    new id; the rows of added ids keep `fresh`'s, a new model's initialisation; every other weight is stored's."""
    if new == old:
        return stored
    index = {piece: i for i, piece in enumerate(new.pieces)}
    rows = torch.tensor([index[piece] for piece in old.pieces], dtype=torch.long)  # (V_old,) old id -> new id
    weights = dict(stored)
    for key in ("embedding.weight", "head.weight", "head.bias"):  # (V, E), (V, H), (V,)
        weights[key] = fresh[key].clone()
        weights[key][rows] = stored[key].to(fresh[key].dtype)
    return weights


def resume_training(checkpoint: str | Path, text, overrides: dict | None = None, out_dir: str | Path | None = None,
                    reporter: Reporter | None = None, meta: dict | None = None) -> Trainer:
    """A trainer that continues `checkpoint` (`Trainer.resume`) on `text` (a string or a prepared
    `tokens.Corpus`). `overrides`: TrainConfig fields to change (the budget, say); `meta`: entries merged in."""
    overrides = dict(overrides or {})
    ckpt, vocab = _checked_checkpoint(checkpoint, overrides, allowed=())
    tokens = tokens_for(vocab, text, checkpoint)
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

    The model shape is the checkpoint's; only MODEL_FIELDS_FREE (dropout) may be changed. What the text has
    and the checkpoint's vocabulary lacks is added (`extended_vocab`, `carried_weights`), and said.
    """
    model_overrides = dict(model_overrides or {})
    ckpt, old = _checked_checkpoint(checkpoint, model_overrides, MODEL_FIELDS_FREE)
    vocab, added = extended_vocab(ckpt, old, text)
    tokens = tokens_for(vocab, text, checkpoint)
    train_tokens, val_tokens = split_train_val(tokens, train_config.val_fraction, vocab.char_counts)
    mcfg = ModelConfig(**{**ckpt["model_config"], **model_overrides, "vocab_size": len(vocab)})
    meta = {**(meta or {}), "init_from": Path(checkpoint).name, "init_from_step": ckpt.get("step")}
    if added:
        meta["vocab_added"] = [vocab.pieces[i] for i in added]
    trainer = Trainer(mcfg, train_config, vocab, train_tokens, val_tokens, out_dir, reporter, meta)
    weights = carried_weights(ckpt["model"], trainer.model.state_dict(), old, vocab)
    trainer.model.load_state_dict(weights)  # in place: the optimizer already holds these parameters
    if added and reporter is not None and distributed.is_main_process():
        reporter.on_info(added_note(vocab, added, len(old)))
    return trainer


def added_note(vocab: Vocab, added: list[int], before: int) -> str:
    """What fine-tuning added to the vocabulary, for a person: 'the vocabulary grows from 65 to 88 characters:
    23 character(s) the checkpoint never saw, '#' '(' ... (new embedding and output rows, ...)'."""
    pieces = [vocab.pieces[i] for i in added]
    chars, words = [p for p in pieces if len(p) == 1], [p for p in pieces if len(p) > 1]
    parts = [f"{len(chars):,} character(s) the checkpoint never saw, {show_chars(chars, 40)}"] if chars else []
    if words:
        parts.append(f"{len(words):,} word token(s) new to it, " + " ".join(visible(repr(w)) for w in words[:12])
                     + (" ..." if len(words) > 12 else ""))
    return (f"the vocabulary grows from {before:,} to {len(vocab):,} {vocab.unit}: {'; '.join(parts)} (new embedding "
            "and output rows, initialised as a new model's; every other weight carries over)")


# ---- the whole thing in one call (the Python API) -----------------------------------------------------


def train_on_text(text: str, model_config: dict | None = None, train_config: TrainConfig | None = None,
                  out_dir: str | Path | None = None, reporter: Reporter | None = None, meta: dict | None = None,
                  kind: str = "char", max_vocab: int = DEFAULT_MAX_VOCAB) -> tuple[Trainer, TrainResult]:
    """Build the vocabulary of `kind` (`text/kinds.py`) from `text`, hold out its tail, and train: the trainer
    (its `.model` is the trained model) and the result. `model_config`: ModelConfig fields but vocab_size.
    For a corpus too big for memory, use `charrnn.text.tokens.prepare_corpus` and `train_on_tokens`.
    """
    vocab = vocab_class(check_kind(kind)).from_text(text, max_vocab)
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
