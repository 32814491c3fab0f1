"""The reference backend, continued: joins and crops (U-Net's copy-and-crop, concatenation, the
residual add, the gate's multiply).  Same conventions as reference.py, which re-exports every pair here
(``npunet.backends.reference.concat_forward`` ...)."""
import numpy as np

from ..geometry import crop_offsets


def crop_concat_forward(skip, x):
    """U-Net's copy-and-crop: centre-crop skip (N, Cs, Hs, Ws) to x's (H, W) and concatenate
    [skip, x] on channels -> (N, Cs + Cx, H, W).  The crop starts at ((Hs - H) // 2, (Ws - W) // 2)."""
    H, W = x.shape[2:]
    t, l = crop_offsets(skip.shape[2:], (H, W))
    out = np.concatenate([skip[:, :, t:t + H, l:l + W], x], axis=1)
    return out, (skip.shape, t, l)


def crop_concat_backward(dout, cache):
    """-> (d_skip, d_x): split the channels; d_skip is 0 on the border the crop cut off."""
    skip_shape, t, l = cache
    Cs, (H, W) = skip_shape[1], dout.shape[2:]
    dskip = np.zeros(skip_shape, dtype=dout.dtype)
    dskip[:, :, t:t + H, l:l + W] = dout[:, :Cs]
    return dskip, dout[:, Cs:].copy()


def center_crop_forward(x, size):
    """x: (N, C, H, W) -> (N, C, size[0], size[1]), cut from the centre."""
    t, l = crop_offsets(x.shape[2:], size)
    return x[:, :, t:t + size[0], l:l + size[1]].copy(), (x.shape, t, l)


def center_crop_backward(dout, cache):
    """-> dx: dout placed back in the centre, 0 on the cropped border."""
    x_shape, t, l = cache
    dx = np.zeros(x_shape, dtype=dout.dtype)
    dx[:, :, t:t + dout.shape[2], l:l + dout.shape[3]] = dout
    return dx


def concat_forward(*xs):
    """Channel concatenation of (N, C_i, H, W) maps -> (N, sum C_i, H, W)."""
    return np.concatenate(xs, axis=1), [x.shape[1] for x in xs]


def concat_backward(dout, sizes):
    """-> tuple of the pieces' gradients: dout cut back into the channel blocks."""
    cuts = np.cumsum(sizes)[:-1]
    return tuple(d.copy() for d in np.split(dout, cuts, axis=1))


def _unbroadcast(g, shape):
    """Sum g down to ``shape``: the backward of NumPy broadcasting (a value used many times
    collects all its gradients)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, n in enumerate(shape):
        if n == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return np.array(g, copy=True)


def add_forward(a, b):
    """out = a + b (broadcasting)."""
    return a + b, (a.shape, b.shape)


def add_backward(dout, cache):
    """-> (da, db) = dout summed back to each input's shape."""
    sa, sb = cache
    return _unbroadcast(dout, sa), _unbroadcast(dout, sb)


def mul_forward(a, b):
    """out = a * b (broadcasting)."""
    return a * b, (a, b)


def mul_backward(dout, cache):
    """-> (dout * b, dout * a), each summed back to its input's shape."""
    a, b = cache
    return _unbroadcast(dout * b, a.shape), _unbroadcast(dout * a, b.shape)
