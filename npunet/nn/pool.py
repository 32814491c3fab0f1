"""Pooling, resizing and padding: MaxPool2d, AdaptiveMaxPool2d, AdaptiveAvgPool2d, Upsample, ZeroPad2d
(each one backend pair, declared as an ``nn.Op``)."""
import numpy as np

from ..geometry import conv_out_size, upsample_out_size
from .arguments import _int, _pair
from .module import check_array
from .op import Op, _forward_cache


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
