# %% [markdown]
# # Lesson 11: why the U-Nets are built the way they are
# Five design questions a strong course answers with numbers: what an output pixel sees (and why the
# 2015 U-Net uses valid convolutions), where up-sampling artifacts come from, how to choose a loss
# when the foreground is rare, what deep supervision does to gradients and at inference, and what
# UNet 3+'s uniform 320-channel decoder costs.
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 80 s, `--class` 15 s, `--fast` 7 s.

# %%
import collections

import matplotlib.pyplot as plt
import numpy as np

import npunet
from npunet import losses, metrics, nn, optim
from npunet.data import make_cells
from npunet.lesson import Lesson, table
from npunet.models import UNet, UNet3Plus, UNetPlusPlus

L = Lesson("Lesson 11: design choices")
rng = np.random.default_rng(0)

# %% [markdown]
# ## Step 1: what one output pixel sees, and why valid convolutions
# Walk from one output pixel of the 2015 U-Net back to the input and keep the interval of input
# columns it depends on. A valid 3x3 conv widens [a, b] to [a, b + 2]; a 2x2 max-pool maps [a, b] to
# [2a, 2b + 1]; the 2x2 up-convolution with stride 2 makes output pixel p from input pixel p // 2, so
# it maps [a, b] to [a // 2, b // 2]. The skips add nothing wider: their paths are shallower. The
# map shrinks by 572 − 388 = 184 pixels, 92 of context a side on average; but because the
# up-convolutions make each 2x2 block of outputs share its inputs, the exact window depends on where
# the pixel sits in the 16-pixel grid of the four pools.

# %%
L.step("the receptive field, layer by layer")


def window(o, depth=4, trace=None):
    """Input columns [a, b] that output column o of a valid U-Net (two 3x3 convs per block) depends on."""
    a, b = o, o
    for lvl in range(depth, 0, -1):                          # decoder, from the output back: up4 … up1
        for k in (2, 1):
            a, b = a, b + 2
            trace is not None and trace.append((f"up{lvl}.conv{k} input", a, b))
        a, b = a // 2, b // 2
        trace is not None and trace.append((f"up{lvl}.up input", a, b))
    for k in (2, 1):                                         # bottleneck
        a, b = a, b + 2
        trace is not None and trace.append((f"down{depth + 1}.conv{k} input", a, b))
    for lvl in range(depth, 0, -1):                          # encoder, back to the image
        a, b = 2 * a, 2 * b + 1
        trace is not None and trace.append((f"pool{lvl} input", a, b))
        for k in (2, 1):
            a, b = a, b + 2
            trace is not None and trace.append((f"down{lvl}.conv{k} input", a, b))
    return a, b


steps = []
window(0, trace=steps)
table([[name, f"[{a}, {b}]", b - a + 1] for name, a, b in steps[::3] + [steps[-1]]],
      ["layer (every third shown)", "columns output pixel 0 depends on", "width"])
widths = collections.Counter(window(o)[1] - window(o)[0] + 1 for o in range(388))
print("window widths over the 388 output columns:", dict(widths))
print("every window inside the 572 input:", all(0 <= window(o)[0] and window(o)[1] <= 571 for o in range(388)))

# %% [markdown]
# Check it on a real network, by perturbation: with all weights positive and a constant input every
# ReLU is active and a large value at one input column becomes the max of its pool window, so output
# pixel o changes exactly when that column lies inside o's window. (A gradient would not do: max-pool
# routes it to one input of each window.) The width of the network does not matter, so one channel
# per level will do.

# %%
net = UNet(1, 1, base_channels=1).to(np.float64)
for _, p in net.named_parameters():
    p.data = np.abs(p.data) + 0.1
net.eval()
x0 = np.ones((1, 1, 572, 572))
base = net(x0)[0, 0, 200]
o = 4
a, b = window(o)
for col, where in [(b, "last column inside"), (b + 1, "first column outside"), (a, "first column inside")]:
    x = x0.copy()
    x[0, 0, :, col] = 1e3
    changed = bool(net(x)[0, 0, 200, o] != base[o])
    print(f"output column {o}: input column {col} ({where} [{a}, {b}]) changes it: {changed}")

