#!/usr/bin/env bash
# trtllm-bench latency (one request at a time: every decode step is a b12x batch of 1 token),
# b12x first, then stock CUTLASS with the opt-out variable set. Reports land in $OUT.
# Needs the startup hook, and a release whose latency subcommand takes --extra_llm_api_options
# (or --config); older ones default to moe_backend CUTLASS without it.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DATASET=$OUT/latency_1024_256.jsonl
# newer releases: trtllm-bench --model "$MODEL" prepare-dataset ...; older ones ship this script
[ -f "$DATASET" ] || python "${TRTLLM_ROOT:?set TRTLLM_ROOT to a TensorRT-LLM checkout}/benchmarks/cpp/prepare_dataset.py" \
  --stdout --tokenizer "$MODEL" token-norm-dist --num-requests 32 \
  --input-mean 1024 --input-stdev 0 --output-mean 256 --output-stdev 0 > "$DATASET"
for variant in b12x stock; do
  disable=$([ "$variant" = stock ] && echo 1 || echo 0)
  TRTLLM_B12X_DISABLE=$disable trtllm-bench --model "$MODEL" --model_path "$MODEL_PATH" latency \
    --dataset "$DATASET" --backend pytorch \
    --extra_llm_api_options "$HERE/b12x_cutlass.yaml" \
    --report_json "$OUT/latency_$variant.json"
done
