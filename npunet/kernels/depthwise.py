"""Depthwise convolution (groups = channels, one k x k filter per channel; MobileNet, EfficientNet)
as direct loops: a GEMM per group would be a 1 x (k*k) matrix product, all overhead.

x: (N, C, H, W), unpadded; w: (C, k_h, k_w); out: (N, C, H_out, W_out) with
out[n, c, i, j] = sum_{u, v} xp[n, c, i*s_h + u, j*s_w + v] * w[c, u, v], where xp is x with p_t zero
rows on top and p_l zero columns on the left (and as many zeros below and to the right as out needs).
Twins: ``depthwise_fwd_ref`` / ``depthwise_bwd_ref`` below.

Why the loops look the way they do (measured on MobileNetV2's layers; the first version, one pass
per tap over the 4-D indices of a whole padded tensor, ran 4 x 144 x 64^2 at 3 GMAC/s):
- one (n, c) plane at a time is padded into a scratch plane that stays in the core's cache, so no
  padded copy of the whole tensor is made (forward) or zeroed and cut back (backward);
- a 3 x 3 filter makes each output row in one pass, nine products per element, with the stride
  written as a constant (1 or 2) so the loop vectorises; a 5 x 5 filter adds a row of five taps per
  pass, other sizes one tap per pass;
- at stride 1 (padding below the kernel size) the input gradient is itself a depthwise correlation,
  of dout with the filter turned 180 degrees (padding k - 1 - p), so it runs through the forward's
  loops; otherwise it is built in a plane whose columns are split by phase (at stride 2: even, odd),
  where every tap is a contiguous run;
- the weight gradient sums, per tap, dout's rows times the input rows they met in float64, with the
  one fast-math flag "reassoc": without it the order of a sum may not change, and a sum does not
  vectorise.
The loops are serial, release the GIL and run over plane (channel) ranges on every core through
``util.split``: Numba's ``parallel=True`` compiles several times slower (a cold start pays it).
"""
import numpy as np
from numba import njit

from .util import split


def depthwise_fwd(x, w, sh, sw, pt, pl, out):
    """out (N, C, Ho, Wo) = depthwise correlation of x (N, C, H, W), padded by pt rows above and pl
    columns left (zeros below and right as needed), with w (C, kh, kw).
    Planes (n, c) split over the cores: each writes its own output plane."""
    if out.size == 0:
        return
    split(_depthwise_fwd_planes, out.shape[0] * out.shape[1], x, w, sh, sw, pt, pl, out)


def depthwise_bwd(dout, x, w, sh, sw, pt, pl, dx, dw):
    """dx (N, C, H, W) = the input gradient of depthwise_fwd (every element written); dw (C, kh, kw),
    zero on entry, += the weight gradient (None: not computed, a frozen layer).  Channels split over
    the cores (each owns its dw[c])."""
    kh, kw = w.shape[1], w.shape[2]
    if dout.size == 0:
        dx[...] = 0
        return
    if sh == sw == 1 and pt < kh and pl < kw:
        w_turned = np.ascontiguousarray(w[:, ::-1, ::-1])
        depthwise_fwd(dout, w_turned, 1, 1, kh - 1 - pt, kw - 1 - pl, dx)
    else:
        split(_depthwise_dx_channels, dout.shape[1], dout, w, sh, sw, pt, pl, dx)
    if dw is not None:
        split(_depthwise_dw_channels, dout.shape[1], dout, x, sh, sw, pt, pl, dw)


@njit(cache=True, nogil=True)
def _fill_plane(src, pt, pl, dst):
    """dst (Hp, Wp)[pt + r, pl + q] = src (H, W)[r, q] where it fits; the rest of dst is left as it
    is (the callers zero it once: the same border stays zero for every plane)."""
    H = min(src.shape[0], dst.shape[0] - pt)
    W = min(src.shape[1], dst.shape[1] - pl)
    for r in range(H):
        s, d = src[r], dst[pt + r]
        for q in range(W):
            d[pl + q] = s[q]


