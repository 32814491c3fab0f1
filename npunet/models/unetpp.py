"""U-Net++ (Zhou et al., DLMIA 2018 / TMI 2019): nested dense skip pathways.

Node X^{i,j} (level i, position j along the skip):
  X^{i,0} = H(D(X^{i-1,0}))                                   (the encoder)
  X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})])      (j > 0)
H = two 3x3 conv (+BN) + ReLU, D = 2x2 max-pool, U = up-sampling, [ ] = channel concat.
"""
from .. import nn
from . import args as A
from ..nn.module import check_array
from .blocks import DoubleConv
from .sizes import check_input_size


class UNetPlusPlus(nn.Module):
    """UNet++ L_depth: nodes X^{i,j} with i + j <= depth, output from X^{0,depth}.

    x: (N, in_channels, H, W), H and W multiples of 2^depth -> logits (N, num_classes, H, W).
    up_mode "bilinear" (the widely used PyTorch port: bilinear x2, align_corners=True; X^{i,j} takes
    j*f_i + f_{i+1} channels) or "transpose" (the authors' code: a 2x2 up-convolution f_{i+1} -> f_i per
    node; X^{i,j} takes (j+1)*f_i channels).
    deep_supervision: 1x1 heads final1..final{depth} on X^{0,1..depth}; in training forward returns the
    list of head logits (train with the mean of their losses); in eval the mean of the heads' logits
    (the paper's "accurate mode" averages the heads' probabilities instead; lesson 11 compares the
    two).  ``prune(L)`` gives the "fast mode" sub-network.
    Children: x{i}_{j} (node blocks), pool{i}, up{i}_{j} (U(X^{i,j})), cat{i}_{j}, final or final1..
    """

    def __init__(self, in_channels=3, num_classes=1, filters=(32, 64, 128, 256, 512), depth=4,
                 deep_supervision=False, batch_norm=True, up_mode="bilinear"):
        super().__init__()
        in_channels = A.integer("UNetPlusPlus", "in_channels", in_channels)
        num_classes = A.integer("UNetPlusPlus", "num_classes", num_classes)
        filters, depth = A.integers("UNetPlusPlus", "filters", filters), A.integer("UNetPlusPlus", "depth", depth)
        A.boolean("UNetPlusPlus", "deep_supervision", deep_supervision)
        A.boolean("UNetPlusPlus", "batch_norm", batch_norm)
        if not 1 <= depth <= len(filters) - 1:
            raise ValueError(f"UNetPlusPlus: depth must be in 1..{len(filters) - 1} for {len(filters)} filters, got {depth}")
        if up_mode not in ("transpose", "bilinear"):
            raise ValueError(f"UNetPlusPlus: up_mode must be 'transpose' or 'bilinear', got {up_mode!r}")
        self._configure(dict(in_channels=in_channels, num_classes=num_classes, filters=tuple(filters), depth=depth,
                             deep_supervision=deep_supervision, batch_norm=batch_norm, up_mode=up_mode))
        f = list(filters)
        for i in range(depth + 1):  # the encoder column
            if i > 0:
                setattr(self, f"pool{i}", nn.MaxPool2d(2))
            setattr(self, f"x{i}_0", DoubleConv(in_channels if i == 0 else f[i - 1], f[i], 1, batch_norm))
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                if up_mode == "transpose":
                    setattr(self, f"up{i + 1}_{j - 1}", nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2))
                    cin = (j + 1) * f[i]
                else:
                    setattr(self, f"up{i + 1}_{j - 1}", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
                    cin = j * f[i] + f[i + 1]
                setattr(self, f"cat{i}_{j}", nn.Concat())
                setattr(self, f"x{i}_{j}", DoubleConv(cin, f[i], 1, batch_norm))
        if deep_supervision:
            for j in range(1, depth + 1):
                setattr(self, f"final{j}", nn.Conv2d(f[0], num_classes, 1))
        else:
            self.final = nn.Conv2d(f[0], num_classes, 1)

    def _configure(self, config):
        self.config = config
        self.in_channels, self.num_classes, self.depth = config["in_channels"], config["num_classes"], config["depth"]
        self.deep_supervision, self.up_mode = config["deep_supervision"], config["up_mode"]

    def node(self, i, j):
        return getattr(self, f"x{i}_{j}")

    def forward(self, x):
        check_array(self, x, 4, self.in_channels, self.dtype)
        check_input_size(self.label, x.shape, self.depth, "same")
        L = self.depth
        X = {}
        X[0, 0] = self.x0_0(x)
        for i in range(1, L + 1):
            X[i, 0] = self.node(i, 0)(getattr(self, f"pool{i}")(X[i - 1, 0]))
        # column by column, as the paper's figure: X^{0,1}, X^{1,1}, ..., then X^{0,2}, ...
        for j in range(1, L + 1):
            for i in range(L + 1 - j):
                up = getattr(self, f"up{i + 1}_{j - 1}")(X[i + 1, j - 1])
                X[i, j] = self.node(i, j)(getattr(self, f"cat{i}_{j}")(*[X[i, k] for k in range(j)], up))
        self._nodes_shape = {k: v.shape for k, v in X.items()}
        if not self.deep_supervision:
            return self.final(X[0, L])
        heads = [getattr(self, f"final{j}")(X[0, j]) for j in range(1, L + 1)]
        if self.training:
            return heads
        return sum(heads[1:], heads[0]) / len(heads)    # eval: the mean of the heads' logits

    def backward(self, d):
        L = self.depth
        dX = {}

        def add(key, g):
            dX[key] = g if key not in dX else dX[key] + g

        if not self.deep_supervision:
            add((0, L), self.final.backward(d))
        else:
            ds = d if isinstance(d, (list, tuple)) else [d / L] * L
            if len(ds) != L:
                raise ValueError(f"{self.label}: backward expected {L} head gradients, got {len(ds)}")
            for j in range(1, L + 1):
                add((0, j), getattr(self, f"final{j}").backward(ds[j - 1]))
        for j in reversed(range(1, L + 1)):
            for i in reversed(range(L + 1 - j)):
                g = self.node(i, j).backward(dX.pop((i, j)))
                parts = getattr(self, f"cat{i}_{j}").backward(g)
                for k in range(j):
                    add((i, k), parts[k])
                add((i + 1, j - 1), getattr(self, f"up{i + 1}_{j - 1}").backward(parts[j]))
        for i in reversed(range(1, L + 1)):
            g = self.node(i, 0).backward(dX.pop((i, 0)))
            add((i - 1, 0), getattr(self, f"pool{i}").backward(g))
        return self.x0_0.backward(dX.pop((0, 0)))

    def prune(self, level):
        """UNet++ L_level: the nodes with i + j <= level and the head on X^{0,level}, sharing this
        model's weights (no copy, no new parameters drawn).  With deep supervision the head is
        final{level}, trained for exactly this; without, the single head (trained on X^{0,depth}) is reused."""
        if not 1 <= level <= self.depth:
            raise ValueError(f"{self.label}: prune level must be in 1..{self.depth}, got {level}")
        small = UNetPlusPlus.__new__(UNetPlusPlus)
        nn.Module.__init__(small)
        small._configure(dict(self.config, depth=level, deep_supervision=False))
        for i in range(level + 1):  # the same registration order as __init__, so state_dicts match
            if i > 0:
                small.add_child(f"pool{i}", getattr(self, f"pool{i}"))
            small.add_child(f"x{i}_0", self.node(i, 0))
        for j in range(1, level + 1):
            for i in range(level + 1 - j):
                for name in (f"up{i + 1}_{j - 1}", f"cat{i}_{j}", f"x{i}_{j}"):
                    small.add_child(name, getattr(self, name))
        small.final = getattr(self, f"final{level}") if self.deep_supervision else self.final
        small.train(self.training)
        for name, m in self.named_children():  # shared modules: keep this model's names in error messages
            m._set_path(name)
        return small
