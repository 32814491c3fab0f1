# %% [markdown]
# # Lesson 5: UNet 3+, full-scale skips
# Each decoder stage takes five maps — shallower encoder maps max-pooled, the same-scale encoder
# map, deeper decoder maps bilinearly upsampled — brings each to 64 channels and fuses the
# 5 × 64 = 320 channels. Then full-scale deep supervision, the classification-guided module, and
# the hybrid focal + MS-SSIM + IoU loss.
# Exercise: `lessons/exercises/09_unet3p_stage.py` (a decoder stage, forward and backward; `python -m npunet check 9`).
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 12 s, `--class` 10 s, `--fast` 4 s.

# %%
import numpy as np

import npunet
from npunet import losses
from npunet.lesson import Lesson, table
from npunet.models import UNet, UNet3Plus, UNetPlusPlus, apply_cgm
from npunet.viz import draw_architecture

L = Lesson("Lesson 5: UNet 3+")
rng = np.random.default_rng(0)
S = L.pick(320, 32)

# %% [markdown]
# ## Step 1: the five branches of decoder stage 4
# h1 pooled by 8, h2 by 4, h3 by 2, h4 as it is, hd5 upsampled by 2: all at 1/8 resolution, 64 ch each.

# %%
L.step("the five branches of one decoder stage")
npunet.manual_seed(0)
net = UNet3Plus(3, 1, deep_supervision=True, cgm=True)
npunet.summary(net, (1, 3, S, S), print_fn=None)
x = rng.standard_normal((1, 3, S, S)).astype(np.float32)
h = {1: net.conv1(x)}
for k in range(2, 6):
    h[k] = getattr(net, f"conv{k}")(getattr(net, f"maxpool{k - 1}")(h[k - 1]))
parts = [net.h1_PT_hd4(h[1]), net.h2_PT_hd4(h[2]), net.h3_PT_hd4(h[3]), net.h4_Cat_hd4(h[4]), net.hd5_UT_hd4(h[5])]
for name, src, p in zip(["h1_PT_hd4 (pool 8)", "h2_PT_hd4 (pool 4)", "h3_PT_hd4 (pool 2)", "h4_Cat_hd4 (same scale)",
                         "hd5_UT_hd4 (bilinear x2)"], [h[1], h[2], h[3], h[4], h[5]], parts):
    print(f"{name:26s} {str(src.shape):22s} -> {p.shape}")
hd4 = net.hd4(*parts)
print("concat 5 x 64 = 320 -> 3x3 conv 320 -> 320:", hd4.shape)

# %% [markdown]
# ## Step 2: the stage's backward, by hand
# The mirror image of Step 1. The fuse block's conv + BN + ReLU goes back first (lesson 1, steps 4
# and 7) and gives d(concat), (N, 5·cat_channels, h, w); the concatenation's backward cuts it into the
# five blocks; each block goes back through its branch's conv + BN + ReLU and then its resampling:
# max-pool routes to the argmax, bilinear up-sampling multiplies by the transposed matrices, the
# same-scale branch passes it on. In the whole network h1 also feeds hd3, hd2 and hd1, so its
# gradient is the **sum** over the stages it feeds: the `dh[k] = dh.get(k, 0) + ...` lines of
# `UNet3Plus.backward`. Written out for a small float64 UNet 3+ and checked with finite differences.

# %%
L.step("the decoder stage's backward, by hand")
m = UNet3Plus(1, 1, filters=(2, 3, 4, 5, 6), cat_channels=2).to(np.float64)
branches = [m.h1_PT_hd4, m.h2_PT_hd4, m.h3_PT_hd4, m.h4_Cat_hd4, m.hd5_UT_hd4]


def stage(h1, h2, h3, h4, h5):                                 # relu(bn(conv(...))) written out
    parts = [b.relu(b.bn(b.conv(b.resample(a)))) for b, a in zip(branches, (h1, h2, h3, h4, h5))]
    return m.hd4.relu(m.hd4.bn(m.hd4.conv(m.hd4.cat(*parts))))  # (N, 5*2, 2, 2)


def stage_backward(g):
    f = m.hd4
    d_cat = f.conv.backward(f.bn.backward(f.relu.backward(g)))  # the fuse block: (N, 10, 2, 2)
    d_parts = f.cat.backward(d_cat)                           # the concat's backward: five (N, 2, 2, 2)
    return [b.resample.backward(b.conv.backward(b.bn.backward(b.relu.backward(d))))  # each branch, mirrored
            for b, d in zip(branches, d_parts)]


hs = [rng.standard_normal((2, c, 16 >> k, 16 >> k)) for k, c in enumerate((2, 3, 4, 5, 6))]
print("stage 4 of a small UNet 3+:", [a.shape[2:] for a in hs], "->", stage(*hs).shape,
      "| hand-written backward vs central differences:",
      npunet.gradcheck_fn(stage, stage_backward, hs, max_per_tensor=L.pick(40, 10)))

# %% [markdown]
# ## Step 3: the whole network and full-scale deep supervision
# Heads on hd1…hd4 (320 ch) and on the bottleneck (1024 ch), each upsampled to full size.

# %%
L.step("full-scale deep supervision")
npunet.summary(net, (1, 3, S, S))
draw_architecture(UNet3Plus(3, 1, deep_supervision=True), (1, 3, 256, 256), L.fig("unet3plus_architecture.png"))
seg, cls = net(x)
print("training outputs:", [s.shape for s in seg], "classifier", cls.shape)

# %% [markdown]
# ## Step 4: the classification-guided module
# The classifier says "organ present?" (argmax of 2 sigmoid outputs). Multiplying the segmentation
# *probabilities* by that 0/1 decision gives 0 where the organ is absent. The authors' code
# multiplies the *logits*, and sigmoid(0) = 0.5: an absent organ becomes a 50% map everywhere.

