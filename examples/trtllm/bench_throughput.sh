#!/usr/bin/env bash
# trtllm-bench throughput at a fixed concurrency (default 32 requests in flight), b12x vs stock.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DATASET=$OUT/throughput_1024_256.jsonl
[ -f "$DATASET" ] || python "${TRTLLM_ROOT:?set TRTLLM_ROOT to a TensorRT-LLM checkout}/benchmarks/cpp/prepare_dataset.py" \
  --stdout --tokenizer "$MODEL" token-norm-dist --num-requests 512 \
  --input-mean 1024 --input-stdev 0 --output-mean 256 --output-stdev 0 > "$DATASET"
for variant in b12x stock; do
  disable=$([ "$variant" = stock ] && echo 1 || echo 0)
  TRTLLM_B12X_DISABLE=$disable trtllm-bench --model "$MODEL" --model_path "$MODEL_PATH" throughput \
    --dataset "$DATASET" --backend pytorch --concurrency "${CONCURRENCY:-32}" \
    --extra_llm_api_options "$HERE/b12x_cutlass_throughput.yaml" \
    --custom_module_dirs "$CUSTOM_MODULE_DIR" \
    --report_json "$OUT/throughput_$variant.json"
done
