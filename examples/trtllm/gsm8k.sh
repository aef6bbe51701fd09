#!/usr/bin/env bash
# GSM8K accuracy, b12x vs stock CUTLASS, two ways:
#   ./gsm8k.sh eval     trtllm-eval (TensorRT-LLM's harness; needs lm_eval installed)
#   ./gsm8k.sh serve    lm-eval against a running ./serve.sh (PORT, default 8000)
# TensorRT-LLM's accuracy suite accepts a run that is at most 3.2 points below its reference
# (83.43 for Qwen3-30B-A3B NVFP4); compare the two variants against each other the same way.
set -euo pipefail
source "$(dirname "$0")/common.sh"
case "${1:-eval}" in
  eval)
    for variant in b12x stock; do
      disable=$([ "$variant" = stock ] && echo 1 || echo 0)
      # activated by the startup hook (python -m trtllm_b12x.trtllm install-hook)
      TRTLLM_B12X_DISABLE=$disable trtllm-eval --model "$MODEL_PATH" \
        --extra_llm_api_options "$HERE/b12x_cutlass.yaml" gsm8k 2>&1 | tee "$OUT/gsm8k_eval_$variant.log"
    done ;;
  serve)
    # start ./serve.sh (or TRTLLM_B12X_DISABLE=1 ./serve.sh for stock) first
    lm_eval --model local-completions --tasks gsm8k --num_fewshot 5 --batch_size 1 \
      --model_args "model=$MODEL_PATH,base_url=http://localhost:${PORT:-8000}/v1/completions,num_concurrent=32,tokenized_requests=False" \
      --output_path "$OUT/gsm8k_lm_eval" ;;
  *) echo "usage: $0 eval|serve" >&2; exit 2 ;;
esac
