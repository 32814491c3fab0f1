"""Containers: Sequential (where BatchNorm2d + ReLU run as one fused backend pair) and ModuleList."""
from ..backends import current as ops
from .activation import ReLU
from .module import Module, tracing
from .norm import BatchNorm2d


class Sequential(Module):
    """Children run in order; backward runs them in reverse.  Children are named '0', '1', ..., or by
    a dict as in PyTorch: ``Sequential(OrderedDict(conv=..., bn=..., relu=...))`` (a None entry is no
    child: a block without BatchNorm).  The first child receives every input (a Concat, then a conv).

    A BatchNorm2d followed by a ReLU runs as the backend's pair ``batchnorm2d_relu`` (the fast backend
    does both in one pass over memory, the reference backend one after the other): the one place where
    npunet fuses layers.  Shape-only passes and traces call each layer, so that summaries list both."""

    _fused = frozenset()  # positions i whose BatchNorm2d ran with ReLU i + 1 in the last forward

    def __init__(self, *layers):
        super().__init__()
        named = layers[0].items() if len(layers) == 1 and isinstance(layers[0], dict) else enumerate(layers)
        for name, m in named:
            if m is not None:
                self.add_child(str(name), m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, *inputs):
        mods, fused, i = list(self._modules.values()), set(), 0
        while i < len(mods):
            if i + 1 < len(mods) and type(mods[i]) is BatchNorm2d and type(mods[i + 1]) is ReLU and not tracing():
                inputs = (_bn_relu_forward(mods[i], *inputs),)
                fused.add(i)
                i += 2
            else:
                inputs, i = (mods[i](*inputs),), i + 1
        self._fused = frozenset(fused)
        return inputs[0]

    def backward(self, grad):
        mods = list(self._modules.values())
        i = len(mods) - 1
        while i >= 0:
            if i - 1 in self._fused:
                grad, i = _bn_relu_backward(mods[i - 1], grad), i - 2
            else:
                grad, i = mods[i].backward(grad), i - 1
        return grad


def _bn_relu_forward(bn, x):
    """relu(bn(x)) through the backend's batchnorm2d_relu pair; bn keeps the cache (the ReLU has no parameters)."""
    bn._check(x)
    return bn._keep(x, *ops().batchnorm2d_relu_forward(x, *bn._arguments()))


def _bn_relu_backward(bn, grad):
    backend, cache = bn._restore(grad)
    return bn._add_grads(*backend.batchnorm2d_relu_backward(grad, cache))


class ModuleList(Module):
    """Children named '0', '1', ... (PyTorch's state_dict keys ``blocks.0.conv1.weight``); no forward:
    the owner calls them.  Indexing, len and iteration as a list."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_child(str(len(self._modules)), module)
        return self

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]
