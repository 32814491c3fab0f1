"""Direct 3x3 convolution (stride 1, padding 1) for few channels: no im2col columns, no Winograd transforms.

With 1-16 input channels an im2col or Winograd convolution spends its time moving data (the columns or
transformed tiles are 2-9x the input), not multiplying.  These kernels read the zero-padded input
planes directly, on the *wide grid* (as ``conv.im2col_wide``): with a padded plane of row length
Wp = W + 2 read flat, tap (i, j) of output element k = oh * Wp + ow is plane element k + i * Wp + j,
so one loop runs along whole blocks of output rows (each wide row's last two columns are junk and never
stored).  LLVM vectorises that loop over k; four output channels share each input element's nine
loads (the loop order oneDNN uses for small channel counts: vectorise over the output width, block over
output channels).

    out[n, o, oh, ow] = b[o] + sum_{c, i, j} xp[n, c, oh + i, ow + j] * w[o, c, i, j]
    x: (N, C, H, W);  xp = pad(x): (N, C, H + 3, W + 2);  w: (O, C, 3, 3);  out: (N, O, H, W)
The input gradient is the same kernel on the padded dout with the flipped, transposed weights
(``flip_weight``: the full correlation); the weight gradient is ``weight_grad``: nine dot products of
dout with the shifted input, summed over images and rows.

Kernels run serially and release the GIL (``kernels.util.split`` runs one range per core): pad over
planes, conv3x3 over (image, four output channels, row block) units, weight_grad over output-channel
pairs, so no two threads write the same element.  fastmath: ``contract`` (fused multiply-add) in
conv3x3; ``contract`` and ``reassoc`` in weight_grad, whose sums are otherwise not vectorised (its
block sums are added in float64).  float32 error: as im2col's, a sum of 9C products per output
(tested bound in tests/test_direct.py).  Twins: ``pad_ref``, ``conv3x3_ref``, ``weight_grad_ref``.
"""
import numpy as np
from numba import njit


ROWS_ELEMS = 2048  # wide-grid elements (rows x padded width) per block: the accumulators stay in L1/L2


@njit(cache=True, nogil=True)
def pad(p0, p1, x, xp):
    """Planes p0..p1 (p = n * C + c) of xp: x zero-padded by one row / column on every side, and one
    more zero row at the bottom (the wide grid reads two elements past the last padded row).
    x: (N, C, H, W), xp: (N, C, H + 3, W + 2)."""
    N, C, H, W = x.shape
    Hp, Wp = xp.shape[2], xp.shape[3]
    for p in range(p0, p1):
        n, c = p // C, p % C
        for h in range(Hp):
            row = xp[n, c, h]
            for q in range(Wp):
                row[q] = 0
            if 1 <= h <= H:
                src, dst = x[n, c, h - 1], row[1:]
                for q in range(W):   # element loop over views indexed from 0: see conv._copy
                    dst[q] = src[q]


