"""PyTorch twins of the bench's U-Net and UNet 3+ cases, for ``npunet bench --model`` timing ratios.

Imported only when PyTorch happens to be importable (never a dependency).  The modules carry
npunet's state_dict names, so ``load_state_dict(npunet_model.state_dict(), strict=True)`` works
and proves the two are the same network.
"""
import torch
from torch import nn


class DoubleConv(nn.Module):
    def __init__(self, cin, cout, padding, bn):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=padding)
        self.bn1 = nn.BatchNorm2d(cout) if bn else None
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=padding)
        self.bn2 = nn.BatchNorm2d(cout) if bn else None

    def forward(self, x):
        x = self.conv1(x)
        x = torch.relu(self.bn1(x) if self.bn1 is not None else x)
        x = self.conv2(x)
        return torch.relu(self.bn2(x) if self.bn2 is not None else x)


def _crop_concat(skip, up):
    dh, dw = (skip.shape[2] - up.shape[2]) // 2, (skip.shape[3] - up.shape[3]) // 2
    return torch.cat([skip[:, :, dh:dh + up.shape[2], dw:dw + up.shape[3]], up], 1)


class Up(nn.Module):
    def __init__(self, cin, cout, padding, bn):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = DoubleConv(cin // 2 + cout, cout, padding, bn)

    def forward(self, x, skip):
        return self.conv(_crop_concat(skip, self.up(x)))


class UNet(nn.Module):
    """npunet.models.UNet with up_mode="transpose", block="double_conv", no dropout."""

    def __init__(self, in_channels=1, num_classes=2, base_channels=64, depth=4, padding="valid", batch_norm=False):
        super().__init__()
        p = 0 if padding == "valid" else 1
        ch = [base_channels * 2 ** i for i in range(depth + 1)]
        self.depth = depth
        prev = in_channels
        for i in range(depth + 1):
            setattr(self, f"down{i + 1}", DoubleConv(prev, ch[i], p, batch_norm))
            prev = ch[i]
        for k in range(depth):
            lvl = depth - 1 - k
            setattr(self, f"up{k + 1}", Up(ch[lvl + 1], ch[lvl], p, batch_norm))
        self.outc = nn.Conv2d(ch[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for i in range(1, self.depth + 1):
            x = getattr(self, f"down{i}")(x)
            skips.append(x)
            x = torch.max_pool2d(x, 2)
        x = getattr(self, f"down{self.depth + 1}")(x)
        for k in range(1, self.depth + 1):
            x = getattr(self, f"up{k}")(x, skips[-k])
        return self.outc(x)


class Branch(nn.Module):
    def __init__(self, cin, cout, resample):
        super().__init__()
        self.kind, self.factor = resample if resample else (None, 1)
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        if self.kind == "pool":
            x = torch.max_pool2d(x, self.factor, self.factor)
        elif self.kind == "up":
            x = nn.functional.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)
        return torch.relu(self.bn(self.conv(x)))


class Fuse(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, *xs):
        return torch.relu(self.bn(self.conv(torch.cat(xs, 1))))


class UNet3Plus(nn.Module):
    """npunet.models.UNet3Plus without deep supervision and CGM, batch_norm=True."""

    def __init__(self, in_channels=3, num_classes=1, filters=(64, 128, 256, 512, 1024), cat_channels=64):
        super().__init__()
        from ..models.unet3plus import branch_name
        self._name = branch_name
        f, c = list(filters), cat_channels
        prev = in_channels
        for k in range(1, 6):
            setattr(self, f"conv{k}", DoubleConv(prev, f[k - 1], 1, True))
            prev = f[k - 1]
        for i in (4, 3, 2, 1):
            for k in range(1, 6):
                if k < i:
                    b = Branch(f[k - 1], c, ("pool", 2 ** (i - k)))
                elif k == i:
                    b = Branch(f[k - 1], c, None)
                else:
                    b = Branch(f[4] if k == 5 else 5 * c, c, ("up", 2 ** (k - i)))
                setattr(self, branch_name("enc" if k <= i else "dec", k, i), b)
            setattr(self, f"hd{i}", Fuse(5 * c))
        self.outconv1 = nn.Conv2d(5 * c, num_classes, 3, padding=1)

    def forward(self, x):
        h = {1: self.conv1(x)}
        for k in range(2, 6):
            h[k] = getattr(self, f"conv{k}")(torch.max_pool2d(h[k - 1], 2))
        hd = {5: h[5]}
        for i in (4, 3, 2, 1):
            parts = [getattr(self, self._name("enc", k, i))(h[k]) for k in range(1, i + 1)]
            parts += [getattr(self, self._name("dec", k, i))(hd[k]) for k in range(i + 1, 6)]
            hd[i] = getattr(self, f"hd{i}")(*parts)
        return self.outconv1(hd[1])


def build(cls, cfg):
    """The PyTorch twin of ``getattr(npunet.models, cls)(**cfg)`` for the bench's cases."""
    if cls == "UNet":
        return UNet(**cfg)
    if cls == "UNet3Plus":
        return UNet3Plus(**cfg)
    if cls == "EncoderUNet":
        import segmentation_models_pytorch as smp
        return smp.Unet(cfg["encoder_name"], encoder_weights=None, in_channels=3, classes=1)
    raise ValueError(f"torch_twins: no PyTorch twin for {cls!r}")
