"""PyTorch twins of the bench's U-Net and UNet 3+ cases, for ``npunet bench --model`` timing ratios.

Imported only when PyTorch happens to be importable (never a dependency).  The modules carry
npunet's state_dict names, so ``load_state_dict(npunet_model.state_dict(), strict=True)`` works
and proves the two are the same network.
"""
import numpy as np
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


def predict_overlap_tile(model, image, tile=572, depth=4):
    """``npunet.data.tiling.overlap_tile`` + the class mask of ``npunet.predict``, with PyTorch's forward
    under ``torch.inference_mode()``: image (C, H, W) float32 -> (H, W) uint8 classes.  The same windows
    (step: the largest multiple of 2^depth in the output size), the same mirrored border."""
    from ..models.sizes import output_size
    C, H, W = image.shape
    out_t = output_size(tile, depth)
    step = out_t // 2 ** depth * 2 ** depth
    ctx = (tile - out_t) // 2
    ny, nx = (1 + max(0, -(-(n - out_t) // step)) for n in (H, W))
    Hp, Wp = (ny - 1) * step + out_t, (nx - 1) * step + out_t
    x = np.pad(image, ((0, 0), (ctx, ctx + Hp - H), (ctx, ctx + Wp - W)), mode="symmetric")
    result = None
    with torch.inference_mode():
        for ty in range(ny):
            for tx in range(nx):
                y0, x0 = ty * step, tx * step
                win = torch.from_numpy(np.ascontiguousarray(x[None, :, y0:y0 + tile, x0:x0 + tile]))
                y = model(win)[0].numpy()
                if result is None:
                    result = np.zeros((y.shape[0], Hp, Wp), y.dtype)
                result[:, y0:y0 + out_t, x0:x0 + out_t] = y
    y = result[:, :H, :W]
    return (y[0] > 0).astype(np.uint8) if y.shape[0] == 1 else np.argmax(y, axis=0).astype(np.uint8)


def em_recipe(steps=300, **kw):
    """PyTorch's run of ``npunet.app.recipe_em``: the same data, crops and hyper-parameters;
    dict(wall s, step_median s, loss_first, loss_last)."""
    import time

    from . import recipe_em
    o = {**recipe_em.DEFAULTS, **kw}
    images, masks = recipe_em.make_data(**o)
    t0 = time.perf_counter()
    m = UNet(in_channels=images.shape[1], num_classes=1, base_channels=o["base_channels"], padding="same",
             batch_norm=True).train()
    opt = torch.optim.Adam(m.parameters(), lr=o["lr"])
    lossf = nn.BCEWithLogitsLoss()
    losses, ts = [], []
    for x, t in recipe_em.batches(images, masks, steps, **o):
        s = time.perf_counter()
        x, t = torch.from_numpy(x), torch.from_numpy(t)
        opt.zero_grad()
        loss = lossf(m(x), t)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        ts.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    return dict(wall=wall, step_median=float(np.median(ts)), loss_first=losses[0], loss_last=float(np.mean(losses[-10:])))
