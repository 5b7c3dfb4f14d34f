"""charrnn: character-level recurrent language models that learn to write like any text.

    from charrnn import TrainConfig, train_on_text, load_model, sample_text

    trainer, result = train_on_text(open("corpus.txt").read(), {"hidden": 256}, TrainConfig(time=60),
                                    out_dir="checkpoints/mine")
    loaded = load_model("checkpoints/mine")
    text = sample_text(loaded.model, loaded.vocab, 300, prime="The ", temperature=0.8, seed=1)

The names below are imported on first use, so `import charrnn` (and `charrnn --version`)
stays light: torch is loaded only when a model is.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CharRNN": "charrnn.model.rnn",
    "ModelConfig": "charrnn.model.config",
    "TrainConfig": "charrnn.training.config",
    "Trainer": "charrnn.training.trainer",
    "TrainResult": "charrnn.training.trainer",
    "Reporter": "charrnn.training.trainer",
    "train_on_text": "charrnn.training.start",
    "train_on_tokens": "charrnn.training.start",
    "load_model": "charrnn.training.checkpoint",
    "load_checkpoint": "charrnn.training.checkpoint",
    "Vocab": "charrnn.text.vocab",
    "WordVocab": "charrnn.text.wordvocab",
    "ByteVocab": "charrnn.text.bytevocab",
    "generate": "charrnn.generation.sampling",
    "sample_text": "charrnn.generation.sampling",
    "beam_search": "charrnn.generation.beam",
    "BeamSearch": "charrnn.generation.beam",
    "Conversation": "charrnn.generation.chat",
    "Sampling": "charrnn.generation.settings",
    "evaluate": "charrnn.inspect.evaluation",
    "prepare_corpus": "charrnn.text.tokens",
    "CharrnnError": "charrnn.util.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'charrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
