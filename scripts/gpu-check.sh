#!/usr/bin/env bash
# Run the GPU suites and the GPU-marked tests on a CUDA machine; everything lands under $OUT
# (logs in plain files, stores and reports in gpu-results.tar.gz).
#
#   phase A (about 6 min on an H200): `pytest -m gpu` (4 workers) beside `dlbench run robustness-gpu`;
#   phase B (about 10 min): `dlbench run gpu` alone, so that no other work shares the GPU while
#                          speed is sampled.
#
# On a machine with PyTorch/JAX but without dlbench's other dependencies (the lent GPU machines),
# carry wheels in .whl/ (see docs/gpu.md) and the datasets the GPU cells need in .gpu/data
# (sms-spam, sentiment-sentences, ml-100k). Phase limits: GPU_PHASE_A, GPU_PHASE_B (seconds).
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT/results"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# dlbench itself: a carried wheel (pip wheel --no-deps -w .whl .) gives the entry points; the
# code that runs is this checkout's (the current directory comes first on sys.path).
python3 -c "import importlib.metadata as m; m.version('dlbench')" 2>/dev/null \
  || python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$OUT/results/install.log" 2>&1 \
  || { echo "dlbench install failed"; tail -5 "$OUT/results/install.log"; }
[ -d .gpu/data ] && export DLBENCH_DATA_DIR=$PWD/.gpu/data
# Several processes share the GPU in phase A: JAX must not take 75% of it at start.
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false DLBENCH_OFFLINE=1
R=$OUT/results
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"
python3 -c "import torch, jax; print('torch', torch.__version__, 'jax', jax.__version__, jax.devices())" 2>&1 | tee -a "$R/gpu.txt"
python3 -m dlbench list frameworks >"$R/frameworks.txt" 2>&1 &

suite() {  # NAME LIMIT: run a suite under a time limit; a run cut short still gets its reports
  local store="sqlite:///$R/$1.db"
  timeout "$2" python3 -m dlbench run "$1" --store "$store" --output-dir "$R/$1" \
    --report html,json,markdown >"$OUT/$1.log" 2>&1
  local rc=$?
  echo "dlbench run $1: exit $rc"
  if [ $rc = 124 ]; then
    python3 -m dlbench report latest --store "$store" --output-dir "$R/$1" --format html,json,markdown \
      >>"$OUT/$1.log" 2>&1
  fi
}

echo "== phase A: pytest -m gpu | dlbench run robustness-gpu"
timeout "${GPU_PHASE_A:-900}" python3 -m pytest -m gpu -q -rs -n 4 -p no:cacheprovider --durations=12 \
  >"$OUT/gpu-tests.log" 2>&1 &
tests=$!
suite robustness-gpu "${GPU_PHASE_A:-900}"
wait $tests; echo "pytest -m gpu exit $?"
wait

echo "== phase B: dlbench run gpu"
suite gpu "${GPU_PHASE_B:-1200}"
tar -czf "$OUT/gpu-results.tar.gz" -C "$OUT" results
tail -n 25 "$OUT/gpu-tests.log"; grep -hE "^(ok|failed|skipped|crashed|timeout)|wall time" "$OUT"/*.log
