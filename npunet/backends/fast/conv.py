"""Which convolution strategy runs: every rule in one place.

conv2d (x: (N, C, H, W), weight: (O, C/groups, kh, kw)), first rule that matches:

=================  ==========================================================  ==========================
strategy (module)  when                                                        why
=================  ==========================================================  ==========================
depthwise          groups = C_in = C_out                                       C GEMMs of one row each
                                                                               would be all overhead
direct             float32, groups 1, 3x3, stride 1, padding 1, C_in x C_out   with few channels the
                   <= direct_max_pairs or C_out <= direct_max_out, option      im2col / Winograd data
                   direct on                                                   movement costs more than
                                                                               the products
winograd           float32, groups 1, 3x3, stride 1, >= winograd_min_channels  2.25x (F(2x2)) to 4x
                   input channels, >= winograd_min_tiles 2x2 output tiles,     (F(4x4)) fewer products;
                   option winograd on                                          float64 keeps the direct
                                                                               conv for the gradchecks
pointwise          groups 1, 1x1 kernel, stride 1, no padding                  the input already is the
                                                                               column buffer
small_map          groups 1, pipelines available, <= small_map_columns         tiles of a few rows would
                   output columns (N * H_out * row length)                     make thin GEMMs
im2col_tiles       everything else                                             any kernel, stride,
                                                                               padding, groups
=================  ==========================================================  ==========================

conv_transpose2d (x: (N, C_in, H, W), weight: (C_in, C_out/groups, kh, kw)):

================  ===================================================  ===================================
upconv_disjoint   kernel = stride, no padding, no output padding,      U-Net's 2x2 up-conv: taps never
                  groups 1                                             overlap, one GEMM per image
transposed_tiles  everything else                                      cols = W^T x per tile, col2im
================  ===================================================  ===================================

The knobs named above are fields of ``OPTIONS`` (see options.py; change them with
``npunet.fast_options``).  Each strategy's forward returns (out, cache) where the cache is a small
object of that strategy that computes its own backward: ``cache.backward(dout)``.
"""
import numpy as np

from ...geometry import conv_transpose_out_size, pair
from . import depthwise, direct, im2col_tiles, pointwise, small_map, transposed_tiles, upconv_disjoint, winograd
from .tiling import ConvGeometry


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, groups=1):
    """2-D convolution (cross-correlation, as PyTorch), by the strategy the table above chooses.

    x: (N, C, H, W); weight: (O, C/groups, kh, kw); bias: (O,) or None.
    Returns out: (N, O, H_out, W_out), H_out = (H + 2p - kh) // s + 1, and the cache.
    No column buffer outlives the call: backward rebuilds the columns tile by tile.
    """
    stride, padding = pair(stride), pair(padding)
    if groups > 1 and groups == x.shape[1] == weight.shape[0]:
        return depthwise.forward(x, weight, bias, stride, padding)
    if direct.applies(x, weight, stride, padding, groups):
        return direct.forward(x, weight, bias)
    if winograd.applies(x, weight, stride, padding, groups):
        return winograd.forward(x, weight, bias, padding)
    if pointwise.applies(weight, stride, padding, groups):
        return pointwise.forward(x, weight, bias)
    x = np.ascontiguousarray(x)  # the kernels read flat rows
    kh, kw = weight.shape[2:]
    geo = ConvGeometry(x.shape, kh, kw, *stride, *padding)
    if small_map.applies(x, geo, groups):
        return small_map.forward(x, weight, bias, geo)
    return im2col_tiles.forward(x, weight, bias, geo, groups)


def conv2d_backward(dout, cache, weight_grad=True):
    """dout: (N, O, H_out, W_out) -> (dx (N, C, H, W), dweight (O, C/g, kh, kw), dbias (O,) or None),
    by the strategy that ran the forward (its cache).  weight_grad=False (a frozen layer): dweight and
    dbias are None, and the strategy skips their GEMMs."""
    return cache.backward(dout, weight_grad)


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1):
    """Transposed convolution ("up-convolution"): the input-gradient of conv2d.

    x: (N, C_in, H, W); weight: (C_in, C_out/groups, kh, kw); bias: (C_out,) or None.
    Returns out: (N, C_out, H_out, W_out), H_out = (H - 1)*s - 2p + kh + output_padding, and the cache.
    """
    (sh, sw), (ph, pw), (oph, opw) = pair(stride), pair(padding), pair(output_padding)
    x = np.ascontiguousarray(x)
    kh, kw = weight.shape[2:]
    if upconv_disjoint.applies(kh, kw, sh, sw, ph, pw, oph, opw, groups):
        return upconv_disjoint.forward(x, weight, bias)
    out_size = (conv_transpose_out_size(x.shape[2], kh, sh, ph, oph),      # (H_out, W_out)
                conv_transpose_out_size(x.shape[3], kw, sw, pw, opw))
    return transposed_tiles.forward(x, weight, bias, (sh, sw), (ph, pw), out_size, groups)


def conv_transpose2d_backward(dout, cache, weight_grad=True):
    """dout: (N, C_out, H_out, W_out) -> (dx (N, C_in, H, W), dweight, dbias (C_out,) or None);
    weight_grad=False: dweight and dbias None, their GEMMs skipped."""
    return cache.backward(dout, weight_grad)
