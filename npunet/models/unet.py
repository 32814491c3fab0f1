"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), and its padded, bilinear,
residual and separable (Mobile U-Net) variants."""
from .. import nn
from . import args as A
from ..nn.module import check_array
from .blocks import BLOCKS, DoubleConv
from .sizes import check_input_size


class Up(nn.Module):
    """One expansive step.  forward(x, skip): up-sample x (N, C, h, w) by 2, crop-and-concat with
    the skip (valid) or concat (same), then DoubleConv -> (N, C_out, 2h - 4, 2w - 4) (valid).

    up_mode "transpose": 2x2 up-convolution halving the channels (the paper).
    up_mode "bilinear": bilinear x2 (align_corners=True) keeping the channels, then the convs.
    backward(d) -> (d_x, d_skip).
    """

    def __init__(self, in_ch, skip_ch, out_ch, padding, batch_norm, up_mode, block):
        super().__init__()
        if up_mode == "transpose":
            self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, 2, stride=2)
            up_ch = in_ch // 2
        else:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            up_ch = in_ch
        self.cat = nn.CropConcat() if padding == 0 else nn.Concat()
        self.conv = DoubleConv(skip_ch + up_ch, out_ch, padding, batch_norm, block)

    def forward(self, x, skip):
        return self.conv(self.cat(skip, self.up(x)))

    def backward(self, d):
        d_skip, d_up = self.cat.backward(self.conv.backward(d))
        return self.up.backward(d_up), d_skip


class UNet(nn.Module):
    """U-Net.  x: (N, in_channels, S, S) -> logits (N, num_classes, S_out, S_out).

    padding="valid": the 2015 paper, unpadded 3x3 convs, S_out = S - 184 for depth 4
    (572 -> 388; legal S = 16k + 124, k >= 4).  padding="same": S_out = S (S a multiple of 2^depth).
    Channels base * 2^i for levels i = 0..depth (64 ... 1024 for base 64, depth 4).
    dropout: Dropout(p) at the end of the contracting path (after the bottleneck), as the paper.
    Children: down1..down{depth+1} (DoubleConv), pool1..pool{depth}, up1..up{depth} (up1 the deepest), outc.
    """

    def __init__(self, in_channels=1, num_classes=2, base_channels=64, depth=4, padding="valid",
                 batch_norm=False, up_mode="transpose", dropout=0.0, block="double_conv"):
        super().__init__()
        in_channels, num_classes = A.integer("UNet", "in_channels", in_channels), A.integer("UNet", "num_classes", num_classes)
        base_channels, depth = A.integer("UNet", "base_channels", base_channels), A.integer("UNet", "depth", depth)
        A.choice("UNet", "padding", padding, ("valid", "same"))
        A.choice("UNet", "up_mode", up_mode, ("transpose", "bilinear"))
        A.choice("UNet", "block", block, BLOCKS)
        batch_norm, dropout = A.boolean("UNet", "batch_norm", batch_norm), A.probability("UNet", "dropout", dropout)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth,
                           padding=padding, batch_norm=batch_norm, up_mode=up_mode, dropout=dropout, block=block)
        self.in_channels, self.num_classes, self.depth, self.padding = in_channels, num_classes, depth, padding
        p = 0 if padding == "valid" else 1
        ch = [base_channels * 2 ** i for i in range(depth + 1)]
        prev = in_channels
        for i in range(depth + 1):
            setattr(self, f"down{i + 1}", DoubleConv(prev, ch[i], p, batch_norm, block))
            if i < depth:
                setattr(self, f"pool{i + 1}", nn.MaxPool2d(2))
            prev = ch[i]
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        for k in range(depth):  # up1 is the deepest
            lvl = depth - 1 - k
            setattr(self, f"up{k + 1}", Up(ch[lvl + 1], ch[lvl], ch[lvl], p, batch_norm, up_mode, block))
        self.outc = nn.Conv2d(ch[0], num_classes, 1)

    # Children by level: down(i) and pool(i) on the contracting path (level 1 = full resolution,
    # level depth + 1 = the bottleneck); up_to(i) is the up block that returns to level i (up1,
    # the paper's first up-convolution, returns to the deepest skip).
    def down(self, i):
        return getattr(self, f"down{i}")

    def pool(self, i):
        return getattr(self, f"pool{i}")

    def up_to(self, i):
        return getattr(self, f"up{self.depth + 1 - i}")

    def check_input(self, x):
        check_array(self, x, 4, self.in_channels, self.dtype)
        check_input_size(self.label, x.shape, self.depth, self.padding)

    def forward(self, x):
        """Fig. 1 of the paper, left half then right half (depth 4):
        x1 = down1(x), x2 = down2(pool1(x1)), ..., x5 = down5(pool4(x4));
        x = up1(x5, x4), x = up2(x, x3), x = up3(x, x2), x = up4(x, x1); return outc(x)."""
        self.check_input(x)
        D = self.depth
        skip = {1: self.down(1)(x)}                       # skip[i]: level i's output, kept for the skip
        for i in range(2, D + 2):
            skip[i] = self.down(i)(self.pool(i - 1)(skip[i - 1]))
        x = skip.pop(D + 1)                               # the bottleneck
        if self.drop is not None:
            x = self.drop(x)
        for i in range(D, 0, -1):                         # back up: level D, ..., 1
            x = self.up_to(i)(x, skip[i])
        return self.outc(x)

    def backward(self, d):
        """The mirror image: each up block returns (d_below, d_skip); level i's output fed both its
        pool and its skip, so its gradient is the sum of the two."""
        D = self.depth
        d = self.outc.backward(d)
        d_skip = {}
        for i in range(1, D + 1):                         # down the right half: level 1, ..., D
            d, d_skip[i] = self.up_to(i).backward(d)
        if self.drop is not None:
            d = self.drop.backward(d)
        d = self.down(D + 1).backward(d)
        for i in range(D, 0, -1):                         # up the left half: level D, ..., 1
            d = self.down(i).backward(self.pool(i).backward(d) + d_skip[i])
        return d
