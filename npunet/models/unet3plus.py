"""UNet 3+ (Huang et al., ICASSP 2020): full-scale skip connections, full-scale deep
supervision and the classification-guided module (CGM)."""
from collections import OrderedDict

import numpy as np

from .. import nn
from . import args as A
from ..backends import current as ops
from ..nn.module import check_array
from .blocks import DoubleConv
from .sizes import check_input_size


class Branch(nn.Sequential):
    """One full-scale skip: relu(bn(conv(resample(x)))), bringing a map to decoder stage i's resolution
    with cat_channels channels (3x3 conv).  resample: ("pool", 2^(i-k)) for shallower encoder maps,
    ("up", 2^(k-i)) for deeper decoder maps (bilinear, align_corners=False), None for the same-scale
    encoder map.  Named like the authors' code: h1_PT_hd4 (encoder 1 pooled to decoder 4), h4_Cat_hd4
    (same scale), hd5_UT_hd4 (decoder 5 upsampled to decoder 4).  Children: resample, conv, bn, relu."""

    def __init__(self, in_ch, out_ch, resample=None, batch_norm=True):
        kind, factor = resample if resample else (None, 1)
        if kind == "pool":
            resample = nn.MaxPool2d(factor, factor)
        elif kind == "up":
            resample = nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False)
        else:
            resample = nn.Identity()
        super().__init__(OrderedDict(resample=resample, conv=nn.Conv2d(in_ch, out_ch, 3, padding=1),
                                     bn=nn.BatchNorm2d(out_ch) if batch_norm else None, relu=nn.ReLU()))


class Fuse(nn.Sequential):
    """relu(bn(conv(cat(x_1, ..., x_5)))): the five branches concatenated (5 x cat_channels = 320), then a
    3x3 conv 320 -> 320.  forward(*xs); backward returns the five parts.  Children: cat, conv, bn, relu."""

    def __init__(self, n_branches, ch, batch_norm=True):
        super().__init__(OrderedDict(cat=nn.Concat(), conv=nn.Conv2d(n_branches * ch, n_branches * ch, 3, padding=1),
                                     bn=nn.BatchNorm2d(n_branches * ch) if batch_norm else None, relu=nn.ReLU()))


class CGMGate(nn.Module):
    """The classification-guided module's decision in eval: forward(seg, cls) -> sigmoid(seg) * decision.

    seg: (N, C, H, W) logits; cls: (N, 2) probabilities ("absent", "present"); decision = argmax (0/1).
    backward(d) -> (d_seg, None): the decision is a constant (an argmax has no gradient).
    Runs the backend's pair cgm_gate (a sigmoid that does not overflow for logits of +-1000)."""

    _leaf = True

    def _check(self, seg, cls):
        return tuple(seg.shape)

    def forward(self, seg, cls):
        out, cache = ops().cgm_gate_forward(seg, cls)
        self._save(cache, out)
        return out

    def backward(self, d):
        backend, cache = self._restore(d)
        return backend.cgm_gate_backward(d, cache), None

    def kink_signature(self):
        c = self._cache
        return None if not isinstance(c, tuple) else hash(c[1][1].tobytes())


def branch_name(src, k, i):
    """h{k}_PT_hd{i} (encoder k pooled), h{i}_Cat_hd{i} (same scale), hd{k}_UT_hd{i} (decoder k upsampled)."""
    if src == "enc" and k < i:
        return f"h{k}_PT_hd{i}"
    if src == "enc":
        return f"h{k}_Cat_hd{i}"
    return f"hd{k}_UT_hd{i}"


def apply_cgm(seg_logits, cls_prob, multiply="probabilities"):
    """The classification-guided module's decision applied to a segmentation output.

    seg_logits: (N, C, H, W); cls_prob: (N, 2) ("organ absent", "organ present").
    decision = argmax (0/1) per image.  multiply="probabilities": sigmoid(seg) * decision, so an absent
    organ gives probability 0.  multiply="logits" (the authors' code): sigmoid(seg * decision), which
    turns an absent organ into probability sigmoid(0) = 0.5 everywhere.
    """
    if multiply == "logits":
        decision = np.argmax(cls_prob, axis=1).astype(seg_logits.dtype)[:, None, None, None]
        return ops().sigmoid_forward(seg_logits * decision)[0]
    return ops().cgm_gate_forward(seg_logits, cls_prob)[0]


