#!/usr/bin/env bash
# The GPU check: one prepared script for a session on the GPU machine (H100/H200, CUDA 13
# driver, PyTorch + timm installed, no Rust). Run from the repository root:
#
#   bash scripts/gpu-check.sh              # on the GPU machine, with the binary at carry/repro
#   bash scripts/gpu-check.sh --dry-run    # anywhere: the same steps on the CPU at toy sizes
#
# It runs, each step under its own time limit and all within BUDGET (7.5 minutes), in order of
# importance (later steps are skipped, and recorded as skipped, once the budget runs out):
#   0. stream: one device and one stream (work queued on a worker thread, read on the main one);
#   1. parity: the same seeded weights and input on the CPU and the GPU (logits in inference and
#      training mode, every gradient as a relative L2 difference, the five worst), the four
#      networks at 139 px, f32, then Inception-v4 in tf32;
#   2. repro training images/s of the four networks at 299 px, batch 32, in each of repro's
#      precisions (f32, tf32), with the time of each phase of the step;
#   3. the same with PyTorch + timm on the same GPU (tools/gpu_check.py), f32, tf32, bf16
#      autocast, training and evaluation;
#   4. repro evaluation crops/s at 299 px, batch 128;
#   5. `repro run experiments/fig23.yaml --smoke` on the GPU, end to end; then, on two or more
#      GPUs, data-parallel training through NCCL under torchrun against one process accumulating
#      two micro-batches (one GPU: recorded as not run, since NCCL is never called by one rank);
# and writes under $OUT (default ./gpu-check-out) as it goes: results.jsonl (every number, a line
# per timed iteration, one per step with its exit status), summary.md (parity verdicts, the
# repro/PyTorch ratios, the phases, GPU utilisation), log.txt, env.txt, dmon.txt (nvidia-smi
# dmon: utilisation and memory every second), smoke.tar.gz. A step that fails or runs out of
# time is recorded and the next one runs.
#
# Environment: REPRO_BIN (default carry/repro, unpacked from carry/repro.gz if absent; both
# written by scripts/build-cuda.sh), OUT, BUDGET (seconds, default 450),
# REPRO_PRECISIONS (repro's training precisions, default "f32 tf32"; add bf16 once convolutions
# honour it), STEPS (timed steps, default 5).
set -uo pipefail

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
BIN=${REPRO_BIN:-carry/repro}
# A session carries carry/repro.gz (the plain binary is over the 64 MiB a session carries).
if [ ! -x "$BIN" ] && [ -f "$BIN.gz" ]; then
  mkdir -p "$(dirname "$BIN")" && gzip -dc "$BIN.gz" >"$BIN.tmp" && chmod +x "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
fi
[ -x "$BIN" ] || { echo "gpu-check: no binary at $BIN (build it with scripts/build-cuda.sh)" >&2; exit 2; }
RESULTS=$OUT/results.jsonl
LOG=$OUT/log.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: >"$RESULTS"
: >"$LOG"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if [ "$DRY" = 1 ]; then
  DEV=cpu; TDEV=cpu; SIZE=75; PSIZE=75; BATCH=2; EBATCH=2; STEPS=${STEPS:-1}; WARM=1; WIDTH=0.125
  MODELS=inception_v3,inception_resnet_v2; TMODELS=inception_v3; PREC=${REPRO_PRECISIONS:-f32}
  TPREC=f32; PARITY_DEV=cpu
else
  DEV=cuda:0; TDEV=cuda; SIZE=299; PSIZE=139; BATCH=32; EBATCH=128; STEPS=${STEPS:-5}; WARM=2; WIDTH=1
  MODELS=inception_v3,inception_v4,inception_resnet_v1,inception_resnet_v2
  TMODELS=inception_v3,inception_v4,inception_resnet_v2; PREC=${REPRO_PRECISIONS:-f32 tf32}
  TPREC=f32,tf32,bf16; PARITY_DEV=cuda:0
fi

