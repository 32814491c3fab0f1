"""The layers: thin classes that validate, hold parameters and the cache, and call the
forward/backward pairs of the selected backend (``npunet/backends/reference.py`` reads like a
textbook; ``fast.py`` computes the same faster).  Every layer follows the protocol of ``Conv2d``."""
import numpy as np

from .. import init
from ..backends import current as ops
from ..backends.geometry import conv_out_size, conv_transpose_out_size, upsample_out_size
from .module import Module, Parameter, check_array, tracing
from .op import Op


def _int(v, name, layer):
    """An integer argument: 4 or np.int64(4), never "4" or 4.5 (int() would silently accept them)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{layer}: {name} must be an integer, got {v!r} ({type(v).__name__})")
    return int(v)


def _pair(v, name, layer):
    if np.isscalar(v):
        v = (v, v)
    v = tuple(_int(a, name, layer) for a in v)
    if len(v) != 2:
        raise ValueError(f"{layer}: {name} must be an int or a pair, got {v}")
    return v


# ================================================================== convolutions

class Conv2d(Module):
    """2-D convolution, PyTorch semantics: the model for every layer in this file.

    weight: (out_channels, in_channels/groups, kh, kw); bias: (out_channels,).
    x: (N, C_in, H, W) -> (N, C_out, H_out, W_out), H_out = (H + 2p - kh) // s + 1.
    padding: an int, a pair, "valid" (0) or "same" (stride 1 only: H_out = H; an even kernel pads
    one more on the bottom/right, as PyTorch).  padding_mode: "zeros", or "reflect" / "replicate" /
    "circular", which pad the input explicitly (PyTorch's F.pad) before an unpadded convolution;
    ``self.padding`` is then (0, 0) and ``self.explicit_pad`` holds (left, right, top, bottom).
    dilation: only 1 (neither backend computes dilated convolutions; other values are refused).
    """

    _leaf = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, groups=1,
                 padding_mode="zeros", dilation=1, device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = _int(in_channels, "in_channels", "Conv2d"), _int(out_channels, "out_channels", "Conv2d")
        self.groups = _int(groups, "groups", "Conv2d")
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = _pair(stride, "stride", "Conv2d")
        if _pair(dilation, "dilation", "Conv2d") != (1, 1):
            raise ValueError(f"Conv2d: dilation={dilation!r} is not implemented in npunet (both backends compute "
                             f"dilation 1 only); use dilation=1 (a larger kernel_size or a pooling level widens "
                             f"the receptive field instead)")
        self.dilation = (1, 1)
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"Conv2d: padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.padding, self.explicit_pad = _conv_padding(padding, self.kernel_size, self.stride, padding_mode)
        _device_dtype("Conv2d", device, dtype)
        _check_conv_args("Conv2d", self)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        self.weight = Parameter(init.pytorch_default((self.out_channels, self.in_channels // self.groups, kh, kw), fan_in))
        self.bias = Parameter(init.pytorch_default((self.out_channels,), fan_in)) if bias else None

    def _check(self, x):
        check_array(self, x, 4, self.in_channels, self.weight.dtype)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        H, W = x.shape[2:]
        if self.explicit_pad is not None:
            l, r, t, b = self.explicit_pad
            if self.padding_mode == "reflect" and (max(t, b) >= H or max(l, r) >= W):
                raise ValueError(f"{self.label}: reflect padding {self.explicit_pad} needs an input larger than the padding, "
                                 f"got {H}x{W}")
            H, W = H + t + b, W + l + r
        if H + 2 * ph < kh or W + 2 * pw < kw:
            raise ValueError(f"{self.label}: input of size {H}x{W} (padding {ph},{pw}) is smaller than the "
                             f"{kh}x{kw} kernel; the output would be empty")
        return (x.shape[0], self.out_channels, conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw))

    def forward(self, x):
        self._check(x)
        bias = None if self.bias is None else self.bias.data
        pad_cache = None
        if self.explicit_pad is not None:  # the explicit pad op (padding_mode or an asymmetric "same")
            x, pad_cache = (ops().zero_pad2d_forward(x, self.explicit_pad) if self.padding_mode == "zeros"
                            else ops().pad2d_forward(x, self.explicit_pad, self.padding_mode))
        out, cache = ops().conv2d_forward(x, self.weight.data, bias, self.stride, self.padding, self.groups)
        self._save(cache if self.explicit_pad is None else (pad_cache, cache), out, watch=(x,))
        return out

    def backward(self, grad):
        """grad: (N, C_out, H_out, W_out) -> dx: (N, C_in, H, W); adds into weight.grad and bias.grad."""
        backend, cache = self._restore(grad)
        pad_cache = None
        if self.explicit_pad is not None:
            pad_cache, cache = cache
        dx, dw, db = backend.conv2d_backward(grad, cache, weight_grad=self.weight.requires_grad)
        self.weight.accumulate(dw)   # None when frozen: the weight-gradient GEMMs were skipped
        if self.bias is not None:
            self.bias.accumulate(_bias_grad(self.bias, db, grad))
        if pad_cache is not None:
            dx = (backend.zero_pad2d_backward(dx, pad_cache) if self.padding_mode == "zeros"
                  else backend.pad2d_backward(dx, pad_cache))
        return dx

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.explicit_pad is not None:
            s += f", pad={self.explicit_pad}, padding_mode={self.padding_mode!r}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")

    def kept(self, inputs, out):
        return [inputs[0]], 0


def _conv_padding(padding, kernel_size, stride, mode):
    """-> (padding the convolution applies (ph, pw), explicit pad (left, right, top, bottom) or None).
    PyTorch's rules: "valid" = 0; "same" = total k - 1 per axis, the odd one on the bottom/right."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if padding == "valid":
            return (0, 0), None
        if stride != (1, 1):
            raise ValueError(f"Conv2d: padding='same' needs stride 1 (as in PyTorch), got stride {stride}")
        (th, tw) = (kernel_size[0] - 1, kernel_size[1] - 1)
        t, b, l, r = th // 2, th - th // 2, tw // 2, tw - tw // 2
    else:
        ph, pw = _pair(padding, "padding", "Conv2d")
        t, b, l, r = ph, ph, pw, pw
    if mode == "zeros" and (t, l) == (b, r):
        return (t, l), None
    if min(t, b, l, r) < 0:
        raise ValueError(f"Conv2d: padding must be >= 0, got {padding}")
    return (0, 0), (l, r, t, b)


def _device_dtype(name, device, dtype):
    """PyTorch's factory keywords: the CPU and float32 are what npunet creates anyway."""
    if device is not None and str(device) != "cpu":
        raise ValueError(f"{name}: device={device!r}: npunet runs on the CPU only; drop the argument")
    if dtype is not None and np.dtype(str(dtype).replace("torch.", "")) != np.float32:
        raise ValueError(f"{name}: dtype={dtype!r}: layers are created in float32; convert with "
                         f"model.to(np.float64) or model.double()")


def _bias_grad(bias, db, grad):
    """db from the backend, or (a frozen weight, a trainable bias) grad summed over N, H, W."""
    if db is None and bias.requires_grad:
        db = grad.sum(axis=(0, 2, 3))
    return db


def _check_conv_args(name, m):
    if m.in_channels < 1 or m.out_channels < 1:
        raise ValueError(f"{name}: in_channels and out_channels must be >= 1, got {m.in_channels} and {m.out_channels}")
    if m.groups < 1 or m.in_channels % m.groups or m.out_channels % m.groups:
        raise ValueError(f"{name}: in_channels ({m.in_channels}) and out_channels ({m.out_channels}) "
                         f"must be divisible by groups ({m.groups})")
    if min(m.kernel_size) < 1 or min(m.stride) < 1 or min(m.padding) < 0:
        raise ValueError(f"{name}: kernel_size/stride must be >= 1 and padding >= 0, got "
                         f"{m.kernel_size}/{m.stride}/{m.padding}")


class ConvTranspose2d(Module):
    """Transposed convolution ("up-convolution"), PyTorch semantics.

    weight: (in_channels, out_channels/groups, kh, kw); bias: (out_channels,).
    x: (N, C_in, H, W) -> (N, C_out, H_out, W_out), H_out = (H - 1)*s - 2p + kh + output_padding.
    """

    _leaf = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 bias=True, groups=1):
        super().__init__()
        self.in_channels = _int(in_channels, "in_channels", "ConvTranspose2d")
        self.out_channels = _int(out_channels, "out_channels", "ConvTranspose2d")
        self.groups = _int(groups, "groups", "ConvTranspose2d")
        self.kernel_size = _pair(kernel_size, "kernel_size", "ConvTranspose2d")
        self.stride = _pair(stride, "stride", "ConvTranspose2d")
        self.padding = _pair(padding, "padding", "ConvTranspose2d")
        self.output_padding = _pair(output_padding, "output_padding", "ConvTranspose2d")
        _check_conv_args("ConvTranspose2d", self)
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be smaller than stride {self.stride}")
        kh, kw = self.kernel_size
        # PyTorch computes fan_in from weight.size(1) * kh * kw for transposed convs.
        fan_in = self.out_channels // self.groups * kh * kw
        self.weight = Parameter(init.pytorch_default((self.in_channels, self.out_channels // self.groups, kh, kw), fan_in))
        self.bias = Parameter(init.pytorch_default((self.out_channels,), fan_in)) if bias else None

    def _check(self, x):
        check_array(self, x, 4, self.in_channels, self.weight.dtype)
        H, W = x.shape[2:]
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = self.kernel_size, self.stride, self.padding, self.output_padding
        Ho, Wo = conv_transpose_out_size(H, kh, sh, ph, oh), conv_transpose_out_size(W, kw, sw, pw, ow)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"{self.label}: input {H}x{W} gives an empty output {Ho}x{Wo}")
        return (x.shape[0], self.out_channels, Ho, Wo)

    def forward(self, x):
        self._check(x)
        bias = None if self.bias is None else self.bias.data
        out, cache = ops().conv_transpose2d_forward(x, self.weight.data, bias, self.stride, self.padding,
                                                    self.output_padding, self.groups)
        self._save(cache, out, watch=(x,))
        return out

    def backward(self, grad):
        """grad: (N, C_out, H_out, W_out) -> dx: (N, C_in, H, W); adds into weight.grad and bias.grad."""
        backend, cache = self._restore(grad)
        dx, dw, db = backend.conv_transpose2d_backward(grad, cache, weight_grad=self.weight.requires_grad)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(_bias_grad(self.bias, db, grad))
        return dx

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"

    def kept(self, inputs, out):
        return [inputs[0]], 0


# ================================================================== pooling

def _forward_cache(m):
    """The cache of m's last forward (None after its backward or before any forward)."""
    c = m._cache
    return c[1] if isinstance(c, tuple) else None


def _argmax_signature(pool):
    """Which element won every window: gradcheck skips steps that change it (a kink)."""
    c = _forward_cache(pool)
    return None if c is None else hash(c[0].tobytes())


class MaxPool2d(Op):
    """Max pooling (floor mode). x: (N, C, H, W) -> (N, C, H_out, W_out), H_out = (H + 2p - k) // s + 1.

    Backward routes each gradient to the (first) maximum of its window.
    """

    op = "maxpool2d"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", "MaxPool2d")
        self.stride = _pair(stride if stride is not None else kernel_size, "stride", "MaxPool2d")
        self.padding = _pair(padding, "padding", "MaxPool2d")
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise ValueError(f"MaxPool2d: kernel_size and stride must be >= 1, got {self.kernel_size}, {self.stride}")
        if any(p < 0 or 2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d: padding {self.padding} must be >= 0 and at most half the kernel {self.kernel_size}")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def _check(self, x):
        check_array(self, x, 4)
        H, W = x.shape[2:]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if H + 2 * ph < kh or W + 2 * pw < kw:
            raise ValueError(f"{self.label}: input {H}x{W} is smaller than the {kh}x{kw} window")
        return (x.shape[0], x.shape[1], conv_out_size(H, kh, sh, ph), conv_out_size(W, kw, sw, pw))

    def arguments(self, shape):
        return self.kernel_size, self.stride, self.padding

    def kink_signature(self):
        return _argmax_signature(self)

    def kept(self, inputs, out):
        return [], int(np.prod(out.shape)) * 4  # int32 argmax


class _AdaptivePool2d(Op):
    """Adaptive pooling: x (N, C, H, W) -> (N, C, oh, ow); output cell o covers
    [floor(o*H/oh), ceil((o+1)*H/oh)) (and the same along W)."""

    def __init__(self, output_size):
        super().__init__()
        name = type(self).__name__
        self.output_size = _pair(output_size, "output_size", name)
        if min(self.output_size) < 1:
            raise ValueError(f"{name}: output_size must be >= 1, got {self.output_size}")

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def _check(self, x):
        check_array(self, x, 4)
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"{self.label}: empty input {tuple(x.shape)}")
        return tuple(x.shape[:2]) + self.output_size

    def arguments(self, shape):
        return (self.output_size,)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """The maximum of each adaptive window; AdaptiveMaxPool2d(1) is the global max."""

    op = "adaptive_maxpool2d"

    def kink_signature(self):
        return _argmax_signature(self)

    def kept(self, inputs, out):
        return [], int(np.prod(out.shape)) * 4


class Upsample(Op):
    """Nearest or bilinear resize, PyTorch semantics (F.interpolate's sampling rules).

    x: (N, C, H, W) -> (N, C, H_out, W_out), H_out = size or floor(H * scale_factor).
    """

    op = "interpolate"

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
        if self.size is not None and min(self.size) < 1:
            raise ValueError(f"Upsample: size must be >= 1, got {self.size}")
        if self.scale_factor is not None and min(self.scale_factor) <= 0:
            raise ValueError(f"Upsample: scale_factor must be > 0, got {self.scale_factor}")
        self.mode, self.align_corners = mode, align_corners

    def extra_repr(self):
        what = f"size={self.size}" if self.size else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}" + (f", align_corners={self.align_corners}" if self.align_corners is not None else "")

    def _check(self, x):
        check_array(self, x, 4)
        if self.size is not None:
            return tuple(x.shape[:2]) + self.size
        size = tuple(upsample_out_size(d, s) for d, s in zip(x.shape[2:], self.scale_factor))
        if min(size) < 1:
            raise ValueError(f"{self.label}: scale_factor {self.scale_factor} turns the {x.shape[2]}x{x.shape[3]} "
                             f"input into an empty {size[0]}x{size[1]} output")
        return tuple(x.shape[:2]) + size

    def arguments(self, shape):
        return shape[2:], self.mode, self.align_corners, self.scale_factor


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
        self.num_features, self.eps, self.momentum = _int(num_features, "num_features", "BatchNorm2d"), float(eps), float(momentum)
        if self.num_features < 1:
            raise ValueError(f"BatchNorm2d: num_features must be >= 1, got {self.num_features}")
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
        return tuple(x.shape)

    def forward(self, x):
        self._check(x)
        return self._keep(x, *ops().batchnorm2d_forward(x, *self._arguments()))

    def backward(self, grad):
        backend, cache = self._restore(grad)
        return self._add_grads(*backend.batchnorm2d_backward(grad, cache))

    def _arguments(self):
        """What the backend's batchnorm2d pairs take after x."""
        return (self.weight.data, self.bias.data, self.running_mean, self.running_var, self.training,
                self.momentum, self.eps)

    def _keep(self, x, out, cache, running_mean, running_var):
        if self.training:
            self.running_mean, self.running_var = running_mean, running_var
            self.num_batches_tracked = self.num_batches_tracked + 1
        self._save(cache, out, watch=(x,))
        return out

    def _add_grads(self, dx, dgamma, dbeta):
        self.weight.accumulate(dgamma)
        self.bias.accumulate(dbeta)
        return dx

    def kept(self, inputs, out):
        return [inputs[0]], 0


# ================================================================== elementwise

class _Elementwise(Op):
    """Any shape in, the same shape out, no hyperparameters."""

    def _check(self, x):
        check_array(self, x, np.ndim(x))
        return tuple(x.shape)


class _Masked(_Elementwise):
    """A piecewise-linear activation whose forward keeps a bool mask of where the slope is 1."""

    def kink_signature(self):  # where the slope is 1: gradcheck skips steps that change it
        mask = _forward_cache(self)
        return None if mask is None else hash(np.packbits(mask).tobytes())

    def kept(self, inputs, out):
        return [], int(np.prod(out.shape))  # bool mask


class _Inplace:
    """PyTorch's ``inplace=`` flag, accepted for its signature: npunet never writes into a layer's
    input, so ``inplace=True`` gives the same output (and gradients) as False."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)


class ReLU(_Inplace, _Masked):
    """out = max(x, 0); any shape.  inplace: accepted, same result (npunet never overwrites x)."""

    op = "relu"


class ReLU6(_Inplace, _Masked):
    """out = min(max(x, 0), 6) (MobileNetV2); any shape.  inplace: accepted, same result."""

    op = "relu6"


class SiLU(_Inplace, _Elementwise):
    """SiLU / Swish: out = x * sigmoid(x) (EfficientNet); any shape.  inplace: accepted, same result."""

    op = "silu"


class Sigmoid(_Elementwise):
    """out = 1 / (1 + exp(-x)); any shape."""

    op = "sigmoid"

    def kept(self, inputs, out):
        return [out], 0


class Identity(Module):
    """out = x; backward passes the gradient through."""

    _leaf = True

    def _check(self, x):
        return tuple(x.shape)

    def forward(self, x):
        self._save(None, x)
        return x

    def backward(self, grad):
        self._restore(grad)
        return grad


def _generator(layer, seed, generator):
    """The generator a random layer draws its masks from at forward time: ``generator`` itself (shared
    with whoever passed it), else a new one seeded by ``seed`` or by one draw from ``npunet.init.rng()``."""
    if generator is not None:
        if seed is not None:
            raise ValueError(f"{layer}: give seed or generator, not both")
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"{layer}: generator must be a numpy.random.Generator (npunet.manual_seed returns one), "
                            f"got {type(generator).__name__}")
        return generator
    return np.random.default_rng(seed if seed is not None else init.rng().integers(2 ** 63))


class Dropout(Module):
    """Inverted dropout: in training keep each unit with probability 1 - p and scale by 1/(1 - p);
    identity in eval.  The masks are drawn at forward time from ``generator`` (a NumPy Generator, e.g.
    the one ``npunet.manual_seed`` returns) when given, else from the layer's own generator, seeded by
    ``seed`` or, by default, by one number from ``npunet.init.rng()`` at construction."""

    _leaf = True
    _channelwise = False

    def __init__(self, p=0.5, seed=None, *, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p = float(p)
        self._rng = _generator(type(self).__name__, seed, generator)

    def extra_repr(self):
        return f"p={self.p}"

    def _check(self, x):
        check_array(self, x, 4 if self._channelwise else np.ndim(x))
        return tuple(x.shape)

    def forward(self, x):
        self._check(x)
        if not self.training or self.p == 0:
            self._save(None, x)
            return x
        out, mask = ops().dropout_forward(x, self.p, self._rng, self._channelwise)
        self._save(mask, out)
        return out

    def backward(self, grad):
        backend, mask = self._restore(grad)
        return grad.copy() if mask is None else backend.dropout_backward(grad, mask)

    def kept(self, inputs, out):
        return [], 0 if not self.training or self.p == 0 else out.nbytes


class Dropout2d(Dropout):
    """Drops whole channels: one keep/drop draw per (n, c) of an (N, C, H, W) input."""

    _channelwise = True


class StochasticDepth(Module):
    """Stochastic depth (torchvision.ops.StochasticDepth, mode "row"; EfficientNet's "drop connect"):
    in training each sample's input, a residual branch, is zeroed with probability p and the kept ones
    are scaled by 1/(1 - p); identity in eval or with p = 0.  x: (N, ...).  seed, generator: as Dropout's."""

    _leaf = True

    def __init__(self, p, mode="row", seed=None, *, generator=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"StochasticDepth: p must be in [0, 1), got {p}")
        if mode != "row":
            raise ValueError(f"StochasticDepth: only mode='row' (one draw per sample) is implemented, got {mode!r}")
        self.p, self.mode = float(p), mode
        self._rng = _generator("StochasticDepth", seed, generator)

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}"

    def _check(self, x):
        check_array(self, x, np.ndim(x))
        return tuple(x.shape)

    def forward(self, x):
        self._check(x)
        if not self.training or self.p == 0:
            self._save(None, x)
            return x
        out, mask = ops().stochastic_depth_forward(x, self.p, self._rng)
        self._save(mask, out)
        return out

    def backward(self, grad):
        backend, mask = self._restore(grad)
        return grad.copy() if mask is None else backend.stochastic_depth_backward(grad, mask)


# ================================================================== average pooling and padding

class AdaptiveAvgPool2d(_AdaptivePool2d):
    """The mean of each adaptive window; AdaptiveAvgPool2d(1) is the global average
    (squeeze-and-excitation's squeeze)."""

    op = "adaptive_avgpool2d"


class ZeroPad2d(Op):
    """Zero padding, PyTorch's order: padding = (left, right, top, bottom) or one int for all four
    (negative values crop).  x: (N, C, H, W) -> (N, C, H + top + bottom, W + left + right)."""

    op = "zero_pad2d"

    def __init__(self, padding):
        super().__init__()
        p = (padding,) * 4 if np.isscalar(padding) else tuple(padding)
        if len(p) != 4:
            raise ValueError(f"ZeroPad2d: padding must be an int or (left, right, top, bottom), got {padding}")
        self.padding = tuple(_int(v, "padding", "ZeroPad2d") for v in p)

    def extra_repr(self):
        return f"{self.padding}"

    def _check(self, x):
        check_array(self, x, 4)
        l, r, t, b = self.padding
        H, W = x.shape[2] + t + b, x.shape[3] + l + r
        if H < 1 or W < 1:
            raise ValueError(f"{self.label}: padding {self.padding} crops the {x.shape[2]}x{x.shape[3]} input to nothing")
        return tuple(x.shape[:2]) + (H, W)

    def arguments(self, shape):
        return (self.padding,)


# ================================================================== joins

def _check_same_batch(layer, a, b, names):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{layer.label}: {names[0]} and {names[1]} have different batch sizes "
                         f"{a.shape[0]} and {b.shape[0]}")
    if a.dtype != b.dtype:
        raise TypeError(f"{layer.label}: {names[0]} is {a.dtype} but {names[1]} is {b.dtype}; mixed dtypes")


