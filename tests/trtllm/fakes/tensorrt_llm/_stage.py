"""Which API stage the double plays (a test sets it before importing the fused-MoE package):
"G1" / "G2c" (each package path's default), "G2a" (the G2 API under the old package path),
"G2b" (``moe/fused_moe`` before the activation carrier and the MoEImplBase wrapping rule)."""

STAGE = None  # None: G1 under modules/fused_moe, G2c under moe/fused_moe


def g2_stage(package_path_is_old: bool) -> str:
    return STAGE or ("G2a" if package_path_is_old else "G2c")
