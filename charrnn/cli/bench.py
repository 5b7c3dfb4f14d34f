"""`charrnn bench`: measure speed and memory as ratios against plain PyTorch, in one run."""

from __future__ import annotations

from pathlib import Path

import typer

from charrnn.cli.common import app, examples, guarded, out_console, result_table

EXAMPLES = examples(
    "charrnn bench --quick",
    "charrnn bench --json bench/results.json",
    "charrnn bench --only sample --only beam --corpus shakespeare",
    "charrnn bench --only kernels --checkpoint checkpoints/shakespeare",
    "charrnn bench --only serve")


def fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if unit == "bits/char":
        return f"{x:+.4f}" if abs(x) < 0.5 else f"{x:.4f}"
    if unit == "MB" or abs(x) < 100:
        return f"{x:,.1f}"
    return f"{x:,.0f}"


def results_table(result: dict):
    """The rows as a rich Table: figure, baseline, ratio, goal."""
    from rich.text import Text

    m = result["machine"]
    table = result_table(f"charrnn bench — {m.get('cpu_summary', m['cpu'])}, {m['cores']} cores, torch {m['torch']}, "
                         f"corpus: {result['corpus']['name']}",
                         ("row", "figure", "unit", "baseline", "baseline is", "ratio", "goal", "", "note"),
                         numeric=("figure", "baseline", "ratio"))
    for r in result["rows"]:
        goals = [f"≥ {r['goal_ratio']:g}×"] if r["goal_ratio"] else []
        goals += [f"≥ {r['goal_figure']:,.0f}"] if r["goal_figure"] else []
        goals += [f"≤ {r['goal_max']:g}"] if r.get("goal_max") is not None else []
        mark = {True: Text("ok", style="green"), False: Text("no", style="red"), None: Text("")}[r["met"]]
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        table.add_row(Text(r["what"]), fmt(r["figure"], r["unit"]), r["unit"], fmt(r["baseline"], r["unit"]),
                      Text(r["baseline_what"]), ratio, ", ".join(goals), mark, Text(r["note"]))
    return table


@app.command(epilog=EXAMPLES)
@guarded
def bench(
    quick: bool = typer.Option(False, "--quick", help="Shorter windows and fewer repeats: under two minutes."),
    json_out: Path = typer.Option(None, "--json", help="Also write the results to this JSON file.", show_default=False),
    corpus: str = typer.Option(None, "--corpus", help="Text to train and evaluate on (path or catalog name). "
                               "Default: shakespeare if fetched or mirrored, else random text.", show_default=False),
    only: list[str] = typer.Option(None, "--only", help="Run only these sections (repeatable): "
                                   "train, sample, beam, eval, kernels, memory, serve.", show_default=False),
    checkpoint: str = typer.Option(None, "--checkpoint", help="A trained run for the kernels section: bits/char of its "
                                   "held-out text through each step kernel.", show_default=False),
    threads: int = typer.Option(0, "--threads", help="Threads for training and evaluation (0 = one per core)."),
) -> None:
    """Benchmark training, sampling, beam search, evaluation, memory and serving against baselines.

    Every figure is printed beside a baseline measured in the same run (a plain fp32 nn.LSTM
    training loop, eager nn.LSTM stepping, ...) and their ratio. Run it on an otherwise idle
    machine: the table goes to stdout, progress to stderr.
    """
    import json
    from dataclasses import replace

    from charrnn.benchmark.rows import SECTIONS, BenchConfig
    from charrnn.benchmark.suite import run_bench
    from charrnn.util.files import atomic_write_text
    from charrnn.util.console import info
    from charrnn.util.errors import UsageError
    from charrnn.runtime.threads import check_threads

    unknown = sorted(set(only or ()) - set(SECTIONS))
    if unknown:
        raise UsageError(f"--only takes {', '.join(SECTIONS)}; not {', '.join(unknown)}")
    check_threads(threads)
    cfg = BenchConfig.quick() if quick else BenchConfig()
    cfg = replace(cfg, threads=threads, sections=tuple(only) if only else SECTIONS)
    result = run_bench(cfg, corpus, log=lambda s: info(f"bench: {s}"), checkpoint=checkpoint)
    out_console().print(results_table(result))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")
        info(f"wrote {json_out}")
    info(f"bench: {result['seconds']:.0f} s")
