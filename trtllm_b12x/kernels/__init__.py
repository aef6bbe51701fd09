"""CuTe-DSL kernels, their compile cache and SASS inspection.

Importing this package imports nvidia-cutlass-dsl; the rest of trtllm_b12x does not.
"""