@njit(cache=True, nogil=True)
def _depthwise_fwd_planes(p0, p1, x, w, sh, sw, pt, pl, out):
    """depthwise_fwd for planes nc = n*C + c in p0..p1-1."""
    N, C, Ho, Wo = out.shape
    kh, kw = w.shape[1], w.shape[2]
    xs = np.zeros(((Ho - 1) * sh + kh, (Wo - 1) * sw + kw), dtype=x.dtype)   # this thread's padded plane
    for nc in range(p0, p1):
        n, c = nc // C, nc % C
        _fill_plane(x[n, c], pt, pl, xs)
        if kh == 3 and kw == 3:
            w00, w01, w02 = w[c, 0, 0], w[c, 0, 1], w[c, 0, 2]
            w10, w11, w12 = w[c, 1, 0], w[c, 1, 1], w[c, 1, 2]
            w20, w21, w22 = w[c, 2, 0], w[c, 2, 1], w[c, 2, 2]
            for i in range(Ho):
                o, a, b, d = out[n, c, i], xs[i * sh], xs[i * sh + 1], xs[i * sh + 2]
                if sw == 1:
                    for j in range(Wo):
                        o[j] = (w00 * a[j] + w01 * a[j + 1] + w02 * a[j + 2]
                                + w10 * b[j] + w11 * b[j + 1] + w12 * b[j + 2]
                                + w20 * d[j] + w21 * d[j + 1] + w22 * d[j + 2])
                elif sw == 2:
                    for j in range(Wo):
                        o[j] = (w00 * a[2 * j] + w01 * a[2 * j + 1] + w02 * a[2 * j + 2]
                                + w10 * b[2 * j] + w11 * b[2 * j + 1] + w12 * b[2 * j + 2]
                                + w20 * d[2 * j] + w21 * d[2 * j + 1] + w22 * d[2 * j + 2])
                else:
                    for j in range(Wo):
                        q = j * sw
                        o[j] = (w00 * a[q] + w01 * a[q + 1] + w02 * a[q + 2]
                                + w10 * b[q] + w11 * b[q + 1] + w12 * b[q + 2]
                                + w20 * d[q] + w21 * d[q + 1] + w22 * d[q + 2])
            continue
        for i in range(Ho):                                   # other filter sizes: a row of taps per pass
            o = out[n, c, i]
            o[:] = 0
            for u in range(kh):
                row = xs[i * sh + u]
                if kw == 5:                                   # EfficientNet's 5x5: five products per element
                    w0, w1, w2, w3, w4 = w[c, u, 0], w[c, u, 1], w[c, u, 2], w[c, u, 3], w[c, u, 4]
                    if sw == 1:
                        for j in range(Wo):
                            o[j] += w0 * row[j] + w1 * row[j + 1] + w2 * row[j + 2] + w3 * row[j + 3] + w4 * row[j + 4]
                    elif sw == 2:
                        for j in range(Wo):
                            q = 2 * j
                            o[j] += w0 * row[q] + w1 * row[q + 1] + w2 * row[q + 2] + w3 * row[q + 3] + w4 * row[q + 4]
                    else:
                        for j in range(Wo):
                            q = j * sw
                            o[j] += w0 * row[q] + w1 * row[q + 1] + w2 * row[q + 2] + w3 * row[q + 3] + w4 * row[q + 4]
                    continue
                for v in range(kw):
                    wt = w[c, u, v]
                    if sw == 1:
                        for j in range(Wo):
                            o[j] += wt * row[j + v]
                    else:
                        for j in range(Wo):
                            o[j] += wt * row[j * sw + v]


