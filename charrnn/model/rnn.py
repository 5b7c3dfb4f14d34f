"""The model: character embedding -> LSTM/GRU/RNN stack -> dropout -> linear to logits.

Two ways to run it, which must agree (tests check they do):

* `forward(idx, state)` runs a (B, T) block through PyTorch's fused recurrent layers (oneDNN on
  CPU, cuDNN on GPU): training and evaluation use it.
* `step(token, state)` advances one character with the cell equations written out, reading the
  same weights: at batch 1-10 many times faster than calling `nn.LSTM` per character, where
  per-call overhead dominates. Sampling and beam search use it.

The state is always a tuple of (L, B, H) tensors, `(h, c)` for an LSTM and `(h,)` otherwise, so
code that carries, detaches or reorders it never needs to know the cell.
"""

from __future__ import annotations

import torch
from torch import nn

from charrnn.model.config import ModelConfig  # noqa: F401  (re-exported: the config the model is built from)

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

State = tuple[torch.Tensor, ...]


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        self.rnn = CELLS[c.cell](c.embed, c.hidden, num_layers=c.layers, batch_first=True,
                                 dropout=c.dropout if c.layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden, c.vocab_size)
        if c.cell == "lstm":
            # A forget-gate bias of 1 lets gradients flow through the cell from the start
            # (Jozefowicz et al. 2015). PyTorch orders the gates i, f, g, o.
            for layer in range(c.layers):
                getattr(self.rnn, f"bias_ih_l{layer}").data[c.hidden : 2 * c.hidden].fill_(1.0)
        self._forget_weights()  # _step_cache: weights dtype -> (weights_key, the layout `step` reads)

    @property
    def n_state(self) -> int:
        """Tensors in the state tuple: 2 for an LSTM (h, c), 1 otherwise."""
        return 2 if self.config.cell == "lstm" else 1

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        """The all-zeros state for `batch` streams."""
        device = device or self.head.weight.device
        shape = (self.config.layers, batch, self.config.hidden)
        return tuple(torch.zeros(shape, device=device) for _ in range(self.n_state))

    def forward(self, idx: torch.Tensor, state: State | None = None, activations: bool = False):
        """idx (B, T) ids, state (L, B, H) each or None for zeros -> logits (B, T, V) for the character
        after each position, and the final state. With `activations`, also what AR and TAR penalise
        (Merity et al. 2017), as fp32 scalars: the mean square of the last layer's output after dropout,
        and of its change from one position to the next (before dropout)."""
        x = self.embedding(idx)  # (B, T, E)
        if state is None:
            state = self.init_state(idx.shape[0], idx.device)
        hx = state if self.n_state == 2 else state[0]
        out, hx = self.rnn(x, hx)  # (B, T, H)
        dropped, state = self.drop(out), tuple(hx) if self.n_state == 2 else (hx,)
        if not activations:
            return self.head(dropped), state  # (B, T, V), state
        terms = (dropped, out[:, 1:] - out[:, :-1])  # (B, T, H), (B, T - 1, H)
        # one fused reduction each, summed in fp32: ~40% cheaper than .float().square().mean()
        size, change = (torch.linalg.vector_norm(t, dtype=torch.float32).square() / t.numel() for t in terms)
        return self.head(dropped), state, (size, change)

    def layer_weights(self, k: int) -> tuple[torch.Tensor, ...]:
        """Layer k's W_ih (G*H, in), W_hh (G*H, H), b_ih and b_hh (G*H,), gates in PyTorch's order."""
        return tuple(getattr(self.rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    # ---- single-character stepping, for sampling and beam search -------------------------------

    def train(self, mode: bool = True) -> "CharRNN":
        if mode or self.training:  # weights change while training: free the copies. An eval model keeps them
            self._step_cache = {}  # (eval() on a model another thread is stepping, as charrnn serve does, is a no-op)
        return super().train(mode)

    # The step cache never outlives its weights: new storage (.to(device), load_state_dict(assign=True))
    # goes through _apply or load_state_dict, which clear it; new contents (an optimizer step, an edit under
    # no_grad) bump each tensor's version counter, which `_weights_key` reads (~1 us a step).

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._forget_weights()
        return out

    def load_state_dict(self, *args, **kwargs):
        out = super().load_state_dict(*args, **kwargs)
        self._forget_weights()
        return out

    def _forget_weights(self) -> None:
        self._step_cache, self._params = {}, list(self.parameters())

    def _weights_key(self) -> tuple:
        return tuple(p._version for p in self._params)

    def _step_weights(self, dtype: torch.dtype = torch.float32) -> tuple:
        """Weights laid out for `step`, cached until a parameter changes (see `_weights_key`).

        At batch 1 a step is bound by reading the weights, so each step makes as few, as large, reads
        as it can. Per layer the cache holds (input part, weight):

        * layer 0's input part is a table: row v is W_ih0 @ embedding[v] + b_ih0 (+ b_hh0 where the
          cell adds it unconditionally), so the first input product becomes a row lookup; above
          layer 0 it is the bias, and LSTM and RNN layers hold [W_ih | W_hh], one product of cat([x, h]).
        * an LSTM layer's matrix is a (4, in, H) stack, gates reordered to (i, f, o, g): one batched
          product gives all four gates (4, B, H), one sigmoid covers three, and with 2 threads the four
          products run on both cores (2x512 steps ~1.5x faster, bit for bit the same).
        * a GRU layer holds (input part, W_ih, W_hh, b_hh): the candidate's r * (W_hn h + b_hn) keeps them apart.

        `dtype` stores the matrices (the table, biases and output layer stay fp32); bf16 ones are
        (out, in), oneDNN's fast layout: ~2.5x faster at beam search's batch 5 with AVX512-BF16.
        """
        key = self._weights_key()
        cached = self._step_cache.get(dtype)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cell, H = self.config.cell, self.config.hidden
                layers = []
                for k in range(self.config.layers):
                    w_ih, w_hh, b_ih, b_hh = self.layer_weights(k)
                    x_part = self.embedding.weight @ w_ih.t() + b_ih if k == 0 else b_ih.clone()  # (V, G*H) | (G*H,)
                    if cell == "gru":
                        w_x = None if k == 0 else _matrix(w_ih, dtype)
                        layers.append((x_part, w_x, _matrix(w_hh, dtype), b_hh.clone()))
                        continue
                    x_part, w = x_part + b_hh, w_hh if k == 0 else torch.cat([w_ih, w_hh], dim=1)  # (G*H, in + H)
                    if cell == "lstm":
                        x_part = x_part.view(-1, 4, H)[:, [0, 1, 3, 2]].transpose(0, 1).contiguous()  # (4, V | 1, H)
                        w = w.view(4, H, -1)[[0, 1, 3, 2]]  # (4, H, in): (out, in) per gate
                        w = w.contiguous().to(dtype) if dtype != torch.float32 else w.transpose(1, 2).contiguous()
                        layers.append((x_part, w))
                    else:
                        layers.append((x_part.contiguous(), _matrix(w, dtype)))
                cached = (key, (layers, self.head.weight.t().contiguous(), self.head.bias.detach().clone()))
                self._step_cache[dtype] = cached
        return cached[1]

    def step(self, token: torch.Tensor, state: State, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, State]:
        """token (B,) ids, state (L, B, H) each -> logits (B, V) for the next character and the new state,
        both fp32 (inference only: no dropout, no autograd). dtype stores the matrices: fp32 matches
        `forward` to rounding, bf16 is faster at batch 2-16 and ~1e-2 off in the logits.

        What one layer computes at step t, given its input x_t and its previous h (and c):
            LSTM  i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + W_hh h + b);  c' = f*c + i*g;  h' = o*tanh(c')
            GRU   r, z = σ(W_ir x_t + W_hr h + b_r), σ(W_iz x_t + W_hz h + b_z)
                  n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn));  h' = (1 - z)*n + z*h
            RNN   h' = tanh(W_ih x_t + W_hh h + b)
        """
        layers, head_w, head_b = self._step_weights(dtype)
        cell, H = self.config.cell, self.config.hidden
        low = dtype != torch.float32
        hs, cs = [], []
        x = None
        for k, layer in enumerate(layers):
            h = state[0][k]  # (B, H)
            if cell == "lstm":
                x_part, w = layer
                base = x_part.index_select(1, token) if k == 0 else x_part  # (4, B, H) | (4, 1, H)
                inp = (h if k == 0 else torch.cat((x, h), dim=1)).expand(4, -1, -1)  # (4, B, in)
                if low:
                    gates = base + torch.bmm(inp.to(dtype), w.transpose(1, 2))  # (4, B, H), fp32
                else:
                    gates = torch.baddbmm(base, inp, w)  # (4, B, H)
                gates[:3].sigmoid_()  # i, f, o in one call
                i, f, o, g = gates.unbind(0)  # (B, H) each
                c = torch.addcmul(f * state[1][k], i, g.tanh_())
                h = o * torch.tanh(c)
                cs.append(c)
            elif cell == "gru":
                x_part, w_x, w_hh, b_hh = layer
                gx = x_part.index_select(0, token) if k == 0 else _addmm(x_part, x, w_x)  # (B, 3H)
                gh = _addmm(b_hh, h, w_hh)  # (B, 3H)
                rz = torch.add(gx[:, : 2 * H], gh[:, : 2 * H]).sigmoid_()  # (B, 2H): r, z
                n = torch.addcmul(gx[:, 2 * H :], rz[:, :H], gh[:, 2 * H :]).tanh_()  # (B, H)
                h = torch.lerp(n, h, rz[:, H:])  # (1 - z) * n + z * h
            else:
                x_part, w = layer
                inp = h if k == 0 else torch.cat((x, h), dim=1)  # (B, in)
                h = _addmm(x_part.index_select(0, token) if k == 0 else x_part, inp, w).tanh_()  # (B, H)
            hs.append(h)
            x = h
        logits = torch.addmm(head_b, x, head_w)  # (B, V)
        new_state = (torch.stack(hs), torch.stack(cs)) if cell == "lstm" else (torch.stack(hs),)
        return logits, new_state


def _matrix(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (out, in) weight as `_addmm` reads it: (in, out) in fp32, (out, in) in a lower precision."""
    return w.t().contiguous() if dtype == torch.float32 else w.contiguous().to(dtype)


def _addmm(bias: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """bias + x @ W for a `_matrix` w: (B, in) -> (B, out), always fp32."""
    if w.dtype == x.dtype:
        return torch.addmm(bias, x, w)
    return bias + torch.mm(x.to(w.dtype), w.t())  # low-precision product, summed in fp32


def detach_state(state: State) -> State:
    """Cut the autograd graph at a batch boundary but keep the values (truncated BPTT)."""
    return tuple(s.detach() for s in state)


def reorder_state(state: State, index: torch.Tensor) -> State:
    """Select/reorder streams: index (B',) of stream indices -> a state of batch B'."""
    return tuple(s.index_select(1, index) for s in state)
