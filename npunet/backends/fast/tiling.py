"""How an im2col convolution reads its input and cuts its output into tiles.

A *tile* is a block of whole output rows: images n0:n1, output rows r0:r1.  Its column buffer
(im2col) has ``col_rows`` rows (C_in * kh * kw, the GEMM depth; for a transposed conv C_out * kh * kw)
and one column per output pixel of the tile, and stays within ``OPTIONS.tile_elems`` elements.
"""
import numpy as np

from ... import kernels
from .. import blas
from ...geometry import conv_out_size
from .options import OPTIONS


class RowTiles:
    """Splits N images x R output rows into tiles whose column buffer stays small.

    ``row_len`` is the number of columns one output row takes in the buffer and ``col_rows`` the
    number of buffer rows.  Whole images are packed together (``images_per_tile``) when one image
    fits; otherwise one image is cut into blocks of ``rows_per_tile`` rows.  Iterating gives
    (n0, n1, r0, r1) per tile.
    """

    def __init__(self, N, R, row_len, col_rows):
        per_image = col_rows * R * row_len
        pipelines = blas.plan()[0]  # at least one tile per pipeline where the work allows
        budget = OPTIONS.tile_elems
        if per_image <= budget:
            self.images_per_tile = max(1, min(N, budget // max(per_image, 1), -(-N // pipelines)))
            self.rows_per_tile = R
            if N == 1 and pipelines > 1:
                self.rows_per_tile = max(1, -(-R // pipelines))
        else:  # blocks of equal rows (not full blocks and a remainder), an even count for the pipelines,
            # which take tiles in turns: 111 + 17 rows per image gave one pipeline every large tile
            # (measured: ResNet's 7x7 stem, one core did 90 % of the work)
            blocks = -(-R // max(1, budget // max(col_rows * row_len, 1)))
            if (N * blocks) % pipelines:
                blocks = -(-blocks // pipelines) * pipelines
            self.images_per_tile, self.rows_per_tile = 1, -(-R // blocks)
        self.blocks = -(-R // self.rows_per_tile)  # row blocks per image: R * j // blocks, sizes within one row
        self.N, self.R = N, R

    def max_columns(self, row_len):
        """Columns of the largest tile's buffer."""
        return self.images_per_tile * self.rows_per_tile * row_len

    def __iter__(self):
        R, k = self.R, self.blocks
        for n0 in range(0, self.N, self.images_per_tile):
            n1 = min(self.N, n0 + self.images_per_tile)
            for j in range(k):
                yield n0, n1, R * j // k, R * (j + 1) // k


class ConvGeometry:
    """How a conv reads its input: the fast 'wide' path for stride 1, else generic.

    Wide path: the input is zero-padded once and every output row is computed
    W_p wide (W_p - W_out junk columns that are cropped), so that each im2col row
    is one contiguous copy.  Generic path: exact W_out-wide columns.
    x_shape: (N, C, H, W); Ho, Wo: the output size; row_len: buffer columns per output row.
    wide=False asks for exact columns at stride 1 too (see ``exact``).
    """

    def __init__(self, x_shape, kh, kw, sh, sw, ph, pw, wide=True):
        N, C, H, W = x_shape
        self.N, self.C, self.H, self.W = N, C, H, W
        self.k, self.s, self.p = (kh, kw), (sh, sw), (ph, pw)
        self.Ho = conv_out_size(H, kh, sh, ph)
        self.Wo = conv_out_size(W, kw, sw, pw)
        self.wide = wide and sh == 1 and sw == 1
        self.row_len = W + 2 * pw if self.wide else self.Wo

    def exact(self):
        """The same convolution with exact W_out-wide columns.  For a small map the junk columns are
        a large share of the GEMM (8 x 8 with padding 1: 10 of every 8 columns, 25 % more products),
        and the cheaper copies of the wide path save less than that."""
        return ConvGeometry((self.N, self.C, self.H, self.W), *self.k, *self.s, *self.p, wide=False)

    def source(self, x):
        """The array im2col reads (zero-padded copy on the wide path)."""
        if self.wide and (self.p[0] or self.p[1]):
            ph, pw = self.p
            return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        return x

    def im2col(self, src, n0, n1, r0, r1, cols):
        kh, kw = self.k
        if self.wide:
            kernels.im2col_wide(src, n0, n1, r0, r1, kh, kw, cols)
        else:
            kernels.im2col(src, n0, n1, r0, r1, kh, kw, *self.s, *self.p, self.Wo, cols)

    def col2im(self, cols, n0, n1, r0, r1, dsrc):
        kh, kw = self.k
        if self.wide:
            kernels.col2im_wide(cols, n0, n1, r0, r1, kh, kw, dsrc)
        else:
            kernels.col2im(cols, n0, n1, r0, r1, kh, kw, *self.s, *self.p, self.Wo, dsrc)

    def dsource(self, dtype):
        """A zeroed gradient of source(x): (N, C, H + 2p, W + 2p) on the wide path, else x's shape."""
        if self.wide:
            ph, pw = self.p
            return np.zeros((self.N, self.C, self.H + 2 * ph, self.W + 2 * pw), dtype)
        return np.zeros((self.N, self.C, self.H, self.W), dtype)

    def crop_dsource(self, dsrc):
        """dx (N, C, H, W) from the gradient of source(x)."""
        if self.wide and (self.p[0] or self.p[1]):
            ph, pw = self.p
            return np.ascontiguousarray(dsrc[:, :, ph:ph + self.H, pw:pw + self.W])
        return dsrc

    def tile_to_cols(self, t, n0, n1, r0, r1, buf):
        """Output tile t: (N, O, H_out, W_out)[n0:n1, :, r0:r1] -> (O, images*rows*row_len)."""
        O = t.shape[1]
        b = buf[: O * (n1 - n0) * (r1 - r0) * self.row_len].reshape(O, n1 - n0, r1 - r0, self.row_len)
        if self.row_len != self.Wo:
            b[..., self.Wo:] = 0  # junk columns must not feed gradients
        b[..., : self.Wo] = t[n0:n1, :, r0:r1, :].transpose(1, 0, 2, 3)
        return b.reshape(O, -1)

    def cols_to_tile(self, y, out, n0, n1, r0, r1, bias=None):
        """Write GEMM result y (O, images*rows*row_len) into out[n0:n1, :, r0:r1] (+ bias, fused into the copy)."""
        O = y.shape[0]
        y4 = y.reshape(O, n1 - n0, r1 - r0, self.row_len)[..., : self.Wo].transpose(1, 0, 2, 3)
        if bias is None:
            out[n0:n1, :, r0:r1, :] = y4
        else:
            np.add(y4, bias.reshape(1, O, 1, 1), out=out[n0:n1, :, r0:r1, :])
