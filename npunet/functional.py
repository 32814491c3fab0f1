"""The ops as forward/backward pairs, taken from the selected backend.

``F.conv2d_forward`` is ``npunet.backends.current().conv2d_forward`` at the moment you look it up:
the reference pair under ``npunet.backend("reference")``, the fast one otherwise.  A cache must go
back to the backward of the backend that made it (layers keep track of that themselves).
The readable implementations are in ``npunet/backends/reference.py``.
"""
from .backends import current
from .geometry import conv_out_size, conv_transpose_out_size  # noqa: F401
from .backends.reference import conv2d_naive, sigmoid  # noqa: F401


def __getattr__(name):
    return getattr(current(), name)