# %% [markdown]
# Every output pixel's window lies inside the input: the valid U-Net predicts each pixel from real
# data only. That is why tiles are independent (lesson 2's overlap-tile stitches them without seams)
# and why images of any size work: the network never sees an image border, only mirrored context.
# A "same"-padded U-Net instead sees zeros wherever its window leaves the image, so a pixel near a
# tile edge is predicted from padding that is not there in the whole image. Below: one same-padded
# U-Net predicts an image in one pass and as four tiles stitched together; the difference sits along
# the tile borders.

# %%
npunet.manual_seed(0)
same = UNet(1, 2, base_channels=4, depth=3, padding="same", batch_norm=True).eval()
img = make_cells(1, L.pick(192, 64), seed=3)[0][:1]
S = img.shape[-1]
whole = same(img)
h = S // 2
tiles = np.zeros_like(whole)
for r in (0, h):
    for c in (0, h):
        tiles[:, :, r:r + h, c:c + h] = same(img[:, :, r:r + h, c:c + h])
diff = np.abs(tiles - whole).max(axis=(0, 1))
near = np.zeros_like(diff, bool)
near[h - 8:h + 8, :] = near[:, h - 8:h + 8] = True
print(f"same padding, four tiles vs one pass: max |diff| within 8 px of a tile border {diff[near].max():.3f}, "
      f"elsewhere {diff[~near].max():.3f}")
fig, ax = plt.subplots(1, 3, figsize=(11, 3.6))
lo = [window(o)[0] for o in range(48)]
hi = [window(o)[1] for o in range(48)]
ax[0].fill_between(range(48), lo, hi, step="mid", alpha=0.4)
ax[0].set_xlabel("output column")
ax[0].set_ylabel("input columns it depends on")
ax[0].set_title("valid U-Net 572 → 388: windows of 188 or 204 px", fontsize=9)
ax[1].imshow(img[0, 0], cmap="gray")
ax[1].set_title("image, cut into four tiles", fontsize=9)
ax[1].axhline(h - 0.5, color="yellow"); ax[1].axvline(h - 0.5, color="yellow")
im = ax[2].imshow(diff, cmap="magma")
ax[2].set_title("same padding: |tiles − one pass|", fontsize=9)
fig.colorbar(im, ax=ax[2], fraction=0.046)
for a_ in ax[1:]:
    a_.set_xticks([]); a_.set_yticks([])
fig.tight_layout()
fig.savefig(L.fig("receptive_field.png"), dpi=90, bbox_inches="tight")
L.done(fig)

# %% [markdown]
# ## Step 2: up-sampling artifacts
# Feed a constant map into each way of up-sampling by 2. A 2x2 transposed conv with stride 2
# (U-Net's) copies its kernel into every 2x2 block: a periodic 2x2 pattern whenever the four kernel
# values differ. A 3x3 transposed conv with stride 2 overlaps unevenly: some output pixels receive
# one kernel tap, some two, some four, so even a kernel of ones paints a checkerboard (Odena, Dumoulin
# & Olah, "Deconvolution and checkerboard artifacts", Distill 2016). Bilinear up-sampling followed by
# a 3x3 conv ("resize-convolution") keeps a constant map constant away from the border.
# The same unevenness appears in gradients: the backward of a stride-2 3x3 conv is a transposed conv,
# and sends a uniform gradient back as a checkerboard.

# %%
L.step("impulse responses and gradients of the up-sampling layers")
ones = np.ones((1, 1, 8, 8))
k2 = nn.ConvTranspose2d(1, 1, 2, stride=2, bias=False).to(np.float64)
k2.weight.data = np.array([[[[1.0, 0.6], [0.8, 0.4]]]])
k3 = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1, bias=False).to(np.float64)
k3.weight.data = np.ones((1, 1, 3, 3))
up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).to(np.float64)
conv.weight.data = np.ones((1, 1, 3, 3)) / 9
outs = {"2x2 up-conv, stride 2": k2(ones), "3x3 up-conv, stride 2": k3(ones), "bilinear + 3x3 conv": conv(up(ones))}
strided = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False).to(np.float64)
strided.weight.data = np.ones((1, 1, 3, 3))
y = strided(np.ones((1, 1, 16, 16)))
grad_in = strided.backward(np.ones_like(y))
for name, v in outs.items():
    inner = v[0, 0, 2:-2, 2:-2]
    print(f"{name:24s} on a constant input: interior values {sorted(set(np.round(inner.ravel(), 3).tolist()))}")
print("stride-2 3x3 conv, uniform gradient back to its input: values",
      sorted(set(np.round(grad_in[0, 0, 2:-2, 2:-2].ravel(), 3).tolist())))
