#!/usr/bin/env bash
# Create .venv with pdae-sc (editable) and its dev extra (which includes the test, docs and
# tutorials extras; PDAE_EXTRAS picks others), bytecode compiled.
# Uses uv (installed from PyPI if missing) and the same local wheel folders pip is
# configured with, so the pinned CPU torch in constraints.txt comes from there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${PDAE_EXTRAS:-dev}
if ! "$PY" -m uv --version >/dev/null 2>&1; then
  "$PY" -m pip install -q uv
fi
links=()
for key in global.find-links :env:.find-links; do
  val=$("$PY" -m pip config get "$key" 2>/dev/null || true)
  for d in $val; do [ -e "${d#file://}" ] && links+=(--find-links "${d#file://}"); done
done
index=()
val=$("$PY" -m pip config get global.extra-index-url 2>/dev/null || true)
for u in $val; do index+=(--extra-index-url "$u"); done
[ -x .venv/bin/python ] || "$PY" -m uv venv -q --python "$PY" .venv
"$PY" -m uv pip install -q --python .venv/bin/python --compile-bytecode \
  "${links[@]}" "${index[@]}" --index-strategy unsafe-best-match \
  -c constraints.txt -e ".[$EXTRAS]"
