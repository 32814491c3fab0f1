"""Random state and weight initialisation.

The random state is one NumPy Generator, created by ``manual_seed(seed)`` (which returns it) and
read with ``rng()``: it draws every initial weight, and each Dropout / StochasticDepth layer built
without a ``seed=`` or ``generator=`` takes one number from it for its own generator, from which it
draws its masks at forward time.  So a seeded script is reproducible end to end, and a layer given
``generator=`` draws from that generator instead (e.g. ``Dropout(0.5, generator=npunet.manual_seed(1))``).
"""
import math
from contextlib import contextmanager

import numpy as np

_rng = np.random.default_rng(0)
_shapes_only = False


@contextmanager
def shapes_only():
    """Inside this block models are built without weights: every initialiser returns a stand-in of the
    right shape and dtype that takes no memory (one element, zero strides) and draws nothing from the
    generator.  ``npunet summary`` and the memory estimate before training build models this way."""
    global _shapes_only
    old, _shapes_only = _shapes_only, True
    try:
        yield
    finally:
        _shapes_only = old


def building_shapes_only():
    return _shapes_only


def _stand_in(shape, dtype):
    from numpy.lib.stride_tricks import as_strided
    shape = tuple(int(s) for s in shape)
    if math.prod(shape) * np.dtype(dtype).itemsize >= 2 ** 62:
        raise ValueError(f"a weight of shape {shape} is too large to exist ({math.prod(shape):.3g} values)")
    return as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))


def manual_seed(seed):
    """Create the generator that initial weights and dropout layers' seeds are drawn from (replacing
    the previous one) and return it, as ``torch.manual_seed`` returns its generator."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def rng():
    """The generator made by the last ``manual_seed`` (seed 0 before any call)."""
    return _rng


def uniform(shape, bound, dtype=np.float32):
    if _shapes_only:
        return _stand_in(shape, dtype)
    return _rng.uniform(-bound, bound, size=shape).astype(dtype)


def pytorch_default(shape, fan_in, dtype=np.float32):
    """PyTorch's default for conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (kaiming_uniform with a = sqrt(5) gives exactly this bound for the weight)."""
    return uniform(shape, 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0, dtype)


def kaiming_normal(shape, fan, dtype=np.float32):
    """N(0, 2 / fan): He et al. 2015 for ReLU nets (the U-Net paper's N(0, 2/N_in); torchvision's
    ResNet and MobileNetV2 use fan = fan_out = C_out * kh * kw)."""
    if _shapes_only:
        return _stand_in(shape, dtype)
    return (_rng.standard_normal(shape) * math.sqrt(2.0 / fan)).astype(dtype)


def kaiming_uniform(shape, fan, dtype=np.float32):
    """U(-b, b), b = sqrt(6 / fan): He et al. 2015, uniform form (SMP's decoder, fan = fan_in)."""
    return uniform(shape, math.sqrt(6.0 / fan), dtype)


def xavier_uniform(shape, fan_in, fan_out, dtype=np.float32):
    """U(-b, b), b = sqrt(6 / (fan_in + fan_out)): Glorot & Bengio 2010 (SMP's segmentation head)."""
    return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), dtype)
