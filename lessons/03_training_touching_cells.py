# %% [markdown]
# # Lesson 3: training U-Net on touching cells
# The U-Net paper's two training tricks, seen on synthetic microscopy: the border weight map that
# forces the net to learn the thin gaps between touching cells, and elastic deformation. Then we
# train with and without the weight map and judge the results with the right metrics.
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 4 min, `--class` 1 min 20 s, `--fast` 6 s.

# %%
import matplotlib.pyplot as plt
import numpy as np

from npunet import metrics
from npunet.data import elastic, make_cells, make_noise_task, weight_map
from npunet.demo import run_demo
from npunet.lesson import Lesson, table

L = Lesson("Lesson 3: training U-Net on touching cells")
rng = np.random.default_rng(0)

# %% [markdown]
# ## Step 1: the data and the weight map
# w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / 2σ²), w0 = 10, σ = 5 (the paper's eq. 2): d1, d2 are
# the distances to the nearest and second-nearest cell (exact Euclidean distance transforms), w_c
# balances the two classes. Where two cells touch, the mask cuts a thin gap between them; the map is
# computed from that segmentation (`weight_map(labels, mask=mask)`: the instance labels restricted to
# the mask), so a gap pixel is background with d1 + d2 of 2-3 px and weighs about w0 + w_c, while
# background far from the cells keeps ≈ w_c. That is what forces the net to learn the gaps.

# %%
L.step("synthetic cells and the weight map")
imgs, labels, masks = make_cells(2, 128, seed=3)
w = weight_map(labels[0], mask=masks[0])
gap = (labels[0] > 0) & (masks[0] == 0)                    # cut between touching cells
print(f"image {imgs.shape}, {labels[0].max()} cells; weight map min {w.min():.2f}, max {w.max():.2f}")
print(f"{gap.sum()} gap pixels: weight median {np.median(w[gap]):.2f} (min {w[gap].min():.2f}); "
      f"cell pixels {np.median(w[masks[0] > 0]):.2f}; far background {np.median(w[(labels[0] == 0) & (w < 2)]):.2f}")
wrong = weight_map(labels[0])                              # the labels alone call the gaps foreground
print(f"computed from the labels alone the same gap pixels would weigh {np.median(wrong[gap]):.2f}: "
      f"the border term would land on the outer background instead")
ys, xs = np.nonzero(gap)
cy, cx = int(np.median(ys)), int(np.median(xs))            # zoom on a touching pair
zy, zx = slice(max(cy - 16, 0), cy + 16), slice(max(cx - 16, 0), cx + 16)
fig, ax = plt.subplots(1, 5, figsize=(17, 3.6))
for a, im, t in zip(ax, [imgs[0, 0], labels[0] % 20, masks[0], w, w[zy, zx]],
                    ["image", "instances", "mask (gaps removed)", "weight map", "weight map, zoom on a gap"]):
    a.imshow(im, cmap="gray" if t != "instances" else "tab20", vmin=0 if "weight" in t else None,
             vmax=float(w.max()) if "weight" in t else None)
    a.set_title(t)
    a.axis("off")
ax[3].add_patch(plt.Rectangle((zx.start, zy.start), 32, 32, fill=False, color="red"))
fig.colorbar(ax[4].images[0], ax=ax[4], fraction=0.046)
fig.savefig(L.fig("weight_map.png"), dpi=90, bbox_inches="tight")
L.done(fig)

# %% [markdown]
# ## Step 2: elastic deformation
# Random displacement vectors on a coarse 3x3 grid (std 10 px), interpolated bicubically to every
# pixel; the image is resampled bicubically, the mask with nearest neighbour (it must stay a mask).

# %%
L.step("elastic deformation")
fig, ax = plt.subplots(2, 4, figsize=(13, 6.5))
for k in range(4):
    im, lab = elastic(imgs[0], masks[0][None].astype(np.float32), np.random.default_rng(k))
    ax[0, k].imshow(im[0], cmap="gray")
    ax[1, k].imshow(lab[0], cmap="gray")
    ax[0, k].set_title("original" if k == 0 else f"deformation {k}")
    ax[0, k].axis("off"); ax[1, k].axis("off")
    if k == 0:
        ax[0, 0].images[0].set_data(imgs[0, 0]); ax[1, 0].images[0].set_data(masks[0])
