"""The model's configuration: its cell, shape and vocabulary size, stored in every checkpoint.

`ModelConfig` alone rebuilds a model (`rnn.CharRNN(config)`): a checkpoint holds it as a dict
beside the weights, and `param_shapes` / `num_params` answer from arithmetic what the built
model would hold, so a checkpoint's tensors (and a model's memory) can be checked first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from charrnn.util.fields import check, setting

CELLS = ("lstm", "gru", "rnn")  # the recurrent cells charrnn builds (model.CELLS maps them to torch modules)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per layer: (i, f, g, o), (r, z, n), (h)
MAX_LAYERS = 1000  # far beyond any useful depth; bounds the time spent building before a memory check
MAX_WIDTH = 1 << 20  # hidden or embedding units
MAX_VOCAB = 0x110000  # every Unicode code point


@dataclass
class ModelConfig:
    vocab_size: int = setting(lo=1, hi=MAX_VOCAB)  # number of distinct tokens (V): characters, words or bytes
    cell: str = setting("lstm", choices=CELLS)  # recurrent cell: lstm | gru | rnn (tanh)
    layers: int = setting(2, lo=1, hi=MAX_LAYERS)  # stacked recurrent layers (L)
    hidden: int = setting(384, lo=1, hi=MAX_WIDTH)  # hidden units per layer (H)
    embed: int = setting(128, lo=1, hi=MAX_WIDTH)  # token embedding width (E)
    dropout: float = setting(0.0, lo=0, below=1)  # dropout between layers and before the output layer

    def __post_init__(self) -> None:
        check(self)

    def to_dict(self) -> dict:
        return asdict(self)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor of `CharRNN(self).state_dict()`, in its order, without building anything."""
        V, E, H, G = self.vocab_size, self.embed, self.hidden, GATES[self.cell] * self.hidden
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (V, E)}
        for k in range(self.layers):
            shapes[f"rnn.weight_ih_l{k}"] = (G, E if k == 0 else H)
            shapes[f"rnn.weight_hh_l{k}"] = (G, H)
            shapes[f"rnn.bias_ih_l{k}"] = (G,)
            shapes[f"rnn.bias_hh_l{k}"] = (G,)
        shapes["head.weight"] = (V, H)
        shapes["head.bias"] = (V,)
        return shapes

    def num_params(self) -> int:
        """Parameters of the model (as `CharRNN.num_params`), by arithmetic."""
        return sum(math.prod(shape) for shape in self.param_shapes().values())
