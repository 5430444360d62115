#!/usr/bin/env bash
# One GPU session's checks, as one command on the GPU machine (see benchmarks/RESULTS.md, "GPU"):
#   bash benchmarks/gpu_wheels.sh            # here first: the wheels the GPU image lacks, into .whl/
#   then, on the GPU machine, carrying .whl:  bash benchmarks/gpu.sh
# Installs the carried wheels, runs the CUDA tests, then the step benchmark (engine vs the notebook baseline,
# bf16, compiled and not) at 256x256/32 and 512x512/64 and the batching benchmark, each log into $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/vqclip-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
run() {  # run NAME COMMAND...: the command's output into $OUT/NAME.txt and on stdout
    local name=$1
    shift
    echo "== $name: $*"
    timeout "${STEP_TIMEOUT:-240}" "$@" 2>&1 | tee "$OUT/$name.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
run tests python3 -m pytest -q -p no:cacheprovider tests/generator/test_cuda.py tests/generator/test_cutouts.py
run step256 python3 benchmarks/step.py --device cuda --size 256 256 --cutn 32 --precision bf16 --warmup 5 --repeats 30
run step256-eager python3 benchmarks/step.py --device cuda --size 256 256 --cutn 32 --precision bf16 --compile off \
    --warmup 3 --repeats 30 --no-baseline
run step512 python3 benchmarks/step.py --device cuda --size 512 512 --cutn 64 --precision bf16 --warmup 5 --repeats 20
if [[ -f benchmarks/batching.py ]]; then
    run batching python3 benchmarks/batching.py --device cuda
fi
