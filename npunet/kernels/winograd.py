"""Winograd F(2x2, 3x3) transforms (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016, section 4): a 3x3 stride-1 convolution computed on 4x4 input tiles that
overlap by 2, each giving a 2x2 output tile,

    Y = A^T [ (G W G^T) (.) (B^T D B) ] A           (eq. 8 of the paper; (.) = elementwise)

with D one 4x4 input tile, W one 3x3 kernel, and the transform matrices below.  Summed over
input channels the elementwise products become 16 independent matrix products, one per tile
position xi = 4a + b:  M[xi] = U[xi] (C_out x C_in) @ V[xi] (C_in x tiles).  That is 16
multiplications per output tile per channel pair instead of 36 (2.25x fewer).

Layout (one band = images n0..n1-1, tile rows ty0..ty1-1, TW tiles per row):
  x:  (N, C, H, W)                 read as if zero-padded: ph rows / pw columns before (PyTorch's
                                   padding), zeros after (up to 2*TH + 2 rows, 2*TW + 2 columns)
  V:  (16, C, T)                   T = (n1-n0) * (ty1-ty0) * TW, column t = ((n-n0)*(ty1-ty0) + ty-ty0)*TW + tx
  M:  (16, O, T)                   likewise for the products
  out: (N, O, H_out, W_out)        output tile (ty, tx) covers rows 2ty..2ty+1, columns 2tx..2tx+1

The backward passes are the adjoints (transposes) of the same linear maps:
  dM = A dY A^T  (output_transform_adjoint),  dV = U^T dM,  dU = dM V^T,  dD = B dV B^T
  (input_transform_adjoint, scatter-added: neighbouring tiles overlap),  dW = G^T dU G.
So the Winograd gradient is the exact gradient of the Winograd forward.  Twins: ``*_ref``.

Every kernel takes a channel range c0..c1 first (input channels for the input transforms, output
channels for the others) and releases the GIL: the fast backend runs one range per core in threads.
(Serial kernels compile 2-3x faster than Numba ``parallel=True`` ones, which matters on a cold start.)
F(4x4, 3x3), the same on 6x6 tiles, is in :mod:`npunet.kernels.winograd4` (imported here); the NumPy
twins of both are at the end of this module.
"""
import numpy as np
from numba import njit

from .conv import _load_rows, _store_rows
from .winograd4 import (AT4, BT4, G4, input_transform_4, input_transform_4_adjoint,  # noqa: F401 (F(4x4, 3x3))
                        input_transform_4_adjoint_ref, input_transform_4_ref, output_transform_4,
                        output_transform_4_adjoint, output_transform_4_adjoint_ref, output_transform_4_ref,
                        weight_transform_4, weight_transform_4_adjoint, weight_transform_4_adjoint_ref,
                        weight_transform_4_ref)

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


# ------------------------------------------------------------ Numba kernels
# The 1-D transforms, written out (their matrices above).  Each 2-D transform applies one to the
# rows of a tile, then to the columns.

@njit(inline="always")
def _bt(d0, d1, d2, d3):
    """B^T d."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _b(v0, v1, v2, v3):
    """B v (the adjoint of B^T)."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@njit(inline="always")
