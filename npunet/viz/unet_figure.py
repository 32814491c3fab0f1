"""U-Net drawn conv by conv, as Fig. 1 of Ronneberger et al. (2015).

Every feature map is a bar (its channel count above it, its size inside), every operation an arrow:
3x3 conv + ReLU (blue, to the right), 2x2 max-pool (red, down), 2x2 up-conv (green, up), copy and
crop (grey, dashed, labelled with the crop), 1x1 conv (teal). Copied maps are the white bars in the
decoder. The model is traced shape-only, so the sizes are the model's own (572 -> 570 -> 568 ...).
"""
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle

from .. import nn
from ..models.summary import trace_shapes
from .plots import finish

COLORS = {"conv": "#1f77b4", "pool": "#d62728", "up": "#2ca02c", "bilinear": "#bcbd22", "crop": "#7f7f7f",
          "head": "#17becf"}
LEGEND = {"conv": "conv 3x3, ReLU", "pool": "max pool 2x2", "up": "up-conv 2x2", "bilinear": "bilinear up-sampling x2",
          "crop": "copy and crop", "head": "conv 1x1"}


def unet_operations(model, input_shape):
    """The U-Net's forward as a list of (kind, output shape, extra): kind in conv, head, pool, up, cat
    (extra: for up, True when it is an up-convolution; for cat, the skip's shape before the crop). BatchNorm, ReLU and dropout are folded into the conv."""
    _, calls = trace_shapes(model, input_shape)
    ops = []
    for m, inputs, out in calls:
        if isinstance(m, nn.Conv2d):
            ops.append(("head" if m.kernel_size == (1, 1) else "conv", out.shape, None))
        elif isinstance(m, nn.MaxPool2d):
            ops.append(("pool", out.shape, None))
        elif isinstance(m, (nn.ConvTranspose2d, nn.Upsample)):
            ops.append(("up", out.shape, isinstance(m, nn.ConvTranspose2d)))
        elif isinstance(m, (nn.CropConcat, nn.Concat)) and len(inputs) == 2:    # [skip, up-sampled]
            ops.append(("cat", out.shape, inputs[0].shape))
    return ops


def _bar_width(channels):
    """Bar width grows with log2 of the channel count, as in the paper's figure."""
    return 0.07 + 0.035 * max(channels, 1).bit_length()


def _size(shape):
    H, W = shape[2:]
    return f"{H}²" if H == W else f"{H}x{W}"


def draw_unet_figure(model, input_shape, path=None, title=None):
    """Draw ``model`` (an npunet UNet) for ``input_shape`` (N, C, H, W) like the paper's Fig. 1.
    Returns the figure (saved to ``path`` when given)."""
    ops = unet_operations(model, input_shape)
    if not any(k == "up" for k, *_ in ops):
        raise ValueError("draw_unet_figure: no up-sampling found; this draws U-Net's encoder-decoder only")
    H0 = input_shape[2]
    fig, ax = plt.subplots(figsize=(16, 8.5))
    level, x = 0, 0.0
    enc_bar = {}                                   # level -> (right edge, y, shape) of the map copied across
    used = set()

    def y_of(lv):
        return -lv * 1.6

    def bar(x0, lv, shape, copied=False):
        C, H = shape[1], shape[2]
        w = _bar_width(C)
        h = 0.35 + 0.9 * H / H0
        y = y_of(lv)
        ax.add_patch(Rectangle((x0, y - h / 2), w, h, facecolor="white" if copied else "#9ecae1",
                               edgecolor="black", lw=0.7))
        ax.text(x0 + w / 2, y + h / 2 + 0.05, str(C), ha="center", va="bottom", fontsize=7)
        if not copied:                             # inside the bar, off the arrows; a copy's size is on its crop arrow
            inside = w >= 0.15                     # a 1- or 2-channel bar is too thin: beside it, below the arrows
            ax.text(x0 + w / 2 if inside else x0 + w + 0.02, y - h / 2 + 0.04, _size(shape),
                    ha="center" if inside else "left", va="bottom", fontsize=6, rotation=90)
        return x0 + w, y

    def arrow(kind, a, b, label=None):
        used.add(kind)
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=9, lw=1.2, color=COLORS[kind],
                                     linestyle="--" if kind == "crop" else "-", shrinkA=1, shrinkB=1))
        if label:
            ax.text((a[0] + b[0]) / 2, a[1] + 0.06, label, ha="center", va="bottom", fontsize=7, color="#555555")

    right, y = bar(x, 0, input_shape)              # the input tile
    last = input_shape
    n_conv = 0
    for kind, shape, extra in ops:
        if kind in ("conv", "head"):
            n_conv += 1
            x = right + 0.35
            new_right, new_y = bar(x, level, shape)
            arrow(kind, (right, y), (x, new_y))
            right, y = new_right, new_y
        elif kind == "pool":
            enc_bar[level] = (right, y, last)
            level += 1
            x = right + 0.05                       # the arrow comes down beside the new bar, off its channel label
            new_right, new_y = bar(x, level, shape)
            arrow("pool", (right - 0.1, y - 0.66), (right - 0.1, new_y + 0.2))
            right, y = new_right, new_y
        elif kind == "up":
            n_conv += bool(extra)                  # an up-conv is one of the paper's 23 convolutions
            level -= 1
            x = right + 0.15 + _bar_width(enc_bar[level][2][1])   # room for the copied map on its left
            new_right, new_y = bar(x, level, shape)
            arrow("up" if extra else "bilinear", (right, y + 0.3), (x + 0.05, new_y - 0.5))
            right, y = new_right, new_y
            up_x, up_shape = x, shape
        elif kind == "cat":
            skip = extra
            src_right, src_y, _ = enc_bar[level]
            cx = up_x - _bar_width(skip[1])
            bar(cx, level, (skip[0], skip[1]) + tuple(up_shape[2:]), copied=True)
            crop = f"{_size(skip)} → {_size(up_shape)}" if skip[2:] != up_shape[2:] else "copy"
            arrow("crop", (src_right + 0.05, src_y), (cx - 0.02, src_y), crop)
        last = shape
    ax.set_xlim(-0.6, right + 0.4)
    ax.set_ylim(y_of(max(enc_bar) + 1) - 1.0, 1.1)
    ax.axis("off")
    handles = [Line2D([0], [0], color=COLORS[k], lw=2, linestyle="--" if k == "crop" else "-", label=LEGEND[k])
               for k in LEGEND if k in used]
    handles.append(Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", label="copied feature map"))
    ax.legend(handles=handles, loc="lower right", fontsize=9, frameon=False)
    ax.set_title(title or f"{type(model).__name__}: {n_conv} convolutions, {model.num_parameters():,} parameters, "
                 f"input {_size(input_shape)}", fontsize=11)
    if path:
        fig.savefig(path, dpi=100, bbox_inches="tight")
        finish(fig)
    return fig
