"""The stage this copy of the G2 double plays (its package path decides the default)."""

from ...._stage import g2_stage

STAGE = g2_stage(__name__.startswith("tensorrt_llm._torch.modules."))
ACTIVATION_CARRIER = STAGE == "G2c"  # layers carry MoEActivation and act_* buffers, no swiglu_*
WRAPS_IMPL_BASE = STAGE == "G2c"  # create_moe wraps every MoEImplBase subclass