class UNet3Plus(nn.Module):
    """UNet 3+.  x: (N, in_channels, H, W), H and W multiples of 16 -> logits (N, num_classes, H, W).

    Encoder: five levels of DoubleConv (3x3 pad 1 + BN + ReLU, twice), filters 64..1024, 2x2 max-pool
    between (children conv1..conv5, maxpool1..maxpool4).
    Decoder stage i = 4..1 (hd5 = the bottleneck): five Branch modules bring X_En^k (k < i, pooled by
    2^(i-k)), X_En^i, and X_De^k (k > i, bilinear x2^(k-i)) to cat_channels each; Fuse concatenates them
    (5 * 64 = 320) and convolves 320 -> 320 (children hd4..hd1).
    Output: outconv1 (3x3, 320 -> classes) on hd1.
    deep_supervision: heads outconv1..outconv4 on hd1..hd4 (320 ch) and outconv5 on hd5 (filters[4] ch),
    each bilinearly upsampled to full size (upscore2..upscore5: x2, x4, x8, x16).  Training returns the
    list [d1, ..., d5]; eval returns d1.
    cgm: cls = Dropout(0.5) -> 1x1 conv filters[4] -> 2 -> AdaptiveMaxPool(1) -> Sigmoid on hd5.
    In training forward returns (seg, cls_prob) with cls_prob (N, 2), trained with BCE on "mask not
    empty"; in eval it returns sigmoid(seg) * decision (probabilities, an absent organ giving 0).
    """

    def __init__(self, in_channels=3, num_classes=1, filters=(64, 128, 256, 512, 1024), cat_channels=64,
                 deep_supervision=False, cgm=False, batch_norm=True):
        super().__init__()
        in_channels, num_classes = A.integer("UNet3Plus", "in_channels", in_channels), A.integer("UNet3Plus", "num_classes", num_classes)
        filters = A.integers("UNet3Plus", "filters", filters, length=5)
        cat_channels = A.integer("UNet3Plus", "cat_channels", cat_channels)
        for name, v in (("deep_supervision", deep_supervision), ("cgm", cgm), ("batch_norm", batch_norm)):
            A.boolean("UNet3Plus", name, v)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, filters=tuple(filters),
                           cat_channels=cat_channels, deep_supervision=deep_supervision, cgm=cgm, batch_norm=batch_norm)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.deep_supervision, self.cgm = deep_supervision, cgm
        f, c = list(filters), cat_channels
        up_ch = 5 * c
        prev = in_channels
        for k in range(1, 6):
            setattr(self, f"conv{k}", DoubleConv(prev, f[k - 1], 1, batch_norm))
            if k < 5:
                setattr(self, f"maxpool{k}", nn.MaxPool2d(2))
            prev = f[k - 1]
        for i in (4, 3, 2, 1):
            for k in range(1, 6):
                if k < i:
                    b = Branch(f[k - 1], c, ("pool", 2 ** (i - k)), batch_norm)
                elif k == i:
                    b = Branch(f[k - 1], c, None, batch_norm)
                else:  # deeper decoder map (hd5 is the bottleneck with filters[4] channels)
                    b = Branch(f[4] if k == 5 else up_ch, c, ("up", 2 ** (k - i)), batch_norm)
                setattr(self, branch_name("enc" if k <= i else "dec", k, i), b)
            setattr(self, f"hd{i}", Fuse(5, c, batch_norm))
        heads = range(1, 6) if deep_supervision else range(1, 2)
        for k in heads:
            setattr(self, f"outconv{k}", nn.Conv2d(f[4] if k == 5 else up_ch, num_classes, 3, padding=1))
            if k > 1:
                setattr(self, f"upscore{k}", nn.Upsample(scale_factor=2 ** (k - 1), mode="bilinear", align_corners=False))
        if cgm:  # the authors' classifier; Flatten is their .squeeze(3).squeeze(2) (no parameters)
            self.cls = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(f[4], 2, 1), nn.AdaptiveMaxPool2d(1), nn.Sigmoid(),
                                     nn.Flatten())
            self.gate = CGMGate()

    def forward(self, x):
        check_array(self, x, 4, self.in_channels, self.dtype)
        check_input_size(self.label, x.shape, 4, "same")
        h = {1: self.conv1(x)}                                     # the encoder X_En^1..5
        for k in range(2, 6):
            h[k] = getattr(self, f"conv{k}")(getattr(self, f"maxpool{k - 1}")(h[k - 1]))
        hd = {5: h[5]}                                             # the decoder X_De^5..1
        for i in (4, 3, 2, 1):
            parts = [getattr(self, branch_name("enc", k, i))(h[k]) for k in range(1, i + 1)]
            parts += [getattr(self, branch_name("dec", k, i))(hd[k]) for k in range(i + 1, 6)]
            hd[i] = getattr(self, f"hd{i}")(*parts)
        if self.deep_supervision and self.training:                # training: every head, full size
            seg = [self.outconv1(hd[1])]
            seg += [getattr(self, f"upscore{k}")(getattr(self, f"outconv{k}")(hd[k])) for k in range(2, 6)]
        else:
            seg = self.outconv1(hd[1])
        if not self.cgm:
            return seg
        cls = self.cls(hd[5])                                      # (N, 2)
        return (seg, cls) if self.training else self.gate(seg, cls)

    def backward(self, d):
        d_cls = None
        if self.cgm and self.training:
            d, d_cls = d
        elif self.cgm:
            d, _ = self.gate.backward(d)
        dhd = {}
        if isinstance(d, (list, tuple)):                           # deep supervision
            dhd[1] = self.outconv1.backward(d[0])
            for k in range(2, 6):
                dhd[k] = getattr(self, f"outconv{k}").backward(getattr(self, f"upscore{k}").backward(d[k - 1]))
        else:
            dhd[1] = self.outconv1.backward(d)
        if d_cls is not None:
            dhd[5] = dhd.get(5, 0) + self.cls.backward(d_cls)
        dh = {}                                                    # gradients add where a map feeds several
        for i in (1, 2, 3, 4):                                     # branches: dh[k] and dhd[k] accumulate
            parts = getattr(self, f"hd{i}").backward(dhd.pop(i))
            for k in range(1, i + 1):
                dh[k] = dh.get(k, 0) + getattr(self, branch_name("enc", k, i)).backward(parts[k - 1])
            for k in range(i + 1, 6):
                dhd[k] = dhd.get(k, 0) + getattr(self, branch_name("dec", k, i)).backward(parts[k - 1])
        d = dhd.pop(5)                                             # hd5 is h5: one map, two roles
        for k in range(5, 1, -1):
            g = getattr(self, f"conv{k}").backward(d)
            d = getattr(self, f"maxpool{k - 1}").backward(g) + dh[k - 1]
        return self.conv1.backward(d)
