"""U-Nets with a classification encoder: ResNet-encoder U-Net (ResNet), Mobile U-Net (MobileNetV2) and
Eff-UNet (EfficientNet), built to be segmentation_models_pytorch's ``Unet`` weight for weight:
the same layers, the same ``state_dict`` keys and shapes, the same outputs and gradients.

    EncoderUNet("resnet34")  ==  smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=1)

The encoder returns features [x, f1 (/2), f2 (/4), f3 (/8), f4 (/16), f5 (/32)]; the decoder starts
from the deepest, and each block upsamples by 2 (nearest), concatenates the next shallower feature
(the last block has none: f0 = x is not used) and applies two 3x3 conv-BN-ReLU; a 3x3 convolution
makes the logits.  Sources: He et al. 2016 (ResNet), Sandler et al. 2018 (MobileNetV2), Tan & Le
2019 (EfficientNet), torchvision's and SMP's implementations of them.
"""
import math

import numpy as np

from .. import init, nn
from ..backends import current as ops
from ..nn.module import Meta, check_array
from . import args as A


def _init_conv(conv, how):
    """Re-draw a conv's weight as the library we match does (its bias, if any, set to 0 for he/xavier)."""
    O, Cg, kh, kw = conv.weight.shape
    if how == "fan_out":      # torchvision ResNet / MobileNetV2: kaiming_normal_(mode="fan_out")
        conv.weight.data = init.kaiming_normal(conv.weight.shape, O * kh * kw)
    elif how == "fan_in":     # SMP decoder: kaiming_uniform_(mode="fan_in", nonlinearity="relu")
        conv.weight.data = init.kaiming_uniform(conv.weight.shape, Cg * kh * kw)
    elif how == "xavier":     # SMP head: xavier_uniform_
        conv.weight.data = init.xavier_uniform(conv.weight.shape, Cg * kh * kw, O * kh * kw)
    conv.weight.grad = np.zeros_like(conv.weight.data)
    if conv.bias is not None and how != "fan_out":
        conv.bias.data[:] = 0


def conv_bn_act(cin, cout, k, stride=1, groups=1, act=nn.ReLU, init_how="fan_out"):
    """Sequential(conv (no bias), BatchNorm, activation): torchvision's Conv2dNormActivation and SMP's
    Conv2dReLU; children 0, 1, 2 as their state_dict keys."""
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False)
    _init_conv(conv, init_how)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), act())


class Encoder(nn.Module):
    """An encoder as stages: stage k (k = 1..depth) turns feature k-1 into feature k.

    forward(x) -> [x, f1, ..., f_depth]; backward(d_feats) takes the gradients of f1..f_depth and
    returns dx.  With encoder_depth < 5 SMP's MobileNetV2 and EfficientNet loops run one stage past
    the last feature before they stop; in training that stage's BatchNorms update their running
    statistics, so npunet runs it too (``overrun()``; its output is unused, it gets no gradient).
    """

    def stages(self):
        raise NotImplementedError

    def overrun(self):
        return []

    def forward(self, x):
        feats = [x]
        for stage in self.stages():
            for m in stage:
                x = m(x)
            feats.append(x)
        if self.training:
            for m in self.overrun():
                x = m(x)
        return feats

    def backward(self, d_feats):
        """d_feats: the gradients of features 1..depth -> dx.  Feature k fed both the decoder (its skip)
        and stage k + 1, so its two gradients add."""
        d = None
        for stage, g in zip(reversed(self.stages()), reversed(d_feats)):
            d = g if d is None else d + g
            for m in reversed(stage):
                d = m.backward(d)
        return d


# ================================================================== ResNet (He et al. 2016)

