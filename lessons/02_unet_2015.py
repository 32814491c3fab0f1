# %% [markdown]
# # Lesson 2: U-Net (2015), block by block
# Valid 3x3 convolutions shrink every map by 2 px, so a 572x572 tile becomes a 388x388 map:
# 572→570→568 | pool 284→282→280 | … | 28 at 1024 channels | up 56, crop 64→56, … →388.
# We trace it without computing anything, count the 31,030,658 parameters by hand, crop and
# concatenate, find the legal input sizes, and do overlap-tile prediction with mirrored borders.
# Exercise: `lessons/exercises/06_crop_concat.py` (copy, crop and concatenate; `python -m npunet check 6`).
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 21 s, `--class` 8 s, `--fast` 5 s.

# %%
import numpy as np

import npunet
from npunet import nn
from npunet.data import make_cell_image, overlap_tile
from npunet.lesson import Lesson, table
from npunet.models import UNet, nearest_legal, valid_input_sizes
from npunet.viz import draw_unet_figure

L = Lesson("Lesson 2: U-Net 2015, block by block")
rng = np.random.default_rng(0)

# %% [markdown]
# ## Step 1: the shape trace of the paper's network
# `npunet.summary` runs the model on a shape-only stand-in: no convolution is computed, so the
# full 572 network traces instantly.  "kept for backward" is the activation memory each block holds.
# The same trace draws the network conv by conv, as Fig. 1 of the paper: 23 convolutions (18 3x3,
# 4 up-convolutions, one 1x1), the size of every map, and the copy-and-crop arrows with their crops.

# %%
L.step("the 572 → 388 shape trace")
unet = UNet(in_channels=1, num_classes=2, base_channels=64)
s = npunet.summary(unet, (1, 1, 572, 572))
draw_unet_figure(unet, (1, 1, 572, 572), L.fig("unet_architecture.png"))
print("figure:", L.fig("unet_architecture.png"))

# %% [markdown]
# ## Step 2: why valid convolutions shrink the map
# An unpadded 3x3 convolution can only be centred on pixels with a full neighbourhood: H_out = H - 2.

# %%
L.step("valid convolutions")
x = rng.standard_normal((1, 1, 10, 10)).astype(np.float32)
c1, c2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)
print("input", x.shape, "-> conv", c1(x).shape, "-> conv", c2(c1(x)).shape, "-> pool", nn.MaxPool2d(2)(c2(c1(x))).shape)

# %% [markdown]
# ## Step 3: copy and crop
# The decoder map after the up-convolution (56x56 at the deepest level) is smaller than the encoder
# map of the same level (64x64): the skip is center-cropped by (64 - 56) / 2 = 4 px a side, then the
# two are concatenated on channels, [skip, upsampled].
#
# When the difference is odd, "center" needs a rounding rule. npunet crops (Hs - H) // 2 at the top
# and left (the extra pixel goes to the bottom/right); torchvision's `center_crop` uses
# int(round((Hs - H) / 2)), Python's round-half-to-even, which differs when Hs - H = 3, 7, 11, …
# In U-Net the differences are always even (8, 32, 80, 176 at 572), so the two agree there; with
# other sizes, a PyTorch port that uses `center_crop` can be shifted by one pixel.

# %%
L.step("crop and concatenate (64 → 56)")
skip = rng.standard_normal((1, 512, 64, 64)).astype(np.float32)
up = rng.standard_normal((1, 512, 56, 56)).astype(np.float32)
cc = nn.CropConcat()
out = cc(skip, up)
print("skip", skip.shape, "+ up", up.shape, "-> concat", out.shape)
d_skip, d_up = cc.backward(np.ones_like(out))
print("gradient reaching the skip is zero on the cropped border:", float(d_skip[0, 0, :4].sum()), "and",
      int(d_skip[0, 0].sum()), "= 56*56 inside")
