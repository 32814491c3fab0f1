"""im2col / col2im: turn a convolution into one matrix product.

Geometry (PyTorch's): output row ``oh`` and column ``ow`` read input pixel
``(oh*sh - ph + i, ow*sw - pw + j)`` for kernel tap ``(i, j)``; taps that fall
into the zero padding read 0.

Column layout (one tile = images n0..n1-1, output rows oh0..oh1-1):
  cols: (C*kh*kw, (n1-n0)*(oh1-oh0)*W_out)
  row    = (c*kh + i)*kw + j              (channel-major, so groups are row blocks)
  column = ((n-n0)*(oh1-oh0) + (oh-oh0))*W_out + ow

These kernels run serially on purpose, like every kernel in npunet.kernels (none uses Numba's
``parallel=True``): a parallel Numba region next to the BLAS threads makes the two thread pools
fight for the cores (measured: 5x slower GEMMs).
They release the GIL, so the fast backend runs several tile pipelines (im2col + a GEMM
each) in Python threads, which keeps every core busy.  Twins: ``im2col_ref`` /
``col2im_ref`` and ``im2col_wide_ref`` / ``col2im_wide_ref`` below.
"""
import numpy as np
from numba import njit


# Copies as element loops over views, not slice assignments (dst[a:b] = src[c:d]): those pull in Numba's
# broadcasting checks and their error-message formatting, ~3 s of compilation on a cold start.  The index
# runs from 0, so LLVM sees it is never negative and vectorises the loop like a memcpy.

@njit(inline="always")
def _copy(dst, src, k):
    """dst[:k] = src[:k]."""
    for q in range(k):
        dst[q] = src[q]


@njit(inline="always")
def _add(dst, src, k):
    """dst[:k] += src[:k]."""
    for q in range(k):
        dst[q] += src[q]


@njit(inline="always")
def _zero(dst, k):
    """dst[:k] = 0."""
    for q in range(k):
        dst[q] = 0


@njit(cache=True)
def _valid_range(j, pw, sw, W, W_out):
    """Output columns ow whose tap column ow*sw - pw + j lies inside [0, W)."""
    lo = 0
    if pw - j > 0:
        lo = (pw - j + sw - 1) // sw
    hi = (W - 1 + pw - j) // sw + 1 if W - 1 + pw - j >= 0 else 0
    if hi > W_out:
        hi = W_out
    if lo > hi:
        lo = hi
    return lo, hi


@njit(cache=True, nogil=True)
def im2col(x, n0, n1, oh0, oh1, kh, kw, sh, sw, ph, pw, W_out, cols):
    """x: (N, C, H, W) -> cols: (C*kh*kw, (n1-n0)*(oh1-oh0)*W_out), written in place."""
    N, C, H, W = x.shape
    R = oh1 - oh0
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid_range(j, pw, sw, W, W_out)
                for n in range(n0, n1):
                    for oh in range(oh0, oh1):
                        h = oh * sh - ph + i
                        base = ((n - n0) * R + (oh - oh0)) * W_out
                        if h < 0 or h >= H:
                            cols[row, base:base + W_out] = 0
                            continue
                        cols[row, base:base + lo] = 0
                        cols[row, base + hi:base + W_out] = 0
                        w0 = lo * sw - pw + j
                        for ow in range(lo, hi):
                            cols[row, base + ow] = x[n, c, h, w0 + (ow - lo) * sw]


@njit(cache=True, nogil=True)
def col2im(cols, n0, n1, oh0, oh1, kh, kw, sh, sw, ph, pw, W_out, dx):
    """Adjoint of im2col: dx (N, C, H, W) += scatter of cols.  Taps of neighbouring
    outputs overlap in dx, so splitting this loop over threads would have to go by channel."""
    N, C, H, W = dx.shape
    R = oh1 - oh0
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid_range(j, pw, sw, W, W_out)
                for n in range(n0, n1):
                    for oh in range(oh0, oh1):
                        h = oh * sh - ph + i
                        if h < 0 or h >= H:
                            continue
                        base = ((n - n0) * R + (oh - oh0)) * W_out
                        w0 = lo * sw - pw + j
                        for ow in range(lo, hi):
                            dx[n, c, h, w0 + (ow - lo) * sw] += cols[row, base + ow]


