"""Building blocks shared by the U-Net family.  Each has forward and its mirror-image backward."""
from collections import OrderedDict

from .. import nn

BLOCKS = ("double_conv", "residual", "separable")


class ConvBNReLU(nn.Sequential):
    """relu(bn(conv(x))), the unit of every U-Net level.  x: (N, C_in, H, W) -> (N, C_out, H', W'),
    H' = H + 2p - k + 1.  Children: conv, bn (none without batch_norm), relu; backward runs them in reverse."""

    def __init__(self, in_ch, out_ch, kernel_size=3, padding=1, batch_norm=True):
        super().__init__(OrderedDict(conv=nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding),
                                     bn=nn.BatchNorm2d(out_ch) if batch_norm else None, relu=nn.ReLU()))


class SeparableConv2d(nn.Module):
    """Depthwise-separable conv (Mobile U-Net): depthwise k x k (groups = C_in) then pointwise 1x1.
    Parameters: C_in*k*k + C_in + C_in*C_out + C_out instead of C_in*C_out*k*k + C_out."""

    def __init__(self, in_ch, out_ch, kernel_size=3, padding=1):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size, padding=padding, groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))

    def backward(self, d):
        return self.depthwise.backward(self.pointwise.backward(d))


class DoubleConv(nn.Sequential):
    """Two 3x3 convs, each (+ BN) + ReLU: the block of every U-Net level,
    relu2(bn2(conv2(relu1(bn1(conv1(x)))))) (the children in that order, run as a Sequential).

    padding 0 ("valid", the 2015 paper): H -> H - 4.  padding 1 ("same"): H -> H.
    block: "double_conv" (plain), "separable" (Mobile U-Net: depthwise + pointwise convs),
    "residual" (residual unit: out = relu2(add(bn2(conv2(relu1(bn1(conv1(x))))), shortcut(x))), the
    shortcut a 1x1 conv when the channels change, center-cropped by 2 px a side when padding is valid).
    Children: conv1, bn1, relu1, conv2, bn2, relu2 (+ shortcut, crop, add for residual).
    """

    def __init__(self, in_ch, out_ch, padding=1, batch_norm=False, block="double_conv", mid_ch=None):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"DoubleConv: block must be one of {BLOCKS}, got {block!r}")
        mid = mid_ch or out_ch
        self.block = block
        conv = (lambda i, o: SeparableConv2d(i, o, 3, padding)) if block == "separable" else \
            (lambda i, o: nn.Conv2d(i, o, 3, padding=padding))
        self.conv1 = conv(in_ch, mid)
        self.bn1 = nn.BatchNorm2d(mid) if batch_norm else None
        self.relu1 = nn.ReLU()
        self.conv2 = conv(mid, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch) if batch_norm else None
        if block == "residual":
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
            self.crop = nn.CenterCrop() if padding == 0 else None
            self.add = nn.Add()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        if self.block != "residual":
            return super().forward(x)
        h = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) if self.bn2 is not None else \
            self.conv2(self.relu1(self.conv1(x)))
        s = self.shortcut(x)
        if self.crop is not None:
            s = self.crop(s, h)
        return self.relu2(self.add(h, s))

    def backward(self, d):
        if self.block != "residual":
            return super().backward(d)
        d, d_s = self.add.backward(self.relu2.backward(d))
        if self.crop is not None:
            d_s = self.crop.backward(d_s)
        d_short = self.shortcut.backward(d_s)
        if self.bn2 is not None:
            d = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))))
        else:
            d = self.conv1.backward(self.relu1.backward(self.conv2.backward(d)))
        return d + d_short
