"""The fast backend: the same pairs as ``reference.py``, built for speed.

Modules:
    conv.py              conv2d / conv_transpose2d: which strategy runs, every rule in one table
    depthwise.py         groups = channels: direct Numba loops
    direct.py            3x3 padding-1 float32 with few channels: direct Numba loops (no im2col)
    winograd.py          3x3 stride-1 float32: Winograd F(2x2, 3x3) / F(4x4, 3x3)
    pointwise.py         1x1: one GEMM per image on the input as it lies
    small_map.py         small maps: one im2col + GEMM split over channels
    im2col_tiles.py      everything else: im2col + GEMM in tiles, parallel tile pipelines
    upconv_disjoint.py   transposed conv with kernel = stride (U-Net's up-conv): GEMM + shuffle
    transposed_tiles.py  other transposed convs: GEMM + col2im in tiles
    pool.py, interpolate.py, batchnorm.py   Numba kernels split over channels or planes
    activation.py        SiLU in cache-sized blocks of NumPy ufuncs on every core; the SE product's backward
    tiling.py, gemm.py, parallel.py          tiles and conv geometry, grouped GEMMs, threads and scratch
    options.py           the tuning knobs (``npunet.fast_options``)

Every kernel has a NumPy twin in ``npunet.kernels`` and every op here is tested against its
reference twin.  Ops with no faster form (ReLU, sigmoid, UNet 3+'s CGM gate, dropout, the joins but mul) are the
reference's own.
"""
from ..reference import (add_backward, add_forward, center_crop_backward, center_crop_forward,  # noqa: F401
                         cgm_gate_backward, cgm_gate_forward, concat_backward, concat_forward, crop_concat_backward, crop_concat_forward,
                         dropout_backward, dropout_forward, mul_forward, relu_backward,
                         relu_forward, relu6_backward, relu6_forward, sigmoid, sigmoid_backward,
                         sigmoid_forward, stochastic_depth_backward,
                         stochastic_depth_forward, zero_pad2d_backward, zero_pad2d_forward,
                         pad2d_backward, pad2d_forward)
from .activation import mul_backward, silu_backward, silu_forward  # noqa: F401
from . import (depthwise, direct, im2col_tiles, pointwise, small_map, transposed_tiles,  # noqa: F401  (the strategies)
               upconv_disjoint, winograd)
from .batchnorm import (batchnorm2d_backward, batchnorm2d_forward, batchnorm2d_relu_backward,  # noqa: F401
                        batchnorm2d_relu_forward)
from .conv import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,  # noqa: F401
                   conv_transpose2d_forward)
from .interpolate import interpolate_backward, interpolate_forward  # noqa: F401
from .options import OPTIONS, fast_options  # noqa: F401
from .pool import (adaptive_avgpool2d_backward, adaptive_avgpool2d_forward,  # noqa: F401
                   adaptive_maxpool2d_backward, adaptive_maxpool2d_forward, maxpool2d_backward,
                   maxpool2d_forward)
