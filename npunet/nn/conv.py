"""Convolutions: ``Conv2d``, the layer protocol written out in full (the teaching example every
other layer follows; ``nn.Op`` does the same steps for layers that are one pair), and ``ConvTranspose2d``."""
import numpy as np

from .. import init
from ..backends import current as ops
from ..geometry import conv_out_size, conv_transpose_out_size
from .arguments import _int, _pair
from .module import Module, Parameter, check_array


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
