from ...._utils import get_sm_version
from .impl_contract import MoEEnvironment


def collect_moe_environment() -> MoEEnvironment:
    return MoEEnvironment(sm=get_sm_version())