fig, ax = plt.subplots(1, 4, figsize=(12, 3.2))
for a_, (name, v) in zip(ax, list(outs.items()) + [("gradient of a stride-2 3x3 conv", grad_in)]):
    a_.imshow(v[0, 0], cmap="viridis", interpolation="nearest")
    a_.set_title(name, fontsize=9)
    a_.set_xticks([]); a_.set_yticks([])
fig.tight_layout()
fig.savefig(L.fig("upsampling_artifacts.png"), dpi=90, bbox_inches="tight")
L.done(fig)

# %% [markdown]
# ## Step 3: rare foreground: choosing a loss
# A few foreground pixels among many background ones. Four answers, trained on the same data:
# - **BCE**: every pixel weighs the same, so background dominates the sum.
# - **class-balanced BCE**: the paper's w_c (Ronneberger et al. 2015, eq. 2, without the border
#   term): each pixel weighted by 1 / (its class's frequency), so both classes weigh the same in total.
# - **Dice** (per image): a ratio of overlaps, blind to how many background pixels there are; but
#   each image's ratio counts equally, so a tiny object carries as much as a large one, and an image
#   with no foreground at all scores only through `smooth`.
# - **focal** (α = 0.25, γ = 2): mutes easy pixels; note that its α down-weights foreground.
# Two data sets: the touching cells, and a small-object variant (radius 2–3 px, few per image). For
# each: pooled Dice (one confusion matrix over all images), mean per-image Dice (what the Dice loss
# optimises, and the DSB 2018 metric), recall, precision.

# %%
L.step("four losses on touching cells and on small objects")


def class_balanced(y):
    """w_c: each pixel weighted by 1 / (its class's frequency in the batch), mean 1."""
    fg = max(float(y.mean()), 1e-6)
    w = np.where(y > 0, 0.5 / fg, 0.5 / max(1 - fg, 1e-6))
    return (w / w.mean()).astype(np.float32)