for diff in (4, 5, 7, 8):
    print(f"Hs - H = {diff}: npunet's top offset {diff // 2}, torchvision's center_crop {int(round(diff / 2))}")

# %% [markdown]
# ## Step 4: which input sizes work
# Every pool needs an even size and the decoder must stay positive: S = 16k + 124 with k ≥ 4.

# %%
L.step("legal input sizes")
print("legal sizes up to 700:", valid_input_sizes(4, "valid", 700))
print("570 is not legal; nearest:", nearest_legal(570))
try:
    unet(np.zeros((1, 1, 570, 570), np.float32))
except ValueError as e:
    print("error at entry:", e)

# %% [markdown]
# ## Step 5: 31,030,658 parameters, by hand
# A k x k conv from C_in to C_out has C_out * C_in * k * k weights + C_out biases; a 2x2 up-conv from
# C to C/2 has C * C/2 * 4 + C/2.

# %%
L.step("counting parameters by hand")
conv = lambda ci, co, k=3: co * ci * k * k + co
ch = [64, 128, 256, 512, 1024]
enc = conv(1, 64) + conv(64, 64) + sum(conv(ch[i - 1], ch[i]) + conv(ch[i], ch[i]) for i in range(1, 5))
dec = sum(ch[i] * ch[i - 1] * 4 + ch[i - 1] + conv(ch[i], ch[i - 1]) + conv(ch[i - 1], ch[i - 1]) for i in range(4, 0, -1))
head = conv(64, 2, 1)
table([["encoder", f"{enc:,}"], ["decoder", f"{dec:,}"], ["1x1 head", f"{head:,}"],
       ["total by hand", f"{enc + dec + head:,}"], ["model.num_parameters()", f"{unet.num_parameters():,}"]],
      ["part", "parameters"])
assert enc + dec + head == unet.num_parameters() == 31_030_658

# %% [markdown]
# ## Step 6: the padded and bilinear variants
# Most re-implementations pad the convolutions ("same": the output has the input's size) and some
# replace the up-convolution by bilinear upsampling. (Some tutorials call that variant "UNet3++"; no
# paper uses the name, and it is neither U-Net++ (Zhou et al. 2018, lesson 4) nor UNet 3+ (Huang et
# al. 2020, lesson 5): here it is simply "U-Net with bilinear up-sampling".)
# Padding changes no parameter count. Bilinear up-sampling changes it in *either* direction,
# depending on a second design choice made with it, as counted below.

# %%
L.step("padded and bilinear variants")
rows = []
for kw in [dict(), dict(padding="same"), dict(padding="same", up_mode="bilinear"),
           dict(padding="same", block="residual"), dict(padding="same", block="separable")]:
    m = UNet(1, 2, 64, **kw)
    size = 572 if not kw else 512
    r = npunet.summary(m, (1, 1, size, size), print_fn=None)
    rows.append([", ".join(f"{k}={v}" for k, v in kw.items()) or "the paper's (valid, up-conv)", f"{m.num_parameters():,}", f"{size} → {r['output_shapes'][0][2]}",
                 f"{r['activation_bytes'] / 2**20:.0f} MiB"])
table(rows, ["variant", "parameters", "size", "kept for backward"])

