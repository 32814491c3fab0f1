"""Depthwise convolution (groups = C_in = C_out): direct Numba loops (kernels.depthwise) instead of
C tiny GEMMs."""
import numpy as np

from ... import kernels
from ...geometry import conv_out_size
from .parallel import bias_grad


class DepthwiseCache:
    """What the backward needs: the padded input x_padded (N, C, H + 2p, W + 2p), the weight as
    (C, kh, kw), and the shapes to restore."""

    def __init__(self, x_padded, weight3, has_bias, stride, padding, x_shape, weight_shape):
        self.x_padded, self.weight3, self.has_bias = x_padded, weight3, has_bias
        self.stride, self.padding, self.x_shape, self.weight_shape = stride, padding, x_shape, weight_shape

    def backward(self, dout, weight_grad=True):
        """dout: (N, C, H_out, W_out) -> (dx (N, C, H, W), dweight (C, 1, kh, kw), dbias (C,) or None).
        The kernel computes dx and dweight in one pass, so a frozen layer (weight_grad=False) only drops them."""
        (sh, sw), (ph, pw) = self.stride, self.padding
        dx_padded = np.zeros_like(self.x_padded)
        dw = np.zeros(self.weight3.shape, dtype=np.float64)  # summed over N*H*W: accumulate in float64
        kernels.depthwise_bwd(np.ascontiguousarray(dout), self.x_padded, self.weight3, sh, sw, dx_padded, dw)
        H, W = self.x_shape[2:]
        dx = np.ascontiguousarray(dx_padded[:, :, ph:ph + H, pw:pw + W]) if ph or pw else dx_padded
        if not weight_grad:
            return dx, None, None
        db = bias_grad(dout) if self.has_bias else None
        return dx, dw.astype(dout.dtype).reshape(self.weight_shape), db


def forward(x, weight, bias, stride, padding):
    """x: (N, C, H, W), weight: (C, 1, kh, kw), bias: (C,) or None, stride and padding pairs
    -> (out (N, C, H_out, W_out), DepthwiseCache)."""
    (sh, sw), (ph, pw) = stride, padding
    O, _, kh, kw = weight.shape
    x_padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else np.ascontiguousarray(x)
    Ho, Wo = conv_out_size(x.shape[2], kh, sh, ph), conv_out_size(x.shape[3], kw, sw, pw)
    out = np.empty((x.shape[0], O, Ho, Wo), dtype=x.dtype)
    weight3 = np.ascontiguousarray(weight.reshape(O, kh, kw))
    kernels.depthwise_fwd(x_padded, weight3, sh, sw, out)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out, DepthwiseCache(x_padded, weight3, bias is not None, stride, padding, x.shape, weight.shape)
