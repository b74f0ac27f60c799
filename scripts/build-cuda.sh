#!/usr/bin/env bash
# Builds the CUDA binary of repro (`--features cuda`) on a machine WITHOUT a system CUDA
# toolkit, from NVIDIA's PyPI wheels pinned to the CUDA 13.0 line, for compute capability 9.0
# (H100/H200). Idempotent: the wheels, link folder and stub are made once under the cache
# folder and reused.
#
#   scripts/build-cuda.sh [--cudnn] [--nccl] [--check] [--out DIR] [-- extra cargo args]
#
#   --cudnn    also enable candle's cuDNN convolutions (feature `cudnn`; installs nvidia-cudnn-cu13)
#   --nccl     also data-parallel training over NCCL (feature `nccl`; installs nvidia-nccl-cu13)
#   --check    only `cargo check --features cuda` (what CI can afford): no binary
#   --out DIR  write the compressed binary to DIR/repro.gz (default: carry/, git-ignored)
#   --env      print the environment (export lines) and stop; `eval "$(scripts/build-cuda.sh --env)"`
#
# Environment: REPRO_CUDA_CACHE (default ~/.cache/repro/cuda), CARGO_TARGET_DIR (default
# target/; use a separate one, e.g. /work/cuda-target, to keep the CPU build's cache),
# CUDA_COMPUTE_CAP (default 90), PYTHON (default python3), NICE (default 19).
#
# With a normal CUDA install none of this is needed: `cargo build --release --features cuda`.
set -euo pipefail

cd "$(dirname "$0")/.."
CACHE=${REPRO_CUDA_CACHE:-$HOME/.cache/repro/cuda}
PYTHON=${PYTHON:-python3}
NICE=${NICE:-19}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
CUDNN=0; NCCL=0; CHECK=0; ENV_ONLY=0; OUTDIR=carry; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cudnn) CUDNN=1 ;;
    --nccl) NCCL=1 ;;
    --check) CHECK=1 ;;
    --env) ENV_ONLY=1 ;;
    --out) OUTDIR=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-cuda.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
log() { [ "$ENV_ONLY" = 1 ] || echo "build-cuda: $*" >&2; }

# 1. The wheels (CUDA 13.0 line). nvidia-cuda-nvcc would pull the newest crt/nvvm: pin them.
#    nvidia-cuda-cccl carries nv/target, which candle's kernels include.
PINS=(
  "nvidia-cuda-nvcc==13.0.*"
  "nvidia-cuda-crt==13.0.*"
  "nvidia-nvvm==13.0.*"
  "nvidia-cuda-cccl==13.0.*"
  "nvidia-cuda-runtime==13.0.*"
  "nvidia-cuda-nvrtc==13.0.*"
  "nvidia-cublas==13.0.*"
  "nvidia-curand==10.4.0.*"
)
[ "$CUDNN" = 1 ] && PINS+=("nvidia-cudnn-cu13==9.*")
[ "$NCCL" = 1 ] && PINS+=("nvidia-nccl-cu13==2.*")
PY=$CACHE/py
STAMP=$PY/.repro-pins
WANT=$(printf '%s\n' "${PINS[@]}")
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  log "installing ${#PINS[@]} NVIDIA wheels into $PY"
  mkdir -p "$PY"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-cache-dir --upgrade --no-deps --target "$PY" "${PINS[@]}" >&2
  echo "$WANT" >"$STAMP"
else
  log "wheels already installed in $PY"
fi
CU=$PY/nvidia/cu13
[ -x "$CU/bin/nvcc" ] || { echo "build-cuda: no nvcc at $CU/bin/nvcc after installing the wheels" >&2; exit 1; }

