"""Step kernels: a model advanced one character at a time at small batch, its weights stored for speed.

At batch 1 a step is bound by reading the weights (a 2×512 LSTM holds 12 MB of fp32 matrices, more
than a core's L2 cache), so smaller storage is faster; which is fastest depends on the CPU and the
batch, so `choose_kernel` times them:

    kernel       matrices stored as               one product                       text for a seed
    fp32         fp32, per gate (4, in, H)        baddbmm (gates split over cores)  CharRNN.step's, bit for bit
    bf16         bf16, per gate (4, in, H)        bmm of a bf16 copy of the input   CharRNN.step(dtype=bf16)'s
    bf16-packed  bf16 (4H, in), oneDNN's blocked  mkldnn linear, bf16 input         its own
    int8         int8 (4H, in) + a scale per row  _weight_int8pack_mm, bf16 input   its own

Their cost in bits/char is measured (`inspect.evaluation.kernel_bits_per_char`). bf16 pays where
the CPU multiplies bf16 natively at a few rows (beam search), bf16-packed more so (~1.6x bf16's
steps at width 5 on an AVX512-BF16 EPYC); int8 reads a quarter of fp32's bytes (batch 1, where
memory is the limit). GRU and plain-RNN models step through `CharRNN.step` itself.

An LSTM kernel updates buffers it owns in place (`out=`), every view made once: ~16 small ops a
step where `CharRNN.step` dispatches ~30 (at 2×256, half the time of a step). One (B, L*H) row per
stream holds each layer's h beside the next one's, so a layer's input [h below, own h] is a slice:

    HS[b] = | h_0 | h_1 | ... | h_L-1 |        layer k >= 1 reads HS[:, (k-1)H : (k+1)H]

Every kernel is deterministic; at batch 1 the thread count changes the speed, never the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from charrnn.runtime.cache import cached_or_measured, TuneCache
from charrnn.runtime.timing import (LOW_PRECISION_MARGIN, SAMPLE_THREAD_MARGIN, Verdict, choose, interleaved_rates,
                                    thread_verdict)
from charrnn.model.rnn import CharRNN, State, reorder_state
from charrnn.runtime.threads import candidates, default_threads, set_threads, torch_threads

KERNELS = ("fp32", "bf16", "bf16-packed", "int8")  # every kernel name
FLAT = ("bf16-packed", "int8")  # the kernels working on (B, 4H) gates, one product a layer


def kernels_for(model: CharRNN) -> tuple[str, ...]:
    """The kernels that can step this model on its device."""
    if model.head.weight.device.type != "cpu" or model.config.cell != "lstm":
        return ("fp32", "bf16")
    names = ["fp32", "bf16"]
    if hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and torch.backends.mkldnn.is_available():
        names.append("bf16-packed")
    if hasattr(torch.ops.aten, "_weight_int8pack_mm") and model.config.hidden % 16 == 0:  # it reads rows in
        names.append("int8")  # blocks of 16: other widths crash it
    return tuple(names)


def make_kernel(model: CharRNN, name: str = "fp32", batch: int = 1):
    """A kernel `name` for `model` (in eval mode), starting from the zero state at `batch` streams."""
    if name not in kernels_for(model):
        raise ValueError(f"no {name} step kernel for a {model.config.cell} model on {model.head.weight.device.type}")
    model.eval()
    if model.config.cell == "lstm" and model.head.weight.device.type == "cpu":
        return LSTMKernel(model, name, batch)
    return ModelStep(model, name, batch)


class ModelStep:
    """`CharRNN.step` behind the kernel interface (GRU, plain RNN, and any model on a GPU)."""

    def __init__(self, model: CharRNN, name: str, batch: int):
        self.model, self.name = model, name
        self.dtype = torch.bfloat16 if name == "bf16" else torch.float32
        self._state = model.init_state(batch)

    def reset(self, state: State) -> None:
        self._state = state

    def state(self) -> State:
        return self._state

    def reorder(self, index: torch.Tensor) -> None:
        self._state = reorder_state(self._state, index)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        logits, self._state = self.model.step(tokens, self._state, self.dtype)
        return logits


class LSTMKernel:
    """An LSTM stepped with its matrices in fp32, bf16 or int8, the state in buffers of its own.

    `step(tokens)` returns logits (B, V) in a buffer the next step overwrites; `reset(state)` loads a
    state, `state()` copies it out, `reorder(index)` selects streams (beam search); each may change B.
    """

    def __init__(self, model: CharRNN, name: str, batch: int = 1):
        self.name, self.H, self.L = name, model.config.hidden, model.config.layers
        self.weights, self.head_w, self.head_b = _kernel_weights(model, name)
        self._alloc(batch)

    # -- buffers -----------------------------------------------------------------------------------

    def _alloc(self, B: int) -> None:
        """Buffers for B streams, and every view a step reads or writes, made once (one tuple per layer).

        fp32 and bf16 keep CharRNN.step's layout, gates first: (4, B, H), one product per gate
        (bf16: of a bf16 copy of the input, as `CharRNN.step` makes it). bf16-packed and int8 make
        one product a layer into (B, 4H) gates, from a bf16 copy of every layer's h (HB).
        """
        H, L, flat = self.H, self.L, self.name in FLAT
        self.B = B
        self.HS = torch.zeros(B, L * H)  # fp32 h of every layer, side by side
        self.C = torch.zeros(L, B, H)  # fp32 c
        self.HB = torch.zeros(B, L * H, dtype=torch.bfloat16) if flat else None  # h as the flat products read it
        self.logits = torch.empty(B, self.head_b.numel())
        self.top = self.HS[:, (L - 1) * H :]  # (B, H)
        self.layers = []
        for k, (x_part, w) in enumerate(self.weights):
            span = slice(max(0, k - 1) * H, (k + 1) * H)  # the layer's input: [h below | own h]
            own = slice(k * H, (k + 1) * H)
            if flat:
                G = torch.empty(B, 4 * H)
                i, f, o, g = G.view(B, 4, H).unbind(1)  # (B, H) each
                sig, inp, xb, hb = G[:, : 3 * H], self.HB[:, span], None, self.HB[:, own]
                part = x_part  # layer 0: the table (V, 4H), looked up by token; above: the bias (4H,)
            else:
                G = torch.empty(4, B, H)
                i, f, o, g = G.unbind(0)
                sig, inp, hb = G[:3], self.HS[:, span].expand(4, -1, -1), None  # inp: (4, B, in)
                xb = torch.empty(inp.shape, dtype=torch.bfloat16) if self.name == "bf16" else None
                part = x_part if k == 0 else x_part.expand(4, B, H)
            self.layers.append((k == 0, part, w, inp, xb, G, sig, i, f, o, g, self.C[k],
                                torch.empty(B, H), self.HS[:, own], hb))

    def reset(self, state: State) -> None:
        h, c = state  # (L, B, H) each
        self._load(h.transpose(0, 1).reshape(h.shape[1], -1), c)

    def state(self) -> State:
        h = self.HS.view(self.B, self.L, self.H).transpose(0, 1).contiguous()  # (L, B, H)
        return h, self.C.clone()

    def reorder(self, index: torch.Tensor) -> None:
        self._load(self.HS.index_select(0, index), self.C.index_select(1, index))

    def _load(self, hs: torch.Tensor, c: torch.Tensor) -> None:
        """hs (B, L*H) and c (L, B, H) into the buffers, made anew for a new B."""
        if hs.shape[0] != self.B:
            self._alloc(hs.shape[0])
        self.HS.copy_(hs)
        self.C.copy_(c)
        if self.HB is not None:
            self.HB.copy_(hs)

    # -- the step ----------------------------------------------------------------------------------

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B,) ids -> logits (B, V); the same cell equations as `CharRNN.step`.

        No autograd context is entered (~3 µs, a tenth of a small model's step): nothing here
        requires gradients, so nothing is recorded either way.
        """
        flat, whole = self.HB is not None, self.B == 1
        for first, part, w, inp, xb, G, sig, i, f, o, g, c, t, h, hb in self.layers:
            if flat:  # bf16-packed / int8: (B, 4H) gates = table[token] | bias  +  W [x | h], summed in fp32
                base = torch.index_select(part, 0, tokens) if first else part
                x = inp if whole else inp.contiguous()  # the product needs whole rows: at B > 1 the slices are strided
                torch.add(base, w[0](x, *w[1:]), out=G)
            else:  # fp32 / bf16: (4, B, H) gates, one product per gate, exactly as CharRNN.step
                base = torch.index_select(part, 1, tokens) if first else part
                if xb is None:
                    torch.baddbmm(base, inp, w, out=G)
                else:
                    xb.copy_(inp)
                    torch.add(base, torch.bmm(xb, w), out=G)
            sig.sigmoid_()  # i, f, o
            g.tanh_()
            c.mul_(f).addcmul_(i, g)  # c' = f*c + i*g
            torch.tanh(c, out=t)
            torch.mul(o, t, out=h)  # h' = o * tanh(c')
            if hb is not None:
                hb.copy_(h)
        return torch.addmm(self.head_b, self.top, self.head_w, out=self.logits)  # (B, V)