class BasicBlock(nn.Module):
    """out = ReLU(BN(conv3x3(ReLU(BN(conv3x3_s(x))))) + shortcut(x)); shortcut = downsample (1x1 conv
    with the stride + BN) when the shape changes, else x.  x: (N, C_in, H, W) -> (N, C_out, H/s, W/s)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.add = nn.Add()
        self.relu_out = nn.ReLU()
        for c in (self.conv1, self.conv2) + ((self.downsample[0],) if self.downsample is not None else ()):
            _init_conv(c, "fan_out")

    def forward(self, x):
        h = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu_out(self.add(h, x if self.downsample is None else self.downsample(x)))

    def backward(self, d):
        d_h, d_short = self.add.backward(self.relu_out.backward(d))
        d_x = self.conv1.backward(self.bn1.backward(self.relu.backward(self.conv2.backward(self.bn2.backward(d_h)))))
        return d_x + (d_short if self.downsample is None else self.downsample.backward(d_short))


class ResNetEncoder(Encoder):
    """torchvision's ResNet without its classifier: conv1 7x7/2, bn1, relu -> f1 (/2); maxpool 3x3/2,
    layer1 -> f2 (/4); layer2 -> f3 (/8); layer3 -> f4 (/16); layer4 -> f5 (/32)."""

    LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}

    def __init__(self, name, in_channels, depth):
        super().__init__()
        self.depth = depth
        self.out_channels = [in_channels, 64, 64, 128, 256, 512][:depth + 1]
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        if in_channels == 3:  # SMP re-creates a patched first conv with PyTorch's default init
            _init_conv(self.conv1, "fan_out")
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, cout) in enumerate(zip(self.LAYERS[name], (64, 128, 256, 512)), 1):
            blocks = [BasicBlock(cin if b == 0 else cout, cout, 1 if i == 1 or b else 2) for b in range(n)]
            self.add_child(f"layer{i}", nn.Sequential(*blocks))
            cin = cout

    def stages(self):
        """The modules between feature k-1 and feature k, k = 1..depth."""
        return [[self.conv1, self.bn1, self.relu], [self.maxpool, self.layer1], [self.layer2], [self.layer3],
                [self.layer4]][:self.depth]


# ================================================================== MobileNetV2 (Sandler et al. 2018)

class InvertedResidual(nn.Module):
    """Expand 1x1 (ReLU6) -> depthwise 3x3 with the stride (ReLU6) -> project 1x1 (linear), + x when the
    stride is 1 and the channels stay.  conv: Sequential as torchvision's (keys conv.0.0.weight ...)."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = int(round(cin * expand))
        layers = [conv_bn_act(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        _init_conv(layers[-2], "fan_out")
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout
        if self.use_res_connect:
            self.add = nn.Add()

    def forward(self, x):
        return self.add(x, self.conv(x)) if self.use_res_connect else self.conv(x)

    def backward(self, d):
        if not self.use_res_connect:
            return self.conv.backward(d)
        d_x, d_conv = self.add.backward(d)
        return d_x + self.conv.backward(d_conv)


class MobileNetV2Encoder(Encoder):
    """torchvision's MobileNetV2 features (width 1.0): features 1, 3, 6, 13 and 18 are f1..f5
    (16, 24, 32, 96, 1280 channels at /2 ... /32)."""

    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    OUT_INDEXES = (1, 3, 6, 13, 18)

    def __init__(self, name, in_channels, depth):
        super().__init__()
        self.depth = depth
        self.out_channels = [in_channels, 16, 24, 32, 96, 1280][:depth + 1]
        layers = [conv_bn_act(in_channels, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_act(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)

    def stages(self):
        ends = self.OUT_INDEXES[:self.depth]
        starts = (0,) + tuple(e + 1 for e in ends[:-1])
        return [[self.features[i] for i in range(a, b + 1)] for a, b in zip(starts, ends)]

    def overrun(self):
        if self.depth == 5:
            return []
        return [self.features[i] for i in range(self.OUT_INDEXES[self.depth - 1] + 1, self.OUT_INDEXES[self.depth] + 1)]


# ================================================================== EfficientNet (Tan & Le 2019)

def _same_padding(size, k, s):
    """TensorFlow "same": output ceil(size / s); the total padding max((out - 1) s + k - size, 0) is split
    left = total // 2, right = the rest (one more on the right/bottom when it is odd)."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class Conv2dStaticSamePadding(nn.Conv2d):
    """EfficientNet-PyTorch's convolution with TensorFlow's "same" padding, computed once from the image
    size the network was defined for (224 for b0, halved at every stride) and applied by a ZeroPad2d
    before an unpadded conv: asymmetric before stride-2 convs (3x3/2: 0 left, 1 right).  Children:
    static_padding; parameters: weight, bias (as the original, whose keys carry no '.conv')."""

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=True, image_size=224):
        super().__init__(cin, cout, k, stride=stride, padding=0, bias=bias, groups=groups)
        (pt, pb), (pl, pr) = _same_padding(image_size, k, stride), _same_padding(image_size, k, stride)
        self.pad = pt + pb + pl + pr > 0
        self.static_padding = nn.ZeroPad2d((pl, pr, pt, pb)) if self.pad else nn.Identity()

    def _check(self, x):  # the padded input's conv: also what shape-only mode (summary) answers
        return super()._check(Meta(self.static_padding._check(x) if self.pad else x.shape, x.dtype))

    def forward(self, x):
        self._check(x)
        xp = self.static_padding(x)
        bias = None if self.bias is None else self.bias.data
        out, cache = ops().conv2d_forward(xp, self.weight.data, bias, self.stride, 0, self.groups)
        self._save(cache, out, watch=(xp,))
        return out

    def backward(self, grad):
        """The conv's backward (adds into weight.grad, bias.grad), then the padding's."""
        return self.static_padding.backward(super().backward(grad))


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation: expand 1x1 (SiLU) -> depthwise kxk
    (SiLU) -> x * sigmoid(expand(SiLU(reduce(mean over H, W)))) -> project 1x1 (linear), + x with
    stochastic depth when the stride is 1 and the channels stay.  BatchNorm eps 1e-3, momentum 0.01."""

    def __init__(self, cin, cout, k, stride, expand, image_size):
        super().__init__()
        hidden = cin * expand
        bn = dict(eps=1e-3, momentum=0.01)
        if expand != 1:
            self._expand_conv = Conv2dStaticSamePadding(cin, hidden, 1, bias=False, image_size=image_size)
            self._bn0 = nn.BatchNorm2d(hidden, **bn)
            self._swish0 = nn.SiLU()
        self._depthwise_conv = Conv2dStaticSamePadding(hidden, hidden, k, stride, groups=hidden, bias=False,
                                                       image_size=image_size)
        self._bn1 = nn.BatchNorm2d(hidden, **bn)
        self._swish1 = nn.SiLU()
        squeezed = max(1, int(cin * 0.25))
        self._squeeze = nn.AdaptiveAvgPool2d(1)
        self._se_reduce = Conv2dStaticSamePadding(hidden, squeezed, 1, image_size=1)
        self._swish_se = nn.SiLU()
        self._se_expand = Conv2dStaticSamePadding(squeezed, hidden, 1, image_size=1)
        self._gate = nn.Sigmoid()
        self._excite = nn.Mul()
        self._project_conv = Conv2dStaticSamePadding(hidden, cout, 1, bias=False,
                                                     image_size=math.ceil(image_size / stride))
        self._bn2 = nn.BatchNorm2d(cout, **bn)
        self.has_skip = stride == 1 and cin == cout
        self.expand = expand
        if self.has_skip:
            self._drop_connect = nn.StochasticDepth(0.0)
            self._add = nn.Add()

    def forward(self, x):
        h = self._swish0(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = self._swish1(self._bn1(self._depthwise_conv(h)))
        s = self._gate(self._se_expand(self._swish_se(self._se_reduce(self._squeeze(h)))))   # (N, C, 1, 1)
        h = self._bn2(self._project_conv(self._excite(s, h)))
        return self._add(self._drop_connect(h), x) if self.has_skip else h

    def backward(self, d):
        d_x = None
        if self.has_skip:
            d, d_x = self._add.backward(d)
            d = self._drop_connect.backward(d)
        d = self._project_conv.backward(self._bn2.backward(d))
        d_s, d_h = self._excite.backward(d)
        d_h = d_h + self._squeeze.backward(self._se_reduce.backward(self._swish_se.backward(
            self._se_expand.backward(self._gate.backward(d_s)))))
        d_h = self._depthwise_conv.backward(self._bn1.backward(self._swish1.backward(d_h)))
        if self.expand != 1:
            d_h = self._expand_conv.backward(self._bn0.backward(self._swish0.backward(d_h)))
        return d_h if d_x is None else d_h + d_x


class EfficientNetEncoder(Encoder):
    """EfficientNet-b0 as EfficientNet-PyTorch (which SMP vendors): stem 3x3/2 (f1, 32 ch), then 16
    MBConv blocks; blocks 2, 4, 8 and 15 give f2..f5 (24, 40, 112, 320 ch).  _conv_head and _bn1 are
    kept (SMP keeps them) but never run.  Stochastic depth of block i: drop_connect_rate * i / 16."""

    # (repeats, kernel, stride, expand, in, out) of b0: width and depth coefficients 1.0
    BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
    OUT_INDEXES = (2, 4, 8, 15)

    def __init__(self, name, in_channels, depth, drop_connect_rate=0.2):
        super().__init__()
        self.depth = depth
        self.out_channels = [in_channels, 32, 24, 40, 112, 320][:depth + 1]
        self._conv_stem = Conv2dStaticSamePadding(in_channels, 32, 3, 2, bias=False, image_size=224)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        self._swish = nn.SiLU()
        size = 112
        blocks = []
        for r, k, s, e, cin, cout in self.BLOCKS:
            for i in range(r):
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e, size))
                size = math.ceil(size / (s if i == 0 else 1))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dStaticSamePadding(320, 1280, 1, bias=False, image_size=size)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
        self.set_drop_connect_rate(drop_connect_rate)

    def set_drop_connect_rate(self, rate):
        if not 0 <= rate < 1:
            raise ValueError(f"EfficientNetEncoder: drop_connect_rate must be in [0, 1), got {rate}")
        self._drop_connect_rate = float(rate)
        for i, b in enumerate(self._blocks):
            if b.has_skip:
                b._drop_connect.p = rate * i / len(self._blocks)

    def stages(self):
        ends = self.OUT_INDEXES[:self.depth - 1]
        starts = (0,) + tuple(e + 1 for e in ends[:-1])
        return [[self._conv_stem, self._bn0, self._swish]] + \
            [[self._blocks[i] for i in range(a, b + 1)] for a, b in zip(starts, ends)]

    def overrun(self):
        if self.depth == 5:
            return []
        first = self.OUT_INDEXES[self.depth - 2] + 1
        return [self._blocks[i] for i in range(first, self.OUT_INDEXES[self.depth - 1] + 1)]


ENCODERS = {"resnet18": ResNetEncoder, "resnet34": ResNetEncoder, "mobilenet_v2": MobileNetV2Encoder,
            "efficientnet-b0": EfficientNetEncoder}


# ================================================================== the U-Net decoder (SMP's)

class DecoderBlock(nn.Module):
    """Nearest x2 upsampling, concat [x, skip] (no skip for the last block), conv1 and conv2 = 3x3
    conv-BN-ReLU (keys conv1.0.weight, conv1.1.running_mean ...)."""

    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.cat = nn.Concat() if cskip else None
        self.conv1 = conv_bn_act(cin + cskip, cout, 3, init_how="fan_in")
        self.conv2 = conv_bn_act(cout, cout, 3, init_how="fan_in")

    def forward(self, x, skip=None):
        x = self.up(x)
        if self.cat is not None:
            x = self.cat(x, skip)
        return self.conv2(self.conv1(x))

    def backward(self, d):
        """-> (d_x, d_skip or None)."""
        d = self.conv1.backward(self.conv2.backward(d))
        if self.cat is None:
            return self.up.backward(d), None
        d_x, d_skip = self.cat.backward(d)
        return self.up.backward(d_x), d_skip


class UnetDecoder(nn.Module):
    """Blocks from the deepest feature up: block i takes the previous output and feature depth-1-i."""

    def __init__(self, encoder_channels, decoder_channels):
        super().__init__()
        enc = list(encoder_channels[1:])[::-1]                 # deepest first, f0 = x dropped
        cins = [enc[0]] + list(decoder_channels[:-1])
        skips = enc[1:] + [0]
        self.center = nn.Identity()
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(cins, skips, decoder_channels))

    def forward(self, feats):
        skips = feats[1:][::-1]                                # [f_depth, ..., f1]
        x = self.center(skips[0])
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i + 1] if i + 1 < len(skips) else None)
        return x

    def backward(self, d):
        """-> the gradients of features 1..depth (shallow first)."""
        d_skips = []
        for block in reversed(list(self.blocks)):
            d, d_skip = block.backward(d)
            d_skips.append(d_skip)
        d_skips = d_skips[::-1][:-1]                           # block i's skip is feature depth-1-i
        return d_skips[::-1] + [self.center.backward(d)]


