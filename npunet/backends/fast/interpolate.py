"""Nearest and bilinear resampling as Numba kernels, planes (N*C) split over the cores."""
import numpy as np

from ... import kernels
from ...kernels.util import split
from ...geometry import interp_indices


def interpolate_forward(x, size, mode="nearest", align_corners=None, scale=None):
    """x: (N, C, H, W) -> (N, C, size[0], size[1]).

    scale: (s_h, s_w) scale factors when the user gave them (PyTorch then uses
    1/s, not in/out, to place the samples).  See geometry.interp_indices.
    """
    N, C, H, W = x.shape
    oh, ow = size
    sh, sw = scale if scale is not None else (None, None)
    ac = bool(align_corners)
    iy = interp_indices(H, oh, mode, ac, sh)    # (first source row, second source row, weight of the second)
    ix = interp_indices(W, ow, mode, ac, sw)    # the same along x
    iy = (iy[0], iy[1], iy[2].astype(x.dtype))
    ix = (ix[0], ix[1], ix[2].astype(x.dtype))
    out = np.empty((N, C, oh, ow), dtype=x.dtype)
    split(kernels.interp_fwd, N * C, np.ascontiguousarray(x), *iy, *ix, out)   # planes split over cores
    return out, (iy, ix, x.shape, x.dtype)


def interpolate_backward(dout, cache):
    """dout: (N, C, H_out, W_out) -> dx: (N, C, H, W) (scatter with the same weights)."""
    iy, ix, shape, dtype = cache
    dx = np.zeros(shape, dtype=dtype)
    split(kernels.interp_bwd, shape[0] * shape[1], np.ascontiguousarray(dout), *iy, *ix, dx)
    return dx
