#!/usr/bin/env bash
# Issue 13 point 7 on a CUDA machine, in one call, from the checkout (no install, no network):
# the machine's own CUDA PyTorch, typer, rich, numpy, pyyaml and pytest; the serve extra's two
# pure-Python wheels carried in .gpu/whl; Tiny Shakespeare carried in .gpu/ as the corpus mirror.
#
#   bench/gpu.sh            # prepared here: mkdir -p .gpu/whl; cp ../shared/corpora/shakespeare.txt .gpu/
#                           #   pip download --no-deps -d .gpu/whl starlette uvicorn
#
# Everything goes to $OUT/gpu.log (and the pytest log to $OUT/pytest.log). In order:
#   1. the GPU, torch, CUDA, cuDNN
#   2. bench/gpu.py: the large preset's training chars/s, charrnn vs plain cuDNN nn.LSTM (fp32 and
#      bf16 autocast), sampling and beam search on the GPU
#   3. charrnn train --preset large on cuda (auto: bf16 autocast), then sample and beam on cuda,
#      and the GPU-written checkpoint sampled on the CPU
#   4. torchrun --nproc_per_node 1 (NCCL), a few steps
#   5. the test suite (tests pick cuda wherever they say --device auto)
#   6. charrnn bench --quick (the CPU paths, on that machine's CPU)
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/gpu.log
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 CHARRNN_MIRROR=$PWD/.gpu CHARRNN_CACHE=/tmp/charrnn-cache
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site
fi
CH=(python3 -m charrnn)
R=/tmp/gpu-runs
step() { echo; echo "==== $* ===="; }
timed() {  # timed LABEL command...: the command's wall time on stderr
  local label=$1 t0=$EPOCHREALTIME; shift
  "$@"; local rc=$?
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$label" 'BEGIN { printf "%s: wall %.2f s\n", l, b - a }' >&2
  return $rc
}
{
step "1. machine"
nvidia-smi -L
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'
lscpu | grep -E "^(Model name|CPU\(s\))"

step "2. bench/gpu.py"
timeout 150 python3 bench/gpu.py .gpu/shakespeare.txt --window 2 --repeats 3

step "3. train --preset large on cuda, sample and beam on cuda, sample the GPU checkpoint on the CPU"
"${CH[@]}" corpus get shakespeare
timed "train" timeout 120 "${CH[@]}" train shakespeare --preset large --time 45 --device cuda -o $R/large --overwrite
for dev in cuda cpu; do
  timed "sample -n 3000 on $dev" "${CH[@]}" sample $R/large -n 3000 --device $dev --seed 1 --temp 0.8 --prime "ROMEO:" > $R/sample-$dev.txt
  head -c 300 $R/sample-$dev.txt; echo; echo "--- ($(wc -c < $R/sample-$dev.txt) bytes)"
done
cmp -s $R/sample-cuda.txt $R/sample-cpu.txt && echo "cuda and cpu samples: identical" || echo "cuda and cpu samples differ (different generators/arithmetic)"
timed "beam --width 5 -n 400 on cuda" "${CH[@]}" beam $R/large --width 5 -n 400 --device cuda --prime "ROMEO:" | head -c 300; echo
"${CH[@]}" eval $R/large .gpu/shakespeare.txt --device cuda 2>&1 | tail -3
"${CH[@]}" eval $R/large .gpu/shakespeare.txt --device cpu 2>&1 | tail -3

step "4. torchrun, one process, NCCL"
NCCL_DEBUG=VERSION timeout 120 torchrun --standalone --nproc_per_node 1 -m charrnn train shakespeare --preset large --steps 60 --device cuda -o $R/ddp --overwrite 2>&1 | tail -8
python3 - <<'PY'
import torch
ck = torch.load("/tmp/gpu-runs/ddp/last.pt", weights_only=True, map_location="cpu")
print("torchrun checkpoint: step", ck.get("step"), "keys", sorted(ck)[:8])
PY
python3 -c 'import torch.distributed as d; print("NCCL available:", d.is_nccl_available())'

step "5. the test suite"
timeout 180 python3 -m pytest -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log" | tail -15

step "6. charrnn bench --quick (CPU paths, this machine's CPU)"
timeout 60 "${CH[@]}" bench --quick --only train --only sample 2>&1 | tail -25
} 2>&1 | tee "$LOG"
