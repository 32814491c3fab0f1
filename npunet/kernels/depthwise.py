"""Depthwise convolution (groups = channels, one k x k filter per channel; MobileNet, EfficientNet)
as direct loops: a GEMM per group would be a 1 x (k*k) matrix product, all overhead.

x is the zero-padded input (N, C, Hp, Wp); w: (C, k_h, k_w); out: (N, C, H_out, W_out) with
out[n, c, i, j] = sum_{u, v} x[n, c, i*s_h + u, j*s_w + v] * w[c, u, v].
Twins: ``depthwise_fwd_ref`` / ``depthwise_bwd_ref`` below.
The loops are serial, release the GIL and run over plane (channel) ranges on every core through
``util.split``: Numba's ``parallel=True`` compiles several times slower (a cold start pays it).
"""
import numpy as np
from numba import njit

from .util import split


def depthwise_fwd(x, w, sh, sw, out):
    """out (N, C, Ho, Wo) = depthwise correlation of the padded x (N, C, Hp, Wp) with w (C, kh, kw).
    Planes (n, c) split over the cores: each writes its own output plane."""
    split(_depthwise_fwd_planes, out.shape[0] * out.shape[1], x, w, sh, sw, out)


def depthwise_bwd(dout, x, w, sh, sw, dx, dw):
    """dx (N, C, Hp, Wp) and dw (C, kh, kw), both zero on entry, += the gradients of depthwise_fwd.
    Channels split over the cores (every channel owns its dw[c] and its dx planes)."""
    split(_depthwise_bwd_channels, dout.shape[1], dout, x, w, sh, sw, dx, dw)


@njit(cache=True, nogil=True)
def _depthwise_fwd_planes(p0, p1, x, w, sh, sw, out):
    """depthwise_fwd for planes nc = n*C + c in p0..p1-1."""
    N, C, Ho, Wo = out.shape
    kh, kw = w.shape[1], w.shape[2]
    for nc in range(p0, p1):
        n = nc // C
        c = nc % C
        for i in range(Ho):
            for j in range(Wo):
                out[n, c, i, j] = 0.0
        for u in range(kh):
            for v in range(kw):
                wt = w[c, u, v]
                for i in range(Ho):
                    row = i * sh + u
                    for j in range(Wo):
                        out[n, c, i, j] += wt * x[n, c, row, j * sw + v]


@njit(cache=True, nogil=True)
def _depthwise_bwd_channels(c0, c1, dout, x, w, sh, sw, dx, dw):
    """depthwise_bwd for channels c0..c1-1."""
    N, C, Ho, Wo = dout.shape
    kh, kw = w.shape[1], w.shape[2]
    for c in range(c0, c1):
        for n in range(N):
            for u in range(kh):
                for v in range(kw):
                    wt = w[c, u, v]
                    acc = 0.0
                    for i in range(Ho):
                        row = i * sh + u
                        for j in range(Wo):
                            g = dout[n, c, i, j]
                            acc += g * x[n, c, row, j * sw + v]
                            dx[n, c, row, j * sw + v] += g * wt
                    dw[c, u, v] += acc


def depthwise_fwd_ref(x, w, sh, sw, out_hw):
    """NumPy twin of :func:`depthwise_fwd`: one shifted, strided slice per tap."""
    Ho, Wo = out_hw
    out = np.zeros(x.shape[:2] + (Ho, Wo), dtype=x.dtype)
    for u in range(w.shape[1]):
        for v in range(w.shape[2]):
            out += w[None, :, u, v, None, None] * x[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw]
    return out


def depthwise_bwd_ref(dout, x, w, sh, sw):
    """NumPy twin of :func:`depthwise_bwd`; returns (dx padded, dw)."""
    Ho, Wo = dout.shape[2:]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for u in range(w.shape[1]):
        for v in range(w.shape[2]):
            window = x[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw]
            dw[:, u, v] = (dout * window).sum(axis=(0, 2, 3))
            dx[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] += dout * w[None, :, u, v, None, None]
    return dx, dw
