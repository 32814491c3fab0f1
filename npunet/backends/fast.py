"""The fast backend: the same pairs as ``reference.py``, built for speed.

Convolutions are im2col + GEMM in tiles of output rows (the column buffer stays around 8 MiB and is
rebuilt in backward, never kept), run as P parallel tile pipelines with P x BLAS threads chosen from
the machine (``blas.plan``).  Pooling, interpolation and BatchNorm run as Numba kernels.  Every
kernel has a NumPy twin in ``npunet.kernels`` and every op here is tested against its reference
twin.  Ops with no faster form (ReLU, dropout, joins) are the reference's own.
"""
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import kernels as K
from . import reference as _ref
from . import blas
from ..kernels.util import split
from .geometry import conv_out_size, conv_transpose_out_size, interp_indices, pair as _pair, pool_windows
from .reference import (add_backward, add_forward, center_crop_backward, center_crop_forward,  # noqa: F401
                        concat_backward, concat_forward, crop_concat_backward, crop_concat_forward,
                        dropout_backward, dropout_forward, mul_backward, mul_forward, relu_backward,
                        relu_forward, relu6_backward, relu6_forward, sigmoid, sigmoid_backward,
                        sigmoid_forward, silu_backward, silu_forward, stochastic_depth_backward,
                        stochastic_depth_forward, zero_pad2d_backward, zero_pad2d_forward,
                        pad2d_backward, pad2d_forward)

# Column-buffer budget per tile, in elements (2M float32 = 8 MiB).  Measured on
# a 2-core machine: smaller tiles starve the GEMM, larger ones leave the cache.
TILE_ELEMS = 1 << 21


@functools.lru_cache(maxsize=None)
def _executor(workers):
    """The tile pipelines' own pool, apart from kernels.util.split's: a pipeline that called split on a
    pool whose workers all run pipelines would wait for itself."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="npunet-conv")


def _bias_grad(dout):
    """dbias (O,) = dout (N, O, H, W) summed over (N, H, W), accumulated in float64."""
    return dout.sum(axis=(0, 2, 3), dtype=np.float64).astype(dout.dtype)


def _pipelines(n_tiles):
    """How many tile pipelines a conv should run: blas.plan()'s P (1 with a single tile)."""
    P, _ = blas.plan()
    return 1 if P < 2 or n_tiles < 2 else min(P, n_tiles)


def _run(work, P):
    """work(i, P) for i < P, in P threads with blas.plan()'s BLAS threads each; P = 1: inline (on
    one BLAS thread too where pipelines are available: see blas.single_thread)."""
    if P == 1:
        with blas.single_thread():
            work(0, 1)
        return
    with blas.limited(blas.plan()[1]):
        futures = [_executor(P).submit(work, i, P) for i in range(P)]
        for f in futures:
            f.result()  # re-raises a worker's exception here


