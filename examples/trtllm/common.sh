# Shared settings of the example scripts (sourced). Override any of them in the environment.
# Needs: an SM120/SM121 GPU (RTX PRO 6000 / RTX 5090 / DGX Spark) with TensorRT-LLM (an NGC
# release container) and trtllm-b12x installed, and the NVFP4 checkpoint below (Hugging Face
# download, about 18 GB). The report printed below says whether the b12x backend will be
# chosen for it on this GPU, and whether the startup hook is installed
# (python -m trtllm_b12x.trtllm install-hook puts it into site-packages).
MODEL=${MODEL:-nvidia/Qwen3-30B-A3B-NVFP4}
MODEL_PATH=${MODEL_PATH:-$MODEL}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$PWD/b12x-trtllm-runs}
mkdir -p "$OUT"
# The startup hook covers every process; --custom_module_dirs is the fallback where the hook
# file is not installed (trtllm-serve and trtllm-bench accept it).
CUSTOM_MODULE_DIR=$(python -m trtllm_b12x.trtllm custom-module-dir)
if [ -d "$MODEL_PATH" ]; then python -m trtllm_b12x.trtllm doctor "$MODEL_PATH" >&2; fi
