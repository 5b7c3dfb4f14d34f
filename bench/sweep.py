"""The shape sweep behind `charrnn train`'s automatic sizing: shapes x budgets x corpora.

    .venv/bin/python bench/sweep.py                    # every row not yet in the results file (~60 min)
    .venv/bin/python bench/sweep.py --only shakespeare-60 --dry-run
    .venv/bin/python bench/sweep.py --auto             # the comparison table: auto vs defaults vs the sweep's best

Each row is one `charrnn train CORPUS --time T` run with every shape setting given as a flag, on
an idle machine, one at a time. Its result (steps, chars/s, best validation bits/char, the CPU)
is appended to bench/sweep/results.jsonl, which is kept in the repository: `charrnn.training.sizing`'s
rule was fitted to it (bench/sweep/README.md says how). A row already in the file is skipped, so
an interrupted sweep continues where it stopped.

`--auto` runs `charrnn train CORPUS --time T` with no shape flag at all (the automatic choice)
for each group and prints the table the issue asks for, the sweep's rows beside it.

The corpora: Tiny Shakespeare (1.1 MB) and the Linux kernel corpus (8 MB) from the catalog
(CHARRNN_MIRROR or a download), and the first 100,000 characters of War and Peace (a small text).
The groups `warpeace-300` and `linux95-300` train on the first 95% of War and Peace and of the Linux
corpus (`part`), so that the last 5% is text the model never saw.

Each row also records `heldout_bpc`: `charrnn eval best.pt TEXT --batch-size 1` (one stream read
straight through) on text the run never read (`HELDOUT`): Shakespeare plays outside Tiny Shakespeare
(bench/heldout), the last 5% of War and Peace (for `small` and `warpeace-95`) or of the Linux corpus.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from charrnn.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "sweep" / "results.jsonl"
RUNS = Path(os.environ.get("SWEEP_RUNS", "/tmp/charrnn-sweep"))
os.environ.setdefault("CHARRNN_CACHE", str(RUNS / "cache"))  # verdicts measured during the sweep, not remembered from before
CHARRNN = [sys.executable, "-m", "charrnn"]

# today's fixed defaults (before automatic sizing): LSTM 2x384, embed 128, B32 x T64, lr 6e-3, no dropout
DEFAULTS = dict(layers=2, hidden=384, embed=128, batch_size=32, seq_len=64, lr=6e-3, dropout=0.0)


def shape(layers: int, hidden: int, embed: int, dropout: float = 0.0, lr: float = 6e-3, batch_size: int = 32,
          seq_len: int = 64, **extra) -> dict:
    """One row's settings; `extra` (EXTRA_FLAGS: weight_decay) only where a row changes it."""
    return dict(layers=layers, hidden=hidden, embed=embed, batch_size=batch_size, seq_len=seq_len, lr=lr,
                dropout=dropout, **extra)


S128, S256, S384, S512, S768 = (shape(2, 128, 32), shape(2, 256, 64), shape(2, 384, 128), shape(2, 512, 128),
                                shape(2, 768, 128))