class EncoderUNet(nn.Module):
    """A U-Net with a ResNet, MobileNetV2 or EfficientNet encoder, equal to SMP 0.6's
    ``smp.Unet(encoder_name, encoder_depth, encoder_weights=None, decoder_channels, in_channels, classes)``.

    encoder_name: "resnet18", "resnet34" (ResNet-encoder U-Net), "mobilenet_v2" (Mobile U-Net),
    "efficientnet-b0" (Eff-UNet).  x: (N, in_channels, H, W), H and W divisible by 2^encoder_depth
    (32 for depth 5) -> logits (N, num_classes, H, W).
    drop_connect_rate: EfficientNet's stochastic depth (None: its default 0.2; 0.0 turns it off).
    Children: encoder, decoder (center, blocks.0 ...), segmentation_head (0: 3x3 conv).
    """

    def __init__(self, encoder_name, in_channels=3, num_classes=None, encoder_depth=5,
                 decoder_channels=(256, 128, 64, 32, 16), drop_connect_rate=None, *, classes=None,
                 encoder_weights=None, activation=None):
        super().__init__()
        A.choice("EncoderUNet", "encoder_name", encoder_name, tuple(ENCODERS))
        # SMP's argument names: classes= (npunet: num_classes), encoder_weights=, activation=None
        if classes is not None and num_classes is not None and classes != num_classes:
            raise ValueError(f"EncoderUNet: classes={classes} and num_classes={num_classes} disagree; give one "
                             f"(classes is SMP's name for num_classes)")
        num_classes = 1 if num_classes is None and classes is None else (num_classes if num_classes is not None
                                                                          else classes)
        if activation is not None:
            raise ValueError(f"EncoderUNet: activation={activation!r}: npunet's models return logits (SMP's "
                             f"activation=None); the losses take logits, and predict applies sigmoid/argmax")
        if encoder_weights == "imagenet":
            from .pretrained import imagenet_hint
            raise ValueError(imagenet_hint(encoder_name))
        in_channels = A.integer("EncoderUNet", "in_channels", in_channels)
        num_classes = A.integer("EncoderUNet", "num_classes", num_classes)
        depth = A.integer("EncoderUNet", "encoder_depth", encoder_depth)
        low = 2 if encoder_name.startswith("efficientnet") else 1
        if not low <= depth <= 5:
            raise ValueError(f"EncoderUNet: encoder_depth must be in {low}..5 for {encoder_name}, got {depth}")
        decoder_channels = A.integers("EncoderUNet", "decoder_channels", decoder_channels)
        if len(decoder_channels) != depth:
            raise ValueError(f"EncoderUNet: encoder_depth {depth} needs {depth} decoder_channels, got "
                             f"{len(decoder_channels)}: {list(decoder_channels)}")
        if drop_connect_rate is not None and not encoder_name.startswith("efficientnet"):
            raise ValueError(f"EncoderUNet: drop_connect_rate applies to EfficientNet encoders, not {encoder_name}")
        self.config = dict(encoder_name=encoder_name, in_channels=in_channels, num_classes=num_classes,
                           encoder_depth=depth, decoder_channels=list(decoder_channels),
                           drop_connect_rate=drop_connect_rate)
        self.in_channels, self.num_classes, self.depth = in_channels, num_classes, depth
        if encoder_name.startswith("efficientnet"):
            self.encoder = EfficientNetEncoder(encoder_name, in_channels, depth,
                                               0.2 if drop_connect_rate is None else drop_connect_rate)
        else:
            self.encoder = ENCODERS[encoder_name](encoder_name, in_channels, depth)
        self.decoder = UnetDecoder(self.encoder.out_channels, decoder_channels)
        head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
        _init_conv(head, "xavier")
        self.segmentation_head = nn.Sequential(head, nn.Identity(), nn.Identity())
        if encoder_weights is not None:
            from .pretrained import load_encoder_weights
            load_encoder_weights(self, encoder_weights)

    @property
    def output_stride(self):
        return 2 ** self.depth

    def check_input(self, x):
        check_array(self, x, 4, self.in_channels, self.dtype)
        s, (H, W) = self.output_stride, x.shape[2:]
        if H % s or W % s or H == 0 or W == 0:
            near = lambda v: f"{max(s, v // s * s)} or {(v // s + 1) * s}" if v % s else str(v)
            raise ValueError(f"{self.label}: input {H}x{W} is not divisible by {s} (2^encoder_depth); nearest legal "
                             f"sizes: height {near(H)}, width {near(W)} (pad or crop the image)")

    def forward(self, x):
        self.check_input(x)
        return self.segmentation_head(self.decoder(self.encoder(x)))

    def backward(self, d):
        return self.encoder.backward(self.decoder.backward(self.segmentation_head.backward(d)))
