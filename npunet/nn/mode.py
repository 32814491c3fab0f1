"""How forwards run, per thread (fields of npunet's one settings object, npunet/settings.py): with or
without caches (``no_grad``), on shape-only stand-ins (``shape_only``, ``Meta``), with which NaN/Inf checks
(``set_checks``)."""
from contextlib import contextmanager

import numpy as np

from ..settings import settings


class Meta:
    """A stand-in array that only has a shape and dtype (used by summary/shape traces)."""

    def __init__(self, shape, dtype=np.float32):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __repr__(self):
        return f"Meta{self.shape}"

    def _broadcast(self, other):
        other_shape = other.shape if isinstance(other, Meta) else np.shape(other)
        return Meta(np.broadcast_shapes(self.shape, tuple(other_shape)), self.dtype)

    # arithmetic on stand-ins gives the result's shape, so model code needs no shape-only branch
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _broadcast


# The mode flags (shape-only, trace, NaN/Inf checks, call depth, grad) are fields of npunet's one
# settings object, per thread: see npunet/settings.py.
_mode = settings


def set_checks(finite=True):
    """The NaN/Inf scan of inputs (this thread).  True (default): the inputs of the outermost module
    call are scanned once (a model's input; the losses scan their logits), one pass per step instead
    of one per layer.  "every": every layer scans its input, which names the first layer whose input
    went bad (for debugging; ~10 % slower).  False: no scan."""
    if finite not in (True, False, "every"):
        raise ValueError(f"set_checks: finite must be True, False or 'every', got {finite!r}")
    _mode.check_finite = finite


def is_grad_enabled():
    """False inside ``npunet.no_grad()`` (this thread)."""
    return _mode.grad


@contextmanager
def no_grad():
    """``with npunet.no_grad(): y = model(x)``: forwards keep nothing for backward (PyTorch's
    ``torch.no_grad()``), so only the live activations take memory; a backward afterwards raises,
    naming the layer.  ``npunet.inference_mode()`` is the same."""
    old = _mode.grad
    _mode.grad = False
    try:
        yield
    finally:
        _mode.grad = old


inference_mode = no_grad


def tracing():
    """True inside shape_only() (or any pass that records the leaf calls)."""
    return _mode.meta or _mode.trace is not None


@contextmanager
def shape_only():
    """Inside this block module calls propagate shapes (Meta objects) instead of arrays;
    yields the list of leaf calls (module, inputs, output)."""
    old = _mode.meta, _mode.trace
    _mode.meta, _mode.trace = True, []
    try:
        yield _mode.trace
    finally:
        _mode.meta, _mode.trace = old