def _kernel_weights(model: CharRNN, name: str) -> tuple[list, torch.Tensor, torch.Tensor]:
    """(per layer (input part, matrix), head weight (H, V), head bias) for kernel `name`.

    fp32 and bf16 read `CharRNN._step_weights` (bf16: its (4, H, in) matrices as a (4, in, H) view);
    bf16-packed and int8 convert them here, kept in the model's step cache as those are.
    """
    if name not in FLAT:
        layers, head_w, head_b = model._step_weights(torch.float32 if name == "fp32" else torch.bfloat16)
        return [(x_part, w if name == "fp32" else w.transpose(1, 2)) for x_part, w in layers], head_w, head_b
    key, cached = model._weights_key(), model._step_cache.get(("kernel", name))
    if cached is None or cached[0] != key:
        with torch.no_grad():
            layers = [_flat_layer(model, k, name) for k in range(model.config.layers)]
            cached = (key, (layers, model.head.weight.t().contiguous(), model.head.bias.detach().clone()))
        model._step_cache[("kernel", name)] = cached
    return cached[1]


_int8_mm = getattr(torch, "_weight_int8pack_mm", None) or getattr(torch.ops.aten, "_weight_int8pack_mm", None)


def _flat_layer(model: CharRNN, k: int, name: str) -> tuple[torch.Tensor, tuple]:
    """(input part, (product, *its stored matrix)) of layer k for the bf16-packed and int8 kernels:
    `CharRNN._step_weights`' layout with gates i, f, o, g as rows of one (4H, in) matrix, stored in
    oneDNN's blocked bf16 layout or as int8 with a bf16 scale per row (its largest weight -> 127).
    product(x, *stored) is x @ W.T in bf16.
    """
    H, (w_ih, w_hh, b_ih, b_hh) = model.config.hidden, model.layer_weights(k)
    order = torch.cat([torch.arange(H) + j * H for j in (0, 1, 3, 2)])  # PyTorch's i, f, g, o -> i, f, o, g
    bias = b_ih + b_hh
    if k == 0:
        x_part, w = (model.embedding.weight @ w_ih.t() + bias)[:, order].contiguous(), w_hh[order]  # (V, 4H), (4H, H)
    else:
        x_part, w = bias[order].contiguous(), torch.cat([w_ih, w_hh], dim=1)[order]  # (4H,), (4H, 2H)
    w = w.detach().contiguous()
    if name == "bf16-packed":
        packed = torch.ops.mkldnn._reorder_linear_weight(w.to(torch.bfloat16), 1)
        return x_part, (torch.ops.mkldnn._linear_pointwise.default, packed, None, "none", [], "")
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).to(torch.bfloat16)  # (out,): one per row
    q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return x_part, (_int8_mm, q, scale)