class CropConcat(Op):
    """U-Net copy-and-crop.  forward(skip, x): center-crop skip (N, Cs, Hs, Ws) to x's (H, W)
    (64 -> 56 in the paper: (Hs - H) // 2 pixels off the top/left) and concatenate [skip, x]
    on channels -> (N, Cs + Cx, H, W).  backward -> (d_skip, d_x), d_skip zero on the border."""

    op = "crop_concat"

    def _check(self, skip, x):
        check_array(self, skip, 4, what="skip")
        check_array(self, x, 4, what="x")
        _check_same_batch(self, skip, x, ("skip", "x"))
        if skip.shape[2] < x.shape[2] or skip.shape[3] < x.shape[3]:
            raise ValueError(f"{self.label}: the skip map {tuple(skip.shape[2:])} is smaller than x "
                             f"{tuple(x.shape[2:])}; copy-and-crop can only crop, not pad")
        return (x.shape[0], skip.shape[1] + x.shape[1]) + tuple(x.shape[2:])



class CenterCrop(Op):
    """forward(x, like): center-crop x (N, C, H, W) to like's (H', W') -> (N, C, H', W'), the crop
    starting at ((H - H') // 2, (W - W') // 2).  backward -> dx (zero on the border); ``like``
    only lends its size.  Used by valid-padded residual blocks to crop the shortcut."""

    op = "center_crop"

    def _check(self, x, like):
        check_array(self, x, 4)
        if x.shape[2] < like.shape[2] or x.shape[3] < like.shape[3]:
            raise ValueError(f"{self.label}: cannot crop {tuple(x.shape[2:])} to the larger {tuple(like.shape[2:])}")
        return tuple(x.shape[:2]) + tuple(like.shape[2:])

    def forward(self, x, like):  # the pair takes x and the size: like is no input of it
        shape = self._check(x, like)
        out, cache = ops().center_crop_forward(x, shape[2:])
        self._save(cache, out)
        return out