fig.savefig(L.fig("elastic_deformation.png"), dpi=90, bbox_inches="tight")
L.done(fig)
print("mask values after deformation stay", np.unique(lab).tolist())

# %% [markdown]
# ## Step 3: why 99% pixel accuracy means nothing
# A popular tutorial pattern (for example the blog post "이미지 분할의 혁명 U-Net 아키텍처 탐구", TIL,
# 14 July 2024) trains on uniform noise with "mask = pixels above a threshold" and reports about 99 %
# pixel accuracy. A model that predicts background everywhere is 99% accurate there, and useless:
# Dice and recall are 0.

# %%
L.step("accuracy on the trivial noise task")
x, m = make_noise_task(8, 64)
s = metrics.binary_scores(np.zeros_like(m), m)
print(f"predict nothing: pixel accuracy {s['accuracy']:.3f}, Dice {s['dice']:.3f}, IoU {s['iou']:.3f}, recall {s['recall']:.3f}")

# %% [markdown]
# ## Step 4: the training loop, written out
# Everything the Trainer does comes down to four lines per step: forward, the loss, backward, the
# optimizer's update. Here they are with the paper's own recipe (Ronneberger et al. 2015, section 3):
# SGD with momentum 0.99 ("a large number of the previously seen training samples determine the
# update"), batch 1 with large tiles rather than large batches, weights drawn from N(0, 2/N_in)
# (N_in = the incoming nodes of one neuron, C_in·3·3 for a 3x3 conv), dropout at the end of the
# contracting path, and the loss of eq. 1: softmax cross-entropy weighted by the map of eq. 2.
#
# N_in needs care for the 2x2 up-convolution. Its weight is (C_in, C_out, 2, 2), so the common
# shortcut `prod(shape[1:])` (PyTorch's `kaiming_normal_` computes its fan-in the same way) gives
# C_out·4 = 2·C_in. But with kernel = stride = 2 the taps never overlap: each output pixel receives
# exactly one tap from each input channel, C_in inputs. The shortcut makes that layer's std √2 too
# small. We compute N_in per layer type: C_in·kh·kw for a conv, C_in·(kh/s)·(kw/s) for an up-conv.
# `net.backward` returns the gradient w.r.t. the input and leaves every parameter's gradient in
# `p.grad`; `zero_grad` first, because gradients add up (exactly as they add at the skips).

# %%
L.step("forward -> weighted cross-entropy -> backward -> SGD step, by hand")
import npunet  # noqa: E402
from npunet import init, losses, optim  # noqa: E402
from npunet.models import UNet  # noqa: E402
n_img, size, n_steps = L.pick((16, 128, 120), (4, 32, 6))
x_tr, lab_tr, m_tr = make_cells(n_img, size, seed=7)
w_tr = np.stack([weight_map(lab, mask=m) for lab, m in zip(lab_tr, m_tr)]).astype(np.float32)
order = rng.permutation(n_steps) % n_img


def fan_in(name, shape):
    """N_in of He et al.: the inputs one output unit sees."""
    if name.endswith("up.weight"):                          # ConvTranspose2d (C_in, C_out, 2, 2), stride 2
        return shape[0] * (shape[2] // 2) * (shape[3] // 2)  # one tap per input channel: C_in
    return int(np.prod(shape[1:]))                           # Conv2d (C_out, C_in, kh, kw): C_in·kh·kw


def train_by_hand(momentum, seed=0):
    """The paper's loop, batch 1; returns the net and its loss per step."""
    npunet.manual_seed(seed)
    net = UNet(1, 2, base_channels=8, depth=3, padding="same", dropout=0.5)
    for name, p in net.named_parameters():                   # He initialisation, N(0, 2 / N_in)
        if p.data.ndim == 4:
            p.data = init.kaiming_normal(p.data.shape, fan_in(name, p.data.shape))
    loss = losses.CrossEntropyLoss()                         # eq. 1 with the weight map
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=momentum)
    history = []
    for step, i in enumerate(order):
        logits = net(x_tr[i:i + 1])                          # forward: (1, 2, H, W)
        value = loss.forward(logits, m_tr[i:i + 1], weight=w_tr[i:i + 1])
        net.zero_grad()
        net.backward(loss.backward())                        # every p.grad filled in
        opt.step()                                           # p -= lr * (momentum buffer)
        history.append(value)
    return net, history


