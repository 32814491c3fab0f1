"""The reference backend: every op as a forward/backward pair in plain NumPy.

This is the file to read to learn how each backward works.  No Numba, no threads, no tiles:
each op is written the way a textbook derives it, with the shape of every array in a comment.
The fast backend (the package ``fast/``) computes the same results behind the same signatures, and the
tests hold the two equal to 1e-10 in float64.

Conventions (PyTorch's): images are (N, C, H, W); a conv weight is (C_out, C_in/groups, kh, kw),
a transposed-conv weight (C_in, C_out/groups, kh, kw).  ``xxx_forward(...) -> (out, cache)`` and
``xxx_backward(dout, cache) -> gradients``.  Nothing writes into its inputs or into ``dout``;
every result is a new array with the input's dtype.
"""
import numpy as np

from ..geometry import conv_out_size, conv_transpose_out_size, crop_offsets, interp_indices, pair, pool_windows


# ================================================================== convolution

def im2col(x, kh, kw, stride, padding):
    """Lay every receptive field out as a column.

    x: (N, C, H, W) -> cols: (C*kh*kw, N*H_out*W_out), H_out = (H + 2p - kh) // s + 1.
    Row (c*kh + i)*kw + j holds what kernel tap (i, j) of channel c sees at every output position,
    so the whole convolution becomes one matrix product W (C_out, C*kh*kw) @ cols.
    """
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    Ho, Wo = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))                 # (N, C, H + 2ph, W + 2pw)
    cols = np.empty((C, kh, kw, N, Ho, Wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            seen = xp[:, :, i:i + sh * Ho:sh, j:j + sw * Wo:sw]           # (N, C, Ho, Wo): tap (i, j)
            cols[:, i, j] = seen.transpose(1, 0, 2, 3)                    # (C, N, Ho, Wo)
    return cols.reshape(C * kh * kw, N * Ho * Wo)


def col2im(cols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col: add every column entry back onto the pixel it was copied from.

    cols: (C*kh*kw, N*H_out*W_out) -> dx: x_shape = (N, C, H, W).  Neighbouring receptive fields
    overlap, so one pixel collects the gradient of every tap that saw it.
    """
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x_shape
    Ho, Wo = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    c6 = cols.reshape(C, kh, kw, N, Ho, Wo)
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)    # padded, like im2col's xp
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + sh * Ho:sh, j:j + sw * Wo:sw] += c6[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, ph:ph + H, pw:pw + W].copy()                          # drop the padding


def _conv(x, weight, stride, padding, groups):
    """out = W @ im2col(x), one product per group.  x: (N, C, H, W), weight: (O, C/G, kh, kw)
    -> (N, O, H_out, W_out)."""
    O, Cg, kh, kw = weight.shape
    N, G = x.shape[0], groups
    cols = im2col(x, kh, kw, stride, padding)                              # (C*kh*kw, L), L = N*Ho*Wo
    Wg = weight.reshape(G, O // G, Cg * kh * kw)                           # (G, O/G, Cg*kh*kw)
    out = Wg @ cols.reshape(G, Cg * kh * kw, -1)                           # (G, O/G, L)
    Ho = conv_out_size(x.shape[2], kh, stride[0], padding[0])
    Wo = conv_out_size(x.shape[3], kw, stride[1], padding[1])
    return out.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3).copy()         # (N, O, Ho, Wo)


def _conv_input_grad(dout, weight, x_shape, stride, padding, groups):
    """dx of out = conv(x): dcols = W^T @ dout, then col2im.  dout: (N, O, Ho, Wo) -> x_shape."""
    O, Cg, kh, kw = weight.shape
    G = groups
    d = dout.transpose(1, 0, 2, 3).reshape(G, O // G, -1)                 # (G, O/G, L)
    Wg = weight.reshape(G, O // G, Cg * kh * kw)                           # (G, O/G, Cg*kh*kw)
    dcols = Wg.transpose(0, 2, 1) @ d                                      # (G, Cg*kh*kw, L)
    return col2im(dcols.reshape(G * Cg * kh * kw, -1), x_shape, kh, kw, stride, padding)


def _conv_weight_grad(dout, x, weight_shape, stride, padding, groups):
    """dW of out = conv(x): dW = dout @ im2col(x)^T.  dout: (N, O, Ho, Wo), x: (N, C, H, W)."""
    O, Cg, kh, kw = weight_shape
    G = groups
    cols = im2col(x, kh, kw, stride, padding)                              # recomputed, not kept: a 572^2
    d = dout.transpose(1, 0, 2, 3).reshape(G, O // G, -1)                 # U-Net's columns are ~10 GB
    dW = d @ cols.reshape(G, Cg * kh * kw, -1).transpose(0, 2, 1)          # (G, O/G, Cg*kh*kw)
    return dW.reshape(weight_shape)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, groups=1):
    """2-D convolution (cross-correlation, as PyTorch).

    x: (N, C, H, W); weight: (O, C/groups, kh, kw); bias: (O,) or None.
    Returns out: (N, O, H_out, W_out), H_out = (H + 2p - kh) // s + 1, and the cache.
    """
    stride, padding = pair(stride), pair(padding)
    out = _conv(x, weight, stride, padding, groups)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out, (x, weight, bias is not None, stride, padding, groups)


def conv2d_backward(dout, cache, weight_grad=True):
    """dout: (N, O, H_out, W_out) -> (dx (N, C, H, W), dweight (O, C/g, kh, kw), dbias (O,) or None).

    dW = dout @ cols^T;  dcols = W^T @ dout, dx = col2im(dcols);  dbias = dout summed over N, H, W.
    weight_grad=False (a frozen layer): dW and dbias are None, their GEMM is skipped.
    """
    x, weight, has_bias, stride, padding, groups = cache
    dx = _conv_input_grad(dout, weight, x.shape, stride, padding, groups)
    if not weight_grad:
        return dx, None, None
    dW = _conv_weight_grad(dout, x, weight.shape, stride, padding, groups)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dW, db


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1):
    """Transposed convolution ("up-convolution"): exactly the input gradient of a conv2d.

    A conv2d from C_out to C_in channels has weight (C_in, C_out/g, kh, kw): the transposed conv's
    weight.  Its input gradient maps (N, C_in, H, W) to (N, C_out, H_out, W_out); that map is this op.
    x: (N, C_in, H, W); bias: (C_out,) or None.
    Returns out: (N, C_out, H_out, W_out), H_out = (H - 1)*s - 2p + kh + output_padding.
    """
    stride, padding, output_padding = pair(stride), pair(padding), pair(output_padding)
    Cin, Og, kh, kw = weight.shape
    N, _, H, W = x.shape
    out_shape = (N, Og * groups, conv_transpose_out_size(H, kh, stride[0], padding[0], output_padding[0]),
                 conv_transpose_out_size(W, kw, stride[1], padding[1], output_padding[1]))
    out = _conv_input_grad(x, weight, out_shape, stride, padding, groups)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out, (x, weight, bias is not None, stride, padding, groups)


def conv_transpose2d_backward(dout, cache, weight_grad=True):
    """dout: (N, C_out, H_out, W_out) -> (dx (N, C_in, H, W), dweight (C_in, C_out/g, kh, kw), dbias).

    out = A^T x for the conv2d map A, so dx = A dout: an ordinary convolution of dout.  The weight
    gradient is conv2d's with the roles swapped: dW = x @ im2col(dout)^T.
    """
    x, weight, has_bias, stride, padding, groups = cache
    dx = _conv(dout, weight, stride, padding, groups)
    if not weight_grad:
        return dx, None, None
    dW = _conv_weight_grad(x, dout, weight.shape, stride, padding, groups)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dW, db


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, groups=1):
    """The convolution as four loops (plus the channel sum): the definition im2col must reproduce.

    x: (N, C, H, W); weight: (O, C/groups, kh, kw) -> (N, O, H_out, W_out).
    """
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    N, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw)
    out = np.zeros((N, O, Ho, Wo), dtype=x.dtype)
    Og = O // groups
    for n in range(N):
        for o in range(O):
            c0 = (o // Og) * Cg
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[n, c0:c0 + Cg, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    out[n, o, i, j] = np.sum(patch * weight[o])
            if bias is not None:
                out[n, o] += bias[o]
    return out


# ================================================================== max pooling

def _maxpool_windows(x, hs, he, ws, we):
    """Max over window (oh, ow) = rows hs[oh]:he[oh], columns ws[ow]:we[ow].
    Returns out (N, C, Ho, Wo) and arg (N, C, Ho, Wo): the flat index h*W + w of each maximum."""
    N, C, H, W = x.shape
    arg = np.empty((N, C, len(hs), len(ws)), dtype=np.int64)
    for oh in range(len(hs)):
        for ow in range(len(ws)):
            win = x[:, :, hs[oh]:he[oh], ws[ow]:we[ow]]                   # (N, C, h, w)
            k = win.reshape(N, C, -1).argmax(axis=2)                       # (N, C): first maximum
            h, w = hs[oh] + k // win.shape[3], ws[ow] + k % win.shape[3]
            arg[:, :, oh, ow] = h * W + w
    out = np.take_along_axis(x.reshape(N, C, H * W), arg.reshape(N, C, -1), axis=2)
    return out.reshape(arg.shape), (arg, x.shape)


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """x: (N, C, H, W) -> out: (N, C, H_out, W_out), H_out = (H + 2p - k) // s + 1 (floor mode).
    Padding never wins (windows are clipped to the image)."""
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(stride if stride is not None else kernel_size)
    H, W = x.shape[2:]
    hs, he = pool_windows(H, conv_out_size(H, kh, sh, ph), kh, sh, ph)
    ws, we = pool_windows(W, conv_out_size(W, kw, sw, pw), kw, sw, pw)
    return _maxpool_windows(x, hs, he, ws, we)


def adaptive_maxpool2d_forward(x, output_size):
    """x: (N, C, H, W) -> (N, C, oh, ow); window o spans [floor(o*H/oh), ceil((o+1)*H/oh))."""
    oh, ow = pair(output_size)
    H, W = x.shape[2:]
    return _maxpool_windows(x, *pool_windows(H, oh, adaptive=True), *pool_windows(W, ow, adaptive=True))


def maxpool2d_backward(dout, cache):
    """dout: (N, C, H_out, W_out) -> dx: (N, C, H, W).  Each window's gradient goes to its maximum;
    every other pixel gets 0.  Overlapping windows may pick the same pixel: their gradients add."""
    arg, x_shape = cache
    N, C, H, W = x_shape
    dx = np.zeros((N * C, H * W), dtype=dout.dtype)
    rows = np.arange(N * C)[:, None]                                       # (N*C, 1)
    np.add.at(dx, (rows, arg.reshape(N * C, -1)), dout.reshape(N * C, -1))
    return dx.reshape(x_shape)


adaptive_maxpool2d_backward = maxpool2d_backward


# ================================================================== upsampling

def interp_matrix(size_in, size_out, mode, align_corners=False, scale=None):
    """The (size_out, size_in) matrix M with out = M @ in along one axis.

    Output o reads input i0[o] with weight 1 - lam[o] and i1[o] with weight lam[o]: PyTorch's
    sampling rule, in ``geometry.interp_indices`` (nearest: i1 = i0, lam = 0).
    """
    i0, i1, lam = interp_indices(size_in, size_out, mode, align_corners, scale)
    M = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    np.add.at(M, (rows, i0), 1 - lam)                                     # add: i0 == i1 at the edge
    np.add.at(M, (rows, i1), lam)
    return M


def interpolate_forward(x, size, mode="nearest", align_corners=None, scale=None):
    """Separable resize as two matrix products: out = My @ x @ Mx^T.

    x: (N, C, H, W) -> (N, C, size[0], size[1]); scale: (s_h, s_w) when the user gave scale
    factors (PyTorch then samples at 1/s, not at in/out).
    """
    sh, sw = scale if scale is not None else (None, None)
    My = interp_matrix(x.shape[2], size[0], mode, bool(align_corners), sh).astype(x.dtype)  # (H_out, H)
    Mx = interp_matrix(x.shape[3], size[1], mode, bool(align_corners), sw).astype(x.dtype)  # (W_out, W)
    return My @ x @ Mx.T, (My, Mx)                                         # (N, C, H_out, W_out)


def interpolate_backward(dout, cache):
    """The transpose of a linear map is its backward: dx = My^T @ dout @ Mx.
    dout: (N, C, H_out, W_out) -> dx: (N, C, H, W)."""
    My, Mx = cache
    return My.T @ dout @ Mx


# ================================================================== average pooling and padding

def adaptive_avgpool2d_forward(x, output_size):
    """x: (N, C, H, W) -> (N, C, oh, ow): the mean over window o = [floor(o*H/oh), ceil((o+1)*H/oh)).
    AdaptiveAvgPool2d(1) is the global average (squeeze-and-excitation's "squeeze")."""
    oh, ow = pair(output_size)
    N, C, H, W = x.shape
    (hs, he), (ws, we) = pool_windows(H, oh, adaptive=True), pool_windows(W, ow, adaptive=True)
    out = np.empty((N, C, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, hs[i]:he[i], ws[j]:we[j]].mean(axis=(2, 3))
    return out, (x.shape, hs, he, ws, we)


def adaptive_avgpool2d_backward(dout, cache):
    """Each window's gradient is shared equally by its pixels: dx += dout / (window area)."""
    x_shape, hs, he, ws, we = cache
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(len(hs)):
        for j in range(len(ws)):
            area = (he[i] - hs[i]) * (we[j] - ws[j])
            dx[:, :, hs[i]:he[i], ws[j]:we[j]] += dout[:, :, i:i + 1, j:j + 1] / area
    return dx


def _pad_index(n, before, after, mode):
    """Which input index each padded position copies along one axis of length n (PyTorch's modes):
    reflect  3 2 1 | 0 1 2 3 | 2 1 0   (the edge not repeated; needs before, after < n)
    replicate 0 0 0 | 0 1 2 3 | 3 3 3
    circular  1 2 3 | 0 1 2 3 | 0 1 2  (needs before, after <= n)."""
    i = np.arange(-before, n + after)
    if mode == "reflect":
        period = 2 * (n - 1)
        i = np.abs((i + period) % period) if n > 1 else np.zeros_like(i)
        return np.where(i > n - 1, period - i, i)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    return i % n  # circular


def pad2d_forward(x, padding, mode):
    """Reflect / replicate / circular padding (torch.nn.functional.pad's modes): every padded pixel
    copies an input pixel.  padding = (left, right, top, bottom) >= 0.
    x: (N, C, H, W) -> (N, C, H + top + bottom, W + left + right)."""
    l, r, t, b = padding
    rows, cols = _pad_index(x.shape[2], t, b, mode), _pad_index(x.shape[3], l, r, mode)
    return x[:, :, rows][:, :, :, cols], (x.shape, rows, cols)


def pad2d_backward(dout, cache):
    """Every input pixel collects the gradients of all the padded positions that copied it: per axis,
    dx[.., j] = sum of dout[.., i] over i with index[i] = j (a scatter-add)."""
    shape, rows, cols = cache
    dh = np.zeros(dout.shape[:3] + (shape[3],), dout.dtype)
    np.add.at(dh, (slice(None), slice(None), slice(None), cols), dout)     # (N, C, Hp, W)
    dx = np.zeros(shape, dout.dtype)
    np.add.at(dx, (slice(None), slice(None), rows), dh)                   # (N, C, H, W)
    return dx


def zero_pad2d_forward(x, padding):
    """padding = (left, right, top, bottom), PyTorch's order (negative values crop).
    x: (N, C, H, W) -> (N, C, H + top + bottom, W + left + right)."""
    l, r, t, b = padding
    N, C, H, W = x.shape
    out = np.zeros((N, C, H + t + b, W + l + r), dtype=x.dtype)
    out[:, :, max(t, 0):max(t, 0) + H + min(t, 0) + min(b, 0), max(l, 0):max(l, 0) + W + min(l, 0) + min(r, 0)] = \
        x[:, :, max(-t, 0):H - max(-b, 0), max(-l, 0):W - max(-r, 0)]
    return out, (x.shape, padding)


def zero_pad2d_backward(dout, cache):
    """The gradient of the kept pixels; the padding had no input behind it."""
    (N, C, H, W), (l, r, t, b) = cache
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)
    dx[:, :, max(-t, 0):H - max(-b, 0), max(-l, 0):W - max(-r, 0)] = \
        dout[:, :, max(t, 0):max(t, 0) + H + min(t, 0) + min(b, 0), max(l, 0):max(l, 0) + W + min(l, 0) + min(r, 0)]
    return dx


# ================================================================== batch normalisation

def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5, relu=False):
    """y = gamma * xhat + beta, xhat = (x - mean) / sqrt(var + eps), per channel over (N, H, W).
    relu=True returns relu(y) (the fast backend does both in one pass; here it is just relu_forward).

    x: (N, C, H, W); gamma, beta, running_*: (C,).  Training: batch mean and biased variance, and
    running <- (1 - momentum) * running + momentum * batch (the variance unbiased, * M / (M - 1)).
    Eval: the running statistics.  Returns (out, cache, new_running_mean, new_running_var).
    """
    axes = (0, 2, 3)
    M = x.shape[0] * x.shape[2] * x.shape[3]                               # values per channel
    if training:
        mean = x.mean(axis=axes, dtype=np.float64)                         # (C,) float64 sums: millions
        var = x.var(axis=axes, dtype=np.float64)                           # (C,) of float32 lose digits
        new_rm = ((1 - momentum) * running_mean + momentum * mean).astype(running_mean.dtype)
        new_rv = ((1 - momentum) * running_var + momentum * var * M / (M - 1)).astype(running_var.dtype)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        new_rm, new_rv = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)                                      # (C,)
    c = (None, slice(None), None, None)                                    # (C,) -> (1, C, 1, 1)
    xhat = ((x - mean[c]) * invstd[c]).astype(x.dtype)                     # (N, C, H, W)
    out = gamma[c] * xhat + beta[c]
    mask = None
    if relu:
        out, mask = relu_forward(out)
    return out, (xhat, gamma, invstd.astype(x.dtype), training, mask), new_rm, new_rv


def batchnorm2d_backward(dout, cache):
    """dout: (N, C, H, W) -> (dx, dgamma (C,), dbeta (C,)).

    dbeta = sum(dout), dgamma = sum(dout * xhat) over (N, H, W).  With dxhat = dout * gamma:
      training: mean and var depend on x, so
                dx = invstd / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
      eval:     the statistics are constants, dx = dxhat * invstd.
    """
    xhat, gamma, invstd, training, mask = cache
    if mask is not None:                                                   # the forward ended in a ReLU
        dout = relu_backward(dout, mask)
    axes = (0, 2, 3)
    c = (None, slice(None), None, None)
    M = xhat.shape[0] * xhat.shape[2] * xhat.shape[3]
    dbeta = dout.sum(axis=axes)                                            # (C,)
    dgamma = (dout * xhat).sum(axis=axes)                                  # (C,)
    dxhat = dout * gamma[c]                                                # (N, C, H, W)
    if not training:
        return dxhat * invstd[c], dgamma, dbeta
    dx = invstd[c] / M * (M * dxhat - dxhat.sum(axis=axes)[c] - xhat * (dxhat * xhat).sum(axis=axes)[c])
    return dx, dgamma, dbeta


# ================================================================== elementwise

def relu_forward(x):
    """out = max(x, 0); cache: the mask of active units (x > 0)."""
    out = np.maximum(x, 0)
    return out, out > 0


def relu_backward(dout, mask):
    """The gradient passes where the unit was active, 0 elsewhere."""
    return dout * mask


def sigmoid(x):
    """1 / (1 + e^-x), without overflow: e^-|x| never exceeds 1."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_forward(x):
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, out):
    """d sigmoid / dx = s (1 - s): the backward needs only the output."""
    return dout * out * (1 - out)


def relu6_forward(x):
    """out = min(max(x, 0), 6) (MobileNetV2); cache: where the slope is 1 (0 < x < 6)."""
    return np.clip(x, 0, 6), (x > 0) & (x < 6)


def relu6_backward(dout, mask):
    return dout * mask


def silu_forward(x):
    """SiLU / Swish: out = x * sigmoid(x) (EfficientNet)."""
    s = sigmoid(x)
    return x * s, (x, s)


def silu_backward(dout, cache):
    """d(x s)/dx = s + x s (1 - s) = s (1 + x (1 - s))."""
    x, s = cache
    return dout * s * (1 + x * (1 - s))


def stochastic_depth_forward(x, p, rng):
    """Stochastic depth ("drop connect" in EfficientNet): each sample's whole residual branch is
    dropped with probability p, the kept ones scaled by 1/(1 - p).  x: (N, ...); cache: the (N, 1, ...) mask."""
    keep = 1.0 - p
    mask = (np.floor(keep + rng.random((x.shape[0],) + (1,) * (x.ndim - 1))) / keep).astype(x.dtype)
    return x * mask, mask


def stochastic_depth_backward(dout, mask):
    return dout * mask


def dropout_forward(x, p, rng, channelwise=False):
    """Inverted dropout: keep each unit with probability 1 - p and scale the kept ones by 1/(1 - p),
    so that eval (identity) sees the same expected value.  channelwise (Dropout2d): one draw per
    (n, c) drops whole feature maps.  x: any shape; cache: the scaled mask."""
    shape = x.shape[:2] + (1,) * (x.ndim - 2) if channelwise else x.shape
    if p >= 1:
        mask = np.zeros(shape, dtype=x.dtype)
    else:
        mask = ((rng.random(shape) >= p) / (1 - p)).astype(x.dtype)
    return x * mask, mask


def dropout_backward(dout, mask):
    return dout * mask


# ================================================================== joins and crops

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
