#!/usr/bin/env bash
# Prove flowlib's GPU path (CUDA tests, every CLI model in float32 and bf16, checkpoint GPU -> CPU,
# torchrun with NCCL, one FLOWLIB_FULL=1 chapter). See scripts/gpu_check.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" scripts/gpu_check.py "$@"