print("fan-in of the first up-conv:", fan_in("up1.up.weight", (64, 32, 2, 2)), "(C_in); the shortcut gives",
      int(np.prod((32, 2, 2))))
net, history = train_by_hand(0.99)
k = max(1, n_steps // 6)
print("weighted cross-entropy, mean of each sixth of the run:",
      [round(float(np.mean(history[j:j + k])), 3) for j in range(0, n_steps, k)])
net.eval()
pred = np.argmax(net(x_tr[:4]), axis=1)
print(f"on 4 of its training images after {n_steps} steps of batch 1: Dice "
      f"{metrics.binary_scores(pred, m_tr[:4])['dice']:.3f}")

# %% [markdown]
# Is momentum 0.99 slow to start? Change that one variable, nothing else (same seed, same images in
# the same order, same learning rate), and compare the loss over the same steps.

# %%
_, history_09 = train_by_hand(0.9)
last = max(1, n_steps // 3)
m99, m90 = float(np.mean(history[-last:])), float(np.mean(history_09[-last:]))
f99, f90 = float(np.mean(history[:last])), float(np.mean(history_09[:last]))
table([["0.99", f"{f99:.3f}", f"{m99:.3f}"], ["0.9", f"{f90:.3f}", f"{m90:.3f}"]],
      ["momentum", f"mean loss, first {last} steps", f"mean loss, last {last} steps"])
print(f"over these {n_steps} steps momentum 0.99 ends {'lower' if m99 < m90 else 'higher'} than 0.9 "
      f"({m99:.3f} vs {m90:.3f}); one seed and one learning rate, so read it as this run's result only")

# %% [markdown]
# ## Step 5: train with and without the weight map, over several seeds
# The same small U-Net (padded, BatchNorm, base 16, depth 3), Adam, 48 images, elastic augmentation,
# trained with and without the map from several seeds (three at full size, two in `--class`, one in
# `--fast`; weights, data and data order change with the seed). Pixel Dice hardly tells the two apart: the gaps are a tiny share of the pixels. Two numbers
# look at the gaps themselves: **gap recall**, the share of gap pixels (cut between touching cells)
# predicted as background, and **instance F1** (connected components matched to true cells at
# IoU ≥ 0.5), which drops when two cells merge. The ± is the spread across seeds: a difference
# smaller than it is not an effect of the map (Step 8 is about exactly that). A net that predicts
# background everywhere would have gap recall 1: read it together with recall and instance F1.
# Better still, compare gap recall at the *same* overall recall: a net can cut more gaps simply by
# predicting less foreground everywhere. Below, each run's foreground threshold is moved until its
# recall on all cell pixels equals a common value, and gap recall is read there.

# %%
L.step("train with and without the weight map, over several seeds")
from npunet.train import predict_masks  # noqa: E402
epochs, n_train = L.pick((20, 48), (1, 8), klass=(8, 48))
seeds = L.pick((0, 1, 2), (0,), klass=(0, 1))
runs = {True: [], False: []}
for seed in seeds:
    for wm in (True, False):
        r = run_demo(epochs=epochs, n_train=n_train, seed=seed, weight_map=wm, progress=False, trace=False,
                     out=L.scratch("lesson3"), log=lambda *a: None)
        xv, mv, lv = r["val"]
        r["pred"] = predict_masks(r["model"], xv)
        gap = (lv > 0) & (mv == 0)                               # pixels cut between touching cells
        r["gap_recall"] = float((r["pred"][gap] == 0).mean())
        z = r["model"].eval()(xv)                                 # (N, 2, H, W) logits
        r["prob"] = 1 / (1 + np.exp(z[:, 0] - z[:, 1]))             # softmax P(cell)
        runs[wm].append(r)
        print(f"seed {seed}, weight map {'on ' if wm else 'off'}: Dice {r['metrics']['dice']:.3f}, "
              f"gap recall {r['gap_recall']:.3f}, instance F1 {r['metrics']['instance_f1']:.3f}, {r['seconds']:.0f} s")


def mean_sd(rs, get):
    """Mean and sample standard deviation (ddof=1) across seeds, with the range."""
    v = np.array([get(r) for r in rs])
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f} ({v.min():.3f}–{v.max():.3f})" if len(v) > 1 else f"{v[0]:.3f}"


table([[("with" if wm else "without") + " weight map"] +
       [mean_sd(rs, lambda r, k=k: r["metrics"][k]) for k in ("dice", "precision", "recall")] +
       [mean_sd(rs, lambda r: r["gap_recall"]), mean_sd(rs, lambda r: r["metrics"]["instance_f1"])]
       for wm, rs in runs.items()], ["run", "Dice", "precision", "recall", "gap recall", "instance F1"])
print(f"({len(seeds)} seed(s); ± is the sample standard deviation across seeds, the range in brackets)")


def gap_recall_at(r, target_recall):
    """Gap recall when r's threshold on P(cell) is set so that recall on cell pixels = target_recall."""
    xv, mv, lv = r["val"]
    t = np.quantile(r["prob"][mv > 0], 1 - target_recall)      # that share of cell pixels lies above t
    gap = (lv > 0) & (mv == 0)
    return float((r["prob"][gap] <= t).mean())


common = min(r["metrics"]["recall"] for rs in runs.values() for r in rs)   # reachable by every run
if common < 0.05:
    print(f"a run reaches only recall {common:.3f}: too little foreground to compare gap recall at equal recall")
else:
    table([[("with" if wm else "without") + " weight map", mean_sd(rs, lambda r: gap_recall_at(r, common))]
          for wm, rs in runs.items()], ["run", f"gap recall at overall recall {common:.3f}"])
    with_m = np.mean([gap_recall_at(r, common) for r in runs[True]])
    without_m = np.mean([gap_recall_at(r, common) for r in runs[False]])
    print(f"at equal overall recall ({common:.3f}) the map {'still cuts more' if with_m > without_m else 'cuts no more'}"
          f" gaps: gap recall {with_m:.3f} with it vs {without_m:.3f} without")
results = {wm: rs[0] for wm, rs in runs.items()}                 # the first seed's runs, for the figures

# %% [markdown]
# ## Step 6: training curves, predictions, and the gaps up close
# The curves and predictions of the first seed's run with the weight map (errors in red: false
# positives, blue: false negatives), then three touching pairs of a held-out image zoomed in:
# the truth, the prediction with the map and without it. A gap predicted as cell merges two cells.

# %%
L.step("curves, predictions and touching pairs")
import shutil  # noqa: E402
for name in ("training_curves.png", "predictions.png"):
    shutil.copy(f"{results[True]['out']}/{name}", L.fig(name))
    print("figure:", L.fig(name))
xv, mv, lv = results[True]["val"]
gaps = (lv > 0) & (mv == 0)
k = int(np.argmax(gaps.reshape(len(gaps), -1).sum(axis=1)))      # the held-out image with most gap pixels
ys, xs = np.nonzero(gaps[k])
centres = []
for y, x in sorted(zip(ys, xs), key=lambda p: (p[0] * 7919 + p[1] * 104729) % 9973):   # spread-out picks
    if all(abs(y - cy) > 20 or abs(x - cx) > 20 for cy, cx in centres):
        centres.append((y, x))
    if len(centres) == 3:
        break
H = gaps.shape[1]
fig, ax = plt.subplots(len(centres), 4, figsize=(9, 2.4 * len(centres)), squeeze=False)
for row, (cy, cx) in enumerate(centres):
    y0, x0 = min(max(cy - 12, 0), H - 24), min(max(cx - 12, 0), H - 24)
    win = (slice(y0, y0 + 24), slice(x0, x0 + 24))
    panels = [(xv[k, 0][win], "image", "gray"), (mv[k][win], "truth (gaps cut)", "gray"),
              (results[True]["pred"][k][win], "with weight map", "gray"),
              (results[False]["pred"][k][win], "without", "gray")]
    for c, (im, title, cmap) in enumerate(panels):
        ax[row, c].imshow(im, cmap=cmap, interpolation="nearest")
        ax[row, c].contour(gaps[k][win], levels=[0.5], colors="red", linewidths=0.8)
        ax[row, c].set_xticks([]); ax[row, c].set_yticks([])
        if row == 0:
            ax[row, c].set_title(title, fontsize=9)
fig.suptitle("touching pairs, 24x24 px; red outline: the gap pixels", fontsize=9)
fig.tight_layout()
fig.savefig(L.fig("weight_map_effect.png"), dpi=90, bbox_inches="tight")
L.done(fig)
print("figure:", L.fig("weight_map_effect.png"))

# %% [markdown]
# ## Step 7: Dice vs IoU
# For one confusion matrix (one mask pair, or all pixels pooled), IoU = D / (2 − D), a monotone
# function: on pooled counts the two rank models identically, and IoU is always the smaller. That
# stops being true for **per-image means** (the DSB 2018 metric averages per image): IoU = D/(2−D)
# is convex, so it rewards uneven results more than Dice does, and two models can swap places. And as
# *losses* the two differ too: their gradients are not proportional (below).

# %%
L.step("Dice vs IoU")
d = np.linspace(0, 1, 101)
for v in results.values():
    assert abs(v["metrics"]["iou"] - v["metrics"]["dice"] / (2 - v["metrics"]["dice"])) < 1e-9
print("measured IoU equals Dice / (2 - Dice) for both runs")
fig, ax = plt.subplots(figsize=(4, 4))
ax.plot(d, d / (2 - d), label="IoU = D / (2 − D)")
ax.plot(d, d, ":", color="gray", label="IoU = Dice")
ax.set_xlabel("Dice"); ax.set_ylabel("IoU"); ax.legend()
fig.savefig(L.fig("dice_vs_iou.png"), dpi=90, bbox_inches="tight")
L.done(fig)

# Two models on the same two images. Truth: a 50 px wide band; prediction: the band shifted sideways.
truth = np.zeros((2, 50, 150), np.uint8)
truth[:, :, 50:100] = 1


def shifted(shift):
    p = np.zeros((50, 150), np.uint8)
    p[:, 50 + shift:100 + shift] = 1
    return p


models = {"A (perfect, then poor)": np.stack([shifted(0), shifted(40)]),
          "B (even)": np.stack([shifted(19), shifted(19)])}
rows, mean_d, mean_j = [], {}, {}
for name, pred in models.items():
    per = [metrics.binary_scores(pred[i], truth[i]) for i in range(2)]
    mean_d[name], mean_j[name] = np.mean([q["dice"] for q in per]), np.mean([q["iou"] for q in per])
    rows.append([name, ", ".join(f"{q['dice']:.2f}" for q in per), f"{mean_d[name]:.3f}", f"{mean_j[name]:.3f}"])
table(rows, ["model", "Dice per image", "mean Dice", "mean IoU"])
print("per-image mean Dice prefers", max(mean_d, key=mean_d.get), "| per-image mean IoU prefers",
      max(mean_j, key=mean_j.get))
y = (np.random.default_rng(4).random((1, 1, 16, 16)) > 0.6).astype(np.float64)
rows = []
for quality, shift in [("poor", -3.0), ("middling", 0.0), ("good", 3.0)]:
    z = np.random.default_rng(3).normal(0, 1, y.shape) + shift * (2 * y - 1)   # logits leaning to the truth
    gd, gj = losses.DiceLoss(), losses.IoULoss()
    dice_loss, iou_loss = gd.forward(z, y), gj.forward(z, y)
    ratio = gj.backward() / gd.backward()
    rows.append([quality, f"{1 - dice_loss:.3f}", f"{ratio.min():.2f} … {ratio.max():.2f}"])
table(rows, ["prediction", "soft Dice", "dIoU/dz ÷ dDice/dz over the pixels"])
print("within one prediction the two gradients are nearly proportional, but the factor moves with the "
      "prediction's quality: swapping Dice for IoU changes how hard the loss pushes as training proceeds")

# %% [markdown]
# ## Step 8: choosing settings honestly: K-fold cross-validation
# One held-out split is one roll of the dice: with a few dozen images, which images land in the
# validation set moves Dice by several points. K-fold cross-validation trains K times, each time
# validating on another fold, and reports the mean and the spread. The workflow:
# 1. split off a **test set first** (stratified by how much foreground each image has). The search
#    never sees it: every look at it while choosing settings leaks it into the choice, and its
#    score would stop being an estimate of new data.
# 2. for each setting of the grid, train on K − 1 folds and validate on the remaining one;
# 3. choose by the mean validation **Dice**, not pixel accuracy: predicting "background everywhere"
#    already scores the background share as accuracy (printed below for this test set; ~99 % on the
#    noise task of Step 3), so accuracy rewards timid models;
# 4. retrain the chosen setting on all training data and evaluate it **once** on the test set.
# The same from the command line: `npunet cv --config cfg.json --folds 3 --grid lr=1e-3,3e-3`.

# %%
L.step("3-fold cross-validation of two learning rates")
from npunet.cv import cross_validate, format_table  # noqa: E402
search = L.pick(dict(n_train=30, n_val=6, size=96, epochs=6, model_config=dict(base_channels=8, depth=3)),
                dict(n_train=10, n_val=2, size=32, epochs=1, model_config=dict(base_channels=2, depth=2)))
cv_out = L.scratch("lesson3_cv")
cvr = cross_validate(dict(search, batch_size=4, out=cv_out), folds=3, grid={"lr": [1e-3, 3e-3]},
                     progress=False, log=None)
print(format_table(cvr))
def readable(setting):
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())


