#!/usr/bin/env bash
# How fast charrnn is on the machine it runs on: every figure, measured back to back on
# this machine, into one log. Run it on an IDLE machine (nothing else running).
#
#   bench/machine_speed.sh                 # the real thing: about 30 minutes
#   QUICK=1 bench/machine_speed.sh         # every step with small budgets (~8 min): checks that the script works
#   SECTIONS="2 5" bench/machine_speed.sh  # only those sections (5 needs 2's default run)
#
# The log goes to /tmp/machine-speed-<date>/machine_speed.log (OUT=folder to choose), beside the bench JSON and
# one log per run. In order:
#   1. lscpu: the CPU model and the flags that matter (avx512_bf16, avx512_fp16, amx)
#   2. charrnn train shakespeare --time 120: defaults, --precision fp32, --precision bf16,
#      --threads 1, --threads 2, then bench/plain_script.py (bf16 as written, and --fp32), same budget
#   3. the bits/char cost of each reduced-precision step kernel on held-out Tiny Shakespeare, through
#      the model the default run of step 2 trained (charrnn bench --only kernels --checkpoint)
#   4. charrnn bench (after): training (both precisions, auto's choice), sampling (every kernel tried,
#      the one chosen), beam search, evaluation, memory
#   5. start-up: `charrnn sample RUN -n 1` against `python -c 'import torch'`, 5 times each, alternating
#   6. make demo while `python3 -c 'while 1: pass'` keeps one core busy: steps trained, the sample
#
# The tuning cache ($CHARRNN_CACHE/tune.json) starts empty, so the first default run measures its
# precision as a user's first run would.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${BIN:-$ROOT/.venv/bin}
QUICK=${QUICK:-0}
OUT=${OUT:-/tmp/machine-speed-$(date +%Y%m%d-%H%M%S)}
LOG=$OUT/machine_speed.log
mkdir -p "$OUT/logs"
export CHARRNN_CACHE=$OUT/cache  # empty: every verdict is measured, none remembered from before
export CHARRNN_MIRROR=${CHARRNN_MIRROR:-$ROOT/../shared/corpora}

if [ "$QUICK" = 1 ]; then
  TIME=20; DEMO_TIME=20; BENCH=(--quick --only train --only sample --only beam --only eval); KQUICK=(--quick)
else
  TIME=120; DEMO_TIME=120; BENCH=(); KQUICK=()
fi

log() { echo "$@" | tee -a "$LOG"; }
section() { log; log "==== $* ===="; }
want() { [ -z "${SECTIONS:-}" ] || [[ " $SECTIONS " == *" $1 "* ]]; }  # SECTIONS="2 5": only those
run_to() {  # run_to FILE command...: the output kept in FILE and appended to the log; a failure is logged
  local file=$1; shift
  log "\$ $*"
  "$@" >"$file" 2>&1
  local rc=$?
  cat "$file" >>"$LOG"
  [ $rc -eq 0 ] || log "(exit status $rc)"
  return 0
}

log "machine speed measurements, $(date -Is), QUICK=$QUICK, log: $LOG"
log "git: $(git -C "$ROOT" rev-parse --short HEAD) ($(git -C "$ROOT" rev-parse --abbrev-ref HEAD)), torch $("$BIN/python" -c 'import torch; print(torch.__version__)')"
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

section "1. CPU"
lscpu | grep -E "^(Model name|CPU\(s\)|Thread|Core|L2|L3|Hypervisor)" | tee -a "$LOG"
log "flags that matter: $(grep -m1 -E '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|avx512f|avx512_bf16|avx512_fp16|avx512_vnni|amx_tile|amx_bf16|amx_int8' | tr '\n' ' ')"
grep -q -w amx_tile /proc/cpuinfo || log "(no AMX)"

if want 2; then
section "2. charrnn train shakespeare --time $TIME, back to back"
run_to "$OUT/logs/corpus.log" "$BIN/charrnn" corpus get shakespeare
CORPUS=$("$BIN/python" -c 'from charrnn.text.catalog import fetch; print(fetch("shakespeare"))')
declare -A FLAGS=([defaults]="" [fp32]="--precision fp32" [bf16]="--precision bf16" [threads1]="--threads 1" [threads2]="--threads 2")
for name in defaults fp32 bf16 threads1 threads2; do
  # shellcheck disable=SC2086
  run_to "$OUT/logs/$name.log" "$BIN/charrnn" train shakespeare --time "$TIME" ${FLAGS[$name]} -o "$OUT/runs/$name" --overwrite