GROUPS = {  # name: (corpus, seconds, the shapes tried); the short ones first
    "small-60": ("small", 60, [S128, S256, S384, shape(2, 256, 64, 0.2), shape(2, 384, 128, 0.2),
                               shape(2, 512, 128, 0.2), shape(2, 384, 128, 0.2, lr=1e-2)]),
    "shakespeare-60": ("shakespeare", 60, [S128, S256, S384, S512,
                                           # the schedule around the best shape: lr, batch, sequence length
                                           shape(2, 256, 64, lr=1e-2), shape(2, 256, 64, lr=3e-3),
                                           shape(2, 256, 64, lr=1.5e-2), shape(2, 256, 64, lr=2e-2),
                                           shape(2, 384, 128, lr=1e-2), shape(2, 128, 32, lr=2e-2),
                                           shape(2, 256, 64, batch_size=16), shape(2, 256, 64, batch_size=64),
                                           shape(2, 256, 64, batch_size=64, seq_len=32),
                                           shape(2, 256, 64, batch_size=16, seq_len=128),
                                           # dropout where 2×256 reads the text ~6 times
                                           shape(2, 256, 64, 0.1, lr=2e-2), shape(2, 256, 64, lr=3e-2),
                                           shape(2, 256, 64, lr=4e-2)]),
    "shakespeare-300": ("shakespeare", 300, [S256, S384, S512, shape(2, 512, 128, lr=3e-3), S768,
                                             shape(2, 384, 128, lr=1e-2), shape(2, 256, 64, lr=2e-2),
                                             shape(2, 512, 128, 0.1),
                                             # regularization: at 300 s the old 2×384 trains to 1.74 bits/char
                                             # but validates at 2.07 (overfit)
                                             shape(2, 512, 128, 0.2), shape(2, 384, 128, 0.1), shape(2, 384, 128, 0.2),
                                             shape(2, 512, 128, 0.1, lr=1e-2),
                                             shape(2, 384, 128, 0.1, weight_decay=0.3),
                                             # depth, and a wider batch at a higher lr (more chars/s per core)
                                             shape(3, 384, 128, 0.1), shape(2, 512, 128, 0.2, 1e-2, batch_size=64),
                                             # 2×256 at lr 2e-2 reads the text ~22 times in 300 s: dropout there
                                             shape(2, 256, 64, 0.1, lr=2e-2), shape(2, 256, 64, 0.2, lr=2e-2),
                                             shape(2, 256, 64, 0.1, lr=3e-2), shape(2, 256, 64, 0.1, lr=4e-2),
                                             # around the step-down's choice (2×256, dropout 0.1, lr 3e-2)
                                             shape(2, 256, 64, 0.15, lr=3e-2), shape(2, 256, 128, 0.1, lr=3e-2),
                                             shape(2, 256, 64, 0.1, lr=3e-2, batch_size=16),
                                             # the old defaults with the automatic choice's schedule (floor 1%)
                                             shape(2, 384, 128, min_lr_ratio=0.01)]),
    # where the rule's step down to a shape read many times (with dropout) would land on 2×128
    "shakespeare-120": ("shakespeare", 120, [S384, shape(2, 256, 64, lr=3e-2), shape(2, 128, 32, 0.1, lr=2e-2)]),
    "linux-300": ("linux", 300, [S256, S384, S512,
                                 shape(2, 384, 128, min_lr_ratio=0.01)]),  # the automatic choice, as a fixed row
    "shakespeare-900": ("shakespeare", 900, [S384, shape(2, 512, 128, 0.2)]),
    # issue 31's other two corpora, their last 5% held out
    "warpeace-300": ("warpeace-95", 300, [S384]),
    "linux95-300": ("linux-95", 300, [S384]),
}
# The schedule around the 300 s choice, at a fixed number of steps (what 300 s gives that shape here): a step
# budget trains the same steps whatever this VM's throughput does meanwhile, so two rows differ only by their
# settings (and, for two seeds, by chance). One thread and bf16 for every row (the 300 s runs chose bf16 and
# two threads), so two rows can run at once (`--jobs 2`) without changing what they compute.
B256 = dict(layers=2, hidden=256, embed=64, dropout=0.1, lr=3e-2)
A256 = dict(layers=2, hidden=256, embed=64, lr=3e-2, min_lr_ratio=0.01)
STEP_GROUPS = {  # name: (corpus, steps, the settings tried)
    "shakespeare-10500-steps": ("shakespeare", 10500, [
        shape(**B256), shape(**{**B256, "lr": 4e-2}), shape(**{**B256, "dropout": 0.2}),
        shape(**B256, min_lr_ratio=0.0), shape(**B256, min_lr_ratio=0.01),
        shape(**B256, seed=2), shape(**B256, min_lr_ratio=0.01, seed=2)]),
    # the same floors where the text is read less than twice (what 300 s gives 2×384 on the Linux corpus)
    "linux-4400-steps": ("linux", 4400, [S384, shape(2, 384, 128, min_lr_ratio=0.01)]),
    # the 120 s choice (2×256, lr 3e-2, floor 1%) at the steps 120 s gives it on a slow day (2,240): AdamW's decay
    "shakespeare-2240-steps": ("shakespeare", 2240, [
        shape(**A256), shape(**A256, weight_decay=0.0), shape(**A256, weight_decay=0.2),
        shape(**A256, weight_decay=0.3)]),
}
ALL_GROUPS = {**GROUPS, **STEP_GROUPS}
FLAGS = {"layers": "--layers", "hidden": "--hidden", "embed": "--embed", "batch_size": "--batch-size",
         "seq_len": "--seq-len", "lr": "--lr", "dropout": "--dropout"}
