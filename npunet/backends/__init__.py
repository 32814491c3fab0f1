"""Two implementations of every op behind one signature.

- ``reference``: the textbook.  Plain NumPy, no Numba, no threads; every backward in one screen.
- ``fast``: the engine.  Numba kernels, tiled GEMMs, parallel pipelines; each piece checked
  against its reference twin.

Every op is a pair ``xxx_forward(...) -> (out, cache)`` / ``xxx_backward(dout, cache) -> grads``
with the same arguments and results in both backends (``OPS`` lists them).  Layers call the
pair of the backend selected when their forward runs, and keep it for their backward.

    npunet.set_backend("reference")        # for the rest of the program (or this thread/context)
    with npunet.backend("reference"):      # for one block
        y = model(x)
"""
import importlib
from contextlib import contextmanager

from ..settings import Settings, settings

NAMES = ("reference", "fast")
DEFAULT = Settings.backend  # "fast"

OPS = ("conv2d", "conv_transpose2d", "maxpool2d", "adaptive_maxpool2d", "adaptive_avgpool2d", "interpolate",
       "batchnorm2d", "batchnorm2d_relu", "zero_pad2d", "pad2d", "relu", "relu6", "silu", "sigmoid", "cgm_gate", "dropout", "stochastic_depth", "crop_concat",
       "center_crop", "concat", "add", "mul")


def _module(name):
    if name not in NAMES:
        raise ValueError(f"npunet backend must be one of {NAMES}, got {name!r}")
    return importlib.import_module(f".{name}", __name__)


def set_backend(name):
    """Select the backend ("reference" or "fast") for every op that runs from now on in this
    thread (new threads start with the default, "fast")."""
    _module(name)
    settings.backend = name  # per thread (npunet.settings), so that a selection persists across notebook cells


def get_backend():
    """The name of the selected backend."""
    return settings.backend


@contextmanager
def backend(name):
    """``with npunet.backend("reference"): ...`` runs the block on that backend, then restores."""
    mod = _module(name)
    previous = settings.backend
    settings.backend = name
    try:
        yield mod
    finally:
        settings.backend = previous


def current():
    """The selected backend's module (``reference`` or ``fast``)."""
    return _module(get_backend())


def step_threads():
    """Context for one whole training step (forward, loss, backward, update) on the fast backend:
    BLAS stays on one thread for the whole step (blas.single_thread) instead of being limited and
    restored op by op; the fast backend does its own parallel work (tile pipelines, Winograd threads).
    A no-op on the reference backend.  The Trainer and the bench use it."""
    from contextlib import nullcontext
    from . import blas
    return blas.single_thread() if get_backend() == "fast" else nullcontext()
