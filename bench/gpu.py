"""GPU figures on a CUDA machine (training, sampling, beam search), from the checkout (see bench/gpu.sh).

    PYTHONPATH=. python3 bench/gpu.py CORPUS.txt [--window 2] [--repeats 3]

Prints, each as chars/s and as a ratio against a baseline measured in the same process,
in interleaved windows (best of `repeats`):

  1. training at the `large` preset's shape (LSTM 3x512, embed 128, B64 x T128): charrnn's Trainer
     with --precision auto (bf16 autocast on a GPU) and fp32, against a plain cuDNN nn.LSTM loop
     (bench.PlainTrainer) in fp32 and in bf16 autocast;
  2. sampling at batch 1 and batch 64, and beam search of width 5, on the GPU, through the same
     functions `charrnn sample` and `charrnn beam` call, against eager nn.LSTM stepping at batch 1.

Each training step syncs with the host (the loss and gradient norm are read), so wall-clock
windows time the GPU's work, as they would for a user.
"""

from __future__ import annotations

import argparse
import torch

from charrnn.generation.beam import beam_search
from charrnn.benchmark.suite import PlainTrainer, rate
from charrnn.training.config import PRESETS, TrainConfig
from charrnn.text.corpus import read_text
from charrnn.model.rnn import ModelConfig
from charrnn.generation.sampling import sample_ids
from charrnn.generation.settings import Sampling
from charrnn.training.trainer import Trainer
from charrnn.text.vocab import Vocab


def interleaved(contenders: dict, window: float, repeats: int) -> dict:
    best = dict.fromkeys(contenders, 0.0)
    for r in range(repeats):
        for name, (fn, units) in contenders.items():
            best[name] = max(best[name], rate(fn, units, window, warmup=3 if r == 0 else 0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="large")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    args = ap.parse_args()
    dev = args.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if dev == "cuda":
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
              f"{torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")

    text = read_text([args.corpus])
    vocab = Vocab.from_text(text)
    tokens = vocab.encode_array(text)  # (N,)
    p = PRESETS[args.preset]
    B, T = p["batch_size"], p["seq_len"]
    mcfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=p["layers"], hidden=p["hidden"], embed=p["embed"],
                       dropout=p.get("dropout", 0.0))
    ours = {prec: Trainer(mcfg, TrainConfig(batch_size=B, seq_len=T, device=dev, precision=prec), vocab, tokens,
                          tokens[:2]) for prec in ("auto", "fp32")}
    print(f"charrnn auto precision on this GPU: {ours['auto'].speed.amp_dtype}")

    class AmpPlain(PlainTrainer):
        def step(self) -> float:
            with torch.autocast(dev, dtype=torch.bfloat16):
                return super().step()

    plain = {"fp32": PlainTrainer(tokens, len(vocab), mcfg.layers, mcfg.hidden, mcfg.embed, B, T, device=dev),
             "bf16": AmpPlain(tokens, len(vocab), mcfg.layers, mcfg.hidden, mcfg.embed, B, T, device=dev)}
    chars = B * T
    r = interleaved({"charrnn auto": (ours["auto"].train_step, chars), "charrnn fp32": (ours["fp32"].train_step, chars),
                     "plain cuDNN fp32": (plain["fp32"].step, chars),
                     "plain cuDNN bf16 autocast": (plain["bf16"].step, chars)}, args.window, args.repeats)
    print(f"\ntraining, {args.preset} preset (LSTM {mcfg.layers}x{mcfg.hidden}, B{B} x T{T}), chars/s, best of {args.repeats}:")
    for name, v in r.items():
        print(f"  {name:28s} {v:12,.0f}")
    print(f"  ratio charrnn auto / plain cuDNN fp32:          {r['charrnn auto'] / r['plain cuDNN fp32']:.2f}x")
    print(f"  ratio charrnn auto / plain cuDNN bf16 autocast: {r['charrnn auto'] / r['plain cuDNN bf16 autocast']:.2f}x")
    print(f"  ratio charrnn fp32 / plain cuDNN fp32:          {r['charrnn fp32'] / r['plain cuDNN fp32']:.2f}x")

    model = ours["auto"].model.eval()
    prime = vocab.encode("ROMEO:")
    n = 400

    def sampler(batch: int, fast: bool):
        def go():
            for _ in sample_ids(model, prime, Sampling(n, seed=1, n=batch), fast=fast):
                pass
            sync()
        return go

    def beam():
        beam_search(model, vocab, prime="ROMEO:", width=5, length=n)

    r = interleaved({"sample batch 1 (step kernel)": (sampler(1, True), n),
                     "sample batch 1 (eager nn.LSTM)": (sampler(1, False), n),
                     "sample batch 64 (step kernel)": (sampler(64, True), 64 * n),
                     "beam width 5": (beam, n)}, args.window, 2)
    print("\ngeneration on the GPU, chars/s (untrained weights: speed only):")
    for name, v in r.items():
        print(f"  {name:32s} {v:12,.0f}")
    print(f"  ratio step kernel / eager at batch 1: {r['sample batch 1 (step kernel)'] / r['sample batch 1 (eager nn.LSTM)']:.2f}x")
    if dev == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