for s in cvr["settings"]:
    print(f"{readable(s['setting'])}: Dice per fold {[round(f['metrics']['dice'], 3) for f in s['folds']]}")
print(f"chosen: {readable(cvr['best']['setting'])}; test set, seen once: Dice {cvr['test']['dice']:.3f}, "
      f"pixel accuracy {cvr['test']['accuracy']:.3f}")
pool_masks = make_cells(search["n_train"] + search["n_val"], search["size"], seed=0)[2]  # the images cv used
background = 1 - pool_masks[cvr["split"]["test"]].mean()
print(f"'background everywhere' would score pixel accuracy {background:.3f} on the same test set (and Dice 0)")
shutil.copy(cvr["figures"]["dice"], L.fig("cv_dice.png"))
print("figure:", L.fig("cv_dice.png"))

# %% [markdown]
# The ± is the spread across folds: when two settings' means differ by less than their spreads,
# this data cannot tell them apart, and the simpler or cheaper one is the better choice. The test
# score comes last and is reported as it is, even when it disappoints.

# %% [markdown]
# ## Step 9: your own images, from a folder of files
# Everything above trained on arrays. With your own data you start from files: an `images/` folder
# and a `masks/` folder whose files pair by name. Here the lesson writes its cells as PNG files (the
# masks as 0/255 PNGs, as most tools save them) and trains with exactly the command a user types,
# `npunet train --data FOLDER --out RUN`, then predicts a folder of new images with
# `npunet predict --checkpoint RUN/checkpoint.npz --input NEW --out PRED --overlay`. Read what it
# prints: the channels, the mask values and which one is the foreground, the validation images, the
# batch size and the normalisation it chose, all stored in the checkpoint so `predict` repeats them.

