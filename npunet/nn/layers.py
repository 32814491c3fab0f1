"""The layers: thin classes that validate, hold parameters and the cache, and call
the forward/backward pairs of :mod:`npunet.functional`."""
import math

import numpy as np

from .. import functional as F
from .. import init
from .module import Meta, Module, Parameter, check_array, check_grad, _State


def _pair(v, name, layer):
    if np.isscalar(v):
        v = (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{layer}: {name} must be an int or a pair, got {v}")
    return v


def _meta_like(x, shape):
    return Meta(shape, x.dtype)


# ================================================================== convolutions

class Conv2d(Module):
    """2-D convolution, PyTorch semantics.

    weight: (out_channels, in_channels/groups, kh, kw); bias: (out_channels,).
    x: (N, C_in, H, W) -> (N, C_out, H_out, W_out), H_out = (H + 2p - kh) // s + 1.
    """

    _leaf = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, groups=1):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        self.padding = _pair(padding, "padding", "Conv2d")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: kernel_size/stride must be >= 1 and padding >= 0, got "
                             f"{self.kernel_size}/{self.stride}/{self.padding}")
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        self.weight = Parameter(init.pytorch_default((self.out_channels, self.in_channels // self.groups, kh, kw), fan_in))
        self.bias = Parameter(init.pytorch_default((self.out_channels,), fan_in)) if bias else None

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")

    def _check(self, x):
        check_array(self, x, 4, self.in_channels, self.weight.dtype)
        H, W = x.shape[2:]
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if H + 2 * ph < kh or W + 2 * pw < kw:
            raise ValueError(f"{self.label}: input of size {H}x{W} (padding {ph},{pw}) is smaller than the "
                             f"{kh}x{kw} kernel; the output would be empty")
        return (x.shape[0], self.out_channels, F.conv_out_size(H, kh, self.stride[0], ph),
                F.conv_out_size(W, kw, self.stride[1], pw))

    def _infer(self, x):
        return _meta_like(x, self._check(x))

    def forward(self, x):
        self._check(x)
        x = np.ascontiguousarray(x)
        out, self._cache = F.conv2d_forward(x, self.weight.data, None if self.bias is None else self.bias.data,
                                            self.stride, self.padding, self.groups)
        self._out_shape = out.shape
        return out

    _backward_fn = staticmethod(F.conv2d_backward)

    def backward(self, grad):
        """grad: (N, C_out, H_out, W_out) -> dx: (N, C_in, H, W); adds into weight.grad and bias.grad."""
        cache = self._take_cache()
        check_grad(self, grad, self._out_shape, self.weight.dtype)
        dx, dw, db = self._backward_fn(grad, cache)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def kept(self, inputs, out):
        return [inputs[0]], 0


class ConvTranspose2d(Module):
    """Transposed convolution ("up-convolution"), PyTorch semantics.

    weight: (in_channels, out_channels/groups, kh, kw); bias: (out_channels,).
    x: (N, C_in, H, W) -> (N, C_out, H_out, W_out), H_out = (H - 1)*s - 2p + kh + output_padding.
    """

    _leaf = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 bias=True, groups=1):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _pair(kernel_size, "kernel_size", "ConvTranspose2d")
        self.stride = _pair(stride, "stride", "ConvTranspose2d")
        self.padding = _pair(padding, "padding", "ConvTranspose2d")
        self.output_padding = _pair(output_padding, "output_padding", "ConvTranspose2d")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError("ConvTranspose2d: channels must be divisible by groups")
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be smaller than stride {self.stride}")
        kh, kw = self.kernel_size
        # PyTorch computes fan_in from weight.size(1) * kh * kw for transposed convs.
        fan_in = self.out_channels // self.groups * kh * kw
        self.weight = Parameter(init.pytorch_default((self.in_channels, self.out_channels // self.groups, kh, kw), fan_in))
        self.bias = Parameter(init.pytorch_default((self.out_channels,), fan_in)) if bias else None

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"

    def _check(self, x):
        check_array(self, x, 4, self.in_channels, self.weight.dtype)
        H, W = x.shape[2:]
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = self.kernel_size, self.stride, self.padding, self.output_padding
        Ho = F.conv_transpose_out_size(H, kh, sh, ph, oh)
        Wo = F.conv_transpose_out_size(W, kw, sw, pw, ow)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"{self.label}: input {H}x{W} gives an empty output {Ho}x{Wo}")
        return (x.shape[0], self.out_channels, Ho, Wo)

    def _infer(self, x):
        return _meta_like(x, self._check(x))

    def forward(self, x):
        self._check(x)
        out, self._cache = F.conv_transpose2d_forward(np.ascontiguousarray(x), self.weight.data,
                                                      None if self.bias is None else self.bias.data,
                                                      self.stride, self.padding, self.output_padding, self.groups)
        self._out_shape = out.shape
        return out

    _backward_fn = staticmethod(F.conv_transpose2d_backward)
    backward = Conv2d.backward
    kept = Conv2d.kept


# ================================================================== pooling

class MaxPool2d(Module):
    """Max pooling (floor mode). x: (N, C, H, W) -> (N, C, H_out, W_out), H_out = (H + 2p - k) // s + 1.

    Backward routes each gradient to the (first) maximum of its window.
    """

    _leaf = True

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", "MaxPool2d")
        self.stride = _pair(stride if stride is not None else kernel_size, "stride", "MaxPool2d")
        self.padding = _pair(padding, "padding", "MaxPool2d")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding {self.padding} must be at most half the kernel {self.kernel_size}")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def _check(self, x):
        check_array(self, x, 4)
        H, W = x.shape[2:]
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if H + 2 * ph < kh or W + 2 * pw < kw:
            raise ValueError(f"{self.label}: input {H}x{W} is smaller than the {kh}x{kw} window")
        return (x.shape[0], x.shape[1], F.conv_out_size(H, kh, self.stride[0], ph),
                F.conv_out_size(W, kw, self.stride[1], pw))

    def _infer(self, x):
        return _meta_like(x, self._check(x))

    def forward(self, x):
        self._check(x)
        out, self._cache = F.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._out_shape, self._dtype = out.shape, out.dtype
        return out

    def backward(self, grad):
        cache = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        return F.maxpool2d_backward(grad, cache)

    def _branch(self):  # the argmax of every window
        return None if self._cache is None else hash(self._cache[0].tobytes())

    def kept(self, inputs, out):
        return [], int(np.prod(out.shape)) * 4  # int32 argmax


class AdaptiveMaxPool2d(Module):
    """x: (N, C, H, W) -> (N, C, oh, ow); output cell o covers [floor(o*H/oh), ceil((o+1)*H/oh)).
    AdaptiveMaxPool2d(1) is the global max."""

    _leaf = True

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _pair(output_size, "output_size", "AdaptiveMaxPool2d")
        if min(self.output_size) < 1:
            raise ValueError(f"AdaptiveMaxPool2d: output_size must be >= 1, got {self.output_size}")

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def _check(self, x):
        check_array(self, x, 4)
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"{self.label}: empty input {tuple(x.shape)}")
        return x.shape[:2] + self.output_size

    def _infer(self, x):
        return _meta_like(x, self._check(x))

    def forward(self, x):
        self._check(x)
        out, self._cache = F.adaptive_maxpool2d_forward(x, self.output_size)
        self._out_shape, self._dtype = out.shape, out.dtype
        return out

    def backward(self, grad):
        cache = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        return F.adaptive_maxpool2d_backward(grad, cache)

    def _branch(self):
        return None if self._cache is None else hash(self._cache[0].tobytes())

    def kept(self, inputs, out):
        return [], int(np.prod(out.shape)) * 4


class Upsample(Module):
    """Nearest or bilinear resize, PyTorch semantics (see REFERENCE §6).

    x: (N, C, H, W) -> (N, C, H_out, W_out), H_out = size or floor(H * scale_factor).
    """

    _leaf = True

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample: mode must be 'nearest' or 'bilinear', got {mode!r}")
        if mode == "nearest" and align_corners is not None:
            raise ValueError("Upsample: align_corners only applies to mode='bilinear'")
        self.size = None if size is None else _pair(size, "size", "Upsample")
        self.scale_factor = None if scale_factor is None else tuple(float(s) for s in (
            (scale_factor, scale_factor) if np.isscalar(scale_factor) else scale_factor))
        self.mode, self.align_corners = mode, align_corners

    def extra_repr(self):
        what = f"size={self.size}" if self.size else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}" + (f", align_corners={self.align_corners}" if self.align_corners is not None else "")

    def _check(self, x):
        check_array(self, x, 4)
        if self.size is not None:
            return x.shape[:2] + self.size
        return x.shape[:2] + tuple(int(math.floor(d * s)) for d, s in zip(x.shape[2:], self.scale_factor))

    def _infer(self, x):
        return _meta_like(x, self._check(x))

    def forward(self, x):
        shape = self._check(x)
        out, self._cache = F.interpolate_forward(x, shape[2:], self.mode, self.align_corners, self.scale_factor)
        self._out_shape, self._dtype = out.shape, out.dtype
        return out

    def backward(self, grad):
        cache = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        return F.interpolate_backward(grad, cache)


# ================================================================== normalisation

class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel, PyTorch semantics.

    weight (gamma), bias (beta), running_mean, running_var: (C,); num_batches_tracked: int64 scalar.
    Training: batch statistics (biased variance to normalise); running statistics updated with
    running <- (1 - momentum) * running + momentum * batch (unbiased variance).  Eval: running statistics.
    """

    _leaf = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(self.num_features, np.float32))
        self.bias = Parameter(np.zeros(self.num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(self.num_features, np.float32))
        self.register_buffer("running_var", np.ones(self.num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def _check(self, x):
        check_array(self, x, 4, self.num_features, self.weight.dtype)
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ValueError(f"{self.label}: expected more than 1 value per channel when training, "
                             f"got input of shape {tuple(x.shape)}")
        return x.shape

    def _infer(self, x):
        return _meta_like(x, self._check(x))

    def forward(self, x):
        self._check(x)
        out, self._cache, rm, rv = F.batchnorm2d_forward(x, self.weight.data, self.bias.data, self.running_mean,
                                                         self.running_var, self.training, self.momentum, self.eps)
        if self.training:
            self.running_mean, self.running_var = rm, rv
            self.num_batches_tracked = self.num_batches_tracked + 1
        return out

    def backward(self, grad):
        cache = self._take_cache()
        check_grad(self, grad, cache[-1], self.weight.dtype)
        dx, dg, db = F.batchnorm2d_backward(grad, cache)
        self.weight.grad += dg
        self.bias.grad += db
        return dx

    def kept(self, inputs, out):
        return [inputs[0]], 0


# ================================================================== elementwise

class _Elementwise(Module):
    _leaf = True

    def _infer(self, x):
        check_array(self, x, x.ndim)
        return _meta_like(x, x.shape)

    def backward(self, grad):
        cache = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        return self._bwd(grad, cache)

    def _remember(self, out, cache):
        self._cache, self._out_shape, self._dtype = cache, out.shape, out.dtype
        return out


class ReLU(_Elementwise):
    """out = max(x, 0); any shape."""

    def forward(self, x):
        check_array(self, x, np.ndim(x))
        return self._remember(*F.relu_forward(x))

    def _bwd(self, grad, mask):
        return F.relu_backward(grad, mask)

    def _branch(self):  # which units were active: gradcheck skips steps that change it
        return None if self._cache is None or isinstance(self._cache, bool) else hash(np.packbits(self._cache).tobytes())

    def kept(self, inputs, out):
        return [], int(np.prod(out.shape))  # bool mask


class Sigmoid(_Elementwise):
    """out = 1 / (1 + exp(-x)); any shape."""

    def forward(self, x):
        check_array(self, x, np.ndim(x))
        return self._remember(*F.sigmoid_forward(x))

    def _bwd(self, grad, out):
        return F.sigmoid_backward(grad, out)

    def kept(self, inputs, out):
        return [out], 0


class Identity(_Elementwise):
    def forward(self, x):
        self._cache, self._out_shape, self._dtype = True, np.shape(x), getattr(x, "dtype", None)
        return x

    def _infer(self, x):
        return x

    def _bwd(self, grad, cache):
        return grad


class Dropout(_Elementwise):
    """Inverted dropout: in training keep each unit with probability 1 - p and scale by 1/(1 - p);
    identity in eval.  Seedable: ``Dropout(p, seed=...)``; by default seeded from npunet.init."""

    _channelwise = False

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)
        self._rng = np.random.default_rng(seed if seed is not None else init.rng().integers(2 ** 63))

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        check_array(self, x, x.ndim if not self._channelwise else 4)
        if not self.training or self.p == 0:
            return self._remember(x, None)
        return self._remember(*F.dropout_forward(x, self.p, self._rng, self._channelwise))

    def _bwd(self, grad, mask):
        return grad.copy() if mask is None else F.dropout_backward(grad, mask)

    def kept(self, inputs, out):
        return [], 0 if not self.training or self.p == 0 else out.nbytes


class Dropout2d(Dropout):
    """Drops whole channels: one keep/drop draw per (n, c) of an (N, C, H, W) input."""

    _channelwise = True


# ================================================================== joins

def _check_same_batch(layer, a, b, names):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{layer.label}: {names[0]} and {names[1]} have different batch sizes "
                         f"{a.shape[0]} and {b.shape[0]}")
    if a.dtype != b.dtype:
        raise TypeError(f"{layer.label}: {names[0]} is {a.dtype} but {names[1]} is {b.dtype}; mixed dtypes")


class CropConcat(Module):
    """U-Net copy-and-crop.  forward(skip, x): center-crop skip (N, Cs, Hs, Ws) to x's (H, W)
    (64 -> 56 in the paper: (Hs - H) // 2 pixels off the top/left) and concatenate [skip, x]
    on channels -> (N, Cs + Cx, H, W).  backward -> (d_skip, d_x), d_skip zero on the border."""

    _leaf = True

    def _check(self, skip, x):
        check_array(self, skip, 4, what="skip")
        check_array(self, x, 4, what="x")
        _check_same_batch(self, skip, x, ("skip", "x"))
        if skip.shape[2] < x.shape[2] or skip.shape[3] < x.shape[3]:
            raise ValueError(f"{self.label}: the skip map {tuple(skip.shape[2:])} is smaller than x "
                             f"{tuple(x.shape[2:])}; copy-and-crop can only crop, not pad")
        return (x.shape[0], skip.shape[1] + x.shape[1]) + tuple(x.shape[2:])

    def _infer(self, skip, x):
        return _meta_like(x, self._check(skip, x))

    def forward(self, skip, x):
        self._check(skip, x)
        out, self._cache = F.crop_concat_forward(skip, x)
        self._out_shape, self._dtype = out.shape, out.dtype
        return out

    def backward(self, grad):
        cache = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        return F.crop_concat_backward(grad, cache)


class CenterCrop(Module):
    """forward(x, like): center-crop x (N, C, H, W) to like's (H', W') -> (N, C, H', W'), the crop
    starting at ((H - H') // 2, (W - W') // 2).  backward -> dx (zero on the border); ``like``
    only lends its size.  Used by valid-padded residual blocks to crop the shortcut."""

    _leaf = True

    def _check(self, x, like):
        check_array(self, x, 4)
        if x.shape[2] < like.shape[2] or x.shape[3] < like.shape[3]:
            raise ValueError(f"{self.label}: cannot crop {tuple(x.shape[2:])} to the larger {tuple(like.shape[2:])}")
        return tuple(x.shape[:2]) + tuple(like.shape[2:])

    def _infer(self, x, like):
        return _meta_like(x, self._check(x, like))

    def forward(self, x, like):
        shape = self._check(x, like)
        t, l = (x.shape[2] - shape[2]) // 2, (x.shape[3] - shape[3]) // 2
        self._cache, self._out_shape, self._dtype = (x.shape, t, l), shape, x.dtype
        return x[:, :, t:t + shape[2], l:l + shape[3]]

    def backward(self, grad):
        (shape, t, l) = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        dx = np.zeros(shape, grad.dtype)
        dx[:, :, t:t + grad.shape[2], l:l + grad.shape[3]] = grad
        return dx


class Concat(Module):
    """Channel concatenation of any number of (N, C_i, H, W) maps -> (N, sum C_i, H, W).
    backward -> tuple of the pieces' gradients, in input order."""

    _leaf = True

    def _check(self, *xs):
        if len(xs) < 1:
            raise ValueError(f"{self.label}: needs at least one input")
        for i, x in enumerate(xs):
            check_array(self, x, 4, what=f"input {i}")
            if x.dtype != xs[0].dtype:
                raise TypeError(f"{self.label}: input {i} is {x.dtype} but input 0 is {xs[0].dtype}; mixed dtypes")
            if x.shape[0] != xs[0].shape[0] or x.shape[2:] != xs[0].shape[2:]:
                raise ValueError(f"{self.label}: input {i} has shape {tuple(x.shape)} but input 0 "
                                 f"has {tuple(xs[0].shape)}; all must share N, H and W")
        return (xs[0].shape[0], sum(x.shape[1] for x in xs)) + tuple(xs[0].shape[2:])

    def _infer(self, *xs):
        return _meta_like(xs[0], self._check(*xs))

    def forward(self, *xs):
        shape = self._check(*xs)
        out = np.concatenate(xs, axis=1)
        self._cache, self._out_shape, self._dtype = [x.shape[1] for x in xs], shape, out.dtype
        return out

    def backward(self, grad):
        sizes = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        idx = np.cumsum(sizes)[:-1]
        return tuple(np.ascontiguousarray(g) for g in np.split(grad, idx, axis=1))


def _unbroadcast(g, shape):
    """Sum g down to ``shape`` (the inverse of NumPy broadcasting)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, n in enumerate(shape):
        if n == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return np.ascontiguousarray(g)


class _Binary(Module):
    _leaf = True

    def _check(self, a, b):
        check_array(self, a, a.ndim, what="a")
        check_array(self, b, b.ndim, what="b")
        if a.dtype != b.dtype:
            raise TypeError(f"{self.label}: a is {a.dtype} but b is {b.dtype}; mixed dtypes")
        try:
            return np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        except ValueError:
            raise ValueError(f"{self.label}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast") from None

    def _infer(self, a, b):
        return _meta_like(a, self._check(a, b))


class Add(_Binary):
    """out = a + b (NumPy broadcasting); backward -> (da, db) summed back to each shape."""

    def forward(self, a, b):
        shape = self._check(a, b)
        self._cache, self._out_shape, self._dtype = (a.shape, b.shape), shape, a.dtype
        return a + b

    def backward(self, grad):
        sa, sb = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        return _unbroadcast(grad, sa), _unbroadcast(grad, sb)


class Mul(_Binary):
    """out = a * b (NumPy broadcasting); backward -> (grad * b, grad * a) summed back to each shape."""

    def forward(self, a, b):
        shape = self._check(a, b)
        self._cache, self._out_shape, self._dtype = (a, b), shape, a.dtype
        return a * b

    def backward(self, grad):
        a, b = self._take_cache()
        check_grad(self, grad, self._out_shape, self._dtype)
        return _unbroadcast(grad * b, a.shape), _unbroadcast(grad * a, b.shape)

    def kept(self, inputs, out):
        return list(inputs), 0


class Sequential(Module):
    """Children run in order; backward runs them in reverse.  Children are named '0', '1', ..."""

    def __init__(self, *layers):
        super().__init__()
        for i, m in enumerate(layers):
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad):
        for m in reversed(list(self._modules.values())):
            grad = m.backward(grad)
        return grad