def train_with(loss, data, weighted=False, seed=0):
    x, m = data
    npunet.manual_seed(seed)
    net = UNet(1, 1, base_channels=8, depth=3, padding="same", batch_norm=True)
    opt = optim.Adam(net.parameters(), lr=3e-3)
    order = np.random.default_rng(seed)
    for epoch in range(L.pick(12, 1, klass=5)):
        for i in np.split(order.permutation(len(x)), len(x) // 4):
            y = m[i][:, None].astype(np.float32)
            w = class_balanced(y) if weighted else None
            loss.forward(net(x[i]), y, **({"weight": w} if weighted else {}))
            net.zero_grad()
            net.backward(loss.backward())
            opt.step()
    return net.eval()


def scores(net, data):
    x, m = data
    pred = (net(x)[:, 0] > 0).astype(np.uint8)
    pooled = metrics.binary_scores(pred, m)
    per_image = [metrics.binary_scores(p, t)["dice"] for p, t in zip(pred, m)]   # empty & empty counts 1
    return pooled["dice"], float(np.mean(per_image)), pooled["recall"], pooled["precision"]


n, size = L.pick((32, 64), (4, 32), klass=(16, 64))
cells = make_cells(n, size, seed=1)
small = make_cells(n, size, seed=2, radius=(2.0, 3.0), density=0.15, touching=0.0)
test_cells, test_small = make_cells(8, size, seed=11), make_cells(8, size, seed=12, radius=(2.0, 3.0),
                                                                   density=0.15, touching=0.0)
print(f"foreground share: touching cells {cells[2].mean():.3f}, small objects {small[2].mean():.3f} "
      f"({int((small[2].reshape(n, -1).sum(1) == 0).sum())} of {n} small-object images empty)")
rows = []
for data_name, train, test in [("cells", cells, test_cells), ("small", small, test_small)]:
    for loss_name, make, weighted in [("BCE", losses.BCEWithLogitsLoss, False),
                                      ("class-balanced BCE", losses.BCEWithLogitsLoss, True),
                                      ("Dice", losses.DiceLoss, False), ("focal", losses.FocalLoss, False)]:
        net = train_with(make(), (train[0], train[2]), weighted)
        d_pool, d_img, rec, prec = scores(net, (test[0], test[2]))
        rows.append([data_name, loss_name, f"{d_pool:.3f}", f"{d_img:.3f}", f"{rec:.3f}", f"{prec:.3f}"])
table(rows, ["data", "loss", "pooled Dice", "per-image Dice", "recall", "precision"])
for data_name in ("cells", "small"):
    best = max((r for r in rows if r[0] == data_name), key=lambda r: float(r[3]))
    print(f"{data_name}: highest per-image Dice with {best[1]} ({best[3]}), one seed")

# %% [markdown]
# Two details that decide what a Dice loss does on such data:
# - **batch vs per-image.** SMP's `DiceLoss` pools the sums over the whole batch (one ratio), npunet's
#   averages one ratio per image. The pooled version is dominated by the images with most foreground;
#   the per-image version gives an image with one small object the same say as a crowded one.
# - **empty masks and `smooth`.** With no foreground, Dice = smooth / (Σp + smooth): with smooth = 1
#   a prediction of 20 false-positive pixels still scores 1/21; with smooth = 1e-5 any prediction
#   scores ≈ 0 and the loss on that image is saturated. And on a 5-pixel object, one missed pixel
#   moves Dice by about 0.1: the loss jumps, and its per-pixel gradients are large.

# %%
empty = np.zeros((1, 1, 16, 16))
z_fp = np.full((1, 1, 16, 16), -8.0)
z_fp[..., :4, :5] = 8.0                                              # 20 confident false positives
for s in (1.0, 1e-5):
    print(f"empty mask, 20 false positives, smooth {s:g}: Dice loss {losses.DiceLoss(smooth=s).forward(z_fp, empty):.3f}")
tiny = np.zeros((1, 1, 16, 16))
tiny[..., 7, 6:11] = 1                                               # a 5-pixel object
z_hit = np.where(tiny > 0, 8.0, -8.0)
z_miss = z_hit.copy()
z_miss[..., 7, 10] = -8.0
d_hit, d_miss = (1 - losses.DiceLoss().forward(z, tiny) for z in (z_hit, z_miss))
print(f"5-pixel object, one pixel missed: soft Dice {d_hit:.3f} -> {d_miss:.3f}")


class BatchDiceLoss:
    """Dice with the sums pooled over the batch (SMP's binary mode): L = 1 − (2ΣpY + s) / (Σp + ΣY + s).
    z, y: (N, 1, H, W); backward -> dL/dz."""

    def __init__(self, smooth=1.0):
        self.s = smooth

    def forward(self, z, y):
        p = 1 / (1 + np.exp(-z))
        inter, total = (p * y).sum(), p.sum() + y.sum()
        self.cache = p, y, inter, total
        return 1 - (2 * inter + self.s) / (total + self.s)

    def backward(self, g=1.0):
        p, y, inter, total = self.cache
        dd_dp = (2 * y * (total + self.s) - (2 * inter + self.s)) / (total + self.s) ** 2   # quotient rule
        return -g * dd_dp * p * (1 - p)                                                  # dL/dz


zb = rng.normal(0, 1, (3, 1, 6, 6))
yb = (rng.random((3, 1, 6, 6)) > 0.7).astype(np.float64)
bd = BatchDiceLoss()
print("batch Dice backward vs central differences:",
      npunet.gradcheck_fn(lambda z: bd.forward(z, yb), lambda g: bd.backward(g), zb))
print(f"the same batch: per-image Dice loss {losses.DiceLoss().forward(zb, yb):.4f}, batch Dice loss {bd.forward(zb, yb):.4f}")

# %% [markdown]
# Which loss to pick follows from the metric you will report: per-image Dice → a per-image Dice loss
# (often plus BCE for stable early gradients); pooled Dice or IoU over a data set → batch Dice;
# pixel accuracy → plain cross-entropy, which is exactly why accuracy is the wrong metric for rare
# foreground (lesson 3). The table above is one seed on synthetic data: read it as what these losses
# did here, and measure on your own data.

# %% [markdown]
# ## Step 4: deep supervision, in gradients and at inference
# Lee et al.'s deeply-supervised nets (AISTATS 2015) add a *companion objective* at hidden layers so
# that early layers receive a direct, strong gradient. In U-Net++ the heads sit on X^{0,1} … X^{0,4}.
# Measure the gradient reaching each encoder level with and without the extra heads (same weights,
# same batch): then weigh the heads (backward is linear, so weighting a head is scaling its gradient).

# %%
L.step("deep supervision: gradient norms, head weights, accurate vs fast mode")
x, _, m = make_cells(4, 64, seed=5)
y = m[:, None].astype(np.float32)
npunet.manual_seed(0)
ds_net = UNetPlusPlus(1, 1, filters=(8, 16, 32, 64, 128), deep_supervision=True)
heads = ds_net(x)
per_head = losses.DeepSupervisionLoss(losses.BCEWithLogitsLoss())
per_head.forward(heads, y)
grads = per_head.backward()


def level_norms(weights):
    ds_net.zero_grad()
    ds_net(x)
    ds_net.backward([w * g for w, g in zip(weights, grads)])
    return [float(np.linalg.norm(getattr(ds_net, f"x{i}_0").conv1.weight.grad)) for i in range(5)]


settings = {"last head only (no deep supervision)": [0, 0, 0, 4],
            "four heads, mean (npunet)": [1, 1, 1, 1],
            "four heads, deeper ones weighted more": [0.4, 0.8, 1.2, 1.6]}
norms = {name: level_norms(w) for name, w in settings.items()}
table([[name] + [f"{v:.2e}" for v in norms[name]] for name in settings], ["heads", "X0,0", "X1,0", "X2,0", "X3,0", "X4,0"])
ratio = np.array(norms["four heads, mean (npunet)"]) / np.array(norms["last head only (no deep supervision)"])
print("four heads vs the last head alone, per level:", " ".join(f"X{i},0 ×{r:.2f}" for i, r in enumerate(ratio)))
print("(the same total weight, 4, in both rows: deep supervision moves gradient towards the levels its "
      "extra heads sit closest to, here the shallow ones)")

# %% [markdown]
# At inference the heads must be combined or chosen. The U-Net++ paper's **accurate mode** averages
# the heads' *probabilities*; its **fast mode** keeps one head and prunes the rest (lesson 4).
# npunet's U-Net++ eval averages the heads' *logits*, and UNet 3+ in eval returns only d1, the
# full-resolution head (its bottleneck head sees the image at 1/16 and is up-sampled by 16). Train
# both briefly and score every rule.

# %%
xt, _, mt = make_cells(L.pick(32, 4, klass=16), 64, seed=6)
xv, _, mv = make_cells(8, 64, seed=7)


def train_ds(net):
    opt = optim.Adam(net.parameters(), lr=3e-3)
    loss = losses.DeepSupervisionLoss(losses.CombinedLoss.unetpp())
    for epoch in range(L.pick(10, 1, klass=4)):
        for i in np.split(np.arange(len(xt)), len(xt) // 4):
            loss.forward(net(xt[i]), mt[i][:, None].astype(np.float32))
            net.zero_grad()
            net.backward(loss.backward())
            opt.step()
    return net


def dice(z):
    return metrics.binary_scores((z[:, 0] > 0).astype(np.uint8), mv)["dice"]


npunet.manual_seed(0)
upp = train_ds(UNetPlusPlus(1, 1, filters=(8, 16, 32, 64, 128), deep_supervision=True))
upp_heads = [upp.prune(k).eval()(xv) for k in (1, 2, 3, 4)]          # each head alone, BatchNorm in eval
probs = [1 / (1 + np.exp(-h)) for h in upp_heads]
rows = [[f"U-Net++ head on X0,{k + 1} alone", f"{dice(h):.3f}"] for k, h in enumerate(upp_heads)]
rows += [["U-Net++ mean of logits (npunet's eval)", f"{dice(upp.eval()(xv)):.3f}"],
         ["U-Net++ mean of probabilities (paper's accurate mode)", f"{dice(np.log(np.mean(probs, 0)) - np.log1p(-np.mean(probs, 0))):.3f}"],
         ["U-Net++ fast mode: pruned to L4", f"{dice(upp.prune(4).eval()(xv)):.3f}"]]
npunet.manual_seed(0)
u3 = train_ds(UNet3Plus(1, 1, filters=(8, 16, 32, 64, 128), cat_channels=8, deep_supervision=True))
u3.eval()                    # BatchNorm on its running statistics ...
u3.training = True           # ... but the model's own flag on "training", so that it returns every head
u3_heads = u3(xv)
u3.eval()
rows += [[f"UNet 3+ head d{k + 1}" + (" (= eval output)" if k == 0 else "") + (" (1/16 scale)" if k == 4 else ""),
          f"{dice(h):.3f}"] for k, h in enumerate(u3_heads)]
table(rows, ["inference rule", "held-out Dice"])
dead = [f"X0,{k + 1}" for k, h in enumerate(upp_heads) if dice(h) < 0.05]
if dead:
    print(f"U-Net++ head(s) on {', '.join(dead)} predict no foreground at all: their losses were averaged in "
          "with the others during training, and an average of heads hides such a head; pruning to that level exposes it")
print("(held-out Dice of one short training run each: compare the rules within a model, not across models)")

# %% [markdown]
# ## Step 5: what UNet 3+'s 320-channel decoder costs
# UNet 3+ has fewer parameters than U-Net (26.97M vs 31.0M at the papers' widths) because each of the
# five inputs of a decoder stage is first squeezed to 64 channels. But every decoder stage then runs a
# 3x3 conv from 320 to 320 channels *at that stage's resolution*, including the full-resolution one,
# where U-Net's last block runs 128 → 64 → 64. Parameters do not grow with the image; FLOPs and the
# memory kept for backward do. Counted from the models' shapes (no convolution run):

# %%
L.step("parameters vs FLOPs vs memory: U-Net and UNet 3+")
from npunet.models.summary import trace_shapes  # noqa: E402


def cost(model, shape):
    """(parameters, multiply-accumulates of all convolutions, bytes kept for backward) for one input."""
    _, calls = trace_shapes(model, shape)
    macs = 0
    for m, inputs, out in calls:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            k = int(np.prod(m.weight.shape[2:]))
            if isinstance(m, nn.Conv2d):
                macs += int(np.prod(out.shape)) * m.weight.shape[1] * k
            else:
                macs += int(np.prod(inputs[0].shape)) * m.weight.shape[1] * k
    kept = npunet.summary(model, shape, print_fn=None)["activation_bytes"]
    return model.num_parameters(), macs, kept


S = 320
rows, flops = [], {}
for name, model in [("U-Net (same, BN, base 64)", UNet(3, 1, 64, padding="same", batch_norm=True)),
                    ("UNet 3+ (64…1024, 5 × 64 = 320)", UNet3Plus(3, 1))]:
    p, macs, kept = cost(model, (1, 3, S, S))
    flops[name] = 2 * macs / 1e9
    rows.append([name, f"{p / 1e6:.2f}M", f"{2 * macs / 1e9:.0f}", f"{kept / 2**20:.0f} MiB"])
table(rows, ["model", "parameters", f"GFLOPs per {S}² image (forward)", "kept for backward"])
stage = 320 * 320 * 9 * S * S * 2 / 1e9
unet_total = flops["U-Net (same, BN, base 64)"]
print(f"UNet 3+'s full-resolution 320 → 320 3x3 conv alone: {stage:.0f} GFLOPs, {stage / unet_total:.1f}x "
      f"U-Net's whole forward ({unet_total:.0f})")

# %% [markdown]
# The same cost as time, on the small models lesson 7 compares (about 480k parameters each,
# padded, BatchNorm): one training step of a batch of 4 at 128².

# %%
import time  # noqa: E402

xb = rng.standard_normal((4, 1, 128, 128)).astype(np.float32)
yb = (rng.random((4, 1, 128, 128)) > 0.5).astype(np.float32)
rows, small_cost = [], []
for name, model in [("U-Net (base 16, depth 3)", UNet(1, 1, 16, depth=3, padding="same", batch_norm=True)),
                    ("UNet 3+ (8…144, cat 8)", UNet3Plus(1, 1, filters=(8, 16, 32, 64, 144), cat_channels=8))]:
    loss, times = losses.BCEWithLogitsLoss(), []
    for rep in range(L.pick(4, 2)):                     # the first step compiles and allocates
        t = time.perf_counter()
        loss.forward(model(xb), yb)
        model.zero_grad()
        model.backward(loss.backward())
        times.append(time.perf_counter() - t)
    _, macs, kept = cost(model, (4, 1, 128, 128))
    rows.append([name, f"{model.num_parameters():,}", f"{2 * macs / 1e9:.2f}", f"{kept / 2**20:.0f} MiB",
                 f"{min(times[1:]) * 1e3:.0f} ms"])
    small_cost.append((macs, kept, min(times[1:])))
table(rows, ["model", "parameters", "GFLOPs (forward)", "kept for backward", "training step, this machine"])
(m_u, k_u, t_u), (m_3, k_3, t_3) = small_cost
print(f"UNet 3+ against U-Net at about the same parameter count: {m_3 / m_u:.1f}x the FLOPs, "
      f"{k_3 / k_u:.1f}x the memory kept for backward, {t_3 / t_u:.1f}x the step time")

# %%
L.finish()