# %%
L.step("train from a folder of PNG files, predict a folder")
import os  # noqa: E402
from PIL import Image  # noqa: E402
from npunet.cli import main as npunet_cli  # noqa: E402
n_files, side, file_epochs = L.pick((24, 96, 8), (6, 32, 1), klass=(16, 64, 4))
folder = L.scratch("lesson3_folder")
fx, _, fm = make_cells(n_files + 2, side, seed=11)
for sub in ("images", "masks", "new"):
    os.makedirs(os.path.join(folder, sub))
for i in range(n_files + 2):
    pic = np.clip(fx[i, 0] * 255, 0, 255).astype(np.uint8)                 # an 8-bit grey PNG, as a camera saves
    if i < n_files:
        Image.fromarray(pic).save(os.path.join(folder, "images", f"cell{i:02d}.png"))
        Image.fromarray(fm[i] * 255).save(os.path.join(folder, "masks", f"cell{i:02d}.png"))
    else:
        Image.fromarray(pic).save(os.path.join(folder, "new", f"new{i - n_files}.png"))
run = os.path.join(folder, "run")
npunet_cli(["train", "--data", folder, "--out", run, "--epochs", str(file_epochs)])
npunet_cli(["predict", "--checkpoint", os.path.join(run, "checkpoint.npz"), "--input", os.path.join(folder, "new"),
            "--out", os.path.join(folder, "pred"), "--overlay", "--quiet"])
fig, ax = plt.subplots(1, 2, figsize=(7, 3.6))
ax[0].imshow(Image.open(os.path.join(folder, "new", "new0.png")), cmap="gray")
ax[0].set_title("new0.png")
ax[1].imshow(Image.open(os.path.join(folder, "pred", "new0_overlay.png")))
ax[1].set_title("pred/new0_overlay.png")
for a in ax:
    a.axis("off")
fig.savefig(L.fig("folder_prediction.png"), dpi=90, bbox_inches="tight")
L.done(fig)
print("the mask files:", sorted(os.listdir(os.path.join(folder, "pred"))))

# %%
L.finish()
