"""One operation's view: the window of input numbers around a point, the kernels and the output."""
import math

import numpy as np

from ... import nn
from .encode import _cnorm, _f32

OP_FLOATS = 30_000        # floats of an operation's input window region
OP_KERNEL_FLOATS = 20_000  # floats of a conv's embedded kernels (output channels beyond are left out)


def _pick_point(grad_map, H, W):
    """The output pixel an operation view starts at: where the gradient reaching it is largest
    (a cell border, usually), or the centre."""
    if grad_map is None:
        return H // 2, W // 2
    g = _cnorm(grad_map)
    y, x = np.unravel_index(int(np.argmax(g)), g.shape)
    return int(y), int(x)


def _region(c, R, n):
    lo = int(min(max(c - R // 2, 0), max(n - R, 0)))
    return lo, min(R, n)


def _op_view(m, name, inputs, out, grad):
    """The numbers of one operation around one output pixel, or None for other layers."""
    x = np.asarray(inputs[0])[0]
    y = np.asarray(out)[0]
    Co, Ho, Wo = y.shape
    cy, cx = _pick_point(None if grad is None else grad[0], Ho, Wo)
    if isinstance(m, nn.Conv2d) and m.groups == 1 and m.stride == (1, 1):
        k, p = m.kernel_size[0], m.padding[0]
        Ci = x.shape[0]
        R = int(max(1, min(8, math.sqrt(OP_FLOATS / Ci) - (k - 1))))
        oy, ry = _region(cy, R, Ho)
        ox, rx = _region(cx, R, Wo)
        xp = np.pad(x, ((0, 0), (p, p), (p, p)))
        win = xp[:, oy:oy + ry + k - 1, ox:ox + rx + k - 1]
        nco = int(max(1, min(Co, OP_KERNEL_FLOATS // (Ci * k * k))))
        w = m.weight.data[:nco]
        b = m.bias.data[:nco] if m.bias is not None else np.zeros(nco, w.dtype)
        return dict(kind="conv", layer=name, k=k, pad=p, cin=Ci, cout=Co, cout_shown=nco, oy=oy, ox=ox, ry=ry,
                    rx=rx, start=[cy - oy, cx - ox], in_shape=list(x.shape), out_shape=list(y.shape),
                    window=_f32(win), kernel=_f32(w), bias=_f32(b), out=_f32(y[:nco, oy:oy + ry, ox:ox + rx]))
    if isinstance(m, nn.MaxPool2d) and m.padding == (0, 0):
        k, s = m.kernel_size[0], m.stride[0]
        C = min(x.shape[0], 8)
        oy, ry = _region(cy, 8, Ho)
        ox, rx = _region(cx, 8, Wo)
        win = x[:C, oy * s:(oy + ry - 1) * s + k, ox * s:(ox + rx - 1) * s + k]
        return dict(kind="maxpool", layer=name, k=k, s=s, cin=x.shape[0], c_shown=C, oy=oy, ox=ox, ry=ry, rx=rx,
                    start=[cy - oy, cx - ox], in_shape=list(x.shape), out_shape=list(y.shape), window=_f32(win),
                    wh=list(win.shape[1:]), out=_f32(y[:C, oy:oy + ry, ox:ox + rx]))
    if isinstance(m, nn.ConvTranspose2d) and m.groups == 1 and m.kernel_size == m.stride and m.padding == (0, 0):
        k = m.kernel_size[0]
        Ci = x.shape[0]
        R = 2 * int(max(1, min(4, math.sqrt(OP_FLOATS / Ci) // 1)))
        oy, ry = _region(cy - cy % k, R, Ho)
        ox, rx = _region(cx - cx % k, R, Wo)
        oy, ox = oy - oy % k, ox - ox % k
        win = x[:, oy // k:(oy + ry + k - 1) // k, ox // k:(ox + rx + k - 1) // k]
        nco = int(max(1, min(Co, OP_KERNEL_FLOATS // (Ci * k * k))))
        w = m.weight.data[:, :nco]
        b = m.bias.data[:nco] if m.bias is not None else np.zeros(nco, w.dtype)
        return dict(kind="upconv", layer=name, k=k, cin=Ci, cout=Co, cout_shown=nco, oy=oy, ox=ox, ry=ry, rx=rx,
                    start=[cy - oy, cx - ox], in_shape=list(x.shape), out_shape=list(y.shape), wh=list(win.shape[1:]),
                    window=_f32(win), kernel=_f32(w), bias=_f32(b), out=_f32(y[:nco, oy:oy + ry, ox:ox + rx]))
    if isinstance(m, nn.Upsample) and m.mode == "bilinear":
        C = min(x.shape[0], 8)
        Hi, Wi = x.shape[1:]
        oy, ry = _region(cy, 8, Ho)
        ox, rx = _region(cx, 8, Wo)

        def src(o, n_in, n_out):   # PyTorch's source coordinate of output index o
            if m.align_corners:
                s = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            else:
                s = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
            i0 = min(int(math.floor(s)), n_in - 1)
            return i0, min(i0 + 1, n_in - 1), s - i0
        ys = [src(o, Hi, Ho) for o in range(oy, oy + ry)]
        xs = [src(o, Wi, Wo) for o in range(ox, ox + rx)]
        y0, y1 = ys[0][0], max(t[1] for t in ys)
        x0, x1 = xs[0][0], max(t[1] for t in xs)
        win = x[:C, y0:y1 + 1, x0:x1 + 1]
        return dict(kind="bilinear", layer=name, align_corners=bool(m.align_corners), cin=x.shape[0], c_shown=C,
                    oy=oy, ox=ox, ry=ry, rx=rx, start=[cy - oy, cx - ox], in_shape=list(x.shape),
                    out_shape=list(y.shape), wy0=y0, wx0=x0, wh=list(win.shape[1:]), window=_f32(win),
                    ys=[[a - y0, b - y0, float(t)] for a, b, t in ys], xs=[[a - x0, b - x0, float(t)] for a, b, t in xs],
                    out=_f32(y[:C, oy:oy + ry, ox:ox + rx]))
    return None