EXTRA_FLAGS = {"weight_decay": "--weight-decay", "seed": "--seed"}  # in a row's key and command only where it sets them
CONFIG_ONLY = ("min_lr_ratio",)  # ... likewise, but with no flag: given in a --config file written beside the run
REPEAT = ""  # '#N' for `--repeat N`: the same rows again, kept beside the first runs
SETS: dict = {}  # `--set KEY=VALUE`: training settings every row of this sweep adds (in its --config file and its key)


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def small_text() -> Path:
    """The first 100,000 characters of War and Peace, cut on a line break, written once."""
    path = RUNS / "small.txt"
    if not path.exists():
        from charrnn.text.catalog import fetch

        text = Path(fetch("warpeace")).read_text(encoding="utf-8")
        cut = text.rfind("\n", 0, 100_000) + 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[:cut], encoding="utf-8")
    return path


def part(name: str, lo: float, hi: float) -> Path:
    """Characters [lo, hi) (fractions of its length, cut on line breaks) of a catalog corpus, written once."""
    path = RUNS / f"{name}-{lo:g}-{hi:g}.txt"
    if not path.exists():
        from charrnn.text.catalog import fetch

        text = Path(fetch(name)).read_text(encoding="utf-8")
        cut = lambda f: 0 if f == 0 else len(text) if f == 1 else text.rfind("\n", 0, int(f * len(text))) + 1  # noqa: E731
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")  # whole or not there: a killed sweep never leaves a short text to reuse
        tmp.write_text(text[cut(lo) : cut(hi)], encoding="utf-8")
        os.replace(tmp, path)
    return path


def corpus_arg(name: str) -> str:
    if name.endswith("-95"):  # the first 95% of a catalog corpus: the rest is held out
        return str(part(name.removesuffix("-95"), 0, 0.95))
    return str(small_text()) if name == "small" else name


def heldout(corpus: str) -> Path | None:
    """Text a run on `corpus` never read (see the module doc), or None."""
    if corpus == "shakespeare":
        return ROOT / "bench" / "heldout" / "shakespeare-plays.txt"
    if corpus in ("small", "warpeace-95"):
        return part("warpeace", 0.95, 1)
    return part("linux", 0.95, 1) if corpus == "linux-95" else None


def heldout_eval(folder: Path, corpus: str, threads: int = 0) -> dict:
    """{"heldout_bpc", "heldout_oov": characters of the held-out text outside the model's vocabulary (skipped,
    so a figure with many is flattering)}, both None where there is no held-out text or its evaluation failed."""
    text = heldout(corpus)
    if text is None:
        return {"heldout_bpc": None, "heldout_oov": None}
    proc = subprocess.run([*CHARRNN, "eval", str(folder / "best.pt"), str(text), "--batch-size", "1", "--json",
                           "--threads", str(threads)], capture_output=True, text=True)
    if proc.returncode != 0:  # the row's training is kept all the same
        print(proc.stderr[-1000:], file=sys.stderr)
        return {"heldout_bpc": None, "heldout_oov": None}
    result = json.loads(proc.stdout)
    return {"heldout_bpc": result["bits_per_char"], "heldout_oov": result["oov_chars"]}


def key(group: str, settings: dict | None) -> str:
    sets = "".join(f",{k}={v}" for k, v in SETS.items())  # (a row of another setting is another row)
    if settings is None:
        return f"{group}:auto{sets}"
    flags = [*FLAGS, *(k for k in (*EXTRA_FLAGS, *CONFIG_ONLY) if k in settings)]
    return f"{group}:" + ",".join(f"{k}={settings[k]}" for k in flags) + sets


def done() -> dict[str, dict]:
    if not RESULTS.exists():
        return {}
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return {r["key"]: r for r in rows}


