#!/usr/bin/env bash
# The checks to run on a machine with a CUDA GPU, in one go (CI has no GPU, so these are
# run by hand when one is available; the runs and their findings are in
# benchmarks/results/gpu.md). Use the pandas that anndata allows (< 3 for anndata 0.12).
# Each step has its own time limit; a failing step does not stop the others. Logs go to
# OUT (default: gpu_check/), at most seven files.
#
#   bash benchmarks/gpu_check.sh            # in an environment with pdae-sc importable
#
# 1. the environment: GPU, driver, torch, CUDA, the scverse packages;
# 2. the tests that need a GPU (``-k gpu``: do the held-out checks change a GPU run?) and
#    the device-placement tests;
# 3. ``benchmarks/real_data.py --seeds 0`` with CUDA graphs
#    (``plan_kwargs={"compile": {"mode": "reduce-overhead"}}``), one dev task at a time,
#    alone on the machine: fit times and scores (needs the two screens: PDAE_SHARED_DATA
#    or ../shared/data);
# 4. at the same time, and so not a speed figure: ``real_data.py --seeds 0`` with the
#    default training, every dev task at once, and the test suite with the GPU visible
#    (``accelerator="auto"`` trains there), except the docs, tutorial and packaging tests.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
PY=${PYTHON:-python3}
TASKS=${REAL_TASKS:-clean counts datlinger_combo datlinger_context papalexi_context}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run with a limit, append to OUT/NAME.log, time it
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== $*" >>"$OUT/$name.log"
  timeout "$limit" "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name ${*: -1}: rc $rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nproc
  "$PY" - <<'EOF'
from importlib.metadata import version
import torch
import pdae_sc
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
names = ["scvi-tools", "scanpy", "anndata", "lightning", "numpy", "pandas"]
print("pdae-sc", pdae_sc.__version__, ", ".join(f"{n} {version(n)}" for n in names))
EOF
} >"$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

step tests_gpu "${GPU_TEST_LIMIT:-90}" "$PY" -m pytest -v --tb=short -rfEs -p no:cacheprovider \
  tests/model/test_held_out_checkpoints.py tests/test_speed_paths.py

graphs='{"compile": {"mode": "reduce-overhead"}}'
for task in $TASKS; do
  step graphs "${REAL_LIMIT:-65}" "$PY" benchmarks/real_data.py --tasks "$task" --seeds 0 \
    --plan-kwargs "$graphs" --suffix "_graphs_$task" --out "$WORK" --tasks "$task"
done

pids=()
for task in $TASKS; do
  timeout "${DEFAULT_LIMIT:-150}" "$PY" benchmarks/real_data.py --tasks "$task" --seeds 0 \
    --suffix "_default_$task" --out "$WORK" >>"$OUT/default.log" 2>&1 &
  pids+=($!)
done
step suite "${SUITE_LIMIT:-150}" "$PY" -m pytest -q --tb=short -rfEs -p no:cacheprovider \
  -n "${TEST_WORKERS:-8}" --ignore=tests/test_docs.py --ignore=tests/test_tutorials.py \
  --ignore=tests/test_packaging.py tests src/pdae_sc
for pid in "${pids[@]}"; do wait "$pid"; echo "== default run $pid: rc $?" >>"$OUT/summary.txt"; done

"$PY" - "$WORK" "$OUT/real_data_gpu.csv" <<'EOF'
import sys
from pathlib import Path
import pandas as pd
parts = []
for path in sorted(Path(sys.argv[1]).glob("real_data_*.csv")):
    table = pd.read_csv(path)
    table.insert(0, "run", path.stem.removeprefix("real_data_").split("_")[0])
    parts.append(table)
if parts:
    pd.concat(parts, ignore_index=True).to_csv(sys.argv[2], index=False)
    print(pd.concat(parts, ignore_index=True).to_string())
EOF
cat "$OUT/summary.txt"
