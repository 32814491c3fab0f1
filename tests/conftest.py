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
