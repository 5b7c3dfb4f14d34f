"""Beam search speed against greedy sampling, measured in one run on one model.

    python bench/beam_speed.py checkpoints/shakespeare/best.pt -n 500 --widths 1,5,10
    python bench/beam_speed.py checkpoints/shakespeare/best.pt --device cuda --json

Prints a Markdown table: for each method, the seconds for `-n` characters (best of
--repeats runs, after a warm-up), output chars/s (characters of the returned text per
second) and expanded chars/s (width x output: characters the model stepped through).
Greedy sampling and every width share the model, prime, device and thread count.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from charrnn.generation.beam import beam_search
from charrnn.generation.sampling import sample_text


def measure(model, vocab, widths=(1, 5, 10), length: int = 500, prime: str = "", repeats: int = 3) -> list[dict]:
    """Rows of {method, width, seconds, chars_per_sec, expanded_chars_per_sec}, greedy first."""
    device = model.head.weight.device

    def best_time(fn) -> float:
        fn()  # warm-up: builds the step weights, wakes the GPU
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return min(times)

    runs = [("greedy sample", 1, lambda: sample_text(model, vocab, length, prime, temperature=0))]
    runs += [("beam", w, lambda w=w: beam_search(model, vocab, prime, width=w, length=length)) for w in widths]
    rows = []
    for method, width, fn in runs:
        seconds = best_time(fn)
        rows.append({
            "method": method, "width": width, "chars": length, "seconds": seconds,
            "chars_per_sec": length / seconds, "expanded_chars_per_sec": width * length / seconds,
        })
    return rows


def main() -> None:
    from charrnn.training.checkpoint import load_model
    from charrnn.runtime.device import resolve_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=None, help="checkpoint or run folder (default: newest under ./checkpoints)")
    ap.add_argument("-n", "--length", type=int, default=500)
    ap.add_argument("--widths", default="1,5,10")
    ap.add_argument("--prime", default="")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (charrnn sample and beam use 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint, resolve_device(args.device))
    widths = tuple(int(w) for w in args.widths.split(","))
    rows = measure(loaded.model, loaded.vocab, widths, args.length, args.prime, args.repeats)
    if args.json:
        print(json.dumps({"checkpoint": str(loaded.path), "device": args.device, "threads": args.threads, "rows": rows}, indent=2))
        return
    c = loaded.model.config
    print(f"{loaded.path}: {c.cell} {c.layers}x{c.hidden}, {args.device}, {args.threads} thread(s), {args.length} chars, best of {args.repeats}\n")
    print("| method | width | seconds | chars/s | expanded chars/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['width']} | {r['seconds']:.3f} | {r['chars_per_sec']:,.0f} | {r['expanded_chars_per_sec']:,.0f} |")


if __name__ == "__main__":
    main()
