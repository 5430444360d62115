#!/usr/bin/env bash
# Run here (with internet to PyPI), before a GPU session: downloads into .whl/ the pure-Python packages the
# GPU machine's image lacks (it has torch, torchvision, timm, safetensors, huggingface_hub, pytest...), so that
# benchmarks/gpu.sh can install them there with no network. .whl/ is git-ignored; carry it in the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform any -d .whl \
    open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.2.13 taming-transformers-rom1504==0.0.6
ls -l .whl