# ---- choosing a kernel -------------------------------------------------------------------------------


@dataclass
class KernelChoice:
    kernel: str  # the kernel's name
    threads: int  # torch threads to step it with
    verdict: Verdict | None  # how the kernel was chosen (None when forced)
    thread_rates: dict  # steps/s per thread count, when they were timed

    def describe(self) -> str:
        how = self.verdict.describe() if self.verdict else f"{self.kernel} (asked for)"
        return f"step kernel: {how}; threads: {Verdict(self.threads, self.thread_rates).describe()}"


def kernel_key(model: CharRNN, batch: int) -> str:
    c = model.config
    workload = {"what": "step kernel", "cell": c.cell, "layers": c.layers, "hidden": c.hidden,
                "vocab": c.vocab_size, "batch": batch, "cores": default_threads()}
    return TuneCache.key(workload, torch.__version__)


@torch.inference_mode()
def time_kernels(model: CharRNN, names, batch: int, thread_counts, window: float = 0.01,
                 rounds: int = 3) -> dict[tuple[str, int], float]:
    """Steps/s of each kernel at each thread count, windows taken in turn; torch's setting is restored."""
    tokens = torch.zeros(batch, dtype=torch.long)
    kernels = {name: make_kernel(model, name, batch) for name in names}
    contenders = {(name, n): (lambda k=k: k.step(tokens), 1.0) for name, k in kernels.items() for n in thread_counts}
    before = {(name, n): (lambda n=n: set_threads(n)) for name, n in contenders}
    with torch_threads(thread_counts[0]):
        return interleaved_rates(contenders, window, rounds, before=before)