# The CUDA libraries the binary needs (libcublas, libcublasLt, libcudart, libcurand, libnvrtc;
# libcudnn with the cudnn feature) come from PyTorch's NVIDIA wheels; libcuda.so.1 from the driver.
NV=$("$PY" - <<'EOF' 2>/dev/null
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = []
for root in nvidia.__path__:
    dirs += sorted(d for d in glob.glob(os.path.join(root, "*", "lib")) if os.path.isdir(d))
print(":".join(dirs))
EOF
)
[ -n "$NV" ] && export LD_LIBRARY_PATH=$NV${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# On the build machine, the wheels scripts/build-cuda.sh installed fill any gap (after the above).
for CACHE_LIB in "${REPRO_CUDA_CACHE:-$HOME/.cache/repro/cuda}"/py/nvidia/*/lib; do
  [ -d "$CACHE_LIB" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$CACHE_LIB
done
# (ldd's output is read whole: `ldd | grep -q` fails under pipefail when grep stops early.)
if [ "$DRY" = 1 ] && grep -q 'libcuda.so.1 => not found' <<<"$(ldd "$BIN" 2>/dev/null)"; then
  # Dry run of a CUDA build on a machine without a driver: the link stub stands in for
  # libcuda.so.1 so the binary starts; it is never used for GPU work.
  STUB=${REPRO_CUDA_CACHE:-$HOME/.cache/repro/cuda}/link/lib/libcuda.so
  mkdir -p "$WORK/stub" && ln -sf "$STUB" "$WORK/stub/libcuda.so.1"
  export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$WORK/stub
fi

log() { echo "== $(date +%T) $*" | tee -a "$LOG" >&2; }
# step NAME SECONDS CMD...: runs CMD under a time limit; its JSON lines go to results.jsonl,
# everything to log.txt; records the exit status and duration.
# The whole script keeps inside BUDGET seconds (default 450): each step gets at most what is
# left, and steps are skipped (recorded as rc -1) once less than 15 s remain.
BUDGET=${BUDGET:-450}
START=$SECONDS
step() {
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 15 ]; then
    log "$name: skipped, time budget spent"
    printf '{"kind":"step","name":"%s","rc":-1,"seconds":0}\n' "$name" >>"$RESULTS"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$name (limit $limit s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2> >(tee -a "$LOG" >&2) | tee -a "$LOG" | grep --line-buffered '^{' >>"$RESULTS"
  local rc=${PIPESTATUS[0]}
  printf '{"kind":"step","name":"%s","rc":%d,"seconds":%d}\n' "$name" "$rc" $((SECONDS - t0)) >>"$RESULTS"
  log "$name: exit $rc after $((SECONDS - t0)) s"
}
# skipped NAME WHY: records a step that cannot run here.
skipped() {
  log "$1: not run ($2)"
  "$PY" -c 'import json,sys; print(json.dumps({"kind":"step","name":sys.argv[1],"rc":-2,"seconds":0,"note":"not run: "+sys.argv[2]}))' "$1" "$2" >>"$RESULTS"
}
envline() { "$PY" -c 'import json,sys; print(json.dumps({"kind":"env","what":sys.argv[1],"value":sys.argv[2]}))' "$1" "$2" >>"$RESULTS"; }

{
  echo "date: $(date -Is)"; echo "host: $(uname -a)"; echo "binary: $BIN"
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  echo "--- ldd $BIN"; ldd "$BIN" 2>&1
  echo "--- LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  "$PY" -c 'import torch, timm; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "timm", timm.__version__, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' 2>&1
} >"$OUT/env.txt"
envline mode "$([ "$DRY" = 1 ] && echo 'dry run on the CPU at toy sizes (repro at width 0.125, timm at width 1: ratios mean nothing)' || echo "GPU check, device $DEV")"
envline binary "$("$BIN" --version 2>&1 | head -n1)"
envline gpu "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1 || echo none)"
envline torch "$("$PY" -c 'import torch, timm; print(torch.__version__, "timm", timm.__version__)' 2>&1 | tail -n1)"
if grep -q 'not found' <<<"$(ldd "$BIN" 2>&1)"; then
  log "missing shared libraries:"; ldd "$BIN" | grep 'not found' | tee -a "$LOG"
fi

# GPU utilisation and memory, every second, for the whole check.
DMON_PID=
if command -v nvidia-smi >/dev/null 2>&1 && [ "$DRY" != 1 ]; then
  nvidia-smi dmon -s um -o T >"$OUT/dmon.txt" 2>&1 &
  DMON_PID=$!
fi
trap '[ -n "$DMON_PID" ] && kill "$DMON_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

# In order of importance, since later steps are skipped if time runs out.
# 0. One device, one stream: everything after relies on it.
step stream 30 "$BIN" bench stream --device "$PARITY_DEV"

# 1. Parity (f32, then tf32).
step parity-f32 90 "$BIN" bench parity --device "$PARITY_DEV" --models "$MODELS" --size "$PSIZE" --batch 2 --width "$WIDTH"
if [ "$DRY" = 1 ]; then
  skipped parity-tf32 "tf32 is CUDA only"
else
  step parity-tf32 40 "$BIN" bench parity --device "$PARITY_DEV" --precision tf32 --models inception_v4 --size "$PSIZE" --batch 2
fi

# 2. repro training images/s, one process per network (a failure or an out-of-memory in one
# does not hide the others), in each precision, before PyTorch's long step.
train() {
  for m in ${MODELS//,/ }; do
    step "train-$m-$1" 45 "$BIN" bench train --device "$DEV" --precision "$1" --models "$m" --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --warmup "$WARM" --width "$WIDTH"
  done
}
for p in $PREC; do train "$p"; done

# 3. PyTorch + timm on the same device: training and evaluation, each precision.
step torch 150 "$PY" tools/gpu_check.py torch --device "$TDEV" --size "$SIZE" --batch "$BATCH" --eval-batch "$EBATCH" \
  --steps "$STEPS" --warmup "$WARM" --precisions "$TPREC" --models "$TMODELS"

# 4. repro evaluation crops/s.
for m in ${MODELS//,/ }; do
  step "eval-$m" 30 "$BIN" bench eval --device "$DEV" --models "$m" --size "$SIZE" --batch "$EBATCH" --steps "$STEPS" --warmup "$WARM" --width "$WIDTH"
done

# 5. The smoke experiment end to end.
step smoke 90 "$BIN" run experiments/fig23.yaml --smoke --device "$DEV" --results "$WORK/results" --reports "$WORK/reports"
# The reports, metrics and provenance (not the generated images or the weights).
tar -czf "$OUT/smoke.tar.gz" -C "$WORK" --exclude=data --exclude=checkpoints --exclude='*.safetensors' results reports 2>>"$LOG" || log "smoke: nothing to pack"

# 5b. Data parallel through NCCL (a build with --nccl), processes started by torchrun: two
# processes train the smoke run as two replicas, and one process accumulating two micro-batches
# trains the same run; their final weights are compared (GPU reductions round differently, so
# this reports the difference rather than asking for equality). It needs two GPUs: NCCL is
# never called by a single rank, so one GPU tests nothing.
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$DRY" = 1 ]; then
  skipped dp-nccl-2 "needs two GPUs and a build with --nccl"
elif [ "$NGPU" -lt 2 ]; then
  skipped dp-nccl-2 "one GPU: NCCL is never called by a single rank"
else
  DP="run experiments/fig23.yaml --smoke --device cuda --runs inception_resnet_v2"
  step dp-accumulate 60 "$BIN" $DP --set train.replicas=2 --results "$WORK/dp1" --reports "$WORK/dp1r"
  step dp-nccl-2 90 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 "$BIN" $DP --results "$WORK/dp2" --reports "$WORK/dp2r"
  A=$(ls "$WORK"/dp1/runs/*/final.safetensors 2>/dev/null | head -n1)
  B=$(ls "$WORK"/dp2/runs/*/final.safetensors 2>/dev/null | head -n1)
  [ -n "$A" ] && [ -n "$B" ] && step dp-compare 30 "$PY" tools/gpu_check.py compare-weights "two GPUs vs one accumulating two" "$B" "$A"
fi

[ -n "$DMON_PID" ] && kill "$DMON_PID" 2>/dev/null
"$PY" tools/gpu_check.py summarize "$RESULTS" --dmon "$OUT/dmon.txt" >"$OUT/summary.md" 2>>"$LOG"
cat "$OUT/summary.md"
