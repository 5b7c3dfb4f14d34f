"""The model's configuration: its cell, shape and vocabulary size, stored in every checkpoint.

`ModelConfig` alone rebuilds a model (`rnn.CharRNN(config)`): a checkpoint holds it as a dict
beside the weights, and `param_shapes` / `num_params` answer from arithmetic what the built
model would hold, so a checkpoint's tensors (and a model's memory) can be checked first.
"""

from __future__ import annotations

import functools
import math
import typing
from dataclasses import asdict, dataclass

CELLS = ("lstm", "gru", "rnn")  # the recurrent cells charrnn builds (model.CELLS maps them to torch modules)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per layer: (i, f, g, o), (r, z, n), (h)
MAX_LAYERS = 1000  # far beyond any useful depth; bounds the time spent building before a memory check
MAX_WIDTH = 1 << 20  # hidden or embedding units
MAX_VOCAB = 0x110000  # every Unicode code point
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", type(None): "null"}


@functools.cache
def _hints(cls) -> dict[str, tuple]:
    """Field -> the types its annotation allows, e.g. (float, NoneType)."""
    return {name: typing.get_args(hint) or (hint,) for name, hint in typing.get_type_hints(cls).items()}


def _type_errors(obj) -> list[str]:
    """Fields of a config dataclass whose values do not have the annotated type (ints are not bools)."""
    wrong = []
    for name, allowed in _hints(type(obj)).items():
        value = getattr(obj, name)
        if value is None and type(None) in allowed:
            continue
        if float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(obj, name, float(value))
        elif int in allowed and isinstance(value, int) and not isinstance(value, bool):
            pass
        elif str in allowed and isinstance(value, str):
            pass
        else:
            expected = " or ".join(TYPE_NAMES.get(t, t.__name__) for t in allowed)
            wrong.append(f"{name} must be {expected}, not {type(value).__name__} {_short(value)}")
    return wrong


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class ModelConfig:
    vocab_size: int  # number of distinct characters (V)
    cell: str = "lstm"  # recurrent cell: lstm | gru | rnn (tanh)
    layers: int = 2  # stacked recurrent layers (L)
    hidden: int = 384  # hidden units per layer (H)
    embed: int = 128  # character embedding width (E)
    dropout: float = 0.0  # dropout between layers and before the output layer

    def __post_init__(self) -> None:
        wrong = _type_errors(self)
        if wrong:
            raise ValueError(wrong[0])
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {_short(self.cell)}")
        for name, top in (("vocab_size", MAX_VOCAB), ("layers", MAX_LAYERS), ("hidden", MAX_WIDTH), ("embed", MAX_WIDTH)):
            if not 1 <= getattr(self, name) <= top:
                raise ValueError(f"{name} must be between 1 and {top:,}, not {getattr(self, name):,}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor of the model's state_dict, in its order, from arithmetic alone.

        What `model.CharRNN(self).state_dict()` holds, known without building anything, so a
        checkpoint's tensors can be checked (and a model's memory estimated) before allocating.
        """
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
        G = GATES[self.cell] * self.hidden
        per_layer = lambda inp: G * (inp + self.hidden + 2)  # noqa: E731
        return (self.vocab_size * self.embed + per_layer(self.embed) + (self.layers - 1) * per_layer(self.hidden)
                + self.vocab_size * (self.hidden + 1))
