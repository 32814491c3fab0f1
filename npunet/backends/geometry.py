"""Output-size formulas and argument normalisation shared by both backends and the layers."""
import math

import numpy as np


def pair(v):
    """An int or a 2-sequence -> (int, int)."""
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def conv_out_size(size, k, s, p):
    """Convolution and pooling: H_out = (H + 2p - k) // s + 1."""
    return (size + 2 * p - k) // s + 1


def conv_transpose_out_size(size, k, s, p, op=0):
    """Transposed convolution: H_out = (H - 1)*s - 2p + k + output_padding."""
    return (size - 1) * s - 2 * p + k + op


def upsample_out_size(size, scale):
    """Upsample with a scale factor: H_out = floor(H * scale)."""
    return int(math.floor(size * scale))


def pool_windows(size, out, kernel=None, stride=None, padding=0, adaptive=False):
    """Max-pool window starts/ends along one axis, clipped to the input: window o is [start[o], end[o]).

    Regular: start = o*stride - padding, end = start + kernel.
    Adaptive: start = floor(o*size/out), end = ceil((o+1)*size/out).
    Regular and adaptive pooling differ only in these index arrays.
    """
    o = np.arange(out, dtype=np.int64)
    if adaptive:
        start = (o * size) // out
        end = -((-(o + 1) * size) // out)
    else:
        start = o * stride - padding
        end = start + kernel
    return np.clip(start, 0, size), np.clip(end, 0, size)


def crop_offsets(big, small):
    """Top/left offsets of a centre crop from (H, W) = big to small: ((H - h) // 2, (W - w) // 2)."""
    return (big[0] - small[0]) // 2, (big[1] - small[1]) // 2
