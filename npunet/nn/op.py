"""``Op``: the generic layer for an op that is one backend pair with hyperparameters.

``Conv2d`` (conv.py) shows the layer protocol written out in full; most other layers do exactly the
same four steps (check the inputs, call the backend's forward, keep the cache, hand the gradient to
the backend's backward) with nothing but the pair's name and its hyperparameters changing.  ``Op``
does those steps once.  Adding an op takes three places:

1. ``npunet/backends/reference.py``: ``xxx_forward(*inputs, *hyperparameters) -> (out, cache)`` and
   ``xxx_backward(dout, cache) -> dx`` (a tuple for several inputs), and the name in ``backends.OPS``;
2. ``npunet/backends/fast/``: the same two functions (or the reference's own, imported in
   ``fast/__init__.py``);
3. one layer declaration::

       class ZeroPad2d(Op):
           op = "zero_pad2d"                   # the pair zero_pad2d_forward / zero_pad2d_backward

           def __init__(self, padding):        # PyTorch's signature; validate, keep the hyperparameters
               ...
           def _check(self, x):                # validate the inputs -> the output shape
               ...
           def arguments(self, shape):         # what the pair takes after the inputs
               return (self.padding,)
"""
from ..backends import current as ops
from .module import Module


class Op(Module):
    """A leaf layer that runs the backend pair ``<op>_forward`` / ``<op>_backward``.

    forward(*inputs): ``shape = self._check(*inputs)``; ``out, cache = <op>_forward(*inputs,
    *self.arguments(shape))``; keep the cache with the backend that made it; return out.
    backward(grad): ``<op>_backward(grad, cache)`` of the same backend: dx, or a tuple of one gradient
    per input.  An op with parameters or a second code path (Conv2d, BatchNorm2d, Dropout) is written
    out instead."""

    _leaf = True
    op = None               # the pair's name, one of backends.OPS
    keeps_inputs = False    # True when the cache references the inputs themselves (not copies):
                            # backward then checks that nobody modified them in place meanwhile

    def arguments(self, shape):
        """The pair's arguments after the inputs: this layer's hyperparameters.  shape: the output
        shape ``_check`` returned (for ops that take the output size)."""
        return ()

    def forward(self, *inputs):
        shape = self._check(*inputs)
        out, cache = getattr(ops(), f"{self.op}_forward")(*inputs, *self.arguments(shape))
        self._save(cache, out, watch=inputs if self.keeps_inputs else ())
        return out

    def backward(self, grad):
        backend, cache = self._restore(grad)
        return getattr(backend, f"{self.op}_backward")(grad, cache)


def _forward_cache(m):
    """The cache of m's last forward (None after its backward or before any forward)."""
    c = m._cache
    return c[1] if isinstance(c, tuple) else None
