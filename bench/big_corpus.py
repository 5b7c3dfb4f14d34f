"""Must-show for big corpora: encode a >= 1 GB text, train on it briefly, and start again from the cache.

    python bench/big_corpus.py --size 1G                 # the real run (a few minutes, ~2 GB of /tmp)
    python bench/big_corpus.py --size 5M --train-seconds 5   # a smoke test at small scale

Steps, each in a fresh child process so its memory is its own:

1. make the corpus: a `corpus build` concatenation of the Python and C sources on this machine
   (/usr/lib/python3*/**/*.py, /usr/include/**/*.h), repeated until it reaches --size,
   written under --work (default /tmp/charrnn-big), never into the repository;
2. encode it (`prepare_corpus`, empty cache): throughput in MB/s for the whole job and per
   phase (hashing, checking, encoding), and the child's peak memory;
3. `charrnn train` for --train-seconds on it (cache hit), peak memory;
4. prepare it a second time: the wall time of a whole `python -c` that only opens the cache,
   and of the `prepare_corpus` call inside it.

Peak memory is sampled from /proc/PID/status every 50 ms (VmRSS split into RssAnon, the
process's own memory, and RssFile, pages of mapped files such as the token array, which the
kernel can drop at will) and the kernel's own high-water mark for the child (ru_maxrss from wait4).
Results go to stdout as a table and to --work/results.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [("/usr/lib", ["python3*/**/*.py"]), ("/usr/include", ["**/*.h"])]

ENCODE = """
import json, sys, time
from charrnn.text.tokens import prepare_corpus
marks = {}
def progress(phase, done, total):
    marks.setdefault(phase, time.perf_counter())
t0 = time.perf_counter()
c = prepare_corpus([sys.argv[1]], progress=progress)
t1 = time.perf_counter()
marks["end"] = t1
order = sorted(marks, key=marks.get)
phases = {p: marks[q] - marks[p] for p, q in zip(order, order[1:])}
print(json.dumps({"seconds": t1 - t0, "cached": c.cached, "characters": len(c), "bytes": c.bytes,
                  "vocab": len(c.vocab), "dtype": str(c.tokens.dtype), "phases": phases}))