@njit(cache=True, nogil=True)
def _depthwise_dx_channels(c0, c1, dout, w, sh, sw, pt, pl, dx):
    """The input gradient for channels c0..c1-1 at any stride.  The padded plane of dx is kept with
    its columns split by phase, column q at [q % sw, row, q // sw]: tap (u, v) of output column j
    lands in phase v % sw at j + v // sw, so each tap adds a shifted copy of the dout row (padded
    with E = (kw - 1) // sw zeros each side) into one contiguous run, a loop that vectorises where
    the scatter dx[.., j*sw + v] += ... would not.  The planes' interior, re-interleaved, is dx[n, c]."""
    N, C, Ho, Wo = dout.shape
    kh, kw = w.shape[1], w.shape[2]
    H, W = dx.shape[2], dx.shape[3]
    E = (kw - 1) // sw
    Hp, Wq = (Ho - 1) * sh + kh, Wo + E
    dxs = np.empty((sw, Hp, Wq), dtype=dx.dtype)
    gp = np.zeros(Wo + 2 * E, dtype=dout.dtype)
    for c in range(c0, c1):
        for n in range(N):
            dxs[:] = 0
            for i in range(Ho):
                gp[E:E + Wo] = dout[n, c, i]
                for u in range(kh):
                    for v in range(kw):
                        wt = w[c, u, v]
                        target = dxs[v % sw, i * sh + u]
                        g = gp[E - v // sw:]
                        for t in range(Wq):
                            target[t] += wt * g[t]
            d = dx[n, c]
            d[:] = 0                                          # rows and columns no output reads
            h = min(H, Hp - pt)
            for phase in range(sw):
                q0 = (phase - pl) % sw                        # the first input column of this phase
                col0 = (pl + q0) // sw
                for r in range(h):
                    src = dxs[phase, pt + r]
                    for k in range(min((W - q0 + sw - 1) // sw, Wq - col0)):
                        d[r, q0 + k * sw] = src[col0 + k]


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _depthwise_dw_channels(c0, c1, dout, x, sh, sw, pt, pl, dw):
    """dw[c] += sum over n, i, j of dout[n, c, i, j] * xp[n, c, i*sh + u, j*sw + v], channels c0..c1-1:
    per tap, a float64 dot product of each dout row with the input row it met.  The sums may be
    reordered ("reassoc", the one fast-math flag, so that they vectorise); no product is formed
    with a pixel the tap never read, so an Inf elsewhere in x stays out of dw (as in the reference)."""
    N, C, Ho, Wo = dout.shape
    kh, kw = dw.shape[1], dw.shape[2]
    xs = np.zeros(((Ho - 1) * sh + kh, (Wo - 1) * sw + kw), dtype=x.dtype)
    for c in range(c0, c1):
        for n in range(N):
            _fill_plane(x[n, c], pt, pl, xs)
            for u in range(kh):
                for v in range(kw):
                    acc = 0.0
                    for i in range(Ho):
                        g, row = dout[n, c, i], xs[i * sh + u]
                        if sw == 1:
                            for j in range(Wo):
                                acc += np.float64(g[j]) * np.float64(row[j + v])
                        elif sw == 2:
                            for j in range(Wo):
                                acc += np.float64(g[j]) * np.float64(row[2 * j + v])
                        else:
                            for j in range(Wo):
                                acc += np.float64(g[j]) * np.float64(row[j * sw + v])
                    dw[c, u, v] += acc


def _padded(x, kh, kw, sh, sw, pt, pl, out_hw):
    """x (N, C, H, W) zero-padded by pt rows above and pl columns left, and cut or padded below and
    right to the (Ho - 1)*sh + kh rows and (Wo - 1)*sw + kw columns the output reads."""
    Ho, Wo = out_hw
    Hp, Wp = (Ho - 1) * sh + kh, (Wo - 1) * sw + kw
    xp = np.zeros(x.shape[:2] + (Hp, Wp), dtype=x.dtype)
    H, W = min(x.shape[2], Hp - pt), min(x.shape[3], Wp - pl)
    xp[:, :, pt:pt + H, pl:pl + W] = x[:, :, :H, :W]
    return xp


def depthwise_fwd_ref(x, w, sh, sw, pt, pl, out_hw):
    """NumPy twin of :func:`depthwise_fwd`: pad, then one shifted, strided slice per tap."""
    Ho, Wo = out_hw
    xp = _padded(x, w.shape[1], w.shape[2], sh, sw, pt, pl, out_hw)
    out = np.zeros(x.shape[:2] + (Ho, Wo), dtype=x.dtype)
    for u in range(w.shape[1]):
        for v in range(w.shape[2]):
            out += w[None, :, u, v, None, None] * xp[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw]
    return out


def depthwise_bwd_ref(dout, x, w, sh, sw, pt, pl):
    """NumPy twin of :func:`depthwise_bwd`; returns (dx (N, C, H, W), dw (C, kh, kw))."""
    Ho, Wo = dout.shape[2:]
    xp = _padded(x, w.shape[1], w.shape[2], sh, sw, pt, pl, (Ho, Wo))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for u in range(w.shape[1]):
        for v in range(w.shape[2]):
            window = xp[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw]
            dw[:, u, v] = (dout * window).sum(axis=(0, 2, 3))
            dxp[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] += dout * w[None, :, u, v, None, None]
    H, W = x.shape[2:]
    dx = np.zeros_like(x)
    h, wd = min(H, xp.shape[2] - pt), min(W, xp.shape[3] - pl)
    dx[:, :, :h, :wd] = dxp[:, :, pt:pt + h, pl:pl + wd]
    return dx, dw
