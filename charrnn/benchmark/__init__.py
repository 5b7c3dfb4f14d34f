"""`charrnn bench`: speed and memory measured as ratios against plain PyTorch, kept apart from the library.

    rows      what a run measures (BenchConfig) and how a result is kept (Row); no torch
    suite     run_bench: training, sampling, beam search, evaluation, step kernels, in one run
    memory    peak memory of training and sampling, each in a fresh process
    serving   a bounded load test of `charrnn serve` (needs the serve extra)

Nothing in the library imports this package; `charrnn bench` (cli/bench.py) does.
"""
