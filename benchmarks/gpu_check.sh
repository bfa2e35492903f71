#!/usr/bin/env bash
# The checks to run on a machine with a CUDA GPU, in one go (CI has no GPU, so these are
# run by hand when one is available; the first run and its findings are in
# benchmarks/results/gpu.md). Use the pandas that anndata allows (< 3 for anndata 0.12).
# Each step has its own time limit and writes its log to OUT (default: gpu_check/); a
# failing step does not stop the others.
#
#   bash benchmarks/gpu_check.sh            # in an environment with pdae-sc installed
#
# 1. the environment: GPU, driver, torch, CUDA, the scverse packages;
# 2. the test suite with the GPU visible (``accelerator="auto"`` trains there; the
#    real-CUDA placement test runs), except the docs, tutorial and packaging tests
#    (``-v``: each test's outcome is in the log even when the time limit cuts the run);
# 3. ``benchmarks/train_step_time.py``: ms per step of ``train`` (default, compiled, CUDA
#    graphs), then ``pdae-sc demo`` (trains on the GPU);
# 4. ``benchmarks/speed.py --devices cuda --quick --no-compile``;
# 5. ``benchmarks/real_data.py --seeds 0``, one dev task at a time: fit times and scores on
#    the GPU (needs the two screens: PDAE_SHARED_DATA or ../shared/data).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUT/NAME.log, time it
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nproc
  "$PY" - <<'EOF'
from importlib.metadata import version
import torch
import pdae_sc  # noqa: F401
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
names = ["pdae-sc", "scvi-tools", "scanpy", "anndata", "lightning", "numpy", "pandas"]
print(", ".join(f"{n} {version(n)}" for n in names))
EOF
} 2>&1 | tee "$OUT/environment.txt"

step tests "${TEST_LIMIT:-200}" "$PY" -m pytest -v --tb=short -rfEs -n "${TEST_WORKERS:-15}" \
  --ignore=tests/test_docs.py --ignore=tests/test_tutorials.py \
  --ignore=tests/test_packaging.py tests src/pdae_sc
step train_step_time "${STEP_LIMIT:-90}" "$PY" benchmarks/train_step_time.py --genes 1000
step demo "${DEMO_LIMIT:-90}" "$PY" -m pdae_sc.cli demo --out "$OUT/demo" --no-progress
for task in ${REAL_TASKS:-clean counts datlinger_combo papalexi_context}; do
  step "real_data_$task" "${REAL_LIMIT:-90}" "$PY" benchmarks/real_data.py --tasks "$task" \
    --seeds 0 --suffix "_$task" --out "$OUT"
done
step speed "${SPEED_LIMIT:-90}" "$PY" benchmarks/speed.py --devices cuda --quick --no-compile \
  --out "$OUT/speed_cuda.md"
cat "$OUT/summary.txt"
