from .impl_contract import MoEEligibility


def _reject(reason, detail):
    return MoEEligibility.no(reason, detail)
