"""The weights as the web page's step reads them: named tensors, row-major, stored as fp32.

The page (`static/step.js`) computes what `CharRNN.step` computes, one token at a time, from
these tensors. Every matrix is (out, in), stored row by row, so each product is `out` dot
products that walk one row and the input vector side by side (contiguous reads):

    embedding   (V, E)        folded into layer 0's input table when the page loads:
    l0.w_in     (G*H, E)          table[v] = l0.w_in @ embedding[v] + l0.x        (V, G*H)
    l0.x        (G*H,)        b_ih, + b_hh for an LSTM or RNN (they add it unconditionally)
    l0.w        (G*H, H)      W_hh: layer 0's recurrent product reads h alone
    lk.x        (G*H,)        k > 0: the input part's bias, as for layer 0
    lk.w        (G*H, 2H)     k > 0, LSTM and RNN: [W_ih | W_hh], one product of cat([x, h])
    lk.w_in     (3H, H)       k > 0, GRU: W_ih, and lk.w is W_hh alone (3H, H) ...
    lk.b_hh     (3H,)         ... GRU: b_hh kept apart, as its candidate's part sits inside r * (W_hn h + b_hn)
    head.w      (V, H)        the output layer: logits = head.w @ h + head.b
    head.b      (V,)

G is 4 for an LSTM (gates i, f, g, o, in PyTorch's order), 3 for a GRU (r, z, n), 1 for an RNN.
This is `CharRNN._step_weights` with two differences: the table is built by the page (a file
holds V*E + G*H*E numbers instead of V*G*H: 6 MB instead of 41 for a 2×256 LSTM of 10,000 words), and
LSTM gates keep PyTorch's order (a JavaScript loop gains nothing from grouping the sigmoids).

Why fp32, not fp16 or int8: the page's greedy text must be torch's, and a greedy choice flips
wherever two logits are closer than the error the storage adds. fp16's error reaches 1.5e-3, and
a trained 2×256 LSTM's closest top-1/top-2 gap over 40 primes was 7.8e-4 (a barely trained one's
< 1e-5); fp32 leaves only the order of the sums, ~1e-6. So the page holds 4 bytes a weight.
"""

from __future__ import annotations

import torch

from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN


def model_from(checkpoint: dict) -> CharRNN:
    """The model of a checkpoint dict (as `load_checkpoint` returns it), in eval mode on the CPU."""
    model = CharRNN(ModelConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def page_weights(checkpoint: dict) -> tuple[list[list], bytes]:
    """A checkpoint dict -> (the manifest: [name, shape] of each tensor in the page's layout (see the
    module doc), in order; their values as little-endian fp32 bytes, one after another)."""
    model = model_from(checkpoint)
    out = {"embedding": model.embedding.weight}
    for k in range(model.config.layers):
        w_ih, w_hh, b_ih, b_hh = model.layer_weights(k)  # (G*H, in), (G*H, H), (G*H,), (G*H,)
        if model.config.cell == "gru":
            out.update({f"l{k}.w_in": w_ih, f"l{k}.x": b_ih, f"l{k}.w": w_hh, f"l{k}.b_hh": b_hh})
        elif k == 0:
            out.update({"l0.w_in": w_ih, "l0.x": b_ih + b_hh, "l0.w": w_hh})
        else:
            out.update({f"l{k}.x": b_ih + b_hh, f"l{k}.w": torch.cat([w_ih, w_hh], dim=1)})  # (G*H, 2H)
    out.update({"head.w": model.head.weight, "head.b": model.head.bias})
    tensors = {name: t.detach().float().contiguous() for name, t in out.items()}
    manifest = [[name, list(t.shape)] for name, t in tensors.items()]
    return manifest, b"".join(t.numpy().astype("<f4").tobytes() for t in tensors.values())
