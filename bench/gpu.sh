#!/usr/bin/env bash
# GPU benchmark: the paper-size model (configs/performancenet-paper.yaml, whole 5 s windows) and every
# streaming config with eager, CUDA graphs, torch.compile and (where torch-tensorrt imports) TensorRT fp16.
# Writes bench/results/gpu.json in under 5 minutes (measurements stop starting after --budget-s 270).
#
#   bench/gpu.sh                      # on a CUDA machine, from the repo root or anywhere
#   bench/gpu.sh --device cpu --quick # smoke test of the same code paths without a GPU
#
# Needs the venv with a CUDA build of torch==2.13.0 (and `pip install -e '.[tensorrt]'` for TensorRT).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
if [[ " $* " != *" --device cpu "* ]] && ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "bench/gpu.sh: no CUDA device visible to torch; nothing measured (try --device cpu --quick)" >&2
    exit 2
fi
exec timeout 300 "$PY" bench/gpu.py "$@"
