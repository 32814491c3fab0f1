import os

# The tests check behaviour, not cold-start time: no prefetch helper processes (npunet.app.prefetch) in
# the suite or the processes it starts, except where tests/test_prefetch.py turns them on.
os.environ.setdefault("NPUNET_PREFETCH", "0")

import numpy as np
import pytest

import npunet


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed():
    npunet.manual_seed(0)


@pytest.fixture(params=["fast", "reference"])
def each_backend(request):
    """Runs the test once per backend."""
    with npunet.backend(request.param):
        yield request.param