# %%
L.step("CGM: probabilities, not logits")
logits = rng.standard_normal((2, 1, 4, 4)) * 3
decision = np.array([[0.9, 0.1], [0.1, 0.9]])  # image 0: absent, image 1: present
p_ok, p_authors = apply_cgm(logits, decision), apply_cgm(logits, decision, multiply="logits")
print("absent organ, probabilities multiplied: max", p_ok[0].max(), "| logits multiplied: values", np.unique(p_authors[0]))

# %% [markdown]
# Three more things to know before using CGM:
# 1. **The decision passes no gradient.** argmax is flat almost everywhere, so nothing the
#    segmentation loss says reaches the classifier through the gate. The classifier must be trained by
#    its own loss: BCE between its two outputs and the image-level label "mask not empty". The
#    authors' code computes `cls` but never returns it, so there the classifier cannot be trained at
#    all; npunet returns `(seg, cls)` in training so that its BCE can be added.
# 2. **A wrong "absent" wipes out a real organ.** The gate multiplies by 0 or 1: one wrong decision
#    erases a perfect segmentation, and no pixel-level evidence can overrule it.
# 3. **npunet's eval output changes kind with `cgm=True`:** without CGM, `model.eval()(x)` returns
#    logits; with CGM it returns the gated *probabilities* sigmoid(seg)·decision. Threshold at 0.5,
#    not at 0.

# %%
gate = UNet3Plus(1, 1, filters=(4, 8, 16, 32, 64), cat_channels=4, cgm=True).to(np.float64)
xg = rng.standard_normal((2, 1, 32, 32))
seg_out, cls_out = gate(xg)                                        # training mode: (seg, cls)
gate.zero_grad()
gate.backward((np.ones_like(seg_out), np.zeros_like(cls_out)))     # a gradient on the segmentation only
cls_w = gate.cls[1].weight.grad
print("1. segmentation gradient only -> classifier weight gradient:", float(np.abs(cls_w).max()),
      "(zero: it needs its own BCE on 'mask not empty')")
y_img = np.array([[0.0, 1.0], [0.0, 1.0]])                         # both images: organ present
seg_out, cls_out = gate(xg)                                        # a fresh forward for the second backward
cls_grad = (cls_out - y_img) / (cls_out * (1 - cls_out)) / cls_out.size   # d mean BCE(p, y) / dp
gate.zero_grad()
gate.backward((np.zeros_like(seg_out), cls_grad))
print("   with BCE on the classifier's output:", f"{float(np.abs(gate.cls[1].weight.grad).max()):.2e}")
perfect = np.full((1, 1, 4, 4), 5.0)                               # a confident, correct segmentation
print("2. a wrong 'absent' on a perfect prediction: max probability",
      apply_cgm(perfect, np.array([[0.6, 0.4]])).max())
gate.eval()
gate.cls[1].bias.data = np.array([-5.0, 5.0])                      # make the classifier say "present"
out = gate(xg)
print("3. eval output with cgm=True (organ present) lies in", f"[{out.min():.3f}, {out.max():.3f}]:",
      "probabilities, not logits")

# %% [markdown]
# Deep supervision at inference: with `deep_supervision=True` UNet 3+ in eval returns d1, the
# full-resolution head, only ("fast mode"). U-Net++ (lesson 4) instead returns the mean of its heads'
# *logits* in eval; the U-Net++ paper's "accurate mode" averages the heads' *sigmoid outputs*. The
# two averages differ (the mean of logits is not the logit of the mean probability), and the coarse
# heads can pull the average down: lesson 11 measures both rules.

# %% [markdown]
# ## Step 5: the hybrid loss
# focal + MS-SSIM + IoU per head (5 scales need images larger than 160 px; fewer scales otherwise).

# %%
L.step("focal + MS-SSIM + IoU")
y = np.zeros((1, 1, S, S), np.float32)
y[..., S // 4:3 * S // 4, S // 4:3 * S // 4] = 1
hybrid = losses.CombinedLoss.unet3plus(ms_ssim_scales=5 if S > 160 else 2)
ds = losses.DeepSupervisionLoss(hybrid)
print("hybrid loss over 5 heads:", round(ds.forward(seg, y), 4), "terms of the last head:",
      {k: round(v, 4) for k, v in hybrid.last.items()})

# %% [markdown]
# ## Step 6: parameters, side by side with the papers
# The UNet 3+ paper's table compares VGG-16-backbone versions (U-Net 39.39M, UNet++ 47.18M,
# UNet 3+ 26.97M); our U-Net and UNet++ follow their own papers' configurations instead.

# %%
L.step("parameter table")
rows = [["U-Net (2015 paper)", f"{UNet(1, 2, 64).num_parameters():,}", "31,030,658"],
        ["UNet++ (authors' config)", f"{UNetPlusPlus(1, 1, batch_norm=False, up_mode='transpose').num_parameters():,}", "9,041,601 (9.04M)"],
        ["UNet++ (PyTorch port, BN)", f"{UNetPlusPlus(3, 1).num_parameters():,}", "9,163,329"],
        ["UNet 3+", f"{UNet3Plus().num_parameters():,}", "26,971,777 (26.97M)"],
        ["UNet 3+ + deep supervision", f"{UNet3Plus(deep_supervision=True).num_parameters():,}", "26,989,637"],
        ["UNet 3+ + DS + CGM", f"{UNet3Plus(deep_supervision=True, cgm=True).num_parameters():,}", "26,991,687"]]
table(rows, ["model", "npunet", "reference"])

# %%
L.finish()
