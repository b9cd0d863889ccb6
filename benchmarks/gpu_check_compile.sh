#!/usr/bin/env bash
# One device run for the torch.compile path (Derainer(compile=True), --compile): its CUDA tests, then the compiled
# rows of the GPU table beside the default plan; everything lands in $OUT. About 6-8 minutes on an H200 (each
# compiled row compiles its two calls first; the set-up column reports it).
#   device run:  bash benchmarks/gpu_check_compile.sh    with carry [".whl"], timeout_s about 560
# .whl holds the wheels the device image lacks (see benchmarks/gpu_train_small.sh); TESTS=0 skips the tests,
# QUICK=1 times a few frames per row (a smoke test).
set -uo pipefail
OUT=${OUT:-runs/gpu-compile}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L > "$OUT/gpu.txt" 2>&1
if [ "${TESTS:-1}" != 0 ]; then
    if python3 -c "import pytest" 2> /dev/null; then
        timeout 240 python3 -m pytest -q -p no:cacheprovider tests/inference/test_compiled.py \
            tests/test_inference_fast.py -k "cuda" > "$OUT/tests.log" 2>&1
        echo "tests exit status $?" >> "$OUT/tests.log"
    else
        echo "pytest is not installed on this machine: tests skipped" > "$OUT/tests.log"
    fi
fi
quick=()
if [ -n "${QUICK:-}" ]; then quick+=(--quick); fi
timeout "${BUDGET:-420}" python3 benchmarks/bench_gpu.py --compiled-only --out "$OUT/bench-gpu-compiled" "${quick[@]}" \
    > "$OUT/bench.log" 2>&1
echo "bench exit status $?" >> "$OUT/bench.log"