# npunet's bilinear U-Net has MORE parameters (31,377,858) although it drops the up-convolutions.
# That is not bilinear up-sampling's doing but npunet's choice to keep the paper's channels: the 2x2
# up-conv also halved the channels (1024 -> 512); bilinear up-sampling cannot, so all 1024 reach the
# first 3x3 conv of the up block, which reads skip + C_in channels instead of skip + C_in/2.
ch = [64 * 2 ** i for i in range(5)]
extra = 0
for lvl in (3, 2, 1, 0):
    c_in, c_out = ch[lvl + 1], ch[lvl]
    up_conv = c_in * (c_in // 2) * 2 * 2 + c_in // 2                   # weight (C_in, C_in/2, 2, 2) + bias
    conv1_transpose = (c_out + c_in // 2) * c_out * 3 * 3                # reads skip + C_in/2 channels
    conv1_bilinear = (c_out + c_in) * c_out * 3 * 3                      # reads skip + C_in channels
    extra += conv1_bilinear - conv1_transpose - up_conv
    print(f"up block {c_in}->{c_out}: bilinear conv1 +{conv1_bilinear - conv1_transpose:,}, "
          f"no up-conv -{up_conv:,}")
print(f"31,030,658 + {extra:,} = {31_030_658 + extra:,}")
assert 31_030_658 + extra == UNet(1, 2, 64, up_mode="bilinear").num_parameters() == 31_377_858

# The other common design (milesial/Pytorch-UNet with `bilinear=True`) halves the channels instead:
# the bottleneck keeps 512, and every up block's double conv ends at half its width, so the
# concatenation is again C + C. Counted the same way (no BatchNorm, to compare with 31,030,658):


def conv3(c_in, c_out):                                         # a 3x3 conv: weight + bias
    return c_in * c_out * 9 + c_out


halved = (conv3(1, 64) + conv3(64, 64) + conv3(64, 128) + conv3(128, 128) + conv3(128, 256) + conv3(256, 256)
          + conv3(256, 512) + conv3(512, 512) + conv3(512, 512) + conv3(512, 512)       # bottleneck: 512, not 1024
          + conv3(1024, 512) + conv3(512, 256) + conv3(512, 256) + conv3(256, 128)      # up blocks: concat C + C,
          + conv3(256, 128) + conv3(128, 64) + conv3(128, 64) + conv3(64, 64)           # the second conv halves
          + 64 * 2 + 2)                                                                  # 1x1 head
print(f"bilinear, channels halved at the bottleneck (Pytorch-UNet's choice): {halved:,} parameters "
      f"({halved / 31_030_658:.0%} of the paper's)")

# %% [markdown]
# ## Step 7: overlap-tile prediction, and what a trained U-Net sees
# A valid U-Net predicts an S_out tile from an S_in window: the missing border is its *context*,
# c = (S_in - S_out) / 2 (92 px for 572 -> 388). For pixels at the image border that context lies
# outside the image; the paper fills it by **mirroring** the image at its edge (Fig. 2), so the net sees
# plausible texture instead of zeros. The image is then cut into output tiles, each predicted from its
# window, and stitched.
#
# The paper's condition for seamless tiling (section 2) is that every 2x2 max-pool sees an even
# size: then every output pixel has its full context and each tile is valid on its own. npunet asks
# for a stronger condition, to make the stitched result *equal* a single pass. Max-pooling cuts the
# map into 2x2 blocks, and after `depth` pools into 2^depth blocks: a window shifted by a multiple
# of 2^depth sees the same blocks as a pass over the whole image; any other shift sees other blocks
# and predicts slightly different values. Valid depth-4 outputs are never multiples of 16
# (S_out = 16k - 60: 388 = 16·24 + 4), so `overlap_tile` steps its windows by 384 and lets the tiles
# overlap by 4 px. (The equality also needs BatchNorm in eval mode: batch statistics would differ
# per window.) With the paper's 388 stride the differences are tiny, printed below: nothing you
# would see as a seam. The check: stitched tiles == one pass over the whole mirrored image. We train a small valid U-Net (depth 3, 132 -> 44, step 40) first so that the
# predictions and feature maps below mean something.

# %%
L.step("overlap-tile prediction and the feature maps of a trained U-Net")
import matplotlib.pyplot as plt  # noqa: E402

from npunet import losses, optim  # noqa: E402
from npunet.data import DataLoader, SegmentationDataset, make_cells  # noqa: E402
from npunet.models.sizes import is_legal, output_size  # noqa: E402
from npunet.train import Trainer  # noqa: E402
npunet.manual_seed(0)
small = UNet(1, 2, base_channels=8, depth=3, batch_norm=True)             # valid convolutions
tile = 132
out_t, ctx = output_size(tile, 3), (tile - output_size(tile, 3)) // 2
xs, labs, ms = make_cells(L.pick(48, 4, klass=24), tile, seed=5)
loader = DataLoader(SegmentationDataset(xs, ms, labs, weight_map=True), batch_size=4, seed=0)
opt = optim.Adam(small.parameters(), lr=3e-3)
tr = Trainer(small, losses.CrossEntropyLoss(), opt, loader, use_weight_map=True, progress=False, log=None)
tr.fit(L.pick(16, 1, klass=6))
small.eval()
print(f"trained {tr.history['epoch'][-1]} epochs on {len(xs)} tiles {tile}x{tile} -> {out_t}x{out_t} "
      f"(context {ctx} px), {sum(tr.history['seconds']):.0f} s")

img, lab, mask = make_cell_image(L.pick(150, 60), rng=1)
pred = overlap_tile(small, img[None], tile=tile, depth=3)                  # (2, H, W) logits
H = img.shape[0]
S = next(s for s in range(max(H + 2 * ctx, out_t + tile), 4000) if is_legal(s, 3, "valid"))
whole_in = np.pad(img, ((ctx, S - H - ctx), (ctx, S - H - ctx)), mode="symmetric")[None, None].astype(np.float32)
whole = small(whole_in)[0]                                                 # one pass, (2, S_out, S_out)
print(f"image {img.shape} -> stitched logits {pred.shape}; windows step by {out_t // 8 * 8} "
      f"(the largest multiple of 2^3 in {out_t}), overlapping by {out_t % 8} px")
print("stitched tiles vs one pass over the whole mirrored image: max |diff| =",
      f"{float(np.abs(pred - whole[:, :H, :H]).max()):.1e}", "(float32 rounding: no seams)")
shifted = small(whole_in[:, :, out_t:out_t + tile, :tile])[0]              # a window stepped by all 44 px
print(f"a window stepped by {out_t} px (not a multiple of 8) instead: max |diff| from the one pass =",
      f"{float(np.abs(shifted - whole[:, out_t:2 * out_t, :out_t]).max()):.1e}",
      "(small next to logits of several units: no visible seam, but not bit-equal)")
acc = float(((pred.argmax(0) > 0) == (mask > 0)).mean())
print(f"pixel accuracy of the stitched prediction on this unseen image: {acc:.3f}")

c0 = ctx + H // 2 - tile // 2                                              # a window in the image's middle
x = whole_in[:, :, c0:c0 + tile, c0:c0 + tile]
feats = {"down1": small.down1(x), "down2": small.down2(small.pool1(small.down1(x))),
         "down3": small.down3(small.pool2(small.down2(small.pool1(small.down1(x)))))}
fig, ax = plt.subplots(4, 5, figsize=(14, 11))
ax[0, 0].imshow(np.pad(img, ctx, mode="symmetric"), cmap="gray")
ax[0, 0].add_patch(plt.Rectangle((ctx, ctx), H, H, fill=False, color="red"))
ax[0, 0].add_patch(plt.Rectangle((c0, c0), tile, tile, fill=False, color="yellow", ls="--"))
ax[0, 0].set_title(f"mirrored by {ctx} px (yellow: the window below)", fontsize=9)
ax[0, 1].imshow(img, cmap="gray")
ax[0, 1].set_title("image", fontsize=9)
ax[0, 2].imshow(mask, cmap="gray")
ax[0, 2].set_title("truth", fontsize=9)
p = np.exp(pred[1] - np.logaddexp(pred[0], pred[1]))                      # softmax foreground probability
im = ax[0, 3].imshow(p, cmap="viridis", vmin=0, vmax=1)
ax[0, 3].set_title("stitched P(cell)", fontsize=9)
fig.colorbar(im, ax=ax[0, 3], fraction=0.046)
for t in range(1, -(-H // (out_t // 8 * 8))):
    for a in (ax[0, 3],):
        a.axhline(t * (out_t // 8 * 8) - 0.5, color="white", lw=0.5, ls=":")
        a.axvline(t * (out_t // 8 * 8) - 0.5, color="white", lw=0.5, ls=":")
im = ax[0, 4].imshow(np.abs(pred - whole[:, :H, :H]).max(0), cmap="magma")
ax[0, 4].set_title("|stitched - one pass|", fontsize=9)
fig.colorbar(im, ax=ax[0, 4], fraction=0.046)
for r, (name, f) in enumerate(feats.items(), start=1):
    strongest = np.argsort(-np.abs(f[0]).mean(axis=(1, 2)))[:5]           # the most active channels
    for k, c in enumerate(strongest):
        im = ax[r, k].imshow(f[0, c], cmap="magma")
        ax[r, k].set_title(f"{name} ch{c} {f.shape[2]}x{f.shape[3]}", fontsize=8)
        fig.colorbar(im, ax=ax[r, k], fraction=0.046)
for a in ax.ravel():
    a.set_xticks([]); a.set_yticks([])
fig.suptitle("overlap-tile (dotted: tile borders) and the feature maps of the trained net on one input window")
fig.tight_layout()
fig.savefig(L.fig("unet_feature_maps.png"), dpi=80, bbox_inches="tight")
L.done(fig)
print("figure:", L.fig("unet_feature_maps.png"))

# %% [markdown]
# ## Step 8: the backward through a skip: crop-and-concat splits, the encoder's gradient adds
# Walk the backward of a one-level valid U-Net by hand. Concatenation's backward splits the gradient
# by channels; the crop's backward puts the skip's share back into the uncropped map, zeros around it.
# The encoder map h1 feeds two consumers (the max-pool below it and the skip), so its gradient is the
# **sum** of the two paths' gradients. At initialisation most of it arrives through the skip: the skip
# is the short path, which is why U-Nets train quickly.

# %%
L.step("backward through the skip, by hand")
net = UNet(1, 2, base_channels=8, depth=1).to(np.float64)
xs = rng.standard_normal((1, 1, 20, 20))
h1 = net.down1(xs)                                        # (1, 8, 16, 16)  encoder map, used twice
h2 = net.down2(net.pool1(h1))                             # (1, 16, 4, 4)
u = net.up1.up(h2)                                        # (1, 8, 8, 8)
y = net.outc(net.up1.conv(net.up1.cat(h1, u)))            # cat: crop h1 16 -> 8, then (1, 16, 8, 8)
g = rng.standard_normal(y.shape)
d = net.up1.conv.backward(net.outc.backward(g))           # (1, 16, 8, 8): gradient w.r.t. the concatenation
c = (h1.shape[2] - u.shape[2]) // 2                       # the crop offset (4)
d_skip = np.zeros_like(h1)                                # crop-concat backward, by hand:
d_skip[:, :, c:c + u.shape[2], c:c + u.shape[3]] = d[:, :h1.shape[1]]   # the skip's channels, un-cropped
d_up = d[:, h1.shape[1]:]                                 # the up-path's channels
d_pool_path = net.pool1.backward(net.down2.backward(net.up1.up.backward(d_up)))
dx_by_hand = net.down1.backward(d_pool_path + d_skip)     # h1's two consumers: the gradients add
net.zero_grad()
net(xs)
dx_model = net.backward(g)
print("dx by hand vs UNet.backward:", float(np.abs(dx_by_hand - dx_model).max()))
print(f"h1's gradient: |through the skip| = {np.linalg.norm(d_skip):.3f}, |through pool and the bottleneck| = "
      f"{np.linalg.norm(d_pool_path):.3f}")
net.down1(xs)                                             # forward again: each forward allows one backward
dx_skip_only = net.down1.backward(d_skip)
print("without the sum (skip only), dx would be off by",
      f"{np.abs(dx_skip_only - dx_model).max() / np.abs(dx_model).max():.0%} of its largest value")

# %%
L.finish()