def _at(m0, m1, m2, m3):
    """A^T m."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always")
def _a(y0, y1):
    """A y (the adjoint of A^T)."""
    return y0, y0 + y1, y0 - y1, -y1


@njit(inline="always")
def _g(k0, k1, k2):
    """G k."""
    return k0, 0.5 * (k0 + k1 + k2), 0.5 * (k0 - k1 + k2), k2


@njit(inline="always")
def _gt(u0, u1, u2, u3):
    """G^T u (the adjoint of G)."""
    return u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3


@njit(cache=True, nogil=True)
def weight_transform(c0, c1, w, U):
    """U[4a + b, o, c] = (G w[o, c] G^T)[a, b].  w: (O, C, 3, 3), U: (16, O, C)."""
    C = w.shape[1]
    for o in range(c0, c1):
        for c in range(C):
            k = w[o, c]
            # G w: column j of the kernel -> column j of the 4 rows p, q, r, u
            p0, q0, r0, u0 = _g(k[0, 0], k[1, 0], k[2, 0])
            p1, q1, r1, u1 = _g(k[0, 1], k[1, 1], k[2, 1])
            p2, q2, r2, u2 = _g(k[0, 2], k[1, 2], k[2, 2])
            # (G w) G^T: each row through G again
            U[0, o, c], U[1, o, c], U[2, o, c], U[3, o, c] = _g(p0, p1, p2)
            U[4, o, c], U[5, o, c], U[6, o, c], U[7, o, c] = _g(q0, q1, q2)
            U[8, o, c], U[9, o, c], U[10, o, c], U[11, o, c] = _g(r0, r1, r2)
            U[12, o, c], U[13, o, c], U[14, o, c], U[15, o, c] = _g(u0, u1, u2)


@njit(cache=True, nogil=True)
def weight_transform_adjoint(c0, c1, dU, dw):
    """dw[o, c] = G^T dU[:, o, c] G (dU read as 4x4).  dU: (16, O, C), dw: (O, C, 3, 3)."""
    C = dw.shape[1]
    for o in range(c0, c1):
        for c in range(C):
            # G^T dU: column b of dU -> column b of the 3 rows p, q, r
            p0, q0, r0 = _gt(dU[0, o, c], dU[4, o, c], dU[8, o, c], dU[12, o, c])
            p1, q1, r1 = _gt(dU[1, o, c], dU[5, o, c], dU[9, o, c], dU[13, o, c])
            p2, q2, r2 = _gt(dU[2, o, c], dU[6, o, c], dU[10, o, c], dU[14, o, c])
            p3, q3, r3 = _gt(dU[3, o, c], dU[7, o, c], dU[11, o, c], dU[15, o, c])
            # (G^T dU) G: each row through G^T again
            dw[o, c, 0, 0], dw[o, c, 0, 1], dw[o, c, 0, 2] = _gt(p0, p1, p2, p3)
            dw[o, c, 1, 0], dw[o, c, 1, 1], dw[o, c, 1, 2] = _gt(q0, q1, q2, q3)
            dw[o, c, 2, 0], dw[o, c, 2, 1], dw[o, c, 2, 2] = _gt(r0, r1, r2, r3)


@njit(cache=True, nogil=True)
def input_transform(c0, c1, x, ph, pw, n0, n1, ty0, ty1, TW, V):
    """V[:, c, t] = B^T D B for every 4x4 tile D of the band, D read from x (N, C, H, W) zero-padded
    by ph rows on top and pw columns on the left (and zeros past the bottom/right edge)."""
    R = ty1 - ty0
    for c in range(c0, c1):
        rows = np.empty((4, 2 * TW + 2), x.dtype)
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                _load_rows(x, n, c, 2 * ty, ph, pw, rows)
                x0, x1, x2, x3 = rows[0], rows[1], rows[2], rows[3]
                for tx in range(TW):
                    s, t = 2 * tx, base + tx
                    # B^T D: column j of the tile -> column j of the 4 rows p, q, r, u
                    p0, q0, r0, u0 = _bt(x0[s], x1[s], x2[s], x3[s])
                    p1, q1, r1, u1 = _bt(x0[s + 1], x1[s + 1], x2[s + 1], x3[s + 1])
                    p2, q2, r2, u2 = _bt(x0[s + 2], x1[s + 2], x2[s + 2], x3[s + 2])
                    p3, q3, r3, u3 = _bt(x0[s + 3], x1[s + 3], x2[s + 3], x3[s + 3])
                    # (B^T D) B: each row through B^T again
                    V[0, c, t], V[1, c, t], V[2, c, t], V[3, c, t] = _bt(p0, p1, p2, p3)
                    V[4, c, t], V[5, c, t], V[6, c, t], V[7, c, t] = _bt(q0, q1, q2, q3)
                    V[8, c, t], V[9, c, t], V[10, c, t], V[11, c, t] = _bt(r0, r1, r2, r3)
                    V[12, c, t], V[13, c, t], V[14, c, t], V[15, c, t] = _bt(u0, u1, u2, u3)


@njit(cache=True, nogil=True)
def output_transform(c0, c1, M, n0, n1, ty0, ty1, bias, out):
    """out[n, o, 2ty:2ty+2, 2tx:2tx+2] = A^T m A (+ bias[o]) for every tile m = M[:, o, t] of the band;
    rows/columns past H_out/W_out (odd sizes) are dropped.  bias: (O,) (zeros for none)."""
    N, O, Ho, Wo = out.shape
    TW = (Wo + 1) // 2
    R = ty1 - ty0
    for o in range(c0, c1):
        b = bias[o]
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                r = 2 * ty
                for tx in range(TW):
                    t, c = base + tx, 2 * tx
                    # A^T m: the two output rows, column by column
                    a0, b0 = _at(M[0, o, t], M[4, o, t], M[8, o, t], M[12, o, t])
                    a1, b1 = _at(M[1, o, t], M[5, o, t], M[9, o, t], M[13, o, t])
                    a2, b2 = _at(M[2, o, t], M[6, o, t], M[10, o, t], M[14, o, t])
                    a3, b3 = _at(M[3, o, t], M[7, o, t], M[11, o, t], M[15, o, t])
                    y00, y01 = _at(a0, a1, a2, a3)
                    y10, y11 = _at(b0, b1, b2, b3)
                    out[n, o, r, c] = y00 + b
                    if c + 1 < Wo:
                        out[n, o, r, c + 1] = y01 + b
                    if r + 1 < Ho:
                        out[n, o, r + 1, c] = y10 + b
                        if c + 1 < Wo:
                            out[n, o, r + 1, c + 1] = y11 + b


@njit(cache=True, nogil=True)
def output_transform_adjoint(c0, c1, dout, n0, n1, ty0, ty1, dM):
    """dM[:, o, t] = A dY A^T for the 2x2 tile dY of dout (N, O, H_out, W_out) (zero past the edge)."""
    N, O, Ho, Wo = dout.shape
    TW = (Wo + 1) // 2
    R = ty1 - ty0
    zero = dout.dtype.type(0)
    for o in range(c0, c1):
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                r = 2 * ty
                for tx in range(TW):
                    t, c = base + tx, 2 * tx
                    y00 = dout[n, o, r, c]
                    y01 = dout[n, o, r, c + 1] if c + 1 < Wo else zero
                    y10 = dout[n, o, r + 1, c] if r + 1 < Ho else zero
                    y11 = dout[n, o, r + 1, c + 1] if r + 1 < Ho and c + 1 < Wo else zero
                    p0, p1, p2, p3 = _a(y00, y10)  # A dY, column 0
                    q0, q1, q2, q3 = _a(y01, y11)  # column 1
                    dM[0, o, t], dM[1, o, t], dM[2, o, t], dM[3, o, t] = _a(p0, q0)   # (A dY) A^T, row by row
                    dM[4, o, t], dM[5, o, t], dM[6, o, t], dM[7, o, t] = _a(p1, q1)
                    dM[8, o, t], dM[9, o, t], dM[10, o, t], dM[11, o, t] = _a(p2, q2)
                    dM[12, o, t], dM[13, o, t], dM[14, o, t], dM[15, o, t] = _a(p3, q3)


@njit(cache=True, nogil=True)
def input_transform_adjoint(c0, c1, dV, ph, pw, n0, n1, ty0, ty1, TW, dx):
    """dx += B dV B^T for every tile of the band, each 4x4 tile added at rows 2ty - ph.., columns
    2tx - pw.. (the padding dropped).  Tiles overlap by 2 rows and columns: per channel, the rows of one
    tile row are summed in a 4-row buffer whose first two rows are complete once the tile row is done."""
    R = ty1 - ty0
    for c in range(c0, c1):
        acc = np.zeros((4, 2 * TW + 2), dV.dtype)
        for n in range(n0, n1):
            acc[:] = 0
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                x0, x1, x2, x3 = acc[0], acc[1], acc[2], acc[3]
                for tx in range(TW):
                    s, t = 2 * tx, base + tx
                    # dV B^T: row a of the tile (p, q, r, u = rows 0..3)
                    p0, p1, p2, p3 = _b(dV[0, c, t], dV[1, c, t], dV[2, c, t], dV[3, c, t])
                    q0, q1, q2, q3 = _b(dV[4, c, t], dV[5, c, t], dV[6, c, t], dV[7, c, t])
                    r0, r1, r2, r3 = _b(dV[8, c, t], dV[9, c, t], dV[10, c, t], dV[11, c, t])
                    u0, u1, u2, u3 = _b(dV[12, c, t], dV[13, c, t], dV[14, c, t], dV[15, c, t])
                    # B (dV B^T): column j, added into the 4 buffered rows
                    e0, e1, e2, e3 = _b(p0, q0, r0, u0)
                    x0[s] += e0
                    x1[s] += e1
                    x2[s] += e2
                    x3[s] += e3
                    e0, e1, e2, e3 = _b(p1, q1, r1, u1)
                    x0[s + 1] += e0
                    x1[s + 1] += e1
                    x2[s + 1] += e2
                    x3[s + 1] += e3
                    e0, e1, e2, e3 = _b(p2, q2, r2, u2)
                    x0[s + 2] += e0
                    x1[s + 2] += e1
                    x2[s + 2] += e2
                    x3[s + 2] += e3
                    e0, e1, e2, e3 = _b(p3, q3, r3, u3)
                    x0[s + 3] += e0
                    x1[s + 3] += e1
                    x2[s + 3] += e2
                    x3[s + 3] += e3
                _store_rows(acc, np.int64(2), n, c, 2 * ty, ph, pw, dx)  # rows 2ty, 2ty+1 are complete
                for j in range(acc.shape[1]):      # slide the buffer by two rows
                    acc[0, j], acc[1, j] = acc[2, j], acc[3, j]
                    acc[2, j] = acc[3, j] = 0
            _store_rows(acc, np.int64(2), n, c, 2 * ty1, ph, pw, dx)   # the band's last two rows


# ------------------------------------------------------------ NumPy twins (m = 2: F(2x2, 3x3), m = 4: F(4x4, 3x3))

def _mats(m):
    return (BT, G, AT) if m == 2 else (BT4, G4, AT4)


def weight_transform_ref(w, m=2):
    """NumPy twin of :func:`weight_transform` (m = 4: :func:`weight_transform_4`); returns U (a*a, O, C)."""
    _, g, _ = _mats(m)
    U = np.einsum("ai,ocij,bj->aboc", g, w, g)
    return U.reshape((m + 2) ** 2, w.shape[0], w.shape[1]).astype(w.dtype)


def weight_transform_adjoint_ref(dU, m=2):
    """NumPy twin of :func:`weight_transform_adjoint`; returns dw (O, C, 3, 3)."""
    _, g, _ = _mats(m)
    dw = np.einsum("ai,aboc,bj->ocij", g, dU.reshape(m + 2, m + 2, dU.shape[1], dU.shape[2]), g)
    return dw.astype(dU.dtype)


def _pad_ref(x, ph, pw, TH, TW, m=2):
    """x zero-padded to (N, C, m*TH + 2, m*TW + 2): ph rows on top, pw columns on the left, zeros after."""
    N, C, H, W = x.shape
    Hp, Wp = m * TH + 2, m * TW + 2
    xp = np.zeros((N, C, max(Hp, H + ph), max(Wp, W + pw)), x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    return xp[:, :, :Hp, :Wp]


def _tiles_ref(xp, n0, n1, ty0, ty1, m=2):
    """The (m+2) x (m+2) tiles of the band, m apart: (C, n, R, TW, m+2, m+2)."""
    a = m + 2
    TW = (xp.shape[3] - 2) // m
    D = np.empty((xp.shape[1], n1 - n0, ty1 - ty0, TW, a, a), xp.dtype)
    for i in range(a):
        for j in range(a):
            D[..., i, j] = xp[n0:n1, :, m * ty0 + i:m * ty1 + i:m, j:j + m * TW:m].transpose(1, 0, 2, 3)
    return D


def input_transform_ref(x, ph, pw, n0, n1, ty0, ty1, TW, m=2):
    """NumPy twin of :func:`input_transform`; returns V ((m+2)^2, C, T)."""
    bt, _, _ = _mats(m)
    xp = _pad_ref(x, ph, pw, ty1, TW, m)
    D = _tiles_ref(xp, n0, n1, ty0, ty1, m)
    V = np.einsum("ai,...ij,bj->ab...", bt, D, bt)                   # (a, a, C, n, R, TW)
    return V.reshape((m + 2) ** 2, xp.shape[1], -1).astype(xp.dtype)


def output_transform_ref(M, out_shape, n0, n1, ty0, ty1, bias, m=2):
    """NumPy twin of :func:`output_transform`; returns the band's output rows (n, O, m*R', W_out)."""
    _, _, at = _mats(m)
    N, O, Ho, Wo = out_shape
    TW, R = (Wo + m - 1) // m, ty1 - ty0
    mm = M.reshape(m + 2, m + 2, O, n1 - n0, R, TW)
    y = np.einsum("ai,ij...,bj->...ab", at, mm, at)                  # (O, n, R, TW, m, m)
    y = y.transpose(1, 0, 2, 4, 3, 5).reshape(n1 - n0, O, m * R, m * TW)
    y = y + bias.reshape(1, -1, 1, 1)
    return y[:, :, :min(m * R, Ho - m * ty0), :Wo].astype(M.dtype)


def output_transform_adjoint_ref(dout, n0, n1, ty0, ty1, m=2):
    """NumPy twin of :func:`output_transform_adjoint`; returns dM ((m+2)^2, O, T)."""
    _, _, at = _mats(m)
    N, O, Ho, Wo = dout.shape
    TW, R = (Wo + m - 1) // m, ty1 - ty0
    dy = np.zeros((n1 - n0, O, m * R, m * TW), dout.dtype)
    rows = dout[n0:n1, :, m * ty0:m * ty1]
    dy[:, :, :rows.shape[2], :Wo] = rows
    dy = dy.reshape(n1 - n0, O, R, m, TW, m).transpose(1, 0, 2, 4, 3, 5)   # (O, n, R, TW, m, m)
    dM = np.einsum("ai,...ab,bj->ij...", at, dy, at)                 # (a, a, O, n, R, TW)
    return dM.reshape((m + 2) ** 2, O, -1).astype(dout.dtype)


def input_transform_adjoint_ref(dV, x_shape, ph, pw, n0, n1, ty0, ty1, TW, m=2):
    """NumPy twin of :func:`input_transform_adjoint`; returns the scattered dx (N, C, H, W)."""
    bt, _, _ = _mats(m)
    a = m + 2
    N, C, H, W = x_shape
    R = ty1 - ty0
    Hp, Wp = max(m * ty1 + 2, H + ph), max(m * TW + 2, W + pw)
    dD = np.einsum("ai,ab...,bj->...ij", bt, dV.reshape(a, a, C, n1 - n0, R, TW), bt)   # (C, n, R, TW, a, a)
    dxp = np.zeros((N, C, Hp, Wp), dV.dtype)
    for i in range(a):
        for j in range(a):
            dxp[n0:n1, :, m * ty0 + i:m * ty1 + i:m, j:j + m * TW:m] += dD[..., i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, ph:ph + H, pw:pw + W]
