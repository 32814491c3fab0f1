"""Activations and random layers: ReLU, ReLU6, SiLU, Sigmoid (``nn.Op`` declarations), Identity,
Dropout, Dropout2d, StochasticDepth."""
import numpy as np

from .. import init
from ..backends import current as ops
from .module import Module, check_array
from .op import Op, _forward_cache


class _Elementwise(Op):
    """Any shape in, the same shape out, no hyperparameters."""

    def _check(self, x):
        check_array(self, x, np.ndim(x))
        return tuple(x.shape)


class _Masked(_Elementwise):
    """A piecewise-linear activation whose forward keeps a bool mask of where the slope is 1."""

    def kink_signature(self):  # where the slope is 1: gradcheck skips steps that change it
        mask = _forward_cache(self)
        return None if mask is None else hash(np.packbits(mask).tobytes())

    def kept(self, inputs, out):
        return [], int(np.prod(out.shape))  # bool mask


class _Inplace:
    """PyTorch's ``inplace=`` flag, accepted for its signature: npunet never writes into a layer's
    input, so ``inplace=True`` gives the same output (and gradients) as False."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)


class ReLU(_Inplace, _Masked):
    """out = max(x, 0); any shape.  inplace: accepted, same result (npunet never overwrites x)."""

    op = "relu"


class ReLU6(_Inplace, _Masked):
    """out = min(max(x, 0), 6) (MobileNetV2); any shape.  inplace: accepted, same result."""

    op = "relu6"


class SiLU(_Inplace, _Elementwise):
    """SiLU / Swish: out = x * sigmoid(x) (EfficientNet); any shape.  inplace: accepted, same result."""

    op = "silu"


class Sigmoid(_Elementwise):
    """out = 1 / (1 + exp(-x)); any shape."""

    op = "sigmoid"

    def kept(self, inputs, out):
        return [out], 0


class Identity(Module):
    """out = x; backward passes the gradient through."""

    _leaf = True

    def _check(self, x):
        return tuple(x.shape)

    def forward(self, x):
        self._save(None, x)
        return x

    def backward(self, grad):
        self._restore(grad)
        return grad


def _generator(layer, seed, generator):
    """The generator a random layer draws its masks from at forward time: ``generator`` itself (shared
    with whoever passed it), else a new one seeded by ``seed`` or by one draw from ``npunet.init.rng()``."""
    if generator is not None:
        if seed is not None:
            raise ValueError(f"{layer}: give seed or generator, not both")
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"{layer}: generator must be a numpy.random.Generator (npunet.manual_seed returns one), "
                            f"got {type(generator).__name__}")
        return generator
    return np.random.default_rng(seed if seed is not None else init.rng().integers(2 ** 63))


class Dropout(Module):
    """Inverted dropout: in training keep each unit with probability 1 - p and scale by 1/(1 - p);
    identity in eval.  The masks are drawn at forward time from ``generator`` (a NumPy Generator, e.g.
    the one ``npunet.manual_seed`` returns) when given, else from the layer's own generator, seeded by
    ``seed`` or, by default, by one number from ``npunet.init.rng()`` at construction."""

    _leaf = True
    _channelwise = False

    def __init__(self, p=0.5, seed=None, *, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)
        self._rng = _generator(type(self).__name__, seed, generator)

    def extra_repr(self):
        return f"p={self.p}"

    def _check(self, x):
        check_array(self, x, 4 if self._channelwise else np.ndim(x))
        return tuple(x.shape)

    def forward(self, x):
        self._check(x)
        if not self.training or self.p == 0:
            self._save(None, x)
            return x
        out, mask = ops().dropout_forward(x, self.p, self._rng, self._channelwise)
        self._save(mask, out)
        return out

    def backward(self, grad):
        backend, mask = self._restore(grad)
        return grad.copy() if mask is None else backend.dropout_backward(grad, mask)

    def kept(self, inputs, out):
        return [], 0 if not self.training or self.p == 0 else out.nbytes


class Dropout2d(Dropout):
    """Drops whole channels: one keep/drop draw per (n, c) of an (N, C, H, W) input."""

    _channelwise = True


class StochasticDepth(Module):
    """Stochastic depth (torchvision.ops.StochasticDepth, mode "row"; EfficientNet's "drop connect"):
    in training each sample's input, a residual branch, is zeroed with probability p and the kept ones
    are scaled by 1/(1 - p); identity in eval or with p = 0.  x: (N, ...).  seed, generator: as Dropout's."""

    _leaf = True

    def __init__(self, p, mode="row", seed=None, *, generator=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"StochasticDepth: p must be in [0, 1), got {p}")
        if mode != "row":
            raise ValueError(f"StochasticDepth: only mode='row' (one draw per sample) is implemented, got {mode!r}")
        self.p, self.mode = float(p), mode
        self._rng = _generator("StochasticDepth", seed, generator)

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}"

    def _check(self, x):
        check_array(self, x, np.ndim(x))
        return tuple(x.shape)

    def forward(self, x):
        self._check(x)
        if not self.training or self.p == 0:
            self._save(None, x)
            return x
        out, mask = ops().stochastic_depth_forward(x, self.p, self._rng)
        self._save(mask, out)
        return out

    def backward(self, grad):
        backend, mask = self._restore(grad)
        return grad.copy() if mask is None else backend.stochastic_depth_backward(grad, mask)