@njit(cache=True, nogil=True, fastmath={"contract"})
def conv3x3(u0, u1, flat, Wp, w, b, out):
    """Padding-1 3x3 convolution on the *wide grid*: out[n, o, oh, ow] = b[o] + sum_{c, i, j}
    xp[n, c, oh + i, ow + j] * w[o, c, i, j].  With the padded plane read flat, tap (i, j) of output
    k = oh * Wp + ow is element k + i * Wp + j, so one loop runs over whole blocks of rows; columns
    ow >= W of each wide row are junk and not stored.  Four output channels at a time share the nine
    loads of each element (a missing channel past O repeats the last one and is not stored).
    Units u0..u1: u = (n * ceil(O/4) + o // 4) * blocks + row block.
    flat: (N, C, (H + 3) * Wp), the planes from ``pad`` read flat (reshaped by the caller: a reshape in a
    kernel costs seconds of compilation); Wp = W + 2; w: (O, C, 3, 3); b: (O,); out: (N, O, H, W)."""
    C = flat.shape[1]
    O, H, W = out.shape[1], out.shape[2], out.shape[3]
    quads = (O + 3) // 4
    R = max(1, min(H, ROWS_ELEMS // Wp))                # output rows per block
    blocks = (H + R - 1) // R
    acc = np.empty((4, R * Wp), flat.dtype)
    for u in range(u0, u1):
        n, o, r0 = u // (quads * blocks), 4 * ((u // blocks) % quads), (u % blocks) * R
        rows = min(R, H - r0)
        L = rows * Wp
        q0, q1, q2, q3 = o, min(o + 1, O - 1), min(o + 2, O - 1), min(o + 3, O - 1)
        c0, c1, c2, c3 = acc[0], acc[1], acc[2], acc[3]
        for k in range(L):
            c0[k] = 0
            c1[k] = 0
            c2[k] = 0
            c3[k] = 0
        for c in range(C):
            v0 = flat[n, c, r0 * Wp:]
            v1 = flat[n, c, (r0 + 1) * Wp:]
            v2 = flat[n, c, (r0 + 2) * Wp:]
            a00, a01, a02 = w[q0, c, 0, 0], w[q0, c, 0, 1], w[q0, c, 0, 2]
            a10, a11, a12 = w[q0, c, 1, 0], w[q0, c, 1, 1], w[q0, c, 1, 2]
            a20, a21, a22 = w[q0, c, 2, 0], w[q0, c, 2, 1], w[q0, c, 2, 2]
            b00, b01, b02 = w[q1, c, 0, 0], w[q1, c, 0, 1], w[q1, c, 0, 2]
            b10, b11, b12 = w[q1, c, 1, 0], w[q1, c, 1, 1], w[q1, c, 1, 2]
            b20, b21, b22 = w[q1, c, 2, 0], w[q1, c, 2, 1], w[q1, c, 2, 2]
            d00, d01, d02 = w[q2, c, 0, 0], w[q2, c, 0, 1], w[q2, c, 0, 2]
            d10, d11, d12 = w[q2, c, 1, 0], w[q2, c, 1, 1], w[q2, c, 1, 2]
            d20, d21, d22 = w[q2, c, 2, 0], w[q2, c, 2, 1], w[q2, c, 2, 2]
            e00, e01, e02 = w[q3, c, 0, 0], w[q3, c, 0, 1], w[q3, c, 0, 2]
            e10, e11, e12 = w[q3, c, 1, 0], w[q3, c, 1, 1], w[q3, c, 1, 2]
            e20, e21, e22 = w[q3, c, 2, 0], w[q3, c, 2, 1], w[q3, c, 2, 2]
            for k in range(L):                          # vectorised over k by LLVM
                x00, x01, x02 = v0[k], v0[k + 1], v0[k + 2]
                x10, x11, x12 = v1[k], v1[k + 1], v1[k + 2]
                x20, x21, x22 = v2[k], v2[k + 1], v2[k + 2]
                c0[k] += (a00 * x00 + a01 * x01 + a02 * x02 + a10 * x10 + a11 * x11 + a12 * x12
                          + a20 * x20 + a21 * x21 + a22 * x22)
                c1[k] += (b00 * x00 + b01 * x01 + b02 * x02 + b10 * x10 + b11 * x11 + b12 * x12
                          + b20 * x20 + b21 * x21 + b22 * x22)
                c2[k] += (d00 * x00 + d01 * x01 + d02 * x02 + d10 * x10 + d11 * x11 + d12 * x12
                          + d20 * x20 + d21 * x21 + d22 * x22)
                c3[k] += (e00 * x00 + e01 * x01 + e02 * x02 + e10 * x10 + e11 * x11 + e12 * x12
                          + e20 * x20 + e21 * x21 + e22 * x22)
        for t in range(min(4, O - o)):
            ct = acc[t]
            bt = b[o + t]
            for r in range(rows):
                y, s = out[n, o + t, r0 + r], ct[r * Wp:]
                for q in range(W):
                    y[q] = s[q] + bt


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def weight_grad(u0, u1, xf, gf, Wp, dw):
    """dw[o] for output channel pairs u0..u1 (unit u: channels 2u, 2u + 1) of a padding-1 3x3 convolution:
    dw[o, c, i, j] = sum_{n, oh, ow} dout[n, o, oh, ow] * xp[n, c, oh + i, ow + j], on the wide grid.
    xf: (N, C, (H + 3) * Wp) the padded input, gf: (N, O, (H + 3) * Wp) the padded dout, both from ``pad``
    read flat (Wp = W + 2; on the wide grid dout[oh, ow] is gf's element (oh + 1) * Wp + ow + 1, and the
    junk columns read gf's zero padding); dw: (O, C, 3, 3), written (not added to).  Two output channels
    share the nine loads of the input.  Sums over blocks of ROWS_ELEMS elements run in float32
    (vectorised, in any order), the sums of the blocks in float64."""
    N, C = xf.shape[0], xf.shape[1]
    O = gf.shape[1]
    L = xf.shape[2] - 3 * Wp
    zero = np.zeros(1, xf.dtype)[0]
    tot = np.empty((2, 9))
    for u in range(u0, u1):
        o = 2 * u
        o1 = min(o + 1, O - 1)
        for c in range(C):
            for q in range(9):
                tot[0, q] = 0.0
                tot[1, q] = 0.0
            for n in range(N):
                for k0 in range(0, L, ROWS_ELEMS):
                    m = min(ROWS_ELEMS, L - k0)
                    g, h = gf[n, o, Wp + 1 + k0:], gf[n, o1, Wp + 1 + k0:]
                    v0, v1, v2 = xf[n, c, k0:], xf[n, c, Wp + k0:], xf[n, c, 2 * Wp + k0:]
                    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
                    r00 = r01 = r02 = r10 = r11 = r12 = r20 = r21 = r22 = zero
                    for k in range(m):
                        e, f = g[k], h[k]
                        x00 = v0[k]
                        s00 += e * x00
                        r00 += f * x00
                        x01 = v0[k + 1]
                        s01 += e * x01
                        r01 += f * x01
                        x02 = v0[k + 2]
                        s02 += e * x02
                        r02 += f * x02
                        x10 = v1[k]
                        s10 += e * x10
                        r10 += f * x10
                        x11 = v1[k + 1]
                        s11 += e * x11
                        r11 += f * x11
                        x12 = v1[k + 2]
                        s12 += e * x12
                        r12 += f * x12
                        x20 = v2[k]
                        s20 += e * x20
                        r20 += f * x20
                        x21 = v2[k + 1]
                        s21 += e * x21
                        r21 += f * x21
                        x22 = v2[k + 2]
                        s22 += e * x22
                        r22 += f * x22
                    tot[0, 0] += s00
                    tot[1, 0] += r00
                    tot[0, 1] += s01
                    tot[1, 1] += r01
                    tot[0, 2] += s02
                    tot[1, 2] += r02
                    tot[0, 3] += s10
                    tot[1, 3] += r10
                    tot[0, 4] += s11
                    tot[1, 4] += r11
                    tot[0, 5] += s12
                    tot[1, 5] += r12
                    tot[0, 6] += s20
                    tot[1, 6] += r20
                    tot[0, 7] += s21
                    tot[1, 7] += r21
                    tot[0, 8] += s22
                    tot[1, 8] += r22
            for t in range(min(2, O - o)):
                for i in range(3):
                    for j in range(3):
                        dw[o + t, c, i, j] = tot[t, 3 * i + j]


def flip_weight(w):
    """The weights of the input gradient as a forward convolution: w: (O, C, 3, 3) -> (C, O, 3, 3),
    w'[c, o, i, j] = w[o, c, 2 - i, 2 - j].  dx = conv3x3(dout, w', padding 2 - p)."""
    return np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


# ------------------------------------------------------------ NumPy twins

def pad_ref(x):
    """NumPy twin of :func:`pad`: x (N, C, H, W) -> (N, C, H + 3, W + 2), one zero row / column on each
    side and one more zero row at the bottom."""
    return np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 1)))


def conv3x3_ref(x, w, b, ph=1, pw=1):
    """NumPy twin of :func:`pad` + :func:`conv3x3` (there ph = pw = 1): nine shifted slices of the
    zero-padded input.  x: (N, C, H, W), w: (O, C, 3, 3), b: (O,) -> out (N, O, H + 2ph - 2, W + 2pw - 2)."""
    N, C, H, W = x.shape
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((N, w.shape[0], Ho, Wo), np.result_type(x, w))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + Ho, j:j + Wo], w[:, :, i, j])
    return out + b[None, :, None, None]


def weight_grad_ref(x, dout, ph=1, pw=1):
    """NumPy twin of :func:`weight_grad` (there ph = pw = 1): x: (N, C, H, W), dout: (N, O, Ho, Wo)
    -> dw (O, C, 3, 3)."""
    Ho, Wo = dout.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dw = np.empty((dout.shape[1], x.shape[1], 3, 3), np.result_type(x, dout))
    for i in range(3):
        for j in range(3):
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dout, xp[:, :, i:i + Ho, j:j + Wo])
    return dw
