from ...._utils import get_sm_version
from .impl_contract import MoEEnvironment


DEPS: tuple = ()  # what TensorRT-LLM found importable (a test sets "flashinfer")


def collect_moe_environment() -> MoEEnvironment:
    return MoEEnvironment(sm=get_sm_version(), available_deps=DEPS)
