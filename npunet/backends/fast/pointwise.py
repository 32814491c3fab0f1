"""1x1 stride-1 unpadded convolution (groups 1): out[n] = W (O, C) @ x[n] (C, H*W), no im2col needed."""
import numpy as np

from .. import blas
from ...kernels.util import split
from .parallel import bias_grad


def applies(weight, stride, padding, groups):
    """True for groups 1, a 1x1 kernel, stride 1 and no padding."""
    return groups == 1 and weight.shape[2:] == (1, 1) and (*stride, *padding) == (1, 1, 0, 0)


def forward(x, weight, bias):
    """x: (N, C, H, W), weight: (O, C, 1, 1), bias: (O,) or None -> (out (N, O, H, W), PointwiseCache);
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
    return out.reshape(N, O, H, W), PointwiseCache(x3, weight, bias is not None, x.shape)


class PointwiseCache:
    """x3: the input as (N, C, H*W); weight (O, C, 1, 1); x_shape (N, C, H, W)."""

    def __init__(self, x3, weight, has_bias, x_shape):
        self.x3, self.weight, self.has_bias, self.x_shape = x3, weight, has_bias, x_shape

    def backward(self, dout, weight_grad=True):
        """dx[n] = W^T @ d[n] (split over input channels), dW = sum_n d[n] @ x[n]^T (split over output
        channels).  dout: (N, O, H, W) -> (dx (N, C, H, W), dweight (O, C, 1, 1), dbias (O,) or None);
        weight_grad=False (a frozen layer): no dW GEMMs, dweight and dbias None."""
        x3, weight = self.x3, self.weight
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
            return dx.reshape(self.x_shape), None, None
        db = bias_grad(dout) if self.has_bias else None
        return dx.reshape(self.x_shape), dW.astype(x3.dtype).reshape(weight.shape), db
