import pytest
import torch


@pytest.fixture
def gen():
    """A fresh, seeded generator per test (tests draw new random inputs each). The seed is
    printed, so a failing test's report ("Captured stdout setup") says how to replay it."""
    seed = torch.seed() % (2**31)
    print(f"gen seed: {seed}")
    return torch.Generator().manual_seed(seed)