def summary(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    vals = [r["val_bpc"] for r in records if r.get("val_bpc") is not None]
    rates = [r["chars_per_sec"] for r in records if r.get("chars_per_sec")]
    config = yaml.safe_load((folder / "config.yaml").read_text())
    return {"steps": max(r["step"] for r in records), "best_val_bpc": min(vals), "final_val_bpc": vals[-1],
            "chars_per_sec": sorted(rates)[len(rates) // 2] if rates else None,
            "config": {k: config[k] for k in ("cell", "layers", "hidden", "embed", "dropout", "batch_size", "seq_len",
                                              "lr", "weight_decay", "min_lr_ratio", "seed", "activation_reg", "temporal_reg")
                       if k in config}}


def run_one(group: str, settings: dict | None, dry: bool) -> dict | None:
    by_steps = group in STEP_GROUPS
    corpus, budget, _ = ALL_GROUPS[group]
    folder = RUNS / (key(group, settings) + REPEAT).replace(":", "_").replace(",", "_").replace("=", "").replace("#", "_")
    cmd = [*CHARRNN, "train", corpus_arg(corpus), "--steps" if by_steps else "--time", str(budget), "-o", str(folder),
           "--overwrite", "--sample-every", "0", *(["--threads", "1", "--precision", "bf16"] if by_steps else [])]
    for k, flag in {**FLAGS, **EXTRA_FLAGS}.items():
        if settings is not None and k in settings:
            cmd += [flag, str(settings[k])]
    config_only = {**{k: settings[k] for k in CONFIG_ONLY if settings is not None and k in settings}, **SETS}
    if config_only:
        extra = folder.with_name(folder.name + ".yaml")
        if not dry:
            extra.parent.mkdir(parents=True, exist_ok=True)
            extra.write_text(yaml.safe_dump(config_only))
        cmd += ["--config", str(extra)]
    print("$", " ".join(cmd[2:]), flush=True)
    if dry:
        return None
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = next((line for line in proc.stderr.splitlines() if line.startswith("model:")), "")
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"run failed: {' '.join(cmd)}")
    row = {"key": key(group, settings) + REPEAT, "group": group, "corpus": corpus,
           **({"step_budget": budget} if by_steps else {"seconds": budget}),
           "auto": settings is None, **summary(folder), **heldout_eval(folder, corpus, 1 if by_steps else 0),
           "model_line": first or None, "cpu": cpu(),
           "load_before": os.getloadavg()[0], "date": dt.datetime.now().isoformat(timespec="seconds"),
           "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip()}
    held = f", held-out {row['heldout_bpc']:.3f}" if row["heldout_bpc"] is not None else ""
    print(f"  -> {row['steps']} steps, {row['chars_per_sec'] or 0:,.0f} chars/s, best val {row['best_val_bpc']:.3f} "
          f"bits/char{held}", flush=True)
    return row


def append(row: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")


def shape_name(c: dict) -> str:
    s = f"{c['layers']}×{c['hidden']} e{c['embed']}"
    if c.get("dropout"):
        s += f" d{c['dropout']:g}"
    if c.get("lr") != 6e-3:
        s += f" lr{c['lr']:g}"
    if (c.get("batch_size"), c.get("seq_len")) != (32, 64):
        s += f" B{c['batch_size']}×T{c['seq_len']}"
    if c.get("weight_decay", TrainConfig.weight_decay) != TrainConfig.weight_decay:
        s += f" wd{c['weight_decay']:g}"
    if c.get("min_lr_ratio", TrainConfig.min_lr_ratio) != TrainConfig.min_lr_ratio:
        s += f" floor {c['min_lr_ratio']:g}"
    if c.get("seed", TrainConfig.seed) != TrainConfig.seed:
        s += f" seed {c['seed']}"
    ar, tar = c.get("activation_reg", 0.0), c.get("temporal_reg", 0.0)  # (rows from before AR and TAR: none)
    s += f" AR {ar:g} TAR {tar:g}" if ar or tar else " no AR/TAR"
    return s


def table(rows: dict[str, dict]) -> None:
    print("\n| corpus | budget | auto-chosen shape | val bits/char | today's fixed defaults | best fixed shape of the sweep |")
    print("| --- | --- | --- | --- | --- | --- |")
    for group, (corpus, seconds, shapes) in GROUPS.items():
        auto = rows.get(key(group, None))
        cell = lambda r: f"{r['best_val_bpc']:.3f}" if r else "–"  # noqa: E731

        def again(k: str) -> list[dict]:  # its repeats (`--repeat N`)
            return [rows[r] for r in sorted(rows) if r.startswith(k + "#")]

        def mean(k: str) -> float:  # of the first run and its repeats
            return sum(r["best_val_bpc"] for r in [rows[k], *again(k)]) / (1 + len(again(k)))

        def runs(k: str) -> str:  # the first run, then its repeats and the mean of all in brackets
            if not again(k) or k not in rows:
                return cell(rows.get(k))
            return f"{cell(rows[k])} ({', '.join(cell(r) for r in again(k))} again; mean {mean(k):.3f})"

        fixed = [key(group, s) for s in shapes if key(group, s) in rows]
        best = min(fixed, key=mean) if fixed else None  # a repeated row by its mean
        print(f"| {corpus} | {seconds} s | {shape_name(auto['config']) if auto else '–'} | {runs(key(group, None))} | "
              f"{runs(key(group, DEFAULTS))} | {shape_name(rows[best]['config']) + ': ' + runs(best) if best else '–'} |")


OTHER_RULES = {"-before-lr": "before the lr rule", "-before-step-down": "before the step-down rule",
               "-embed-128-tried": "2×256 with embed 128, tried and given up",
               "-before-floor": "before the 1% floor", "-before-eval-spacing": "validating every 200 steps",
               "-before-ar": "before AR and TAR"}


def auto_label(row: dict) -> str:
    """'auto', or, for a rule other than today's (the key ends with one of OTHER_RULES), which."""
    base, _, repeat = row["key"].partition("#")
    label = ("auto" + next((f" ({what})" for tag, what in OTHER_RULES.items() if base.endswith(tag)), "")
             if row["auto"] else "")
    return f"{label}, repeat {repeat}".lstrip(", ") if repeat else label


def held(row: dict) -> str:
    """A row's held-out bits/char, or – (rows from before held-out text was read)."""
    return f"{row['heldout_bpc']:.3f}" if row.get("heldout_bpc") is not None else "–"


def all_rows(rows: dict[str, dict]) -> None:
    """Every row of the results file, grouped, best first."""
    print("| group | shape | steps | chars/s | best val bits/char | held-out bits/char | auto |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for group in ALL_GROUPS:
        for r in sorted((r for r in rows.values() if r["group"] == group), key=lambda r: r["best_val_bpc"]):
            print(f"| {group} | {shape_name(r['config'])} | {r['steps']:,} | {r['chars_per_sec']:,.0f} | "
                  f"{r['best_val_bpc']:.3f} | {held(r)} | {auto_label(r)} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", choices=list(ALL_GROUPS),
                    help="these groups (default: every time-budget group; a step group only by name)")
    ap.add_argument("--auto", action="store_true", help="run the automatic choice for each group, then the table")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--table", action="store_true", help="only print the tables from the results file")
    ap.add_argument("--repeat", type=int, default=0, help="run the rows again, as repeat N (key suffix #N): noise")
    ap.add_argument("--jobs", type=int, default=1, help="rows of a step group run at once (1 thread each)")
    ap.add_argument("--rows", help="only the rows whose key contains this text (e.g. hidden=384)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training setting for every row (a config-file key, e.g. activation_reg=0): rows of their own")
    args = ap.parse_args()
    SETS.update((k, yaml.safe_load(v)) for k, _, v in (s.partition("=") for s in args.set))
    global REPEAT
    REPEAT = f"#{args.repeat}" if args.repeat else ""
    groups = args.only or list(GROUPS)
    if not args.table:
        have = done()
        for group in groups:
            if args.auto and group in STEP_GROUPS:
                raise SystemExit(f"--auto is for the time-budget groups: {group} is a step group")
            todo = [s for s in ([None] if args.auto else ALL_GROUPS[group][2])
                    if key(group, s) + REPEAT not in have and (not args.rows or args.rows in key(group, s))]
            jobs = args.jobs if group in STEP_GROUPS else 1  # a timed row needs the idle machine to itself
            with ThreadPoolExecutor(jobs) as pool:  # (rows appended as they end)
                for row in pool.map(lambda s: run_one(group, s, args.dry_run), todo):
                    if row:
                        append(row)
    table(done())
    if args.table:
        print()
        all_rows(done())


if __name__ == "__main__":
    main()
