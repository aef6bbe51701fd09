#!/usr/bin/env bash
# OpenAI-compatible server with the b12x MoE decode backend on port ${PORT:-8000}.
# Stock CUTLASS for comparison: TRTLLM_B12X_DISABLE=1 ./serve.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
trtllm-serve "$MODEL_PATH" --backend pytorch --port "${PORT:-8000}" \
  --max_batch_size 64 --max_num_tokens 8192 \
  --extra_llm_api_options "$HERE/b12x_cutlass.yaml" \
  --custom_module_dirs "$CUSTOM_MODULE_DIR"
