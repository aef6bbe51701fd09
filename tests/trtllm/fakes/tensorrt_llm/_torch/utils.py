from enum import IntEnum


class ActivationType(IntEnum):
    # values differ from the C++ enum on purpose: the adapter must go by name
    Gelu = 10
    Relu = 11
    Silu = 12
    Swiglu = 13
    Geglu = 14
    SwigluBias = 15
    Relu2 = 16


def is_gated_activation(activation_type) -> bool:
    return ActivationType(activation_type) in (ActivationType.Swiglu, ActivationType.SwigluBias, ActivationType.Geglu)
