import pytest
import torch


@pytest.fixture
def gen():
    """A fresh, seeded generator per test (tests draw new random inputs each)."""
    return torch.Generator().manual_seed(torch.seed() % (2**31))
