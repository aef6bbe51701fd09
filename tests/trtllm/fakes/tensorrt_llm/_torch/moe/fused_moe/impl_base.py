"""G2c ``MoEImplBase`` (upstream impl_base @210daf12): an execution unit, not a layer (no
``forward``); ``create_moe`` wraps every subclass in ``ConfigurableMoE``."""

from torch import nn


class MoEImplBase(nn.Module):
    pass
