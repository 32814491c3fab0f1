# %% [markdown]
# # Lesson 6: losses and metrics
# BCE, U-Net's weighted cross-entropy, Dice, IoU, focal and MS-SSIM on the same predictions, with
# their gradients dL/dlogits drawn as pictures: where does each loss push? Then the metrics and the
# empty-mask policy.
# Exercise: `lessons/exercises/07_dice.py` (the Dice loss and its gradient; `python -m npunet check 7`).
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 3 s, `--class` 3 s, `--fast` 2 s.

# %%
import matplotlib.pyplot as plt
import numpy as np

from npunet import losses, metrics
from npunet.data import make_cell_image, weight_map
from npunet.gradcheck import gradcheck_fn
from npunet.lesson import Lesson, table

L = Lesson("Lesson 6: losses and metrics")
S = L.pick(176, 48)

# %% [markdown]
# ## Step 1: one target, one imperfect prediction
# The prediction is the true mask shifted by 2 px, with a missed cell, then blurred (a Gaussian of
# σ = 2 px: soft, uncertain borders) plus a little noise: the typical mistakes of a half-trained net.

# %%
L.step("a target and a prediction")
img, lab, mask = make_cell_image(S, rng=4)
y = mask[None, None].astype(np.float64)
shifted = np.roll(mask, 2, axis=1).astype(np.float64)
shifted[lab == lab.max()] = 0  # one missed cell
g1 = np.exp(-np.arange(-6, 7) ** 2 / (2 * 2.0 ** 2))
g1 /= g1.sum()                                                   # a 13-tap Gaussian, sigma 2 px
blurred = np.apply_along_axis(np.convolve, 0, shifted, g1, mode="same")
blurred = np.apply_along_axis(np.convolve, 1, blurred, g1, mode="same")   # separable: rows, then columns
z = (blurred * 2 - 1) * 4 + np.random.default_rng(0).normal(0, 0.3, shifted.shape)
z = z[None, None]
print("logits", z.shape, "target", y.shape, "foreground fraction", round(float(y.mean()), 3))

# %% [markdown]
# ## Step 2: the losses and their gradients
# Each loss object: forward(z, y) -> float and backward() -> dL/dz (definitions: the docstrings in npunet/losses/).
# BCE gives every pixel the same *weight*, but not the same push: its gradient is (p − y)/M
# (M pixels), growing with the pixel's error, so the wrong pixels already get the largest share.
# U-Net's loss (Ronneberger et al. 2015, eq. 1) is the softmax cross-entropy weighted per pixel by
# the map of eq. 2, so it pushes hardest in the gaps between touching cells. Focal loss multiplies by
# (1 − p_t)^γ, muting the pixels that are already right, and by α_t: with the default α = 0.25
# (torchvision's and the RetinaNet paper's), foreground pixels weigh 0.25 and background 0.75, i.e.
# the (usually minority) foreground is *down*-weighted 3:1, the opposite of class balancing. Dice/IoU
# weigh pixels by the region sums; MS-SSIM pushes along structure (edges) at several scales.

# %%
L.step("values and gradient maps")


class WeightedCE:
    """U-Net's eq. 1 on this 1-logit prediction: two-class logits (0, z) (their softmax is sigmoid(z)),
    the class target, and the eq. 2 weight map of the true cells; dL/dz is the class-1 gradient."""

    def __init__(self):
        self.ce, self.w = losses.CrossEntropyLoss(), weight_map(lab, mask=mask)[None]

    def forward(self, z, y):
        z2 = np.concatenate([np.zeros_like(z), z], axis=1)                      # (1, 2, H, W)
        return self.ce.forward(z2, y[:, 0].astype(np.int64), weight=self.w.astype(z.dtype))

    def backward(self):
        return self.ce.backward()[:, 1:2]                                       # z2[:, 0] is a constant


scales = 5 if S > 160 else 2
cands = [("BCE", losses.BCEWithLogitsLoss()), ("weighted CE (U-Net)", WeightedCE()), ("Dice", losses.DiceLoss()),
         ("IoU", losses.IoULoss()),
         ("focal", losses.FocalLoss()), (f"MS-SSIM ({scales} scales)", losses.MSSSIMLoss(scales=scales))]
