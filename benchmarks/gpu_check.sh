#!/usr/bin/env bash
# The project's GPU check (details: benchmarks/gpu_check.py): backbone throughput and a reduced
# LeDiFlow-vs-baseline comparison (the default chain on conf/gpu_check). Needs only torch, timm, einops,
# numpy, safetensors, pillow and PyYAML (the project need not be installed: src/ goes on PYTHONPATH);
# data: the Fashion-MNIST *.gz files in bench_data/.
#   benchmarks/gpu_check.sh            # on the GPU machine
#   benchmarks/gpu_check.sh --smoke    # on a CPU, seconds: the same code path
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$PYTHON" benchmarks/gpu_check.py "$@"
