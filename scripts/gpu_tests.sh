#!/usr/bin/env bash
# The whole test suite on a GPU machine (H100/H200, or SM120/SM121) in one command:
# GPU-marked tests run there; compile tests and CPU tests run as everywhere.
#   scripts/gpu_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
exec python3 -m pytest -q -rs tests "$@"
