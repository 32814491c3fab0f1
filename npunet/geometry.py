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


def interp_indices(size_in, size_out, mode, align_corners=False, scale=None):
    """Source indices and weights along one axis, following PyTorch exactly.

    bilinear, align_corners=True:  src = o * (in - 1) / (out - 1)
    bilinear, align_corners=False: src = (o + 0.5) / s - 0.5, clamped at 0,
        s = scale_factor if given else out / in
    nearest: src = floor(o / s), clamped to in - 1.
    Returns (i0, i1, lam): int64, int64, float64 arrays of length size_out.
    """
    o = np.arange(size_out, dtype=np.float64)
    s = scale if scale is not None else size_out / size_in
    if mode == "nearest":
        i0 = np.minimum(np.floor(o / s).astype(np.int64), size_in - 1)
        return i0, i0.copy(), np.zeros(size_out)
    if align_corners:
        src = o * ((size_in - 1) / (size_out - 1)) if size_out > 1 else np.zeros(size_out)
    else:
        src = np.maximum((o + 0.5) / s - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    i1 = np.minimum(i0 + 1, size_in - 1)
    return i0, i1, src - i0
