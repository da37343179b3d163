#!/usr/bin/env bash
# Run the GPU suite and the GPU-marked tests on a CUDA machine, writing everything under $OUT.
#
# On a machine with PyTorch/JAX but without dlbench's other dependencies (the lent GPU machines),
# carry wheels in .whl/ (see docs/gpu.md) and the datasets the GPU cells need in .gpu/data.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 \
  || { echo "dlbench install failed"; tail -5 "$OUT/install.log"; }
[ -d .gpu/data ] && export DLBENCH_DATA_DIR=$PWD/.gpu/data
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m dlbench list frameworks 2>&1 | tee "$OUT/frameworks.txt"
python3 -m dlbench run gpu --store "sqlite:///$OUT/gpu.db" --output-dir "$OUT" --report html,json,markdown 2>&1 \
  | tee "$OUT/suite.log"
python3 -m pytest -m gpu -q -rs -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.log"
