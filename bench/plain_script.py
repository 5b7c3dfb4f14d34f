"""The quality-per-second baseline: a plain PyTorch nn.LSTM script, as a user would write it.

Random windows of T characters (zero initial state each), Adam at a constant learning rate,
bf16 autocast, gradient clipping at 5, for a fixed wall-clock budget. Its validation figure
is measured exactly as `charrnn train` measures its own (charrnn.inspect.evaluation over the held-out
last 10%, state carried through 64 streams), so the two are comparable.

    python bench/plain_script.py ../shared/corpora/shakespeare.txt --time 130
    charrnn train ../shared/corpora/shakespeare.txt --time 130        # the same budget, charrnn

Prints steps, chars/s and the validation bits/char.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.inspect.evaluation import evaluate
from charrnn.model.rnn import CharRNN, ModelConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--time", type=float, default=130.0)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    text = open(args.corpus, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.fromiter((stoi[c] for c in text), dtype=np.int64, count=len(text))
    n = len(data) - int(len(data) * 0.1)
    train, val = data[:n], data[n:]
    model = CharRNN(ModelConfig(vocab_size=len(chars), layers=args.layers, hidden=args.hidden, embed=128))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    amp = None if args.fp32 else torch.bfloat16
    B, T = args.batch_size, args.seq_len
    rng = np.random.default_rng(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.time:
        ix = rng.integers(0, len(train) - T - 1, B)
        x = torch.from_numpy(np.stack([train[i : i + T] for i in ix]))  # (B, T)
        y = torch.from_numpy(np.stack([train[i + 1 : i + T + 1] for i in ix]))  # (B, T)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            logits, _ = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        steps += 1
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        result = evaluate(model, val, batch_size=64, autocast_dtype=amp)
    print(f"plain nn.LSTM script: {steps} steps, {steps * B * T / seconds:,.0f} chars/s, "
          f"val {result.bits_per_char:.4f} bits/char ({result.nats_per_char:.4f} nats) after {seconds:.0f} s")


if __name__ == "__main__":
    main()