@njit(cache=True, nogil=True)
def im2col_wide(x, n0, n1, oh0, oh1, kh, kw, cols):
    """Stride-1, unpadded im2col on the *wide* grid (every output row W wide).

    x: (N, C, H, W); cols: (C*kh*kw, (n1-n0)*R*W), R = oh1 - oh0.
    On the wide grid tap (i, j) of output p = oh*W + ow reads x_flat[p + i*W + j],
    so each row of cols is one contiguous run of the flattened image: a memcpy.
    Columns ow >= W - kw + 1 are junk (cropped by the caller); runs past the end
    of the image are zero-filled.
    """
    N, C, H, W = x.shape
    R = oh1 - oh0
    L = R * W
    HW = H * W
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for n in range(n0, n1):
                    s = (oh0 + i) * W + j
                    m = min(L, HW - s)
                    b = (n - n0) * L
                    p = 0
                    while p < m:  # the run, image row by image row
                        h, w = (s + p) // W, (s + p) % W
                        k = min(W - w, m - p)
                        _copy(cols[row, b + p:], x[n, c, h, w:], k)
                        p += k
                    _zero(cols[row, b + m:], L - m)


@njit(cache=True, nogil=True)
def col2im_wide(cols, n0, n1, oh0, oh1, kh, kw, dx):
    """Adjoint of im2col_wide: dx (N, C, H, W) += cols (junk columns must be 0)."""
    N, C, H, W = dx.shape
    R = oh1 - oh0
    L = R * W
    HW = H * W
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for n in range(n0, n1):
                    s = (oh0 + i) * W + j
                    m = min(L, HW - s)
                    b = (n - n0) * L
                    p = 0
                    while p < m:  # row by row, as in im2col_wide
                        h, w = (s + p) // W, (s + p) % W
                        k = min(W - w, m - p)
                        _add(dx[n, c, h, w:], cols[row, b + p:], k)
                        p += k


def _tap_view(x, n0, n1, oh0, oh1, kh, kw, sh, sw, ph, pw, W_out):
    """Reference helper: padded input and the slices each tap (i, j) reads."""
    xp = np.pad(x[n0:n1], ((0, 0), (0, 0), (ph, ph + kh + sh), (pw, pw + kw + sw)))
    R = oh1 - oh0
    for i in range(kh):
        for j in range(kw):
            hs = slice(oh0 * sh + i, oh0 * sh + i + sh * R, sh)
            ws = slice(j, j + sw * W_out, sw)
            yield i, j, xp, hs, ws


def im2col_ref(x, n0, n1, oh0, oh1, kh, kw, sh, sw, ph, pw, W_out):
    """NumPy twin of :func:`im2col`; returns a new cols array."""
    C = x.shape[1]
    R = oh1 - oh0
    cols = np.empty((C, kh, kw, n1 - n0, R, W_out), dtype=x.dtype)
    for i, j, xp, hs, ws in _tap_view(x, n0, n1, oh0, oh1, kh, kw, sh, sw, ph, pw, W_out):
        cols[:, i, j] = xp[:, :, hs, ws].transpose(1, 0, 2, 3)  # (C, n, R, W_out)
    return cols.reshape(C * kh * kw, -1)


