"""Parent of the ``--custom_module_dirs`` package. TensorRT-LLM puts this directory first on
``sys.path``, so it holds nothing but ``trtllm_b12x_enable``."""