class Concat(Op):
    """Channel concatenation of any number of (N, C_i, H, W) maps -> (N, sum C_i, H, W).
    backward -> tuple of the pieces' gradients, in input order."""

    op = "concat"

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



class _Binary(Op):

    def _check(self, a, b):
        check_array(self, a, a.ndim, what="a")
        check_array(self, b, b.ndim, what="b")
        if a.dtype != b.dtype:
            raise TypeError(f"{self.label}: a is {a.dtype} but b is {b.dtype}; mixed dtypes")
        try:
            return np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        except ValueError:
            raise ValueError(f"{self.label}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast") from None


class Add(_Binary):
    """out = a + b (NumPy broadcasting); backward -> (da, db) summed back to each shape."""

    op = "add"


class Mul(_Binary):
    """out = a * b (NumPy broadcasting); backward -> (grad * b, grad * a) summed back to each shape."""

    op = "mul"
    keeps_inputs = True  # the cache is (a, b)

    def kept(self, inputs, out):
        return list(inputs), 0


class Flatten(Module):
    """x: (N, d1, d2, ...) -> (N, d1*d2*...), as PyTorch's nn.Flatten(); backward reshapes back."""

    _leaf = True

    def _check(self, x):
        check_array(self, x, np.ndim(x))
        return (x.shape[0], int(np.prod(x.shape[1:])))

    def forward(self, x):
        shape = self._check(x)
        out = x.reshape(shape).copy()
        self._save(x.shape, out)
        return out

    def backward(self, grad):
        _, x_shape = self._restore(grad)
        return grad.reshape(x_shape).copy()


