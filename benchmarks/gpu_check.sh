#!/usr/bin/env bash
# The project's GPU check (details: benchmarks/gpu_check.py): backbone throughput and a reduced
# LeDiFlow-vs-baseline comparison, in about 6 minutes on one H200. Needs only torch, timm,
# einops, numpy, safetensors and pillow; data: the Fashion-MNIST *.gz files in bench_data/.
#   benchmarks/gpu_check.sh            # on the GPU machine
#   benchmarks/gpu_check.sh --smoke    # on a CPU, seconds: the same code path
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
exec timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$PYTHON" benchmarks/gpu_check.py "$@"
