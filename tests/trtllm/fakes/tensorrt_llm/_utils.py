"""``get_sm_version`` of the double: tests set ``SM``."""

SM = 120


def get_sm_version() -> int:
    return SM