"""


def parse_size(s: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * units[s[-1].upper()]) if s[-1].upper() in units else int(s)


def make_corpus(work: Path, size: int) -> Path:
    """Concatenate source files found on this machine (sorted), repeated up to `size` bytes."""
    from charrnn.text.build import BuildReport, concatenate
    from charrnn.text.corpus import find_files

    base = work / "base.txt"
    report = BuildReport()
    with open(base, "wb") as out:
        for folder, globs in SOURCES:
            if not Path(folder).is_dir():
                continue
            files, need = [], min(size, 256 << 20) - report.bytes  # a few hundred MB of distinct text is plenty
            for f in find_files(Path(folder), globs):
                if need <= 0:
                    break
                files.append(f)
                need -= f.stat().st_size
            concatenate(files, Path(folder), out, report)
    if report.bytes == 0:
        sys.exit(f"no source files found in {', '.join(f for f, _ in SOURCES)}")
    print(f"  {len(report.files):,} source files, {report.bytes / 1e6:.1f} MB (skipped {len(report.binary)} binary, "
          f"{len(report.not_utf8)} not UTF-8), repeated to {size / 1e6:,.0f} MB", file=sys.stderr)
    big = work / "big.txt"
    written = 0
    with open(big, "wb") as out:
        while written < size:
            with open(base, "rb") as f:
                while written < size and (chunk := f.read(min(1 << 24, size - written))):
                    out.write(chunk)
                    written += len(chunk)
    base.unlink()
    return big


def measured(cmd: list[str], env: dict, work: Path) -> dict:
    """Run `cmd`, sampling its memory; return wall time, peaks (MB), and its stdout and stderr."""
    t0 = time.perf_counter()
    with open(work / "child.out", "w+") as out, open(work / "child.err", "w+") as err:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        while True:
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in peak:
                        peak[key] = max(peak[key], int(value.split()[0]) // 1024)
            except (OSError, ValueError):
                pass
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{stderr[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": max(peak["VmRSS"], usage.ru_maxrss // 1024),  # ru_maxrss: KB on Linux
            "peak_anon_mb": peak["RssAnon"], "peak_file_mb": peak["RssFile"], "stdout": stdout, "stderr": stderr}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="corpus size: 1G, 500M, 5M ...")
    ap.add_argument("--work", default="/tmp/charrnn-big", help="folder for the corpus, cache and run (not the repo)")
    ap.add_argument("--train-seconds", type=float, default=30.0)
    ap.add_argument("--keep", action="store_true", help="keep the corpus and cache afterwards")
    args = ap.parse_args()
    work = Path(args.work)
    if work.resolve().is_relative_to(ROOT):
        sys.exit("--work must be outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CHARRNN_CACHE=str(work / "cache"))
    sys.path.insert(0, str(ROOT))

    size = parse_size(args.size)
    print(f"making a {size / 1e6:,.0f} MB corpus in {work}", file=sys.stderr)
    t0 = time.perf_counter()
    big = make_corpus(work, size)
    made_s = time.perf_counter() - t0
    for f in glob.glob(str(work / "cache" / "**" / "*"), recursive=True):
        if Path(f).is_file():
            os.unlink(f)  # a cold cache: the first run really encodes
    time.sleep(2.1)  # file hashes are remembered only for files last changed > 2 s before hashing
    py = sys.executable
    baseline = measured([py, "-c", "import torch, charrnn.training.trainer, charrnn.text.tokens"], env, work)
    print("encoding (cold cache) ...", file=sys.stderr)
    enc = measured([py, "-c", ENCODE, str(big)], env, work)
    enc_out = json.loads(enc["stdout"])
    print("training ...", file=sys.stderr)
    train = measured([py, "-m", "charrnn", "train", str(big), "--time", str(args.train_seconds), "--hidden", "128",
                      "--layers", "1", "-b", "32", "-t", "128", "--eval-every", "1000000", "--val-fraction", "0.01",
                      "-o", str(work / "run"), "--overwrite"], env, work)
    hit = measured([py, "-c", ENCODE, str(big)], env, work)
    hit_out = json.loads(hit["stdout"])
    mb = size / 1e6
    results = {
        "corpus_mb": mb, "characters": enc_out["characters"], "vocab": enc_out["vocab"], "dtype": enc_out["dtype"],
        "make_corpus_s": made_s,
        "encode_s": enc_out["seconds"], "encode_mb_per_s": mb / enc_out["seconds"],
        "encode_phases_mb_per_s": {k: mb / v for k, v in enc_out["phases"].items() if v > 0},
        "encode_peak_rss_mb": enc["peak_rss_mb"], "encode_peak_anon_mb": enc["peak_anon_mb"],
        "train_peak_rss_mb": train["peak_rss_mb"], "train_peak_anon_mb": train["peak_anon_mb"],
        "train_peak_file_mb": train["peak_file_mb"],
        "baseline_import_rss_mb": baseline["peak_rss_mb"],
        "second_run_prepare_s": hit_out["seconds"], "second_run_cached": hit_out["cached"],
        "second_run_process_s": hit["wall_s"], "baseline_import_s": baseline["wall_s"],
        "train_log_tail": train["stderr"].strip().splitlines()[-3:],
    }
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"""
| measure | value |
| --- | ---: |
| corpus | {mb:,.0f} MB, {enc_out['characters']:,} characters, {enc_out['vocab']} distinct ({enc_out['dtype']} ids) |
| encoding throughput (hash + check + encode) | {results['encode_mb_per_s']:,.0f} MB/s ({enc_out['seconds']:.1f} s) |
| per phase | {', '.join(f'{k} {v:,.0f} MB/s' for k, v in results['encode_phases_mb_per_s'].items())} |
| peak RSS while encoding | {enc['peak_rss_mb']:,} MB (anon {enc['peak_anon_mb']:,} MB) |
| peak RSS while training {args.train_seconds:g} s | {train['peak_rss_mb']:,} MB (anon {train['peak_anon_mb']:,} MB, mapped file {train['peak_file_mb']:,} MB) |
| baseline: python + torch + charrnn imported | {baseline['peak_rss_mb']:,} MB, {baseline['wall_s']:.2f} s |
| second run: prepare_corpus (cache hit: {hit_out['cached']}) | {hit_out['seconds'] * 1000:,.1f} ms |
| second run: whole process incl. imports | {hit['wall_s']:.2f} s |
""")
    print("\n".join(results["train_log_tail"]), file=sys.stderr)
    if not args.keep:
        big.unlink()
        subprocess.run(["rm", "-rf", str(work / "cache"), str(work / "run")])


if __name__ == "__main__":
    main()
