"""The layers, one module per topic: conv.py (Conv2d, the protocol written out in full; ConvTranspose2d),
pool.py, norm.py, activation.py, join.py, container.py; op.py holds ``Op``, the generic layer for an op
that is one backend pair.  Each layer validates, holds its parameters and cache, and calls the pairs of
the selected backend (``npunet/backends/reference.py`` reads like a textbook; ``npunet/backends/fast/``
computes the same faster).  ``npunet.nn.layers.X`` still names every layer."""
from .activation import (Dropout, Dropout2d, Identity, ReLU, ReLU6, Sigmoid, SiLU,  # noqa: F401
                         StochasticDepth)
from .container import ModuleList, Sequential  # noqa: F401
from .conv import Conv2d, ConvTranspose2d  # noqa: F401
from .join import Add, CenterCrop, Concat, CropConcat, Flatten, Mul  # noqa: F401
from .norm import BatchNorm2d  # noqa: F401
from .op import Op  # noqa: F401
from .pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d, MaxPool2d, Upsample, ZeroPad2d  # noqa: F401