done
run_to "$OUT/logs/plain.log" "$BIN/python" bench/plain_script.py "$CORPUS" --time "$TIME"
run_to "$OUT/logs/plain-fp32.log" "$BIN/python" bench/plain_script.py "$CORPUS" --time "$TIME" --fp32

section "2b. summary: steps trained and validation bits/char ($TIME s each, back to back)"
for name in defaults fp32 bf16 threads1 threads2; do
  "$BIN/python" - "$OUT/runs/$name" "$name" <<'PY' | tee -a "$LOG"
import json, sys
from pathlib import Path
folder, name = Path(sys.argv[1]), sys.argv[2]
try:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
except OSError:
    records = []
steps = max((r["step"] for r in records), default=0)
vals = [r["val_bpc"] for r in records if r.get("val_bpc") is not None] or [float("nan")]
print(f"  charrnn {name:9s} {steps:6d} steps   final val {vals[-1]:.3f}   best val {min(vals):.3f} bits/char")
PY
done
log "  plain script (bf16 autocast, as written): $(grep -h '^plain nn.LSTM script' "$OUT/logs/plain.log")"
log "  plain script --fp32:                      $(grep -h '^plain nn.LSTM script' "$OUT/logs/plain-fp32.log")"
log "  the default run chose: $(grep -h -E '^(model|precision|validation precision|threads):' "$OUT/logs/defaults.log" | tr '\n' ' ')"
for name in fp32 bf16 threads1 threads2; do
  log "  $name: $(grep -h -E '^(model|precision|threads):' "$OUT/logs/$name.log" | tr '\n' ' ')"
done
fi

if want 3; then
section "3. bits/char cost of each reduced-precision step kernel (held-out Tiny Shakespeare)"
run_to "$OUT/logs/kernels.log" "$BIN/charrnn" bench --only kernels --checkpoint "$OUT/runs/defaults" "${KQUICK[@]}" \
  --json "$OUT/kernels.json"
fi

if want 4; then
section "4. charrnn bench (after)"
run_to "$OUT/logs/bench.log" "$BIN/charrnn" bench "${BENCH[@]}" --json "$OUT/bench.json"
fi

if want 5; then
section "5. start-up: charrnn sample RUN -n 1 vs import torch (wall seconds, alternating)"
"$BIN/python" - "$BIN" "$OUT/runs/defaults" <<'PY' | tee -a "$LOG"
import statistics, subprocess, sys, time
bin_, run = sys.argv[1], sys.argv[2]
commands = {"import torch": [f"{bin_}/python", "-c", "import torch"],
            "charrnn sample RUN -n 1": [f"{bin_}/charrnn", "sample", run, "-n", "1"]}
times = {name: [] for name in commands}
for _ in range(5):
    for name, cmd in commands.items():
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times[name].append(time.perf_counter() - t0)
for name, ts in times.items():
    print(f"  {name:24s} median {statistics.median(ts):.2f} s  (runs: {', '.join(f'{t:.2f}' for t in ts)})")
extra = statistics.median(times["charrnn sample RUN -n 1"]) - statistics.median(times["import torch"])
print(f"  charrnn sample -n 1 costs {extra:+.2f} s beyond importing torch (goal: at most +0.30 s)")
PY
fi

if want 6; then
section "6. make demo while another process keeps one core busy"
python3 -c 'while 1: pass' &
BUSY=$!
log "busy loop: pid $BUSY"
run_to "$OUT/logs/demo.log" make demo DEMO_TIME="$DEMO_TIME"
kill "$BUSY"
log "  $(grep -h -E '^done: ' "$OUT/logs/demo.log" | tail -1)"
log "  chosen: $(grep -h -E '^(precision|validation precision|threads):' "$OUT/logs/demo.log" | tr '\n' ' ')"
log "  the sample's first lines:"
sed -n '/charrnn sample checkpoints\/demo/,$p' "$OUT/logs/demo.log" | sed -n '2,9p' | sed 's/^/    /' | tee -a "$LOG"

log
fi

log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
log "done: $LOG (bench JSON: $OUT/bench.json, kernels: $OUT/kernels.json, one log per step in $OUT/logs/)"
