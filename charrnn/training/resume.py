"""Carrying on from a checkpoint: resuming a run exactly, or starting a new one from its weights.

Both reuse the checkpoint's vocabulary, because the model's embedding and output layers are
indexed by it: a character's id must mean the same thing before and after. The corpus may use
fewer characters than the checkpoint knows, never more.

    resume_training(...)     same run, same settings and budget, continues bit for bit
    init_from_checkpoint(...)  new run (step 0, fresh optimizer, new settings), old weights
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charrnn.training.checkpoint import load_checkpoint
from charrnn.text.corpus import split_train_val
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import Reporter, Trainer
from charrnn.training.state import MODEL_FIELDS_FREE
from charrnn.util.showtext import show_chars
from charrnn.text.vocab import Vocab



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
    """Text, or a prepared `tokens.Corpus` (its own vocabulary + ids), as ids of the checkpoint's `vocab`.

    A corpus whose vocabulary is the checkpoint's is used as it is (its memory map, no copy);
    a character corpus with a subset of a character vocabulary's characters is re-mapped id by
    id; any other (another kind, or the word list of another text) is decoded and encoded again.
    """
    if isinstance(data, str):
        return encode_with_vocab(vocab, data, checkpoint)
    if data.vocab == vocab:
        return data.tokens
    if data.vocab.kind == vocab.kind == "char":
        lut = encode_with_vocab(vocab, data.vocab.chars, checkpoint)  # corpus id -> checkpoint id (or an error)
        return lut[np.asarray(data.tokens)]
    return encode_with_vocab(vocab, data.vocab.decode(np.asarray(data.tokens).tolist()), checkpoint)


def stored_sources(checkpoint: str | Path) -> tuple[list[str], list[str] | None, str]:
    """The corpus a run was trained on, as recorded by `charrnn train`: (sources, globs, encoding)."""
    meta = load_checkpoint(checkpoint).get("meta") or {}
    sources = meta.get("sources")
    if not sources:
        raise UsageError(f"{checkpoint} does not record its corpus: name it again (`charrnn train CORPUS --resume ...`)")
    if "-" in sources:
        raise UsageError("this run was trained on standard input: pipe the same text again "
                         f"(`cat corpus.txt | charrnn train - --resume {Path(checkpoint).parent}`)")
    gone = [s for s in sources if not Path(s).exists()]
    if gone:
        raise CharrnnError(f"the run's corpus {gone[0]} is no longer there: name the corpus again "
                           f"(`charrnn train CORPUS --resume {Path(checkpoint).parent}`)")
    return list(sources), meta.get("glob"), meta.get("encoding", "utf-8")


def stored_tokens(checkpoint: str | Path, asked: str | None = None) -> tuple[str, int]:
    """How a run cut its corpus into tokens: (kind, max_vocab). `asked`, a --tokens given again, must agree."""
    ckpt = load_checkpoint(checkpoint, mmap=True)  # (the weights are not read)
    vocab = Vocab.from_dict(ckpt["vocab"])
    if asked is not None and asked != vocab.kind:
        raise UsageError(f"--tokens {asked} does not fit {checkpoint}, a {vocab.kind} model: drop --tokens "
                         "(a model reads the tokens it was trained on)")
    stored = ((ckpt.get("meta") or {}).get("config") or {}).get("max_vocab")
    return vocab.kind, int(stored or len(vocab))


def resume_training(
    checkpoint: str | Path,
    text,
    overrides: dict | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    meta: dict | None = None,
) -> Trainer:
    """A trainer that continues `checkpoint` (from `Trainer.resume`) on `text` (a string or a prepared
    `tokens.Corpus`), encoded with its vocabulary.

    `overrides` holds TrainConfig fields to change (the budget, say); ModelConfig fields are
    refused unless equal to the checkpoint's. `meta` entries (e.g. new corpus sources) are merged in.
    """
    ckpt = load_checkpoint(checkpoint)
    overrides = dict(overrides or {})
    _reject_model_changes(ckpt["model_config"], overrides, allowed=(), checkpoint=checkpoint)
    vocab = Vocab.from_dict(ckpt["vocab"])
    tokens = tokens_for(vocab, text, checkpoint)
    val_fraction = overrides.get("val_fraction", ckpt.get("train_config", {}).get("val_fraction", 0.1))
    train_tokens, val_tokens = split_train_val(tokens, val_fraction, vocab.char_counts)
    ckpt["meta"] = {**(ckpt.get("meta") or {}), **(meta or {})}
    trainer = Trainer.resume(ckpt, train_tokens, val_tokens, out_dir or Path(checkpoint).parent, reporter, overrides)
    done = trainer.total_steps is not None and trainer.step >= trainer.total_steps
    if done or (trainer.cfg.time and trainer.elapsed >= trainer.cfg.time):
        raise UsageError(f"{checkpoint} has already used its whole budget (step {trainer.step}): "
                         "pass a bigger --steps, --epochs or --time to train longer")
    return trainer


def init_from_checkpoint(
    checkpoint: str | Path,
    text,
    model_overrides: dict | None,
    train_config: TrainConfig,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    meta: dict | None = None,
) -> Trainer:
    """A new run (step 0, fresh optimizer and schedule) whose model starts from `checkpoint`'s weights.

    The model shape is the checkpoint's; only dropout may be changed. Fine-tuning on another
    corpus works when that corpus's characters are all in the checkpoint's vocabulary.
    """
    ckpt = load_checkpoint(checkpoint)
    model_overrides = dict(model_overrides or {})
    _reject_model_changes(ckpt["model_config"], model_overrides, MODEL_FIELDS_FREE, checkpoint)
    vocab = Vocab.from_dict(ckpt["vocab"])
    tokens = tokens_for(vocab, text, checkpoint)
    train_tokens, val_tokens = split_train_val(tokens, train_config.val_fraction, vocab.char_counts)
    mcfg = ModelConfig(**{**ckpt["model_config"], **model_overrides})
    meta = {**(meta or {}), "init_from": str(checkpoint), "init_from_step": ckpt.get("step")}
    trainer = Trainer(mcfg, train_config, vocab, train_tokens, val_tokens, out_dir, reporter, meta)
    trainer.model.load_state_dict(ckpt["model"])  # in place: the optimizer already holds these parameters
    return trainer


def _reject_model_changes(stored: dict, given: dict, allowed: tuple, checkpoint: str | Path) -> None:
    """Model options that differ from the checkpoint's shape cannot apply to its weights."""
    for key in list(given):
        if key not in stored:
            continue  # a TrainConfig field
        if given[key] != stored[key] and key not in allowed:
            raise UsageError(f"--{key} {given[key]} does not fit {checkpoint}, whose model has {key} {stored[key]}: "
                             f"drop --{key} (the checkpoint's model shape is used)")
        if key not in allowed:
            given.pop(key)
