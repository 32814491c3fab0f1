"""Direct 3x3 convolution for few channels (kernels.direct): no im2col columns, no Winograd
transforms.  With C_in x C_out <= 512, or at most 16 output channels, those move more data than the
multiplications cost; the direct loops read each padded input plane once per four output channels,
from the cache.

    forward:   xp = pad(x) (padding 1, on the wide grid), out = conv3x3(xp, w) + b
    backward:  gp = pad(dout); dx = conv3x3(gp, w flipped and transposed); dW = weight_grad(xp, gp)

The padded planes live in per-thread workspaces (rebuilt in the backward), so a layer keeps no more
than x in its cache, as the Winograd layer does.
"""
import numpy as np

from .. import blas
from ...kernels import direct as direct_kernels
from ...kernels.util import split
from .options import OPTIONS
from .parallel import bias_grad, workspace


def applies(x, weight, stride, padding, groups):
    """True when conv.py should take the direct loops: OPTIONS.direct on, float32, groups 1, a 3x3
    kernel at stride 1 with padding 1, and at most OPTIONS.direct_max_pairs channel pairs C_in x C_out or
    at most OPTIONS.direct_max_out output channels."""
    O, Cg, kh, kw = weight.shape
    return (OPTIONS.direct and x.dtype == np.float32 and groups == 1 and (kh, kw) == (3, 3) and stride == (1, 1)
            and padding == (1, 1) and (Cg * O <= OPTIONS.direct_max_pairs or O <= OPTIONS.direct_max_out))


def _padded(name, a):
    """a: (N, C, H, W) zero-padded by 1 on every side plus one zero row: (N, C, H + 3, W + 2), in a workspace."""
    N, C, H, W = a.shape
    buf = workspace(name, N * C * (H + 3) * (W + 2), a.dtype).reshape(N, C, H + 3, W + 2)
    split(direct_kernels.pad, N * C, a, buf)
    return buf


def _flat(a):
    """(N, C, Hp, Wp) -> (N, C, Hp * Wp), the view the kernels read."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _conv(xp, w, b, out):
    """out (N, O, H, W) = conv3x3(xp, w) + b over (image, four output channels, row block) units on every core."""
    N, (O, H, W) = xp.shape[0], out.shape[1:]
    R = max(1, min(H, direct_kernels.ROWS_ELEMS // (W + 2)))
    split(direct_kernels.conv3x3, N * ((O + 3) // 4) * ((H + R - 1) // R), _flat(xp), W + 2, w, b, out)
    return out


def forward(x, weight, bias):
    """x: (N, C, H, W), weight: (O, C, 3, 3), bias: (O,) or None (padding 1, stride 1)
    -> (out (N, O, H, W), DirectCache)."""
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight)
    b = bias if bias is not None else np.zeros(weight.shape[0], x.dtype)
    out = np.empty((x.shape[0], weight.shape[0]) + x.shape[2:], x.dtype)
    with blas.single_thread():
        _conv(_padded("direct_x", x), weight, b, out)
    return out, DirectCache(x, weight, bias is not None)


class DirectCache:
    """What the backward needs: x (N, C, H, W) and weight (O, C, 3, 3)."""

    def __init__(self, x, weight, has_bias):
        self.x, self.weight, self.has_bias = x, weight, has_bias

    def backward(self, dout, weight_grad=True):
        """dx = conv3x3(pad(dout), flipped weights) (the full correlation), dW = sum of dout x shifted x.
        dout: (N, O, H, W) -> (dx (N, C, H, W), dweight (O, C, 3, 3), dbias (O,) or None).
        weight_grad=False (a frozen layer): dweight and dbias None, their loops skipped."""
        x, weight = self.x, self.weight
        C = x.shape[1]
        with blas.single_thread():
            gp = _padded("direct_g", np.ascontiguousarray(dout))
            dx = _conv(gp, direct_kernels.flip_weight(weight), np.zeros(C, x.dtype), np.empty(x.shape, x.dtype))
            if not weight_grad:
                return dx, None, None
            dW = np.empty(weight.shape, x.dtype)
            split(direct_kernels.weight_grad, (weight.shape[0] + 1) // 2, _flat(_padded("direct_x", x)), _flat(gp),
                  x.shape[3] + 2, dW)
        db = bias_grad(dout) if self.has_bias else None
        return dx, dW, db