# 2. A link folder: lib/libX.so -> the wheels' versioned libX.so.N, plus a stub libcuda.so.
LINK=$CACHE/link
mkdir -p "$LINK/lib"
for lib in cublas cublasLt cudart curand nvrtc cudnn nccl; do
  real=$(ls "$CU"/lib/lib$lib.so.[0-9]* "$PY"/nvidia/*/lib/lib$lib.so.[0-9]* 2>/dev/null | grep -E "lib$lib\.so\.[0-9]+$" | head -n1 || true)
  [ -n "$real" ] && ln -sfn "$real" "$LINK/lib/lib$lib.so"
done
# The driver library (libcuda.so.1) comes with the GPU driver, never with the toolkit wheels.
# Link against a stub that defines every cu* symbol cudarc may reference as an empty
# function; its soname is libcuda.so.1, so the binary loads the real driver at run time.
# The stub must never be on LD_LIBRARY_PATH.
CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -n1 || true)
if [ ! -f "$LINK/lib/libcuda.so" ] || [ -z "$CUDARC" ] || [ "$(cat "$LINK/.stub-from" 2>/dev/null)" != "$CUDARC" ]; then
  if [ -z "$CUDARC" ]; then
    log "fetching crates to read cudarc's driver symbols"
    cargo fetch --quiet >&2
    CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -n1)
  fi
  grep -ohE '^\s+(pub )?fn cu[A-Za-z0-9_]+\(' "$CUDARC/src/driver/sys/mod.rs" \
    | sed -E 's/.*fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u \
    | awk '{print "void " $1 "(void) {}"}' >"$LINK/cuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/lib/libcuda.so" "$LINK/cuda_stub.c"
  echo "$CUDARC" >"$LINK/.stub-from"
  log "stub libcuda.so with $(wc -l <"$LINK/cuda_stub.c") symbols"
fi

# 3. The environment cudarc's and candle-kernels' build scripts read. When one of cudarc's
#    root variables is set it searches only those roots, so CUDA_ROOT points at the link folder.
export PATH=$CU/bin:$PATH
export CUDA_HOME=$CU
export CUDA_ROOT=$LINK
export CUDA_PATH=$CU
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH=$LINK/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
if [ "$ENV_ONLY" = 1 ]; then
  for v in PATH CUDA_HOME CUDA_ROOT CUDA_PATH CUDARC_CUDA_VERSION LIBRARY_PATH CUDA_COMPUTE_CAP CUDAFORGE_THREADS; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
  exit 0
fi

FEATURES=cuda
[ "$CUDNN" = 1 ] && FEATURES=cudnn
[ "$NCCL" = 1 ] && FEATURES=$FEATURES,nccl
TARGET=${CARGO_TARGET_DIR:-target}
start=$(date +%s)
if [ "$CHECK" = 1 ]; then
  log "cargo check --features $FEATURES (target dir $TARGET)"
  nice -n "$NICE" cargo check --all-targets --features "$FEATURES" "${EXTRA[@]}"
  log "check ok in $(( $(date +%s) - start )) s"
  exit 0
fi
log "cargo build --release --features $FEATURES (target dir $TARGET, compute capability $CUDA_COMPUTE_CAP)"
nice -n "$NICE" cargo build --release --bin repro --features "$FEATURES" "${EXTRA[@]}"
log "built in $(( $(date +%s) - start )) s"

BIN=$TARGET/release/repro
mkdir -p "$OUTDIR"
# The stripped binary is ~80 MiB (candle's kernels for sm_90a are ~33 MiB of it): over what a
# GPU session carries (64 MiB in all), so only a gzip copy (~21 MiB) goes to carry/;
# scripts/gpu-check.sh unpacks it. The stripped binary stays in the target folder.
cp "$BIN" "$BIN.stripped.tmp" && strip "$BIN.stripped.tmp" && mv "$BIN.stripped.tmp" "$BIN.stripped"
gzip -6 -c "$BIN.stripped" >"$OUTDIR/repro.gz.tmp" && mv "$OUTDIR/repro.gz.tmp" "$OUTDIR/repro.gz"
rm -f "$OUTDIR/repro"
gz=$(du -m "$OUTDIR/repro.gz" | cut -f1)
echo "binary: $BIN.stripped ($(du -m "$BIN.stripped" | cut -f1) MiB; compute capability $CUDA_COMPUTE_CAP)"
echo "        $OUTDIR/repro.gz (${gz} MiB): carry this one to a GPU session"
if [ "$gz" -ge 60 ]; then
  echo "build-cuda: $OUTDIR/repro.gz is ${gz} MiB, too large to carry (64 MiB in all with the tree)" >&2
  exit 1
fi
echo "shared libraries it needs at run time (readelf -d NEEDED; libcublas.so.13 loads libcublasLt.so.13):"
readelf -d "$BIN.stripped" | sed -n 's/.*Shared library: \[\(.*\)\]/  \1/p'
cat <<'NOTE'
libcuda.so.1 is the GPU driver's own library (installed with the driver). The others come
from a CUDA 13 toolkit or from NVIDIA's wheels (nvidia-cublas, nvidia-cuda-runtime,
nvidia-curand[, nvidia-cudnn-cu13]); PyTorch cu130 installs all of them. Without a toolkit,
point LD_LIBRARY_PATH at the wheels' lib folders, e.g.
  export LD_LIBRARY_PATH=$(python3 -c 'import nvidia, glob, os; print(":".join(glob.glob(os.path.join(nvidia.__path__[0], "*", "lib"))))')
NOTE