def choose_kernel(model: CharRNN, batch: int = 1, precision: str = "auto", threads: int = 0, steps: int = 10**9,
                  cache: TuneCache | None = None, window: float = 0.01) -> KernelChoice:
    """The kernel and thread count to step `model` with at `batch` streams, for `steps` steps.

    precision: a kernel name forces it; `auto` takes the fastest kernel measured on this machine
    (a reduced-precision one only when >= 10% faster than fp32), measured once and then read from
    the cache. threads: 0 times 1 thread and one per core for the kernel, unless the output is too
    short for it to pay (threads change the speed, never the text).
    """
    names = kernels_for(model)
    if precision != "auto" and precision not in names:
        from charrnn.util.errors import UsageError

        raise UsageError(f"precision {precision} is not available for this model here; use one of auto, "
                         + ", ".join(names), "precision")
    on_cpu = model.head.weight.device.type == "cpu"
    counts = candidates(threads) if on_cpu else [1]
    kernel = "fp32" if precision == "auto" else precision
    if steps <= 1:  # nothing will be stepped
        return KernelChoice(kernel, counts[0], None, {})
    time_threads = len(counts) > 1 and steps * batch >= 400  # shorter: not worth timing (the text is the same)
    if not time_threads:
        counts = counts[:1]
    timed: dict[tuple[str, int], float] = {}
    verdict = None
    if precision == "auto" and on_cpu:
        def measure() -> Verdict:
            timed.update(time_kernels(model, names, batch, counts, window))
            best = {name: max(r for (k, _), r in timed.items() if k == name) for name in names}
            return Verdict(choose(best, "fp32", LOW_PRECISION_MARGIN), best)

        verdict = cached_or_measured(cache or TuneCache(), kernel_key(model, batch), measure, names)
        kernel = verdict.choice
    thread_rates = {n: r for (k, n), r in timed.items() if k == kernel}
    if time_threads and not thread_rates:
        thread_rates = {n: r for (_, n), r in time_kernels(model, [kernel], batch, counts, window).items()}
    chosen = thread_verdict(thread_rates, SAMPLE_THREAD_MARGIN) if thread_rates else counts[0]
    return KernelChoice(kernel, chosen, verdict, thread_rates)
