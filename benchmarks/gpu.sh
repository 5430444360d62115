#!/usr/bin/env bash
# One GPU session's checks, as one command on the GPU machine (see benchmarks/RESULTS.md, "GPU"):
#   bash benchmarks/gpu_wheels.sh            # here first: the wheels the GPU image lacks, into .whl/
#   then, on the GPU machine, carrying .whl:  bash benchmarks/gpu.sh
# Installs the carried wheels, then, most important first, each with its own time limit: the step benchmark
# at 256x256/32 (engine vs the notebook baseline, compiled bf16 with CUDA graphs, with its fraction of the
# measured bf16 matrix-product peak, its rate with no sync between steps, a profile of where the device time
# goes, and dynamo's graph breaks and recompiles), the CUDA tests (about 200 s), the batching benchmark (8
# jobs, with a profile of the batched step), 512x512/64, then the compiled parts instead of the one-function
# step, inductor's default mode and eager for comparison. A cold compile takes 50-90 s on an H100, so all of
# it needs more than one 10-minute call: name the runs to make (`bash benchmarks/gpu.sh step256 tests
# batching`, then the rest in another); a run that passes its limit is stopped ("exit 124"). Each log goes
# into $OUT; a summary of the key lines ends the output.
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
# Compile caches kept between leases: a lease starts bare, and each cold compile costs 50-90 s of it. The
# caches go back in $OUT/gpu-cache.tgz; unpack that into .gpu-cache/ here (git-ignored) and carry it.
CACHE=$PWD/.gpu-cache
mkdir -p "$CACHE"
export TORCHINDUCTOR_CACHE_DIR=$CACHE/inductor TRITON_CACHE_DIR=$CACHE/triton
ONLY=" ${*:-step256 tests batching step512 step256-parts step256-default step256-eager} "
run() {  # run NAME SECONDS COMMAND...: the command's output into $OUT/NAME.txt (when NAME was asked for)
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    [[ $ONLY == *" $name "* ]] || return 0
    echo "== $name: $*"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "   exit $? after $((SECONDS - start)) s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
B=benchmarks
S256="--device cuda --size 256 256 --cutn 32 --precision bf16"
run step256 170 env TORCH_LOGS=graph_breaks,recompiles python3 $B/step.py $S256 --warmup 5 --repeats 30 --roofline \
    --pipelined 100 --profile 5
run tests 220 python3 -m pytest -q -p no:cacheprovider -W ignore tests/generator/test_cuda.py
run batching 160 python3 $B/batching.py $S256 --jobs 8 --steps 20 --rounds 3 --profile 3
run step512 100 python3 $B/step.py --device cuda --size 512 512 --cutn 64 --precision bf16 --warmup 3 --repeats 10 \
    --no-baseline --roofline --pipelined 20
run step256-parts 110 python3 $B/step.py $S256 --compile-scope parts --warmup 5 --repeats 30 --no-baseline --pipelined 100
run step256-default 100 python3 $B/step.py $S256 --compile-mode default --warmup 5 --repeats 30 --no-baseline --roofline
run step256-eager 60 python3 $B/step.py $S256 --compile off --warmup 3 --repeats 30 --no-baseline --roofline
tar czf "$OUT/gpu-cache.tgz" -C "$CACHE" . \
    && echo "== compile caches: $(du -h "$OUT/gpu-cache.tgz" | cut -f1) (over 16 MiB they do not come back)"
echo "== summary"
for f in $ONLY; do
    echo "-- $f"
    grep -E "^(engine|baseline|one at a time|batched|step benchmark|one step|machine|profile of|largest|[0-9]+ (passed|failed)|FAILED|ERROR)|Error|passed|failed" \
        "$OUT/$f.txt" 2>/dev/null | grep -v "^  " | cut -c1-400
done
