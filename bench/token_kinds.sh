#!/usr/bin/env bash
# Character, word and byte models of Tiny Shakespeare and War and Peace, each trained
# for the same wall-clock budget, back to back on this machine, then compared on one scale.
#
#   bench/token_kinds.sh                  # 300 s per model, 6 models: about 32 minutes
#   BUDGET=120 bench/token_kinds.sh       # 120 s per model: about 13 minutes
#   QUICK=1 bench/token_kinds.sh          # a few seconds per model: checks that the script works
#
# Prints, per corpus and token kind: vocabulary size, parameters, steps, training throughput,
# validation bits per character (and per token), and the start of a sample (seed 1, temperature
# 0.8, after the prime "\n"). Every model has the same settings (PRESET, default `small`: a 2x256
# LSTM, embedding 64, batch 32 x 64 tokens, lr 4e-3); only the tokens differ. Validation is the
# run's own: the first 250,000 characters of the corpus's last 10% (a character count for every
# kind, so the three models of a corpus are scored on the same text).
#
# Settings, from the environment: BUDGET (seconds per model), QUICK, PRESET, THREADS (CPU threads;
# default charrnn's: one per core), CORPORA (default "shakespeare warpeace"), KINDS (default
# "char word byte"; word:N for a word model with --max-vocab N), OUT (the run folders; default a new temporary folder), CHARRNN (the command;
# default the repository's .venv/bin/charrnn). Corpora come from the catalog (CHARRNN_MIRROR,
# set by the Makefile to ../shared/corpora when it exists, copies instead of downloading).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
charrnn="${CHARRNN:-$here/.venv/bin/charrnn}"
python="$(dirname "$(command -v "$charrnn" || echo "$charrnn")")/python"
[ -x "$python" ] || python=python3
if [ -z "${CHARRNN_MIRROR:-}" ] && [ -d "$here/../shared/corpora" ]; then
    export CHARRNN_MIRROR="$here/../shared/corpora"
fi
budget="${BUDGET:-300}"
extra=()
if [ -n "${QUICK:-}" ]; then
    budget=4
    extra+=(--eval-chars 20000)
fi
[ -n "${THREADS:-}" ] && extra+=(--threads "$THREADS")
preset="${PRESET:-small}"
out="${OUT:-$(mktemp -d -t token-kinds.XXXXXX)}"
mkdir -p "$out"

echo "token kinds: $preset models, ${budget}s each, runs in $out" >&2
"$charrnn" corpus get ${CORPORA:-shakespeare warpeace} >&2
started=$(date +%s)
for corpus in ${CORPORA:-shakespeare warpeace}; do
    for spec in ${KINDS:-char word byte}; do
        kind="${spec%%:*}"
        vocab=()
        [ "$spec" != "$kind" ] && vocab=(--max-vocab "${spec#*:}")
        run="$out/$corpus-${spec/:/}"
        echo "training $corpus as $spec tokens ($(date +%H:%M:%S))" >&2
        "$charrnn" train "$corpus" --tokens "$kind" "${vocab[@]}" --preset "$preset" --time "$budget" \
            --sample-every 0 -o "$run" --overwrite "${extra[@]}" 2> "$run.log" || { tail -5 "$run.log" >&2; exit 1; }
        tail -1 "$run.log" >&2
        "$charrnn" checkpoints show "$run" --json > "$run.json"
        "$charrnn" sample "$run" -n 400 --seed 1 --temp 0.8 --threads 1 > "$run.sample.txt"
    done
done

"$python" - "$out" "$budget" "$preset" "$started" "${CORPORA:-shakespeare warpeace}" "${KINDS:-char word byte}" <<'EOF'
import json, os, platform, sys, time
from pathlib import Path

out, budget, preset, started = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
corpora, kinds = sys.argv[5].split(), sys.argv[6].split()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"# token kinds: {preset} models, {budget} s each, {os.cpu_count()} cores ({cpu}), "
      f"load average {os.getloadavg()[0]:.1f} at the end, {time.time() - started:.0f} s in all\n")
print("| corpus | tokens | vocab | params | steps | chars/s | val bits/char | val bits/token | chars/token |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
samples = []
for corpus in corpora:
    for spec in kinds:
        kind = spec.replace(":", "")
        s = json.loads((out / f"{corpus}-{kind}.json").read_text())
        evals = [r for r in s["metrics"] if r.get("val_bpc") is not None]
        best = min(evals, key=lambda r: r["val_bpc"])
        bpt = best.get("val_bpt", best["val_bpc"])
        logs = [json.loads(l) for l in (out / f"{corpus}-{kind}" / "metrics.jsonl").read_text().splitlines()]
        rates = [r["chars_per_sec"] for r in logs if "chars_per_sec" in r]
        rates = rates[1:] or rates or [0]  # (the first record holds one-time costs)
        print(f"| {corpus} | {spec.replace(':', ', max ')} | {s['vocab_size']:,} | {s['params'] / 1e6:.2f}M | {s['step']:,} | "
              f"{sum(rates) / len(rates):,.0f} | **{best['val_bpc']:.3f}** | {bpt:.3f} | {bpt / best['val_bpc']:.2f} |")
        text = (out / f"{corpus}-{kind}.sample.txt").read_text(encoding="utf-8")
        samples.append((corpus, spec.replace(":", ", max "), text[:300]))
print()
for corpus, kind, text in samples:
    print(f"## {corpus}, {kind} tokens (the first 300 characters of 400 tokens)\n")
    print("    " + "\n    ".join(text.splitlines()) + "\n")
EOF
