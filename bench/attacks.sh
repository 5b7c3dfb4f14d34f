# Re-run the hostile inputs (attacks) against this checkout and print the table of what each gets:
# attack, command, exit code, traceback, data lost.
#
#   bash bench/attacks.sh > attacks.md          # ~12 minutes on 2 busy cores (the server edges ~6, round 3 ~2)
#
# Every command runs for real (the installed `charrnn` of .venv, real processes, real files) in a
# temporary folder; the corpora come from ../shared/corpora (or CORPORA=DIR). "exit" lists the exit
# code of each command of the row; "traceback" is "none" unless any of their stderr holds one; "data
# lost" is checked, not assumed: the surviving run's checkpoints are loaded and compared.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPORA=${CORPORA:-$ROOT/../shared/corpora}
BIN=${BIN:-$ROOT/.venv/bin}
PY=$BIN/python
C=$BIN/charrnn
W=$(mktemp -d "${TMPDIR:-/tmp}/charrnn-attacks.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
mkdir logs
export CHARRNN_CACHE=$W/cache OMP_NUM_THREADS=1 COLUMNS=200 PYTHONWARNINGS=ignore
T="--hidden 64 --layers 1 --sample-every 0 --threads 1"
head -c 200000 "$CORPORA/shakespeare.txt" > small.txt
head -c 300000 "$CORPORA/linux.txt" > lx.txt

n=0
run() {  # run NAME CMD...: the command's exit code in $rc, its stderr in logs/NAME.err
    local name=$1; shift
    "$@" > "logs/$name.out" 2> "logs/$name.err"
    rc=$?
}
tb() {  # "none" unless one of the named logs holds a traceback
    local f
    for f in "$@"; do grep -q Traceback "logs/$f.err" 2>/dev/null && { echo "YES ($f)"; return; }; done
    echo none
}
row() {  # row NUM ATTACK COMMAND EXITS TRACEBACK LOST
    printf '| %s | %s | `%s` | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" "$6"
}
py() { "$PY" - "$@"; }
step_of() { py "$1" <<'EOF' 2>/dev/null || echo "unloadable"
import sys
from charrnn.training.checkpoint import load_checkpoint
c = load_checkpoint(sys.argv[1])
print(c["step"], c.get("meta", {}).get("corpus"))
EOF
}
wait_file() { local i; for i in $(seq 1 600); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }

echo "| # | attack | command | exit | traceback | data lost |"
echo "| --- | --- | --- | --- | --- | --- |"

# ---- 1. no locking ---------------------------------------------------------------------------------
( $C train small.txt $T --steps 150 --eval-every 5 -o runs/same > /dev/null 2> logs/1a1.err; echo $? > logs/1a1.rc ) &
( $C train lx.txt $T --steps 150 --eval-every 5 -o runs/same > /dev/null 2> logs/1a2.err; echo $? > logs/1a2.rc ) &
wait
got=$(step_of runs/same/last.pt)
refused=$(grep -l "is in use by another charrnn process (pid" logs/1a1.err logs/1a2.err | wc -l)
lost=$([ "${got%% *}" = 150 ] && [ "$refused" = 1 ] && echo "none (one run finished: step ${got}; the other refused in one line, pid named)" || echo "CHECK: $got, refused=$refused")
row 1 "two trains, same -o" "train small.txt … -o runs/same & train lx.txt … -o runs/same" "$(cat logs/1a1.rc) / $(cat logs/1a2.rc)" "$(tb 1a1 1a2)" "$lost"

( $C train small.txt $T --steps 150 --eval-every 5 > /dev/null 2> logs/1b1.err; echo $? > logs/1b1.rc ) &
( $C train small.txt $T --steps 150 --eval-every 5 > /dev/null 2> logs/1b2.err; echo $? > logs/1b2.rc ) &
wait
a=$(step_of checkpoints/small/last.pt); b=$(step_of checkpoints/small-2/last.pt)
lost=$([ "${a%% *}" = 150 ] && [ "${b%% *}" = 150 ] && echo "none (checkpoints/small and small-2 both at step 150)" || echo "CHECK: $a / $b")
row 1 "two runs, same corpus, no -o" "train small.txt … & train small.txt …" "$(cat logs/1b1.rc) / $(cat logs/1b2.rc)" "$(tb 1b1 1b2)" "$lost"

$C train small.txt $T --steps 300 --eval-every 5 -o runs/r1 > /dev/null 2> logs/1c1.err & holder=$!
wait_file runs/r1/last.pt
run 1c2 $C train --resume runs/r1 --steps 400 $T
rc2=$rc; wait $holder; rc1=$?
got=$(step_of runs/r1/last.pt)
row 1 "--resume of a live run" "train --resume runs/r1 (while r1 trains)" "$rc2 (r1: $rc1)" "$(tb 1c1 1c2)" \
    "$([ "${got%% *}" = 300 ] && echo "none (r1 finished: step 300)" || echo "CHECK: $got")"

$C train small.txt $T --steps 300 --eval-every 5 --save-every 10 --keep 3 -o runs/r2 > /dev/null 2> logs/1d1.err & holder=$!
wait_file runs/r2/last.pt
codes=""
for i in 1 2 3 4 5; do run 1d2 $C checkpoints prune runs/r2 --keep 0; codes="$codes$rc "; sleep 0.3; done
wait $holder; rc1=$?
got=$(step_of runs/r2/last.pt)
row 1 "prune in a loop during training" "checkpoints prune runs/r2 --keep 0 (x5)" "${codes% }(r2: $rc1)" "$(tb 1d1 1d2)" \
    "$([ "${got%% *}" = 300 ] && echo "none (r2 finished: step 300)" || echo "CHECK: $got")"

# ---- 2. --overwrite mixes two runs -----------------------------------------------------------------
run 2a $C train lx.txt $T --steps 30 --eval-every 10 --save-every 10 -o runs/ow2
$C train small.txt $T --steps 100000 --eval-every 100000 -o runs/ow2 --overwrite > /dev/null 2> logs/2b.err & pid=$!
for i in $(seq 1 600); do grep -q "small.txt" runs/ow2/config.yaml 2>/dev/null && break; sleep 0.1; done
sleep 1; kill -TERM $pid; wait $pid; rc=$?
best=$(step_of runs/ow2/best.pt); last=$(step_of runs/ow2/last.pt); snaps=$(ls runs/ow2 | grep -c '^step-')
lost=$([ "${best#* }" = small ] && [ "${last#* }" = small ] && [ "$snaps" = 0 ] \
       && echo "none (best.pt and last.pt are the new run's; no old snapshots)" || echo "MIXED: best=$best last=$last snaps=$snaps")
row 2 "--overwrite, SIGTERM before 1st eval" "train small.txt … -o runs/ow2 --overwrite; kill -TERM" "$rc" "$(tb 2a 2b)" "$lost"

# ---- 3. terminal escape injection ------------------------------------------------------------------
ESC=$'\x1b'
for i in $(seq 1 400); do printf 'ROMEO: the night %s]0;pwned\a %s[2J %s]52;c;ZXZpbA==\a is young.\n' "$ESC" "$ESC" "$ESC"; done > esc.txt
run 3a script -qefc "$C train esc.txt $T --steps 40 --sample-every 10 --eval-every 20 -o runs/esc" logs/3a.tty
raw=$(grep -c -e "${ESC}]0;pwned" -e "${ESC}\[2J" -e "${ESC}]52" logs/3a.tty)
row 3 "live sample panel (on a terminal)" "script -c 'train esc.txt --sample-every 10'" "$rc" "$(tb 3a)" \
    "none (raw OSC/clear sequences on the terminal: $raw)"
run 3b $C score runs/esc esc.txt --max-chars 3000
raw=$(cat logs/3b.err logs/3b.out | grep -c -e "${ESC}")
row 3 "score (report on stdout, notes on stderr)" "score runs/esc esc.txt" "$rc" "$(tb 3b)" "none (raw ESC bytes on stdout+stderr: $raw)"
py > /dev/null <<'EOF'
import torch
from charrnn.training.checkpoint import load_checkpoint
from charrnn.training.payload import CHECKSUM_KEY, checksum
c = load_checkpoint("runs/esc/best.pt")
c["meta"]["corpus"] = "\x1b]0;pwned\x07\x1b[2J[/bold]"
c[CHECKSUM_KEY] = {"blake2b": checksum(c)}
import os; os.makedirs("crafted", exist_ok=True); torch.save(c, "crafted/corpus.pt")
EOF
run 3c $C checkpoints show crafted/corpus.pt
raw=$(grep -c "$ESC" logs/3c.out)
row 3 "checkpoints show, crafted meta.corpus" "checkpoints show crafted/corpus.pt" "$rc" "$(tb 3c)" "none (raw ESC on stdout: $raw)"
mkdir -p bsrc && printf 'int a;\n' > bsrc/a.c && printf 'x\0y' > "bsrc/bin${ESC}[2Jary.c"
run 3d $C corpus build bsrc -o built.txt
run 3e $C train "bin${ESC}[2Jary.c"
raw=$(cat logs/3d.err logs/3e.err | grep -c "$ESC")
row 3 "file names in messages" "corpus build bsrc (bin\\x1b[2Jary.c); train bin\\x1b[2Jary.c" "0 / $rc" "$(tb 3d 3e)" "none (raw ESC: $raw)"

# ---- 4. rich markup injection ----------------------------------------------------------------------
py > /dev/null <<'EOF'
import os, torch
from charrnn.training.checkpoint import load_checkpoint
from charrnn.training.payload import CHECKSUM_KEY, checksum
for name, cell in (("link", "[link=https://evil.example/x]lstm[/link]"), ("bold", "[/bold]")):
    c = load_checkpoint("runs/esc/best.pt")
    c["model_config"]["cell"] = cell
    c[CHECKSUM_KEY] = {"blake2b": checksum(c)}
    os.makedirs(f"markup/{name}", exist_ok=True)
    torch.save(c, f"markup/{name}/best.pt")
os.makedirs("markup/good", exist_ok=True)
import shutil; shutil.copy("runs/esc/best.pt", "markup/good/best.pt")
EOF
run 4 $C checkpoints list markup
ok=$(grep -c "lstm 1x64" logs/4.out); bad=$(grep -c unreadable logs/4.out)
row 4 "markup in model_config.cell" "checkpoints list markup/ ([link=…], [/bold])" "$rc" "$(tb 4)" \
    "none (good file listed: $ok row; crafted: $bad 'unreadable' rows, shown as text)"

# ---- 5. output files replace symlinks ---------------------------------------------------------------
printf 'int main(void) { return 0; }\n' > x.c
ln -s /proc/self/fd/1 out.html
run 5a $C score runs/esc x.c --html out.html --no-text
kept=$([ -L out.html ] && grep -q DOCTYPE logs/5a.out && echo "none (out.html still a link; the page went to stdout)" || echo "REPLACED")
row 5 "--html through a link to fd 1" "ln -s /proc/self/fd/1 out.html; score … --html out.html" "$rc" "$(tb 5a)" "$kept"
run 5b $C score runs/esc x.c --html /dev/stdout --no-text
run 5c $C corpus build bsrc -o /dev/stderr
kept=$([ -L /dev/stdout ] && [ -L /dev/stderr ] && grep -q DOCTYPE logs/5b.out && grep -q "int a" logs/5c.err && echo "none (/dev/stdout, /dev/stderr still links; written through)" || echo "REPLACED")
row 5 "--html /dev/stdout, build -o /dev/stderr (root)" "score … --html /dev/stdout; corpus build … -o /dev/stderr" "0 / $rc" "$(tb 5b 5c)" "$kept"

# ---- 6. the token cache trusts its files -------------------------------------------------------------
binof() { py "$1" <<'EOF'
import sys
from charrnn.text.tokens import prepare_corpus
print(prepare_corpus([sys.argv[1]], warn=lambda m: None).path)
EOF
}
bin=$(binof small.txt); head -c "$(stat -c %s "$bin")" /dev/urandom > "$bin"
run 6a $C train small.txt $T --steps 20 --eval-every 20 -o runs/c6a
val=$(grep -o 'val [0-9.]* nats = [0-9.]*' logs/6a.err | tail -1)
row 6 "same-size garbage in the .bin" "train small.txt (garbage .bin)" "$rc" "$(tb 6a)" \
    "none ($(grep -c 'damaged' logs/6a.err) warning, rebuilt; $val bits/char)"
bin=$(binof small.txt); printf '\xff' | dd of="$bin" bs=1 seek=100 conv=notrunc 2>/dev/null
run 6b $C train small.txt $T --steps 1 -o runs/c6b
row 6 "id >= vocabulary in the .bin" "train small.txt (byte 255 at offset 100)" "$rc" "$(tb 6b)" "none ($(grep -c 'damaged' logs/6b.err) warning, rebuilt)"
json=${bin%.bin}.json
py "$json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1])); m["vocab"]["chars"] = m["vocab"]["chars"][::-1]; json.dump(m, open(sys.argv[1], "w"))
EOF
run 6c $C train small.txt $T --steps 1 -o runs/c6c
row 6 "reversed vocabulary .json" "train small.txt (reversed vocab)" "$rc" "$(tb 6c)" "none ($(grep -c 'code-point order' logs/6c.err) warning, rebuilt)"
cp small.txt edit.txt; touch -d '2 hours ago' edit.txt; run 6d0 $C train edit.txt $T --steps 1 -o runs/c6d0
py edit.txt <<'EOF'
import os, sys
st = os.stat(sys.argv[1])
with open(sys.argv[1], "r+b") as f:  # the same inode, the same size, other bytes
    data = f.read().replace(b"Citizen", b"CITIZEN"); f.seek(0); f.write(data)
os.utime(sys.argv[1], ns=(st.st_atime_ns, st.st_mtime_ns))
EOF
run 6d $C train edit.txt $T --steps 1 -o runs/c6d
row 6 "corpus edited in place, mtime restored" "edit in place (same inode, size); restore mtime; train edit.txt" "$rc" "$(tb 6d)" \
    "none (re-encoded: $(grep -c 'encoded in' logs/6d.err), cache hit: $(grep -c 'cached tokens' logs/6d.err))"

# ---- 7. malformed checkpoints -----------------------------------------------------------------------
run 7r $C train small.txt $T --steps 20 --eval-every 10 -o runs/m
py > /dev/null <<'EOF'
import copy, io, os, zipfile, torch
from charrnn.training.checkpoint import load_checkpoint
from charrnn.training.payload import CHECKSUM_KEY, checksum
base = load_checkpoint("runs/m/last.pt")
def save(name, edit, recompute=True):
    c = copy.deepcopy(base); edit(c)
    if recompute: c[CHECKSUM_KEY] = {"blake2b": checksum(c)}
    os.makedirs(f"mal/{name}", exist_ok=True); torch.save(c, f"mal/{name}/last.pt")
save("fv", lambda c: c.__setitem__("format_version", "2"))
save("short", lambda c: c["vocab"].__setitem__("chars", c["vocab"]["chars"][:-3]))
save("v500", lambda c: c["vocab"].__setitem__("chars", "".join(map(chr, range(256, 756)))))
save("metrics", lambda c: c.__setitem__("metrics", [1, 2, 3]))
save("model", lambda c: c.__setitem__("model", [1]))
save("tc", lambda c: c.__setitem__("train_config", {"lr": "fast"}))
save("extra", lambda c: c.__setitem__("extra", {"cursor": "x"}))
save("opt", lambda c: c.__setitem__("optimizer", {"state": {}, "param_groups": [{}]}))
save("step", lambda c: c.__setitem__("step", [1]))
save("h16000", lambda c: c["model_config"].__setitem__("hidden", 16000))
# a deflated zip holding a 256 MB tensor (the issue's was 1 GiB: same shape, less of this machine's memory)
buf = io.BytesIO(); torch.save({**base, "extra": {**base["extra"], "pad": torch.zeros(64 << 20)}}, buf)
with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile("mal/bomb.pt", "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))
EOF
for k in fv short v500; do
  codes=""; tbs=""
  for cmd in sample beam; do run 7$k$cmd $C $cmd mal/$k -n 20 --threads 1; codes="$codes$rc "; tbs="$tbs 7$k$cmd"; done
  run 7${k}eval $C eval mal/$k small.txt --threads 1; codes="$codes$rc"
  row 7 "malformed: $k" "sample / beam / eval mal/$k" "$codes" "$(tb $tbs 7${k}eval)" "none (refused: $(head -c 90 logs/7${k}sample.err | tr '\n' ' ')…)"
done
run 7list $C checkpoints list mal
row 7 "metrics=[1,2,3], model=[1] in a folder" "checkpoints list mal" "$rc" "$(tb 7list)" \
    "none ($(grep -c unreadable logs/7list.out) bad rows, the listing completes)"
codes=""; tbs=""
for k in tc extra opt step; do run 7res$k $C train small.txt --resume mal/$k --steps 30; codes="$codes$rc "; tbs="$tbs 7res$k"; done
row 7 "bad train_config/extra/optimizer/step" "train small.txt --resume mal/{tc,extra,opt,step}" "${codes% }" "$(tb $tbs)" "none (each one error line)"
/usr/bin/time -f "%M" -o logs/7h.rss $C sample mal/h16000 -n 5 > /dev/null 2> logs/7h.err; rc=$?
row 7 "hidden=16000 in a small file" "sample mal/h16000" "$rc" "$(tb 7h)" "none (peak RSS $(( $(tail -1 logs/7h.rss) / 1024 )) MB)"
/usr/bin/time -f "%M" -o logs/7b.rss $C sample mal/bomb.pt -n 5 > /dev/null 2> logs/7b.err; rc=$?
row 7 "$(( $(stat -c %s mal/bomb.pt) / 1024 )) KB deflating to 256 MB" "sample mal/bomb.pt" "$rc" "$(tb 7b)" "none (peak RSS $(( $(tail -1 logs/7b.rss) / 1024 )) MB)"
py runs/m/last.pt > /dev/null <<'EOF'
import random, sys
data = open(sys.argv[1], "rb").read(); rng = random.Random(19)
for i in range(20):
    b = bytearray(data); at = rng.randrange(len(b)); b[at] ^= 1 << rng.randrange(8)
    open(f"mal/flip{i}.pt", "wb").write(bytes(b))
EOF
run 7ref $C sample runs/m/last.pt -n 50 --seed 1 --threads 1
codes=""; same=0; refused=0; wrong=0; tbs=""
for i in $(seq 0 19); do
  run 7f$i $C sample mal/flip$i.pt -n 50 --seed 1 --threads 1; tbs="$tbs 7f$i"
  if [ $rc = 0 ]; then cmp -s logs/7f$i.out logs/7ref.out && same=$((same+1)) || wrong=$((wrong+1)); else refused=$((refused+1)); fi
done
row 7 "20 random byte flips" "sample mal/flipN.pt" "1 x$refused, 0 x$same" "$(tb $tbs)" "none ($refused refused; $same unharmed (same text); $wrong wrong)"

# ---- 8. absurd numbers ------------------------------------------------------------------------------
absurd() {  # absurd LABEL ARGS...: one row per absurd number
    local label=$1; shift
    run 8x "$@"
    local shown="$*"
    row 8 "$label" "${shown//$C/charrnn}" "$rc" "$(tb 8x)" "none ($(grep -m1 '^error' logs/8x.err | cut -c1-90)…)"
}
printf 'corpus: small.txt\nlog_every: 0\n' > log0.yaml
absurd "--threads 100000" $C sample runs/m --threads 100000
absurd "--threads 100000" $C train small.txt --threads 100000 --steps 1 -o runs/a
absurd "--threads 100000" $C eval runs/m small.txt --threads 100000
absurd "--threads 100000" $C beam runs/m --threads 100000
absurd "--seed 1e20" $C sample runs/m --seed 99999999999999999999
absurd "--threads 1e20" $C train small.txt --threads 99999999999999999999 -o runs/a
absurd "--epochs inf" $C train small.txt $T --epochs inf -o runs/a
absurd "log_every: 0" $C train --config log0.yaml $T -o runs/a
absurd "-N 10000000" $C sample runs/m -N 10000000 --threads 1
absurd "--width 100000000" $C beam runs/m --width 100000000 --threads 1
absurd "--hidden 100000" $C train small.txt --hidden 100000 --threads 1 -o runs/a
absurd "--embed 1e8" $C train small.txt --embed 100000000 --threads 1 -o runs/a
absurd "--layers 100000000" $C train small.txt --layers 100000000 --threads 1 -o runs/a
absurd "--temp nan" $C sample runs/m --temp nan
absurd "--lr inf" $C train small.txt $T --lr inf --steps 3 -o runs/a
absurd "--lr 1e30" $C train small.txt $T --lr 1e30 --steps 3 -o runs/a
absurd "--eval-chars -1" $C train small.txt $T --eval-chars -1 -o runs/a
absurd "--weight-decay -1" $C train small.txt $T --weight-decay -1 -o runs/a
absurd "--length-penalty nan" $C beam runs/m --length-penalty nan
absurd "beam --top 0" $C beam runs/m --top 0
run 8u bash -c "ulimit -v 2000000; exec $C train small.txt --hidden 2048 --layers 3 --threads 1 --steps 1 -o runs/u"
row 8 "ulimit -v 2 GB, a 2048x3 model" "ulimit -v 2000000; train small.txt --hidden 2048 --layers 3" "$rc" "$(tb 8u)" "none ($(grep -m1 '^error' logs/8u.err | cut -c1-90)…)"
[ -e runs/u ] && echo "| 8 | (refused start) | | | | CHECK: runs/u exists |"
[ -e runs/a ] && echo "| 8 | (refused starts) | | | | CHECK: runs/a exists |"

# ---- 9. signals leave big temporaries ---------------------------------------------------------------
mkfifo in.fifo
"$PY" -c "import sys, time; sys.stdout.buffer.write(b'some text that keeps coming\n' * 100000); sys.stdout.flush(); time.sleep(120)" > in.fifo & feeder=$!
$C train - $T --steps 1 -o runs/s9 < in.fifo > /dev/null 2> logs/9a.err & pid=$!
for i in $(seq 1 300); do ls "$CHARRNN_CACHE"/spool/.stdin.* > /dev/null 2>&1 && break; sleep 0.1; done
kill -TERM $pid; wait $pid; rc=$?; kill $feeder 2>/dev/null; wait $feeder 2>/dev/null
left=$(find "$CHARRNN_CACHE" -name '*.tmp' | wc -l)
row 9 "SIGTERM while spooling stdin" "yes … | train - ; kill -TERM" "$rc" "$(tb 9a)" "none (temporaries left: $left)"
for i in 1 2 3 4 5 6 7 8; do cat "$CORPORA/linux.txt"; done > big.txt
$C train big.txt $T --steps 1 -o runs/s9b > /dev/null 2> logs/9b.err & pid=$!
for i in $(seq 1 600); do ls "$CHARRNN_CACHE"/tokens/.*.tmp > /dev/null 2>&1 && break; sleep 0.05; done
size=$(du -cb "$CHARRNN_CACHE"/tokens/.*.tmp 2>/dev/null | tail -1 | cut -f1)
kill -TERM $pid; wait $pid; rc=$?
left=$(find "$CHARRNN_CACHE" -name '*.tmp' | wc -l)
row 9 "SIGTERM during cache encoding" "train big.txt (64 MB); kill -TERM" "$rc" "$(tb 9b)" "none (${size:-0} bytes of temporary at the kill; left: $left)"
$C train big.txt $T --steps 1 -o runs/s9c > /dev/null 2> logs/9c.err & pid=$!
for i in $(seq 1 600); do ls "$CHARRNN_CACHE"/tokens/.*.tmp > /dev/null 2>&1 && break; sleep 0.05; done
kill -KILL $pid; wait $pid; rc=$?
before=$(find "$CHARRNN_CACHE" -name '*.tmp' | wc -l)
run 9d $C train small.txt $T --steps 1 -o runs/s9d
left=$(find "$CHARRNN_CACHE" -name '*.tmp' | wc -l)
row 9 "SIGKILL during encoding, then any start" "kill -KILL; train small.txt" "$rc / 0" "$(tb 9c 9d)" "none (temporaries after the kill: $before; after the next start: $left)"

# ---- 10. prune deletes what is not ours ---------------------------------------------------------------
mkdir -p other/exp && echo precious > other/exp/step-000100.pt && cp -r runs/m other/run && echo precious > other/run/step-000010.pt
run 10a $C checkpoints prune other --keep 0
kept=$(cat other/exp/step-000100.pt other/run/step-000010.pt | grep -c precious)
row 10 "prune of files that are not ours" "echo precious > other/exp/step-000100.pt; checkpoints prune other --keep 0" "$rc" "$(tb 10a)" "none ($kept/2 precious files kept)"
run 10b $C checkpoints prune / --keep 0
row 10 "prune /" "checkpoints prune / --keep 0" "$rc" "$(tb 10b)" "none (refused before looking)"

# ---- 11. corpus build follows symlinks out of the tree ------------------------------------------------
mkdir -p src/a && printf 'int main;\n' > src/a/main.c && ln -s /etc/passwd src/a/passwd.c
run 11 $C corpus build src --glob '**/*.c' -o tree.txt
row 11 "symlink to /etc/passwd in the tree" "ln -s /etc/passwd src/a/passwd.c; corpus build src -o tree.txt" "$rc" "$(tb 11)" \
    "none (root: lines in the corpus: $(grep -c '^root:' tree.txt); $(grep -o '1 symlinks out of the tree' logs/11.err | head -1))"

# ---- 12. a 200,000-character vocabulary -------------------------------------------------------------
py > wide.txt <<'EOF'
import sys
chars = [chr(c) for c in range(0x4E00, 0x4E00 + 200_000 + 2048) if not 0xD800 <= c < 0xE000][:200_000]
sys.stdout.write("".join(chars) + "".join(chars[:1000]))
EOF
run 12 $C train wide.txt --hidden 16 --embed 8 --layers 1 --threads 1 -b 1 -t 8 --steps 1 --eval-chars 100 --sample-every 0 -o runs/wide
row 12 "200,000 distinct characters" "train wide.txt …" "$rc" "$(tb 12)" "none (warned: $(grep -o 'training needs about [0-9.]* [KMG]B' logs/12.err | head -1))"

# ---- 13. minor ----------------------------------------------------------------------------------------
echo 'Zebras quietly vex. ☃ ☃ ☃' > new.txt
run 13a $C train new.txt --init-from runs/m -o runs/ft --threads 1
row 13 "refused --init-from" "train new.txt --init-from runs/m -o runs/ft" "$rc" "$(tb 13a)" "none (runs/ft exists: $([ -e runs/ft ] && echo yes || echo no))"
touch notadir; run 13b env CHARRNN_CACHE=$W/notadir $C train small.txt $T --steps 1 -o runs/b
row 13 "cache path is a file" "CHARRNN_CACHE=notadir train …" "$rc" "$(tb 13b)" "none ($(grep -m1 '^error' logs/13b.err | grep -o 'a file or folder is in the way'))"
ln -s /dev/zero zero.pt; run 13d $C sample zero.pt
row 13 "a checkpoint path that is /dev/zero" "sample zero.pt" "$rc" "$(tb 13d)" "none ($(grep -m1 '^error' logs/13d.err | cut -c1-70))"
run 13e $C train small.txt $T --steps 1 -o /; rc1=$rc
run 13f $C train small.txt $T --steps 1 -o ""
row 13 "-o / and -o ''" "train … -o / ; train … -o ''" "$rc1 / $rc" "$(tb 13e 13f)" "none (refused)"
mkdir -p mirror && head -c 100 "$CORPORA/shakespeare.txt" > mirror/shakespeare.txt
run 13g env CHARRNN_CORPORA=$W/corpora $C corpus get shakespeare --mirror mirror
row 13 "mirror of the wrong size" "corpus get shakespeare --mirror mirror" "$rc" "$(tb 13g)" "none (nothing copied: $([ -e corpora/shakespeare.txt ] && echo no || echo yes))"

# ---- 33. the server's edges (issue 33: items 2-4 and idle connections) ---------------------------------
# Each group against a fresh `charrnn serve runs/m` (its peak RSS read from /proc); edge.py prints the rows.
cat > edge.py <<'EOF'
import json, shutil, socket, subprocess, sys, threading, time

C, RUN = sys.argv[1], sys.argv[2]
GOOD = json.dumps({"prompt": "the", "max_tokens": 5}).encode()


def serve(run):
    p = subprocess.Popen([C, "serve", run, "--port", "0", "--threads", "1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, errors="backslashreplace")
    port = int(p.stderr.readline().split(" at http://127.0.0.1:")[1].split("/")[0])
    log = []
    threading.Thread(target=lambda: [log.append(line) for line in p.stderr], daemon=True).start()
    return p, port, log


def stop(p, log):
    p.terminate(); p.wait(); time.sleep(0.3)
    return "YES" if any("Traceback" in line for line in log) else "none"


def peak_mb(p):
    return next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmHWM")) // 1024


def ask(port, head, body=b"", timeout=60):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(head.replace("PORT", str(port)).replace("\n", "\r\n").encode() + b"\r\n" + body)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
            if b"}" in got.partition(b"\r\n\r\n")[2][-2:]:
                break
    except OSError:
        pass
    s.close()
    return int(got.split(b" ")[1]) if got.startswith(b"HTTP/1.1 ") else 0, got.partition(b"\r\n\r\n")[2]


def row(*cells):
    print("\t".join(map(str, cells)))


def who_asks():
    p, port, log = serve(RUN)
    forged, _ = ask(port, "GET /%0d%0a127.0.0.1:1%20GET%20/admin%20200%200.00s%20FORGED HTTP/1.1\nHost: 127.0.0.1:PORT\n")
    clear, _ = ask(port, "GET /%1b%5b2J HTTP/1.1\nHost: 127.0.0.1:PORT\n")
    time.sleep(0.3)
    raw = sum(any(c in line.rstrip("\n") for c in "\r\n\x1b") for line in log)
    logged = next((l.strip() for l in log if "FORGED" in l), "?")[:70]
    evil, body = ask(port, "GET /v1/models HTTP/1.1\nHost: evil.example\n")
    post = "POST /v1/completions HTTP/1.1\nHost: {}\nOrigin: {}\nContent-Type: text/plain\nContent-Length: %d\n" % len(GOOD)
    cross, cbody = ask(port, post.format("127.0.0.1:PORT", "http://evil.example"), GOOD)
    rebound, rbody = ask(port, post.format("evil.example:PORT", "http://evil.example:PORT"), GOOD)
    tb = stop(p, log)
    row("33.2", "request-log injection", "curl '…/%0d%0a127.0.0.1:1%20GET%20/admin%20200%200.00s%20FORGED'; curl '…/%1b%5b2J'",
        f"HTTP {forged} / {clear}", tb, f"none (raw CR, LF or ESC in the server log: {raw}; logged as: {logged}…)")
    row("33.2", "Host: evil.example", "curl -H 'Host: evil.example' …/v1/models", f"HTTP {evil}", tb,
        f"none ({json.loads(body)['error']['message'][:60]}…)")
    row("33.2", "cross-origin text/plain POST", "curl -H 'Origin: http://evil.example' -H 'Content-Type: text/plain' "
        "-d '{\"prompt\": \"the\"…}' …/v1/completions", f"HTTP {cross}", tb,
        f"none (generated text in the answer: {'yes' if b'choices' in cbody else 'no'})")
    row("33.2", "DNS rebinding", "the same with Host: evil.example:PORT, Origin: http://evil.example:PORT",
        f"HTTP {rebound}", tb, f"none (generated text in the answer: {'yes' if b'choices' in rbody else 'no'})")


def leaving():
    shutil.copytree(RUN, "runs/gone")
    p, port, log = serve("runs/gone")
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    time.sleep(0.2); s.close(); time.sleep(0.3)
    left = next((l.strip() for l in log if "POST" in l), "?")
    busy = json.loads(ask(port, "GET /health HTTP/1.1\nHost: 127.0.0.1\n")[1])["requests"]
    shutil.rmtree("runs/gone")
    models, _ = ask(port, "GET /v1/models HTTP/1.1\nHost: 127.0.0.1\n")
    completion, _ = ask(port, "POST /v1/completions HTTP/1.1\nHost: 127.0.0.1\nContent-Length: %d\n" % len(GOOD), GOOD)
    tb = stop(p, log)
    row("33.3", "client closes mid-upload", "Content-Length: 100000, 1,000 bytes sent, close",
        f"HTTP {left.split()[3]} (log)", tb, f"none (log: {left.split(' ', 1)[1]}; requests running after: {busy})")
    row("33.3", "run folder deleted while served", "rm -rf runs/gone; curl …/v1/models", f"HTTP {models}", tb,
        f"none (completions still: HTTP {completion}; 500s in the log: {sum(' 500 ' in l for l in log)})")


def big_headers():
    p, port, log = serve(RUN)
    before, codes, t0 = peak_mb(p), [0] * 4, time.time()

    def one(i):
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            for _ in range(100):
                s.sendall(b"a" * (1 << 20))
        except OSError:
            pass
        s.settimeout(10)
        try:
            codes[i] = int(s.recv(100).split(b" ")[1])
        except (OSError, IndexError):
            pass
        s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    [t.start() for t in threads]; [t.join() for t in threads]
    seconds, after = time.time() - t0, peak_mb(p)
    tb = stop(p, log)
    row("33.4", "4 × 100 MB headers", "4 connections, each 'X-Big: ' + 100 MB", "HTTP " + " ".join(map(str, codes)), tb,
        f"none (refused in {seconds:.1f} s; server peak RSS {before} → {after} MB)")


HOLD = r'''
import socket, sys, time, selectors
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) for _ in range(int(sys.argv[2]))]
print(len(socks), flush=True); sys.stdin.readline(); t0 = time.time()
sel = selectors.DefaultSelector(); [sel.register(s, selectors.EVENT_READ) for s in socks]; left = len(socks)
while left and time.time() - t0 < 20:
    for key, _ in sel.select(timeout=0.5):
        try: gone = not key.fileobj.recv(1)
        except OSError: gone = True
        if gone: sel.unregister(key.fileobj); left -= 1
print(len(socks) - left, round(time.time() - t0, 1), flush=True)
'''


def idle():
    p, port, log = serve(RUN)
    before = peak_mb(p)
    kids = [subprocess.Popen([sys.executable, "-c", HOLD, str(port), "7000"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for _ in range(3)]
    held = sum(int(k.stdout.readline()) for k in kids)
    t0 = time.time()
    code, _ = ask(port, "GET /health HTTP/1.1\nHost: 127.0.0.1\n")
    answered = time.time() - t0
    for k in kids:
        k.stdin.write("\n"); k.stdin.flush()
    closed = [k.stdout.readline().split() for k in kids]
    [k.wait() for k in kids]
    s, t0 = socket.create_connection(("127.0.0.1", port)), time.time()
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line that ends it
    s.settimeout(30)
    slow = s.recv(100).split(b" ")[1].decode()
    waited = time.time() - t0
    s.close()
    after = peak_mb(p)
    tb = stop(p, log)
    row("33", f"{held:,} idle connections", "3 processes × 7,000 connections that send nothing; then curl …/health",
        f"HTTP {code} in {answered:.2f} s", tb, f"none (closed by the server: {sum(int(c[0]) for c in closed):,} "
        f"within {max(float(c[1]) for c in closed)} s; server peak RSS {before} → {after} MB)")
    row("33", "a request head never finished", "GET /health … (no blank line), then wait", f"HTTP {slow}", tb,
        f"none (answered and closed after {waited:.1f} s)")


{"who": who_asks, "leaving": leaving, "headers": big_headers, "idle": idle}[sys.argv[3]]()
EOF
for group in who leaving headers idle; do
  "$PY" edge.py "$C" runs/m $group 2> logs/33$group.err | while IFS=$'\t' read -r a b c d e f; do row "$a" "$b" "$c" "$d" "$e" "$f"; done
done

# ---- round 3: memory and inputs (issue 33: items 1, 5, 6, 8, 9, 10 and the config decision; item 7: a test) -------------------
# "data lost" holds what was measured: peak RSS (GNU time) where memory was the issue, else the outcome.
t3=$SECONDS; i=0
timed() {  # timed NAME CMD...: run CMD under GNU time: exit code in $rc, peak RSS in logs/NAME.rss
  local name=$1; shift
  /usr/bin/time -f "%M" -o "logs/$name.rss" "$@" > "logs/$name.out" 2> "logs/$name.err"
  rc=$?
}
peak() { echo $(( $(tail -1 "logs/$1.rss") / 1024 )); }
run r3w $C train "$CORPORA/shakespeare.txt" --tokens word --steps 20 --threads 1 --sample-every 0 -o runs/w3
V=$(py <<<'import torch; print(torch.load("runs/w3/best.pt", weights_only=True)["model_config"]["vocab_size"])')
py > /dev/null <<'EOF'
open("dots25k.txt", "w").write(". " * 25000)
open("dots75k.txt", "w").write(". " * 75000)
open("line2m.txt", "w").write("the quick brown fox " * 100000 + "\n")
EOF
for j in $(seq 1 11); do cat small.txt; done | head -c 2100000 > prime2m.txt  # (only characters runs/m knows)
for k in 25 75; do
  timed r3p$k $C sample runs/w3 --prime-file dots${k}k.txt -N 4 -n 5 --threads 1
  row R3.1 "word model (V $V), prime '. ' x ${k},000, 4 samples" "sample runs/w3 --prime-file dots${k}k.txt -N 4 -n 5" \
      "$rc" "$(tb r3p$k)" "peak RSS $(peak r3p$k) MB (issue: $([ $k = 25 ] && echo 6.6 || echo 19) GB)"
done
timed r3pb $C beam runs/w3 --prime-file dots75k.txt --width 16 -n 5 --threads 1
row R3.1 "word model, prime '. ' x 75,000, 16 beams" "beam runs/w3 --prime-file dots75k.txt --width 16 -n 5" "$rc" \
    "$(tb r3pb)" "peak RSS $(peak r3pb) MB"
py "$C" > logs/r3srv.out 2> logs/r3srv.err <<'EOF'
import json, subprocess, sys, threading, urllib.request
p = subprocess.Popen([sys.argv[1], "serve", "runs/w3", "--port", "0", "--threads", "1"], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True, errors="backslashreplace")
port = int(p.stderr.readline().split(" at http://127.0.0.1:")[1].split("/")[0])
log = []
threading.Thread(target=lambda: [log.append(line) for line in p.stderr], daemon=True).start()
hwm = lambda: next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmHWM")) // 1024
before, body = hwm(), json.dumps({"prompt": ". " * 5000, "n": 16, "max_tokens": 1}).encode()
codes = []
for _ in range(2):
    try:
        codes.append(urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body),
                                            timeout=300).status)
    except urllib.error.HTTPError as e:
        codes.append(e.code)
after = hwm()
p.terminate(); p.wait()
print(" ".join(map(str, codes)), "YES" if any("Traceback" in line for line in log) else "none", before, after)
EOF
read -r c1 c2 srvtb b a < logs/r3srv.out
row R3.1 "served word model: '. ' x 5,000, n 16, twice" "POST /v1/completions {prompt: '. ' x 5000, n: 16, max_tokens: 1}" \
    "HTTP $c1 $c2" "$srvtb" "server peak RSS $b → $a MB (issue: 0.35 → 5.5 GB)"
mkdir -p mal3 && $C checkpoints export runs/m/best.pt -o mal3/good.safetensors > /dev/null 2>&1
py > /dev/null <<'EOF'
import sys, torch
from safetensors import safe_open
from safetensors.torch import load, save
sys.setrecursionlimit(100000)  # (pickle writes nested lists recursively; torch's loader reads them without)
ck = torch.load("runs/m/last.pt", weights_only=True)
deep = top = []
for _ in range(20000):
    deep.append([])
    deep = deep[0]
torch.save({**ck, "meta": {**ck["meta"], "deep": top}}, "mal3/deep.pt")
with safe_open("mal3/good.safetensors", "pt") as f:
    meta = f.metadata()
meta["meta"] = "[" * 100000 + "]" * 100000
open("mal3/deep.safetensors", "wb").write(save(load(open("mal3/good.safetensors", "rb").read()), meta))
EOF
for f in deep.safetensors deep.pt; do
  codes=""; tbs=""
  for cmd in "sample mal3/$f -n 5" "beam mal3/$f -n 5" "eval mal3/$f small.txt" "score mal3/$f small.txt" \
             "cells mal3/$f small.txt" "checkpoints show mal3/$f" "checkpoints export mal3/$f -o x.safetensors" \
             "train small.txt --init-from mal3/$f --steps 1 -o runs/i3" "chat mal3/$f" "serve mal3/$f --port 0"; do
    i=$((i + 1)); run r3n$i timeout 120 $C $cmd < /dev/null; codes="$codes$rc "; tbs="$tbs r3n$i"
  done
  row R3.5 "$f: metadata nested $([ $f = deep.pt ] && echo 20,000 || echo 100,000) deep" \
      "sample, beam, eval, score, cells, checkpoints show/export, train --init-from, chat, serve" "${codes% }" "$(tb $tbs)" \
      "none ($(grep -m1 -o 'is damaged: .*deep' logs/r3n$i.err))"
done
run r3list $C checkpoints list mal3
row R3.5 "a folder with both and a good one" "checkpoints list mal3" "$rc" "$(tb r3list)" \
    "none ($(grep -c unreadable logs/r3list.out) unreadable rows, $(grep -c 'lstm 1x64' logs/r3list.out) good; the list completes)"
for cmd in sample beam; do
  timed r3l$cmd $C $cmd runs/m --prime-file prime2m.txt -n 20 --threads 1
  row R3.6 "2.1 MB --prime-file (char model)" "$cmd runs/m --prime-file prime2m.txt -n 20" "$rc" "$(tb r3l$cmd)" \
      "peak RSS $(peak r3l$cmd) MB (issue: oneDNN could not create a primitive)"
done
timed r3lchat $C chat runs/m -n 20 --threads 1 < line2m.txt
row R3.6 "a 2 M-character line typed into chat" "chat runs/m -n 20 < line2m.txt" "$rc" "$(tb r3lchat)" \
    "peak RSS $(peak r3lchat) MB; answered: $([ -s logs/r3lchat.out ] && echo yes || echo no)"
run r3g0 $C sample runs/m --prime "First" -n 200 --seed 3 --temp 0
for args in "--top-p 1e-50" "--temp 1e-46 --top-k 5" "--top-p 1e-300 --temp 0.5"; do
  i=$((i + 1)); run r3g$i $C sample runs/m --prime "First" -n 200 --seed 3 $args
  row R3.8 "tiny top_p / temperature" "sample runs/m -n 200 $args" "$rc" "$(tb r3g$i)" \
      "$(cmp -s logs/r3g$i.out logs/r3g0.out && echo "none (the greedy text, as --temp 0)" || echo "DIFFERS from --temp 0")"
done
for dev in /dev/zero /dev/urandom; do
  s0=$SECONDS; run r3s timeout 60 $C corpus stats $dev
  row R3.9 "an endless device" "corpus stats $dev" "$rc" "$(tb r3s)" \
      "none (refused in $((SECONDS - s0)) s: $(grep -m1 -o 'has NUL bytes[^:]*' logs/r3s.err))"
done
s0=$SECONDS; run r3z bash -c "head -c 100000000 /dev/zero | $C corpus stats -"
row R3.9 "an endless stream on stdin" "head -c 100000000 /dev/zero | corpus stats -" "$rc" "$(tb r3z)" \
    "none (refused in $((SECONDS - s0)) s)"
s0=$SECONDS; timed r3b $C beam runs/m --width 1000000 -n 500
row R3.10 "a million beams over 500 tokens" "beam runs/m --width 1000000 -n 500" "$rc" "$(tb r3b)" \
    "none (refused in $((SECONDS - s0)) s, peak RSS $(peak r3b) MB: $(grep -m1 -o 'is [0-9,]* beam-steps' logs/r3b.err))"
run r3c1 $C chat runs/m --beam 5 -n 30 --threads 1 < /dev/null; rc1=$rc
printf '/beam 1000000\n/length 500\n/beam 3\nFirst\n' > chat3.txt
run r3c2 $C chat runs/m -n 30 --threads 1 < chat3.txt
row R3.10 "chat --beam 5; /beam 1000000 in a chat" "chat runs/m --beam 5; chat runs/m < (/beam 1000000, /beam 3, a line)" \
    "$rc1 / $rc" "$(tb r3c1 r3c2)" \
    "none ($(grep -c 'beam-steps' logs/r3c2.err) refusal in chat; it answered after /beam 3: $([ -s logs/r3c2.out ] && echo yes || echo no))"
printf 'corpus: /etc/passwd\nsteps: 3\nsample_every: 0\nthreads: 1\nhidden: 16\nlayers: 1\n' > shared.yaml
run r3cfg $C train --config shared.yaml -o runs/cfg3
row R3.c "a shared config naming /etc/passwd" "train --config shared.yaml (corpus: /etc/passwd)" "$rc" "$(tb r3cfg)" \
    "read, and said first: '$(head -1 logs/r3cfg.err | cut -c1-110)'"
run r3rep $C train --config runs/cfg3/config.yaml -o runs/cfg3b
row R3.c "repeat a run from its config.yaml" "train --config runs/cfg3/config.yaml" "$rc" "$(tb r3rep)" \
    "none (repeated: $([ -e runs/cfg3b/last.pt ] && echo yes || echo no))"
echo "| R3 | (the round 3 rows took $((SECONDS - t3)) s) | | | | |"