class _Tiles:
    """Splits N images x R output rows into tiles whose column buffer stays small.

    ``row_len`` is the number of columns one output row takes in the buffer and
    ``K`` the number of buffer rows.  Whole images are packed together when one
    image fits; otherwise one image is cut into blocks of rows.
    """

    def __init__(self, N, R, row_len, Kr):
        per_image = Kr * R * row_len
        P = blas.plan()[0]  # at least one tile per pipeline where the work allows
        if per_image <= TILE_ELEMS:
            self.nn, self.rr = max(1, min(N, TILE_ELEMS // max(per_image, 1), -(-N // P))), R
            if N == 1 and P > 1:
                self.rr = max(1, -(-R // P))
        else:
            self.nn, self.rr = 1, max(1, TILE_ELEMS // max(Kr * row_len, 1))
        self.N, self.R = N, R

    def __iter__(self):
        for n0 in range(0, self.N, self.nn):
            n1 = min(self.N, n0 + self.nn)
            for r0 in range(0, self.R, self.rr):
                yield n0, n1, r0, min(self.R, r0 + self.rr)


def _gemm(Wg, cols, G):
    """(O, K) @ (K, L) split into G groups: (G, O/G, K/G) @ (G, K/G, L) -> (O, L)."""
    if G == 1:
        return Wg @ cols
    L = cols.shape[1]
    return np.matmul(Wg, cols.reshape(G, -1, L)).reshape(-1, L)


def _gemm_tn(Wg, d, G):
    """W^T @ d per group: (O, K)^T @ (O, L) -> (K, L)."""
    if G == 1:
        return Wg.T @ d
    L = d.shape[1]
    return np.matmul(Wg.transpose(0, 2, 1), d.reshape(G, -1, L)).reshape(-1, L)


def _gemm_nt(d, cols, G):
    """d @ cols^T per group: (O, L) @ (K, L)^T -> (O, K) (grouped: (G, O/G, K/G))."""
    if G == 1:
        return d @ cols.T
    L = d.shape[1]
    return np.matmul(d.reshape(G, -1, L), cols.reshape(G, -1, L).transpose(0, 2, 1))


class _ConvGeometry:
    """How a conv reads its input: the fast 'wide' path for stride 1, else generic.

    Wide path: the input is zero-padded once and every output row is computed
    W_p wide (W_p - W_out junk columns that are cropped), so that each im2col row
    is one contiguous copy.  Generic path: exact W_out-wide columns.
    """

    def __init__(self, x_shape, kh, kw, sh, sw, ph, pw):
        N, C, H, W = x_shape
        self.N, self.C, self.H, self.W = N, C, H, W
        self.k, self.s, self.p = (kh, kw), (sh, sw), (ph, pw)
        self.Ho = conv_out_size(H, kh, sh, ph)
        self.Wo = conv_out_size(W, kw, sw, pw)
        self.wide = sh == 1 and sw == 1
        self.row_len = W + 2 * pw if self.wide else self.Wo

    def source(self, x):
        """The array im2col reads (zero-padded copy on the wide path)."""
        if self.wide and (self.p[0] or self.p[1]):
            ph, pw = self.p
            return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        return x

    def im2col(self, src, n0, n1, r0, r1, cols):
        kh, kw = self.k
        if self.wide:
            K.im2col_wide(src, n0, n1, r0, r1, kh, kw, cols)
        else:
            K.im2col(src, n0, n1, r0, r1, kh, kw, *self.s, *self.p, self.Wo, cols)

    def col2im(self, cols, n0, n1, r0, r1, dsrc):
        kh, kw = self.k
        if self.wide:
            K.col2im_wide(cols, n0, n1, r0, r1, kh, kw, dsrc)
        else:
            K.col2im(cols, n0, n1, r0, r1, kh, kw, *self.s, *self.p, self.Wo, dsrc)

    def dsource(self, dtype):
        if self.wide:
            ph, pw = self.p
            return np.zeros((self.N, self.C, self.H + 2 * ph, self.W + 2 * pw), dtype)
        return np.zeros((self.N, self.C, self.H, self.W), dtype)

    def crop_dsource(self, dsrc):
        if self.wide and (self.p[0] or self.p[1]):
            ph, pw = self.p
            return np.ascontiguousarray(dsrc[:, :, ph:ph + self.H, pw:pw + self.W])
        return dsrc

    def tile_to_cols(self, t, n0, n1, r0, r1, buf):
        """Output tile t: (N, O, H_out, W_out)[n0:n1, :, r0:r1] -> (O, nn*R*row_len)."""
        O = t.shape[1]
        b = buf[: O * (n1 - n0) * (r1 - r0) * self.row_len].reshape(O, n1 - n0, r1 - r0, self.row_len)
        if self.row_len != self.Wo:
            b[..., self.Wo:] = 0  # junk columns must not feed gradients
        b[..., : self.Wo] = t[n0:n1, :, r0:r1, :].transpose(1, 0, 2, 3)
        return b.reshape(O, -1)

    def cols_to_tile(self, y, out, n0, n1, r0, r1, bias=None):
        """Write GEMM result y (O, nn*R*row_len) into out[n0:n1, :, r0:r1] (+ bias, fused into the copy)."""
        O = y.shape[0]
        y4 = y.reshape(O, n1 - n0, r1 - r0, self.row_len)[..., : self.Wo].transpose(1, 0, 2, 3)
        if bias is None:
            out[n0:n1, :, r0:r1, :] = y4
        else:
            np.add(y4, bias.reshape(1, O, 1, 1), out=out[n0:n1, :, r0:r1, :])


_DEPTHWISE = "depthwise"


def _depthwise_forward(x, weight, bias, stride, padding):
    """groups = C_in = C_out: direct Numba loops (kernels.depthwise) instead of C tiny GEMMs."""
    (sh, sw), (ph, pw) = stride, padding
    O, _, kh, kw = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else np.ascontiguousarray(x)
    Ho, Wo = conv_out_size(x.shape[2], kh, sh, ph), conv_out_size(x.shape[3], kw, sw, pw)
    out = np.empty((x.shape[0], O, Ho, Wo), dtype=x.dtype)
    w3 = np.ascontiguousarray(weight.reshape(O, kh, kw))
    K.depthwise_fwd(xp, w3, sh, sw, out)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out, (_DEPTHWISE, xp, w3, bias is not None, stride, padding, x.shape, weight.shape)


def _depthwise_backward(dout, cache, weight_grad=True):
    _, xp, w3, has_bias, (sh, sw), (ph, pw), x_shape, w_shape = cache
    dxp = np.zeros_like(xp)
    dw = np.zeros(w3.shape, dtype=np.float64)  # summed over N*H*W: accumulate in float64
    K.depthwise_bwd(np.ascontiguousarray(dout), xp, w3, sh, sw, dxp, dw)
    H, W = x_shape[2:]
    dx = np.ascontiguousarray(dxp[:, :, ph:ph + H, pw:pw + W]) if ph or pw else dxp
    if not weight_grad:  # one kernel computes dx and dw together: nothing to skip, dw dropped
        return dx, None, None
    db = _bias_grad(dout) if has_bias else None
    return dx, dw.astype(dout.dtype).reshape(w_shape), db


_WINOGRAD = "winograd"
WINOGRAD = True          # 3x3 stride-1 float32 convs through Winograd (kernels.winograd) ...
WINOGRAD_MIN_CHANNELS = 8  # ... with at least this many input channels (a 1-channel input layer
                           # would run GEMMs with K = 1: im2col's one K = 9 GEMM is 2.5x faster)
WINOGRAD_MIN_TILES = 64    # ... and at least this many 2x2 output tiles (a 512-channel 8x8 map has 16:
                           # its 16 x C_out x C_in transformed weights cost more than the GEMMs save)
WINOGRAD_TILE = None     # output tile m: 4 = F(4x4, 3x3) (36 GEMMs, transforms 2.25x the data),
                         # 2 = F(2x2, 3x3) (16 GEMMs, 4x the data, smaller float32 error), None: per layer:
WINOGRAD_F4_MIN_TILES = (512, 128)  # F(4x4) from this many 4x4 output tiles (the second number: when both
                                    # channel counts are <= 128); below, its 36 x C_out x C_in weight
                             # transform outweighs the saving (measured: 512 ch at 64^2 and deeper run F(2x2))
WINOGRAD_BAND = 1 << 22  # elements of the larger of V (a*a, C, T) and M (a*a, O, T) per band (16 MiB)
WINOGRAD_PIPE_BAND = 1 << 20  # the same for batches of >= 1 image per core (4 MiB): there each core runs
                              # whole bands (transform, GEMMs, transform back) in its own buffers, so a band's
                              # V and M are still in cache when the next stage reads them (measured 10-20 %
                              # faster per layer at batch 4-8 x 16-256 channels x 64-128^2; one 572^2 image is
                              # faster with all cores on each stage of 16 MiB bands)


def _use_winograd(x, weight, stride, padding, groups):
    O, Cg, kh, kw = weight.shape
    if not WINOGRAD or x.dtype != np.float32 or groups != 1 or (kh, kw) != (3, 3) or stride != (1, 1):
        return False
    (ph, pw) = padding
    tiles = x.shape[0] * -(-(x.shape[2] + 2 * ph - 2) // 2) * -(-(x.shape[3] + 2 * pw - 2) // 2)
    return Cg >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES


def _winograd_kernels(m):
    """(weight, input, output transforms and their adjoints) of F(m x m, 3x3)."""
    from ..kernels import winograd as KW
    if m == 2:
        return (KW.weight_transform, KW.input_transform, KW.output_transform, KW.output_transform_adjoint,
                KW.input_transform_adjoint, KW.weight_transform_adjoint)
    return (KW.weight_transform_4, KW.input_transform_4, KW.output_transform_4, KW.output_transform_4_adjoint,
            KW.input_transform_4_adjoint, KW.weight_transform_4_adjoint)


def _split_gemm(f, rows, L, dtype):
    """A GEMM result (rows, L) computed as f(a, b) = its columns a..b, one column range per core in
    threads (each GEMM on the one BLAS thread the caller set)."""
    out = np.empty((rows, L), dtype)

    def part(a, b):
        out[:, a:b] = f(a, b)
    split(part, L)
    return out


def _winograd_bands(N, TH, TW, chans, planes=16, band=None):
    """(n0, n1, ty0, ty1) bands of tiles whose transformed arrays stay within ``band`` elements
    (default WINOGRAD_BAND)."""
    per_row = planes * chans * TW
    rows = max(1, (band or WINOGRAD_BAND) // per_row)
    if rows >= TH:
        nn = max(1, min(N, rows // TH))
        return [(n0, min(N, n0 + nn), 0, TH) for n0 in range(0, N, nn)]
    return [(n, n + 1, r0, min(TH, r0 + rows)) for n in range(N) for r0 in range(0, TH, rows)]


_work = threading.local()


def _workspace(name, n, dtype):
    """A flat scratch array of n elements, kept per thread and reused across calls: a fresh
    multi-MB array costs page faults on every step, a reused one does not.  Valid until the
    next request of the same name in this thread."""
    key = (name, np.dtype(dtype))
    pool = _work.__dict__.setdefault("pool", {})
    buf = pool.get(key)
    if buf is None or buf.size < n:
        buf = pool[key] = np.empty(n, dtype)
    return buf[:n]


def _xi_stack(name, C, T, dtype, planes=16):
    """A (planes, C, T) array for the Winograd tile positions whose planes lie C*T + 16 elements apart:
    the transforms write all planes at once, and planes a power of two apart would compete for
    the same cache sets (measured 8x slower).  name: a reused workspace; None: a new array."""
    stride = C * T + 16
    buf = _workspace(name, planes * stride, dtype) if name else np.empty(planes * stride, dtype)
    return np.lib.stride_tricks.as_strided(buf, (planes, C, T), (stride * buf.itemsize, T * buf.itemsize, buf.itemsize))


def _winograd_forward(x, weight, bias, padding, m=None):
    """3x3 stride-1 convolution by Winograd F(m x m, 3x3), band by band: V = B^T D B (input tiles),
    M[xi] = U[xi] @ V[xi] for the (m+2)^2 tile positions (batched GEMM), out = A^T M A.  A batch
    runs one pipeline of bands per core; a single image runs each stage on all cores.
    x: (N, C, H, W), weight: (O, C, 3, 3) -> out: (N, O, H + 2p - 2, W + 2p - 2).  m: 2 or 4
    (None: WINOGRAD_TILE, or chosen from the tile count)."""
    (ph, pw), (N, C, H, W), O = padding, x.shape, weight.shape[0]
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    m = m or WINOGRAD_TILE or (4 if N * -(-Ho // 4) * -(-Wo // 4) >= WINOGRAD_F4_MIN_TILES[max(C, O) <= 128] else 2)
    wt, it, ot, _, _, _ = _winograd_kernels(m)
    P = (m + 2) ** 2
    TH, TW = (Ho + m - 1) // m, (Wo + m - 1) // m
    x = np.ascontiguousarray(x)
    U = _xi_stack(None, O, C, x.dtype, P)
    split(wt, O, np.ascontiguousarray(weight), U)                         # U = G w G^T
    b = bias if bias is not None else np.zeros(O, x.dtype)
    out = np.empty((N, O, Ho, Wo), x.dtype)
    if N >= blas.cores() > 1:
        bands = _winograd_bands(N, TH, TW, max(C, O), P, WINOGRAD_PIPE_BAND)

        def pipeline(b0, b1):               # one core: its bands start to end, in its own buffers
            for n0, n1, t0, t1 in bands[b0:b1]:
                Tb = (n1 - n0) * (t1 - t0) * TW
                V, M = _xi_stack("V", C, Tb, x.dtype, P), _xi_stack("M", O, Tb, x.dtype, P)
                it(0, C, x, ph, pw, n0, n1, t0, t1, TW, V)
                np.matmul(U, V, out=M)                                          # (P, O, Tb)
                ot(0, O, M, n0, n1, t0, t1, b, out)                             # output tiles are disjoint
        with blas.single_thread():
            split(pipeline, len(bands))
    else:                                   # one image: each stage split over the cores
        with blas.single_thread():
            for n0, n1, t0, t1 in _winograd_bands(N, TH, TW, max(C, O), P):
                Tb = (n1 - n0) * (t1 - t0) * TW
                V, M = _xi_stack("V", C, Tb, x.dtype, P), _xi_stack("M", O, Tb, x.dtype, P)
                split(it, C, x, ph, pw, n0, n1, t0, t1, TW, V)
                split(lambda p0, p1: np.matmul(U[p0:p1], V[p0:p1], out=M[p0:p1]), P)   # by position
                split(ot, O, M, n0, n1, t0, t1, b, out)
    return out, (_WINOGRAD, x, weight, U, bias is not None, padding, m)


def _winograd_backward(dout, cache, weight_grad=True):
    """The adjoint of _winograd_forward: dM = A dY A^T, dU += dM V^T, dV = U^T dM, dx += B dV B^T
    (scatter), dW = G^T dU G.  Exactly the gradient of the Winograd forward."""
    _, x, weight, U, has_bias, (ph, pw), m = cache
    _, it, _, ota, ita, wta = _winograd_kernels(m)
    P = (m + 2) ** 2
    (N, C), O = x.shape[:2], weight.shape[0]
    Ho, Wo = dout.shape[2:]
    TH, TW = (Ho + m - 1) // m, (Wo + m - 1) // m
    dx = np.zeros(x.shape, x.dtype)
    dout = np.ascontiguousarray(dout)
    Ut = U.transpose(0, 2, 1)
    if N >= blas.cores() > 1:
        # one pipeline per core over whole images: input tiles of neighbouring tile rows overlap in dx,
        # those of different images do not, so the scatters never race
        dUs = {}                            # per pipeline: dU summed after

        def pipeline(i0, i1):
            dU = np.zeros((P, O, C), x.dtype)
            for n0, n1, t0, t1 in _winograd_bands(i1 - i0, TH, TW, max(C, O), P, WINOGRAD_PIPE_BAND):
                n0, n1 = n0 + i0, n1 + i0
                Tb = (n1 - n0) * (t1 - t0) * TW
                V, dM = _xi_stack("V", C, Tb, x.dtype, P), _xi_stack("M", O, Tb, x.dtype, P)
                ota(0, O, dout, n0, n1, t0, t1, dM)                             # dM = A dY A^T
                it(0, C, x, ph, pw, n0, n1, t0, t1, TW, V)
                if weight_grad:
                    dU += np.matmul(dM, V.transpose(0, 2, 1))                   # (P, O, C)
                np.matmul(Ut, dM, out=V)                                        # V now holds dV
                ita(0, C, V, ph, pw, n0, n1, t0, t1, TW, dx)                    # dx += B dV B^T
            dUs[i0] = dU
        with blas.single_thread():
            split(pipeline, N)
        dU = sum(dUs.values())
    else:                                   # one image: each stage split over the cores by channel
        dU = np.zeros((P, O, C), x.dtype)

        def gemms(p0, p1):
            if weight_grad:
                dU[p0:p1] += np.matmul(dM[p0:p1], V[p0:p1].transpose(0, 2, 1))
            np.matmul(Ut[p0:p1], dM[p0:p1], out=V[p0:p1])                      # V now holds dV

        with blas.single_thread():
            for n0, n1, t0, t1 in _winograd_bands(N, TH, TW, max(C, O), P):
                Tb = (n1 - n0) * (t1 - t0) * TW
                V, dM = _xi_stack("V", C, Tb, x.dtype, P), _xi_stack("M", O, Tb, x.dtype, P)
                split(ota, O, dout, n0, n1, t0, t1, dM)
                split(it, C, x, ph, pw, n0, n1, t0, t1, TW, V)
                split(gemms, P)                                         # by tile position
                split(ita, C, V, ph, pw, n0, n1, t0, t1, TW, dx)
    if not weight_grad:
        return dx, None, None
    dW = np.empty(weight.shape, x.dtype)
    split(wta, O, np.ascontiguousarray(dU), dW)                           # dW = G^T dU G
    db = _bias_grad(dout) if has_bias else None
    return dx, dW, db


SMALL_MAP_COLUMNS = 1024  # im2col convs with at most this many output pixels (N * H_out * W_out; deep,
                          # wide layers like 512 channels at 8x8) split their GEMMs over channels
                          # instead of tiles: tiles of a few rows would make thin GEMMs and per-thread dW


def _small_map(x, g, G):
    return G == 1 and blas.plan()[0] > 1 and x.shape[0] * g.Ho * g.row_len <= SMALL_MAP_COLUMNS


def _whole_cols(x, g, Kr):
    """im2col of the whole map in one piece: (Kr, N * H_out * row_len)."""
    cols = np.empty((Kr, x.shape[0] * g.Ho * g.row_len), x.dtype)
    g.im2col(g.source(x), 0, x.shape[0], 0, g.Ho, cols)
    return cols


def _small_forward(x, g, Wg, bias, out):
    """out = W @ im2col(x) for the whole (small) map, output channels split over threads."""
    cols = _whole_cols(x, g, Wg.shape[1])
    y = np.empty((Wg.shape[0], cols.shape[1]), x.dtype)

    def part(o0, o1):
        np.matmul(Wg[o0:o1], cols, out=y[o0:o1])
    with blas.single_thread():
        split(part, Wg.shape[0])
    g.cols_to_tile(y, out, 0, x.shape[0], 0, g.Ho, bias)


def _small_backward(dout, x, g, Wg, weight_grad=True):
    """dW = d @ cols^T (split over output channels), dcols = W^T @ d (split over column rows), col2im."""
    cols = _whole_cols(x, g, Wg.shape[1])
    d = g.tile_to_cols(dout, 0, x.shape[0], 0, g.Ho, np.empty(Wg.shape[0] * cols.shape[1], x.dtype))
    dW = np.empty(Wg.shape, x.dtype)
    dcols = np.empty_like(cols)

    def part_w(o0, o1):
        np.matmul(d[o0:o1], cols.T, out=dW[o0:o1])

    def part_c(k0, k1):
        np.matmul(Wg[:, k0:k1].T, d, out=dcols[k0:k1])
    with blas.single_thread():
        if weight_grad:
            split(part_w, Wg.shape[0])
        split(part_c, Wg.shape[1])
    dsrc = g.dsource(x.dtype)
    g.col2im(dcols, 0, x.shape[0], 0, g.Ho, dsrc)
    return g.crop_dsource(dsrc), (dW if weight_grad else None)


_POINTWISE = "pointwise"


def _pointwise_forward(x, weight, bias):
    """1x1 stride-1 unpadded conv (groups 1): out[n] = W (O, C) @ x[n] (C, H*W), no im2col needed;
    output channels split over threads."""
    N, C, H, W = x.shape
    O = weight.shape[0]
    x3 = np.ascontiguousarray(x).reshape(N, C, H * W)
    w2 = weight.reshape(O, C)
    out = np.empty((N, O, H * W), x.dtype)

    def part(o0, o1):
        np.matmul(w2[o0:o1], x3, out=out[:, o0:o1])
        if bias is not None:
            out[:, o0:o1] += bias[o0:o1, None]
    with blas.single_thread():
        split(part, O)
    return out.reshape(N, O, H, W), (_POINTWISE, x3, weight, bias is not None, x.shape)


def _pointwise_backward(dout, cache, weight_grad=True):
    """dx[n] = W^T @ d[n] (split over input channels), dW = sum_n d[n] @ x[n]^T (split over output channels)."""
    _, x3, weight, has_bias, shape = cache
    N, C, HW = x3.shape
    O = weight.shape[0]
    d3 = np.ascontiguousarray(dout).reshape(N, O, HW)
    w2 = weight.reshape(O, C)
    dx = np.empty((N, C, HW), x3.dtype)
    dW = np.zeros((O, C), np.float64 if x3.dtype == np.float64 else x3.dtype)

    def part_x(c0, c1):
        np.matmul(w2[:, c0:c1].T, d3, out=dx[:, c0:c1])

    def part_w(o0, o1):
        for n in range(N):
            dW[o0:o1] += d3[n, o0:o1] @ x3[n].T
    with blas.single_thread():
        split(part_x, C)
        if weight_grad:
            split(part_w, O)
    if not weight_grad:
        return dx.reshape(shape), None, None
    db = _bias_grad(dout) if has_bias else None
    return dx.reshape(shape), dW.astype(x3.dtype).reshape(weight.shape), db


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, groups=1):
    """2-D convolution (cross-correlation, as PyTorch), im2col + GEMM in tiles.

    x: (N, C, H, W); weight: (O, C/groups, kh, kw); bias: (O,) or None.
    Returns out: (N, O, H_out, W_out), H_out = (H + 2p - kh) // s + 1, and the cache.
    No column buffer outlives the call: backward rebuilds the columns tile by tile.
    """
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    if groups > 1 and groups == x.shape[1] == weight.shape[0]:
        return _depthwise_forward(x, weight, bias, (sh, sw), (ph, pw))
    if _use_winograd(x, weight, (sh, sw), (ph, pw), groups):
        return _winograd_forward(x, weight, bias, (ph, pw))
    if groups == 1 and weight.shape[2:] == (1, 1) and (sh, sw, ph, pw) == (1, 1, 0, 0):
        return _pointwise_forward(x, weight, bias)
    x = np.ascontiguousarray(x)  # the kernels read flat rows
    O, Cg, kh, kw = weight.shape
    g = _ConvGeometry(x.shape, kh, kw, sh, sw, ph, pw)
    G = groups
    Wg = weight.reshape(O, -1) if G == 1 else weight.reshape(G, O // G, -1)
    src = g.source(x)
    Kr = x.shape[1] * kh * kw
    out = np.empty((x.shape[0], O, g.Ho, g.Wo), dtype=x.dtype)
    if _small_map(x, g, G):
        _small_forward(x, g, Wg, bias, out)
        return out, (x, weight, bias is not None, (sh, sw), (ph, pw), G)
    tiles = _Tiles(x.shape[0], g.Ho, g.row_len, Kr)
    tl = list(tiles)
    size = Kr * tiles.nn * tiles.rr * g.row_len

    def work(first, step):
        buf = np.empty(size, dtype=x.dtype)
        for n0, n1, r0, r1 in tl[first::step]:
            cols = buf[: Kr * (n1 - n0) * (r1 - r0) * g.row_len].reshape(Kr, -1)
            g.im2col(src, n0, n1, r0, r1, cols)
            g.cols_to_tile(_gemm(Wg, cols, G), out, n0, n1, r0, r1, bias)  # tiles write disjoint rows

    _run(work, _pipelines(len(tl)))
    return out, (x, weight, bias is not None, (sh, sw), (ph, pw), G)


def conv2d_backward(dout, cache, weight_grad=True):
    """dout: (N, O, H_out, W_out) -> (dx (N, C, H, W), dweight (O, C/g, kh, kw), dbias (O,) or None).

    Per tile: cols = im2col(x); dW += dout_t @ cols^T; dcols = W^T @ dout_t; dx += col2im(dcols).
    weight_grad=False (a frozen layer): the dW GEMMs are skipped, dweight and dbias are None.
    """
    if cache[0] is _DEPTHWISE:
        return _depthwise_backward(dout, cache, weight_grad)
    if cache[0] is _WINOGRAD:
        return _winograd_backward(dout, cache, weight_grad)
    if cache[0] is _POINTWISE:
        return _pointwise_backward(dout, cache, weight_grad)
    x, weight, has_bias, (sh, sw), (ph, pw), G = cache
    O, Cg, kh, kw = weight.shape
    g = _ConvGeometry(x.shape, kh, kw, sh, sw, ph, pw)
    Wg = weight.reshape(O, -1) if G == 1 else weight.reshape(G, O // G, -1)
    if _small_map(x, g, G):
        dx, dW = _small_backward(dout, x, g, Wg, weight_grad)
        if not weight_grad:
            return dx, None, None
        db = _bias_grad(dout) if has_bias else None
        return dx, dW.reshape(weight.shape), db
    src = g.source(x)
    Kr = x.shape[1] * kh * kw
    dsrc = g.dsource(x.dtype)
    dW = np.zeros(Wg.shape, dtype=np.float64 if x.dtype == np.float64 else x.dtype)
    tiles = _Tiles(x.shape[0], g.Ho, g.row_len, max(Kr, O))
    tl = list(tiles)
    L = tiles.nn * tiles.rr * g.row_len
    P = _pipelines(len(tl))
    dsrcs, dWs = [dsrc] + [None] * (P - 1), [dW] + [None] * (P - 1)

    def work(first, step):
        buf = np.empty(Kr * L, dtype=x.dtype)
        dbuf = np.empty(O * L, dtype=x.dtype)
        if dsrcs[first] is None:  # every further pipeline scatters into its own buffer:
            dsrcs[first] = g.dsource(x.dtype)  # neighbouring tiles overlap by kh - 1 input rows
            dWs[first] = np.zeros_like(dW)
        for n0, n1, r0, r1 in tl[first::step]:
            cols = buf[: Kr * (n1 - n0) * (r1 - r0) * g.row_len].reshape(Kr, -1)
            g.im2col(src, n0, n1, r0, r1, cols)
            d = g.tile_to_cols(dout, n0, n1, r0, r1, dbuf)
            if weight_grad:
                dWs[first] += _gemm_nt(d, cols, G)
            g.col2im(_gemm_tn(Wg, d, G), n0, n1, r0, r1, dsrcs[first])

    _run(work, P)
    for i in range(1, P):
        dsrc += dsrcs[i]
        dW += dWs[i]
    dx = g.crop_dsource(dsrc)
    if not weight_grad:
        return dx, None, None
    db = _bias_grad(dout) if has_bias else None
    return dx, dW.astype(x.dtype).reshape(weight.shape), db


_DISJOINT = "disjoint taps"


def _taps_disjoint(kh, kw, sh, sw, ph, pw, oph, opw, groups):
    """Kernel = stride, no padding (U-Net's 2x2 up-conv): the taps of neighbouring pixels never overlap."""
    return (kh, kw) == (sh, sw) and (ph, pw, oph, opw) == (0, 0, 0, 0) and groups == 1


def _upconv_disjoint_forward(x, weight, bias):
    """Transposed conv with kernel = stride: per image cols = W^T x (one GEMM on (C_in, H*W), no
    im2col, no zero-filled output), then each product lands on its own output pixel (upconv_shuffle,
    bias added on the way). Images (or, for one image, output channels) are split over the cores.
    x: (N, C_in, H, W), weight: (C_in, C_out, k, k) -> out: (N, C_out, H*k, W*k)."""
    Cin, Cout, kh, kw = weight.shape
    N, _, H, W = x.shape
    X = np.ascontiguousarray(x).reshape(N, Cin, H * W)
    Wt = np.ascontiguousarray(weight.reshape(Cin, Cout * kh * kw).T)                  # (C_out*k*k, C_in)
    b = bias if bias is not None else np.zeros(Cout, x.dtype)
    out = np.empty((N, Cout, H * kh, W * kw), x.dtype)
    by_image = N >= blas.cores()

    def part(a, c):                         # images a..c-1 (all channels), or channels a..c-1 (all images)
        images, (o0, o1) = (range(a, c), (0, Cout)) if by_image else (range(N), (a, c))
        for n in images:
            K.upconv_shuffle(Wt[o0 * kh * kw:o1 * kh * kw] @ X[n], kh, kw, b[o0:o1], out[n, o0:o1])
    with blas.single_thread():
        split(part, N if by_image else Cout)
    return out, (_DISJOINT, x, weight, bias is not None)


def _upconv_disjoint_backward(dout, cache, weight_grad=True):
    """dcols = the gather of dout per image (upconv_unshuffle); dx = W dcols; dW += x dcols^T;
    images split over the cores (per-core dW summed), or for one image the C_in rows of dx and dW."""
    _, x, weight, has_bias = cache
    Cin, Cout, kh, kw = weight.shape
    N, _, H, W = x.shape
    X = np.ascontiguousarray(x).reshape(N, Cin, H * W)
    Wg = weight.reshape(Cin, Cout * kh * kw)
    dout = np.ascontiguousarray(dout)
    dx = np.empty((N, Cin, H * W), x.dtype)
    dWs = {}
    with blas.single_thread():
        if N >= blas.cores():
            def part(i0, i1):
                dW = np.zeros(Wg.shape, x.dtype)
                dcols = np.empty((Cout * kh * kw, H * W), x.dtype)
                for n in range(i0, i1):
                    K.upconv_unshuffle(dout[n], kh, kw, dcols)
                    np.matmul(Wg, dcols, out=dx[n])                                     # (C_in, H*W)
                    if weight_grad:
                        dW += X[n] @ dcols.T                                               # (C_in, C_out*k*k)
                dWs[i0] = dW
            split(part, N)
            dW = sum(dWs.values())
        else:
            dW = np.zeros(Wg.shape, x.dtype)
            dcols = np.empty((Cout * kh * kw, H * W), x.dtype)
            for n in range(N):
                K.upconv_unshuffle(dout[n], kh, kw, dcols)

                def rows(c0, c1):
                    np.matmul(Wg[c0:c1], dcols, out=dx[n, c0:c1])
                    if weight_grad:
                        dW[c0:c1] += X[n, c0:c1] @ dcols.T
                split(rows, Cin)
    if not weight_grad:
        return dx.reshape(x.shape), None, None
    db = _bias_grad(dout) if has_bias else None
    return dx.reshape(x.shape), dW.reshape(weight.shape), db


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1):
    """Transposed convolution ("up-convolution"): the input-gradient of conv2d.

    x: (N, C_in, H, W); weight: (C_in, C_out/groups, kh, kw); bias: (C_out,) or None.
    Returns out: (N, C_out, H_out, W_out), H_out = (H - 1)*s - 2p + kh + output_padding.
    cols = W^T @ x (per tile of input rows), then col2im scatters into out.
    """
    (sh, sw), (ph, pw), (oph, opw) = _pair(stride), _pair(padding), _pair(output_padding)
    x = np.ascontiguousarray(x)
    Cin, Og, kh, kw = weight.shape
    N, _, H, W = x.shape
    G = groups
    Cout = Og * G
    Ho = conv_transpose_out_size(H, kh, sh, ph, oph)
    Wo = conv_transpose_out_size(W, kw, sw, pw, opw)
    if _taps_disjoint(kh, kw, sh, sw, ph, pw, oph, opw, G):
        return _upconv_disjoint_forward(x, weight, bias)
    out = np.zeros((N, Cout, Ho, Wo), dtype=x.dtype)
    Wg = weight.reshape(Cin, -1) if G == 1 else weight.reshape(G, Cin // G, -1)
    Kr = Cout * kh * kw
    with blas.single_thread():
        for n0, n1, r0, r1 in _Tiles(N, H, W, max(Kr, Cin)):
            xt = x[n0:n1, :, r0:r1, :].transpose(1, 0, 2, 3).reshape(Cin, -1)  # (C_in, nn*R*W)
            cols = _split_gemm(lambda a, b: _gemm_tn(Wg, xt[:, a:b], G), Kr, xt.shape[1], x.dtype)
            K.col2im(cols, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, W, out)
    if bias is not None:
        out += bias.reshape(1, Cout, 1, 1)
    return out, (x, weight, bias is not None, (sh, sw), (ph, pw), G, out.shape)


def conv_transpose2d_backward(dout, cache, weight_grad=True):
    """dout: (N, C_out, H_out, W_out) -> (dx (N, C_in, H, W), dweight, dbias).

    Per tile of input rows: dcols = im2col(dout); dx = W @ dcols; dW += x_t @ dcols^T.
    """
    if cache[0] is _DISJOINT:
        return _upconv_disjoint_backward(dout, cache, weight_grad)
    x, weight, has_bias, (sh, sw), (ph, pw), G, _ = cache
    Cin, Og, kh, kw = weight.shape
    N, _, H, W = x.shape
    Cout = Og * G
    Wg = weight.reshape(Cin, -1) if G == 1 else weight.reshape(G, Cin // G, -1)
    dout = np.ascontiguousarray(dout)
    dx = np.empty_like(x)
    dW = np.zeros(Wg.shape, dtype=x.dtype)
    Kr = Cout * kh * kw
    tiles = _Tiles(N, H, W, max(Kr, Cin))
    buf = np.empty(Kr * tiles.nn * tiles.rr * W, dtype=x.dtype)
    with blas.single_thread():
        for n0, n1, r0, r1 in tiles:
            dcols = buf[: Kr * (n1 - n0) * (r1 - r0) * W].reshape(Kr, -1)
            K.im2col(dout, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, W, dcols)
            xt = x[n0:n1, :, r0:r1, :].transpose(1, 0, 2, 3).reshape(Cin, -1)
            dxt = _split_gemm(lambda a, b: _gemm(Wg, dcols[:, a:b], G), Cin, dcols.shape[1], x.dtype)
            dx[n0:n1, :, r0:r1, :] = dxt.reshape(Cin, n1 - n0, r1 - r0, W).transpose(1, 0, 2, 3)
            if not weight_grad:
                pass
            elif G == 1:   # dW rows split over threads (each on one BLAS thread)
                split(lambda c0, c1: np.add(dW[c0:c1], xt[c0:c1] @ dcols.T, out=dW[c0:c1]), Cin)
            else:
                dW += _gemm_nt(xt, dcols, G)
    if not weight_grad:
        return dx, None, None
    db = _bias_grad(dout) if has_bias else None
    return dx, dW.reshape(weight.shape), db


# ---------------------------------------------------------------- pooling

def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> out: (N, C, H_out, W_out), H_out = (H + 2p - k) // s + 1 (floor mode)."""
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(stride if stride is not None else kernel_size)
    (ph, pw) = _pair(padding)
    N, C, H, W = x.shape
    Ho, Wo = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0):
        x = np.ascontiguousarray(x)
        out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
        arg = np.empty(out.shape, dtype=np.int32)
        split(K.maxpool2x2_fwd, N * C, x, out, arg)
        return out, (arg, x.shape, x.dtype)
    hs, he = pool_windows(H, Ho, kh, sh, ph)
    ws, we = pool_windows(W, Wo, kw, sw, pw)
    return _maxpool_windows(x, hs, he, ws, we)


def adaptive_maxpool2d_forward(x, output_size):
    """x: (N, C, H, W) -> (N, C, oh, ow); window o spans [floor(o*H/oh), ceil((o+1)*H/oh))."""
    oh, ow = _pair(output_size)
    N, C, H, W = x.shape
    hs, he = pool_windows(H, oh, adaptive=True)
    ws, we = pool_windows(W, ow, adaptive=True)
    return _maxpool_windows(x, hs, he, ws, we)


def _maxpool_windows(x, hs, he, ws, we):
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], x.shape[1], len(hs), len(ws)), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=np.int32)
    split(K.maxpool_fwd, x.shape[0] * x.shape[1], x, hs, he, ws, we, out, arg)
    return out, (arg, x.shape, x.dtype)


def maxpool2d_backward(dout, cache):
    """dout: (N, C, H_out, W_out) -> dx: (N, C, H, W); each gradient goes to its window's max."""
    arg, shape, dtype = cache
    dx = np.zeros(shape, dtype=dtype)
    split(K.maxpool_bwd, shape[0] * shape[1], np.ascontiguousarray(dout), arg, dx)
    return dx


adaptive_maxpool2d_backward = maxpool2d_backward


# ---------------------------------------------------------------- upsampling

def interpolate_forward(x, size, mode="nearest", align_corners=None, scale=None):
    """x: (N, C, H, W) -> (N, C, size[0], size[1]).

    scale: (s_h, s_w) scale factors when the user gave them (PyTorch then uses
    1/s, not in/out, to place the samples).  See geometry.interp_indices.
    """
    N, C, H, W = x.shape
    oh, ow = size
    sh, sw = scale if scale is not None else (None, None)
    ac = bool(align_corners)
    iy = interp_indices(H, oh, mode, ac, sh)
    ix = interp_indices(W, ow, mode, ac, sw)
    iy = (iy[0], iy[1], iy[2].astype(x.dtype))
    ix = (ix[0], ix[1], ix[2].astype(x.dtype))
    out = np.empty((N, C, oh, ow), dtype=x.dtype)
    split(K.interp_fwd, N * C, np.ascontiguousarray(x), *iy, *ix, out)   # planes split over cores
    return out, (iy, ix, x.shape, x.dtype)


def interpolate_backward(dout, cache):
    """dout: (N, C, H_out, W_out) -> dx: (N, C, H, W) (scatter with the same weights)."""
    iy, ix, shape, dtype = cache
    dx = np.zeros(shape, dtype=dtype)
    split(K.interp_bwd, shape[0] * shape[1], np.ascontiguousarray(dout), *iy, *ix, dx)
    return dx


# ---------------------------------------------------------------- batch norm

def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5, relu=False):
    """x: (N, C, H, W); gamma, beta, running_*: (C,).  relu: return relu(BN(x)), one pass (fused).

    Training: normalise with the batch mean and biased variance over (N, H, W) and
    return the new running statistics (momentum on the new value, unbiased variance):
    running <- (1 - m) * running + m * batch.  Eval: use the running statistics.
    Returns (out, cache, new_running_mean, new_running_var).
    """
    N, C, H, W = x.shape
    x3 = np.ascontiguousarray(x).reshape(N, C, H * W)
    if training:
        mean = np.empty(C)
        var = np.empty(C)
        split(K.bn_stats, C, x3, mean, var)
        M = N * H * W
        new_rm = ((1 - momentum) * running_mean + momentum * mean).astype(running_mean.dtype)
        new_rv = ((1 - momentum) * running_var + momentum * var * M / (M - 1)).astype(running_var.dtype)
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
        new_rm, new_rv = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)
    scale = gamma.astype(np.float64) * invstd
    shift = beta.astype(np.float64) - mean * scale
    out = np.empty_like(x3)
    split(K.bn_apply, N * C, x3, scale.astype(x.dtype), shift.astype(x.dtype), relu, out)
    cache = (x3, mean, invstd, gamma, training, x.shape, out if relu else None)  # out: the ReLU mask
    return out.reshape(x.shape), cache, new_rm, new_rv


def batchnorm2d_backward(dout, cache):
    """dout: (N, C, H, W) -> (dx, dgamma (C,), dbeta (C,))."""
    x3, mean, invstd, gamma, training, shape, y = cache
    d3 = np.ascontiguousarray(dout).reshape(x3.shape)
    if training:
        dx = np.empty_like(x3)
        dg = np.empty(x3.shape[1])
        db = np.empty(x3.shape[1])
        split(K.bn_backward, x3.shape[1], d3, x3, mean, invstd, gamma.astype(np.float64),
              x3 if y is None else y, y is not None, dx, dg, db)
    else:  # the statistics are constants: y = x * scale + shift
        if y is not None:
            d3 = np.where(y > 0, d3, 0).astype(d3.dtype)
        scale = (gamma.astype(np.float64) * invstd).astype(x3.dtype)
        dx = d3 * scale[None, :, None]
        db = d3.sum(axis=(0, 2), dtype=np.float64)
        dg = (d3 * ((x3 - mean[None, :, None]) * invstd[None, :, None])).sum(axis=(0, 2))
    return dx.reshape(shape), dg.astype(x3.dtype), db.astype(x3.dtype)


# ---------------------------------------------------------------- average pooling

def adaptive_avgpool2d_forward(x, output_size):
    """x: (N, C, H, W) -> (N, C, oh, ow).  The global average (1, 1) of squeeze-and-excitation is one
    reduction; other sizes take the reference's window loop."""
    if _pair(output_size) != (1, 1):
        return _ref.adaptive_avgpool2d_forward(x, output_size)
    out = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(x.dtype)
    return out, ("global", x.shape)


def adaptive_avgpool2d_backward(dout, cache):
    if cache[0] != "global":
        return _ref.adaptive_avgpool2d_backward(dout, cache)
    N, C, H, W = cache[1]
    return np.broadcast_to(dout / (H * W), (N, C, H, W)).copy()
