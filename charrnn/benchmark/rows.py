"""What `charrnn bench` measures and how a result is kept: its settings and its rows."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig

SECTIONS = ("train", "sample", "beam", "eval", "kernels", "memory", "serve")


@dataclass
class BenchConfig:
    window: float = 4.0  # seconds per timed window
    sample_window: float = 1.5  # ... for the sampling rows (every kernel at each thread count: 8 contenders a shape)
    repeats: int = 3  # timed windows per figure; the best is kept
    threads: int = 0  # threads for training and evaluation (0 = one per core)
    batch_size: int = TrainConfig.batch_size  # B of every training row: `charrnn train`'s default layout
    seq_len: int = TrainConfig.seq_len  # T of every training row
    embed: int = 128  # E of every model
    train_shapes: tuple = ((2, 512), (2, 384))  # (layers, hidden) of the LSTM training rows
    gru_shape: tuple | None = (2, 512)  # GRU row shape (compared with the LSTM row of that shape)
    sample_shapes: tuple = ((2, 512), (2, 256))  # LSTM shapes for batch-1 sampling
    sample_threads: tuple = (0, 1)  # thread counts tried for sampling (0 = tuned, as `charrnn sample` does; the first is the headline)
    beam_shape: tuple | None = (2, 512)  # LSTM shape for beam search
    beam_width: int = 5  # live beams per step (the model runs at batch = width)
    eval_shape: tuple = (2, 384)  # compared with the training row of this shape
    eval_chars: int = 400_000  # characters scored per timed evaluation
    eval_batch: int = 128  # streams evaluated in parallel
    kernel_chars: int = 20_000  # held-out characters stepped through each kernel (--checkpoint)
    memory_shapes: tuple = ("tiny", "small", "default", "medium", "large")  # presets or (layers, hidden); a subprocess each
    memory_steps: int = 6  # training steps (and one validation) per memory subprocess
    serve_shape: tuple = (2, 384)  # LSTM shape served to the load test
    serve_clients: tuple = (1, 8, 32, 64)  # concurrent streaming clients, one row each
    serve_chars: int = 500  # characters each client asks for
    serve_rounds: int = 5  # rounds of every level (taking turns); the best counts
    serve_precisions: tuple = ("fp32", "bf16")  # `charrnn serve --precision`; bf16 only where native
    sections: tuple = SECTIONS  # which groups of rows to run

    @classmethod
    def quick(cls) -> "BenchConfig":
        """Under two minutes on 2 cores: shorter windows, fewer repeats, less text."""
        return cls(window=1.5, repeats=2, sample_window=0.75, sample_threads=(0,), eval_chars=150_000, kernel_chars=5_000,
                   memory_steps=3, serve_chars=300, serve_rounds=2)


@dataclass
class Row:
    key: str  # stable name in the JSON, e.g. train_lstm_2x512
    what: str  # what the figure is
    figure: float | None  # the measurement
    unit: str  # its unit
    baseline_what: str = ""  # what it is compared with
    baseline: float | None = None
    goal_ratio: float | None = None  # figure / baseline should reach this
    goal_figure: float | None = None  # the figure itself should reach this
    goal_max: float | None = None  # ... or stay at or below this (a cost)
    note: str = ""
    extra: dict = field(default_factory=dict)  # further numbers kept in the JSON

    @property
    def ratio(self) -> float | None:
        return self.figure / self.baseline if self.figure and self.baseline else None

    @property
    def met(self) -> bool | None:
        """True/False when the row has a goal and a figure, None otherwise."""
        checks = []
        if self.goal_ratio is not None and self.ratio is not None:
            checks.append(self.ratio >= self.goal_ratio)
        if self.goal_figure is not None and self.figure is not None:
            checks.append(self.figure >= self.goal_figure)
        if self.goal_max is not None and self.figure is not None:
            checks.append(self.figure <= self.goal_max)
        return all(checks) if checks else None

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def flops_per_char(cell: str, layers: int, hidden: int, embed: int, vocab: int) -> float:
    """Training FLOPs per character, counting only the matrix products: an entry of a weight matrix (the
    embedding is a lookup) costs 2 FLOPs forward and about twice that backward (gradients for inputs and
    weights), 6 in all; for a layer with G gates, I inputs and H units, 6*G*H*(I + H)."""
    shapes = ModelConfig(vocab_size=vocab, cell=cell, layers=layers, hidden=hidden, embed=embed).param_shapes()
    return 6.0 * sum(math.prod(s) for name, s in shapes.items() if len(s) == 2 and name != "embedding.weight")


def synthetic_text(n: int, seed: int = 0) -> str:
    """n random characters from a 65-letter alphabet (speed does not depend on the text)."""
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\n-&$3"))
    return "".join(alphabet[np.random.default_rng(seed).integers(0, len(alphabet), n)])
