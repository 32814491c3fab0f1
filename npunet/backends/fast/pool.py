"""Pooling: max-pool (a 2x2 stride-2 kernel of its own), adaptive max-pool, and the global average
pool of squeeze-and-excitation.  Planes (N*C) are split over the cores."""
import numpy as np

from ... import kernels
from ...kernels.util import split
from .. import reference
from ...geometry import conv_out_size, pair, pool_windows
from .parallel import plane_sums


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> out: (N, C, H_out, W_out), H_out = (H + 2p - k) // s + 1 (floor mode)."""
    (kh, kw) = pair(kernel_size)
    (sh, sw) = pair(stride if stride is not None else kernel_size)
    (ph, pw) = pair(padding)
    N, C, H, W = x.shape
    Ho, Wo = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        x = np.ascontiguousarray(x)
        out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
        arg = np.empty(out.shape, dtype=np.int32)
        split(kernels.maxpool2x2_fwd, N * C, x, out, arg)
        return out, (arg, x.shape, x.dtype)
    hs, he = pool_windows(H, Ho, kh, sh, ph)
    ws, we = pool_windows(W, Wo, kw, sw, pw)
    return _maxpool_windows(x, hs, he, ws, we)


def adaptive_maxpool2d_forward(x, output_size):
    """x: (N, C, H, W) -> (N, C, oh, ow); window o spans [floor(o*H/oh), ceil((o+1)*H/oh))."""
    oh, ow = pair(output_size)
    N, C, H, W = x.shape
    hs, he = pool_windows(H, oh, adaptive=True)
    ws, we = pool_windows(W, ow, adaptive=True)
    return _maxpool_windows(x, hs, he, ws, we)


def _maxpool_windows(x, hs, he, ws, we):
    """Max over the windows rows hs[i]:he[i] x columns ws[j]:we[j]; the cache keeps each max's index (arg)."""
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], x.shape[1], len(hs), len(ws)), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=np.int32)
    split(kernels.maxpool_fwd, x.shape[0] * x.shape[1], x, hs, he, ws, we, out, arg)
    return out, (arg, x.shape, x.dtype)


def maxpool2d_backward(dout, cache):
    """dout: (N, C, H_out, W_out) -> dx: (N, C, H, W); each gradient goes to its window's max."""
    arg, shape, dtype = cache
    dx = np.zeros(shape, dtype=dtype)
    split(kernels.maxpool_bwd, shape[0] * shape[1], np.ascontiguousarray(dout), arg, dx)
    return dx


adaptive_maxpool2d_backward = maxpool2d_backward


class GlobalAverageCache:
    """The input shape (N, C, H, W) of a global average pool."""

    def __init__(self, x_shape):
        self.x_shape = x_shape

    def backward(self, dout):
        """dout: (N, C, 1, 1) -> dx: (N, C, H, W), every pixel dout / (H*W)."""
        N, C, H, W = self.x_shape
        return np.broadcast_to(dout / (H * W), (N, C, H, W)).copy()


def adaptive_avgpool2d_forward(x, output_size):
    """x: (N, C, H, W) -> (N, C, oh, ow).  The global average (1, 1) of squeeze-and-excitation is one
    reduction; other sizes take the reference's window loop."""
    if pair(output_size) != (1, 1):
        return reference.adaptive_avgpool2d_forward(x, output_size)
    N, C, H, W = x.shape
    out = (plane_sums(x) / (H * W)).astype(x.dtype, copy=False).reshape(N, C, 1, 1)
    return out, GlobalAverageCache(x.shape)


def adaptive_avgpool2d_backward(dout, cache):
    """dout: (N, C, oh, ow) -> dx: (N, C, H, W)."""
    if isinstance(cache, GlobalAverageCache):
        return cache.backward(dout)
    return reference.adaptive_avgpool2d_backward(dout, cache)
