"""Metric tests run torch on one thread: the CPUs here are shared, and several threads
competing for two cores make a forward pass ten times slower, not faster."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