def col2im_ref(cols, x_shape, n0, n1, oh0, oh1, kh, kw, sh, sw, ph, pw, W_out):
    """NumPy twin of :func:`col2im`; returns the scattered (N, C, H, W) array."""
    N, C, H, W = x_shape
    R = oh1 - oh0
    c6 = cols.reshape(C, kh, kw, n1 - n0, R, W_out)
    Hp, Wp = H + 2 * ph + kh + sh, W + 2 * pw + kw + sw
    dxp = np.zeros((n1 - n0, C, Hp, Wp), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            hs = slice(oh0 * sh + i, oh0 * sh + i + sh * R, sh)
            ws = slice(j, j + sw * W_out, sw)
            dxp[:, :, hs, ws] += c6[:, i, j].transpose(1, 0, 2, 3)
    dx = np.zeros(x_shape, dtype=cols.dtype)
    dx[n0:n1] = dxp[:, :, ph:ph + H, pw:pw + W]
    return dx


def im2col_wide_ref(x, n0, n1, oh0, oh1, kh, kw):
    """NumPy twin of :func:`im2col_wide`: each row is a run of the flattened image (zero past its end)."""
    N, C, H, W = x.shape
    L = (oh1 - oh0) * W
    flat = np.concatenate([x[n0:n1].reshape(n1 - n0, C, H * W), np.zeros((n1 - n0, C, L + kh * W + kw), x.dtype)], 2)
    cols = np.empty((C, kh, kw, n1 - n0, L), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            s = (oh0 + i) * W + j
            cols[:, i, j] = flat[:, :, s:s + L].transpose(1, 0, 2)      # (C, n, L)
    return cols.reshape(C * kh * kw, -1)


def col2im_wide_ref(cols, x_shape, n0, n1, oh0, oh1, kh, kw):
    """NumPy twin of :func:`col2im_wide`; returns the scattered (N, C, H, W) array."""
    N, C, H, W = x_shape
    L = (oh1 - oh0) * W
    c5 = cols.reshape(C, kh, kw, n1 - n0, L)
    flat = np.zeros((n1 - n0, C, H * W + L + kh * W + kw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            s = (oh0 + i) * W + j
            flat[:, :, s:s + L] += c5[:, i, j].transpose(1, 0, 2)
    dx = np.zeros(x_shape, dtype=cols.dtype)
    dx[n0:n1] = flat[:, :, :H * W].reshape(n1 - n0, C, H, W)
    return dx


# ---------------------------------------------------------------- up-convolution with kernel = stride

@njit(cache=True, nogil=True)
def upconv_shuffle(cols, kh, kw, bias, out):
    """The scatter of a transposed convolution whose kernel equals its stride (U-Net's 2x2 up-conv):
    the kernel's taps never overlap, so every output pixel receives exactly one product.
    cols: (C_o*kh*kw, H*W) for one image, rows (o*kh + u)*kw + v; bias: (C_o,);
    out: (C_o, H*kh, W*kw), out[o, i*kh + u, j*kw + v] = cols[(o*kh + u)*kw + v, i*W + j] + bias[o]."""
    Co, Ho, Wo = out.shape
    H, W = Ho // kh, Wo // kw
    for o in range(Co):
        b = bias[o]
        for i in range(H):
            for u in range(kh):
                for v in range(kw):
                    r = (o * kh + u) * kw + v
                    for j in range(W):
                        out[o, i * kh + u, j * kw + v] = cols[r, i * W + j] + b


@njit(cache=True, nogil=True)
def upconv_unshuffle(dout, kh, kw, dcols):
    """Adjoint of upconv_shuffle (a gather): dcols[(o*kh + u)*kw + v, i*W + j] = dout[o, i*kh + u, j*kw + v].
    dout: (C_o, H*kh, W*kw) for one image; dcols: (C_o*kh*kw, H*W)."""
    Co, Ho, Wo = dout.shape
    H, W = Ho // kh, Wo // kw
    for o in range(Co):
        for i in range(H):
            for u in range(kh):
                for v in range(kw):
                    r = (o * kh + u) * kw + v
                    for j in range(W):
                        dcols[r, i * W + j] = dout[o, i * kh + u, j * kw + v]


def upconv_shuffle_ref(cols, kh, kw, bias, H, W):
    """NumPy twin of :func:`upconv_shuffle`: a reshape and a transpose."""
    Co = cols.shape[0] // (kh * kw)
    out = cols.reshape(Co, kh, kw, H, W).transpose(0, 3, 1, 4, 2).reshape(Co, H * kh, W * kw)
    return out + bias[:, None, None]


def upconv_unshuffle_ref(dout, kh, kw):
    """NumPy twin of :func:`upconv_unshuffle`."""
    Co, Ho, Wo = dout.shape
    H, W = Ho // kh, Wo // kw
    return dout.reshape(Co, H, kh, W, kw).transpose(0, 2, 4, 1, 3).reshape(Co * kh * kw, H * W)
