import pytest
import torch

# Tests use tiny tensors: a second OpenMP thread only adds barrier waits (gradcheck ran 5-20x
# slower with two on a busy 2-core machine), and xdist workers already use both cores.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