class Sequential(Module):
    """Children run in order; backward runs them in reverse.  Children are named '0', '1', ..., or by
    a dict as in PyTorch: ``Sequential(OrderedDict(conv=..., bn=..., relu=...))`` (a None entry is no
    child: a block without BatchNorm).  The first child receives every input (a Concat, then a conv).

    A BatchNorm2d followed by a ReLU runs as the backend's pair ``batchnorm2d_relu`` (the fast backend
    does both in one pass over memory, the reference backend one after the other): the one place where
    npunet fuses layers.  Shape-only passes and traces call each layer, so that summaries list both."""

    _fused = frozenset()  # positions i whose BatchNorm2d ran with ReLU i + 1 in the last forward

    def __init__(self, *layers):
        super().__init__()
        named = layers[0].items() if len(layers) == 1 and isinstance(layers[0], dict) else enumerate(layers)
        for name, m in named:
            if m is not None:
                self.add_child(str(name), m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, *inputs):
        mods, fused, i = list(self._modules.values()), set(), 0
        while i < len(mods):
            if i + 1 < len(mods) and type(mods[i]) is BatchNorm2d and type(mods[i + 1]) is ReLU and not tracing():
                inputs = (_bn_relu_forward(mods[i], *inputs),)
                fused.add(i)
                i += 2
            else:
                inputs, i = (mods[i](*inputs),), i + 1
        self._fused = frozenset(fused)
        return inputs[0]

    def backward(self, grad):
        mods = list(self._modules.values())
        i = len(mods) - 1
        while i >= 0:
            if i - 1 in self._fused:
                grad, i = _bn_relu_backward(mods[i - 1], grad), i - 2
            else:
                grad, i = mods[i].backward(grad), i - 1
        return grad


def _bn_relu_forward(bn, x):
    """relu(bn(x)) through the backend's batchnorm2d_relu pair; bn keeps the cache (the ReLU has no parameters)."""
    bn._check(x)
    return bn._keep(x, *ops().batchnorm2d_relu_forward(x, *bn._arguments()))


def _bn_relu_backward(bn, grad):
    backend, cache = bn._restore(grad)
    return bn._add_grads(*backend.batchnorm2d_relu_backward(grad, cache))


class ModuleList(Module):
    """Children named '0', '1', ... (PyTorch's state_dict keys ``blocks.0.conv1.weight``); no forward:
    the owner calls them.  Indexing, len and iteration as a list."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_child(str(len(self._modules)), module)
        return self

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]