fig, ax = plt.subplots(2, 4, figsize=(16, 7.6))
ax = ax.ravel()
im = ax[0].imshow(mask, cmap="gray", vmin=0, vmax=1)    # a colour bar too: every panel the same size
ax[0].set_title("target", fontsize=9); ax[0].axis("off")
fig.colorbar(im, ax=ax[0], fraction=0.046)
im = ax[1].imshow(1 / (1 + np.exp(-z[0, 0])), cmap="gray", vmin=0, vmax=1)
ax[1].set_title("prediction sigmoid(z): shifted, a cell missed, blurred", fontsize=9); ax[1].axis("off")
fig.colorbar(im, ax=ax[1], fraction=0.046)
rows = []
for a, (name, loss) in zip(ax[2:], cands):
    v = loss.forward(z, y)
    g = loss.backward()[0, 0]
    lim = np.percentile(np.abs(g), 99.5)               # a few extreme pixels would wash out the rest
    im = a.imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim)
    a.set_title(f"{name}: dL/dz, L = {v:.3f}", fontsize=9)
    a.axis("off")
    fig.colorbar(im, ax=a, fraction=0.046, extend="both")
    # a scalar over many pixels: h = 1e-4 keeps rounding noise below the 1e-6 tolerance
    err = gradcheck_fn(lambda t: loss.forward(t, y), lambda s: s * loss.backward(), z, eps=1e-4,
                       max_per_tensor=L.pick(40, 10)).max_rel_error
    rows.append([name, f"{v:.4f}", f"{np.abs(g).max():.2e}", f"{err:.1e}"])
fig.suptitle("where each loss pushes: dL/dz (red: lower the logit, blue: raise it; colour clipped at the "
             "99.5th percentile of |dL/dz|)", fontsize=10)
fig.tight_layout()
fig.savefig(L.fig("loss_gradients.png"), dpi=90, bbox_inches="tight")
L.done(fig)
table(rows, ["loss", "value", "max |dL/dz|", "gradcheck"])
print("figure:", L.fig("loss_gradients.png"))

# %% [markdown]
# ## Step 3: two of those backwards, by hand
# U-Net's loss on the logits (0, z): p = softmax = sigmoid(z), L = sum w (-log p_target) / M, so
# dL/dz = w (p - y) / M: the error, weighted by the map. Dice: d = (2I + s) / (Sp + Sy + s) with
# I = sum p y, Sp = sum p, Sy = sum y, L = 1 - d, so dL/dp = -(2y / D - (2I + s) / D^2) with
# D = Sp + Sy + s, and dL/dz = dL/dp · p (1 - p). Every pixel's Dice gradient depends on the sums
# over the whole image: that is why its map is non-zero over whole regions (the pale cell interiors and
# background), not only where the prediction is wrong.

# %%
L.step("weighted cross-entropy and Dice backwards by hand")
p1 = 1 / (1 + np.exp(-z))                                  # (1, 1, H, W)
wmap = weight_map(lab, mask=mask)[None, None]               # (1, 1, H, W)
g_ce = wmap * (p1 - y) / z.size                             # dL/dz, U-Net's eq. 1
wce = WeightedCE()
wce.forward(z, y)
print("weighted CE  dL/dz by hand vs the library:", float(np.abs(g_ce - wce.backward()).max()))
I, Sp, Sy, smooth = (p1 * y).sum(), p1.sum(), y.sum(), 1.0
D = Sp + Sy + smooth
g_dice = -(2 * y / D - (2 * I + smooth) / D ** 2) * p1 * (1 - p1)
dice = losses.DiceLoss(smooth=smooth)
dice.forward(z, y)
print("Dice         dL/dz by hand vs the library:", float(np.abs(g_dice - dice.backward()).max()))

# %% [markdown]
# ## Step 4: metrics from confusion counts
# Dice = 2TP / (2TP + FP + FN) (= F1), IoU = TP / (TP + FP + FN). Policy: a class absent from both
# prediction and truth scores 1.

# %%
L.step("metrics")
pred = (z[0, 0] > 0).astype(int)
s = metrics.binary_scores(pred, mask)
table([[k, f"{v:.3f}"] for k, v in s.items()], ["metric", "value"])
print("instance F1@0.5:", round(metrics.instance_f1(pred, lab)["f1"], 3))
print("both empty ->", metrics.binary_scores(np.zeros((4, 4), int), np.zeros((4, 4), int))["dice"])

# %%
L.finish()
