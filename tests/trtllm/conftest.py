"""Fixtures: the TensorRT-LLM test double (``fakes/``) installed in ``sys.modules`` for one
test and removed afterwards, with every adapter patch undone."""

import importlib
import sys

import pytest

from trtllm_b12x.trtllm import backend, promote
from trtllm_layers import FAKES, PACKAGES


def drop_fake_modules() -> None:
    for name in [n for n in sys.modules if n == "tensorrt_llm" or n.startswith("tensorrt_llm.")]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def clean_adapter_state():
    """Every test starts and ends with TensorRT-LLM absent and nothing patched."""
    promote.disable()
    backend.set_decode_kernel_factory(None)
    yield
    promote.disable()
    backend.set_decode_kernel_factory(None)
    if str(FAKES) in sys.path:
        sys.path.remove(str(FAKES))
    drop_fake_modules()
    importlib.invalidate_caches()


@pytest.fixture
def fakes_on_path():
    """The double importable (nothing imported yet)."""
    sys.path.insert(0, str(FAKES))
    importlib.invalidate_caches()
    yield FAKES


@pytest.fixture(params=["G1", "G2"])
def generation(request):
    return request.param


def _import(gen):
    importlib.import_module("tensorrt_llm._utils").SM = 120
    return importlib.import_module(PACKAGES[gen])


@pytest.fixture
def trtllm(fakes_on_path, generation):
    """The double of one generation, its fused-MoE package imported, SM 120."""
    return _import(generation)


@pytest.fixture
def g1(fakes_on_path):
    return _import("G1")


@pytest.fixture
def g2(fakes_on_path):
    return _import("G2")
