# %% [markdown]
# # Lesson 10: the U-Net Explainer, a trained U-Net to click through
# One HTML file that opens offline in any browser: from the U-Net figure down to the products of one
# 3x3 window of the trained weights, and back up through the gradients of the loss, after CNN Explainer
# (Wang et al., IEEE VIS 2020). We train a small U-Net on touching cells, keep its weights after a few
# epochs for the training slider, write the page, and check in Python that its numbers are the model's.
# The same from the command line: `npunet explain --model unet --image synthetic --out explain.html`
# (or `--checkpoint RUN/checkpoint.npz --image cell.png`).
# Run time on a 2-core CPU shared with other jobs (Numba's cache warm): full 7 min, `--class` 3 min, `--fast` 20 s.

# %%
import base64
import json
import os

import numpy as np

from npunet.demo import demo_config
from npunet.lesson import Lesson
from npunet.runs import build_run
from npunet.train import evaluate
from npunet.viz import explain

L = Lesson("Lesson 10: the U-Net Explainer")

# %% [markdown]
# ## Step 1: a U-Net trained on touching cells, with snapshots
# The classroom demo's U-Net (padded 3x3 convs, batch norm, 16 to 128 channels) trained with the
# U-Net weight map. We keep its weights after a few epochs: the page's training slider shows how the
# prediction and the features of any block change while it learns.

# %%
L.step("train the demo U-Net, keeping snapshots")
epochs = L.pick(20, 1, klass=6)
cfg = demo_config("unet", epochs=epochs, out=L.scratch("lesson10"), n_train=L.pick(48, 4, klass=24),
                  batch_size=L.pick(8, 2))
cfg["size"] = L.pick(128, 32)
if L.fast:
    cfg["model_config"] = dict(cfg["model_config"], base_channels=4, depth=2)
trainer = build_run(cfg, progress=False, log=None)
keep = sorted({1, max(1, epochs // 4), max(1, epochs // 2), epochs})
snapshots = []
for e in keep:
    trainer.fit(e)
    snapshots.append((f"epoch {e}", trainer.model.state_dict()))
model = trainer.model
xv, mv, lv = trainer.val_data
r = evaluate(model, xv, mv, lv)
print(f"{type(model).__name__}, {model.num_parameters():,} parameters, {epochs} epochs: held-out Dice {r['dice']:.3f}; "
      f"snapshots after epochs {keep}")

# %% [markdown]
# ## Step 2: write the page
# `explain` runs the model on one held-out image with every layer call recorded, computes the
# weighted cross-entropy against the ground truth and runs `model.backward`, recording the gradient
# every layer receives and passes on. The page is built from that record: the blocks are the model's
# own children, the overview is `draw_architecture` as SVG, images are PNGs inside the file.

# %%
L.step("write the explainer page")
page = L.fig("explainer_unet.html")
info = explain(model, xv[0], page, mask=mv[0], labels=lv[0], snapshots=snapshots,
               note=f"U-Net trained {epochs} epochs on synthetic touching cells (lesson 10).")
print(f"{page}: {info['bytes'] / 1e6:.1f} MB, blocks {', '.join(info['blocks'])}")

# %% [markdown]
# ## Step 3: what to click
# Open the file in a browser (double-click it; no server, nothing is downloaded). Then:
# 1. **Overview**: the input, the prediction, the ground truth and the error map (red: false
#    positives, blue: false negatives: mostly in the gaps between touching cells). Click the box
#    `down1` in the figure.
# 2. **Block**: `down1`'s shapes, its parameters, its receptive field (5x5 pixels after two 3x3
#    convolutions) and all 16 feature maps. Click `up3` on the left: the skip copied from `down1`
#    beside the up-sampled map (with valid convolutions the dashed box shows the crop).
# 3. **One operation**: pick `conv: down1.conv1`, click any output pixel: the 3x3 input window, the
#    kernel, the nine products, and their sum plus the bias, equal to the output the model computed.
#    Try `pool1` (which of the four inputs won) and `up1` (where the 2x2 up-convolution kernel lands).
# 4. **Backward**, on `down1`: the gradient that reaches it is the sum of two contributions, one
#    from `pool1` (the path down the U) and one from `up3` (the skip). Untick the weight map: the
#    gradient in the gaps between touching cells shrinks. The table gives the gradient norm per level.
# 5. **Training**: drag the slider from epoch 1 to the last and watch the prediction form.

# %%
L.step("what to click")
print(f"open {os.path.abspath(page)} in a browser, then:\n"
      "  Overview  - input, prediction, ground truth, error map; click the box down1 in the figure\n"
      "  Block     - shapes, parameters, receptive field, every channel's feature map; up3: the copied skip\n"
      "  One operation - conv: down1.conv1, click an output pixel: window x kernel, products, sum = output\n"
      "  Backward  - down1's gradient = the contribution from pool1 + the one from the skip; toggle the weight map\n"
      "  Training  - drag the slider over the epochs")

# %% [markdown]
# ## Step 4: the page's numbers are the model's
# The page keeps the float32 input window and kernels of each operation it shows; the browser sums
# the products. Python does the same sum here from the page's own data, and the gradient of `down1`
# is the sum of what its two consumers sent back.

# %%
L.step("check the page's numbers against the model")
with open(page, encoding="utf-8") as f:
    text = f.read()
start = text.index('id="data">') + len('id="data">')
data = json.loads(text[start:text.index("</script>", start)])
op = [o for o in data["blocks"][0]["ops"] if o["kind"] == "conv"][0]


def floats(s):
    return np.frombuffer(base64.b64decode(s), "<f4").astype(np.float64)


k, ci = op["k"], op["cin"]
win = floats(op["window"]).reshape(ci, op["ry"] + k - 1, op["rx"] + k - 1)
kernel = floats(op["kernel"]).reshape(-1, ci, k, k)
i, j = op["start"]
value = (win[:, i:i + k, j:j + k] * kernel[0]).sum() + floats(op["bias"])[0]
shown = floats(op["out"]).reshape(-1, op["ry"], op["rx"])[0, i, j]
print(f"{op['layer']} at output ({op['oy'] + i}, {op['ox'] + j}), channel 0: window x kernel summed + bias = "
      f"{value:.7f}; the model's output {shown:.7f}")
d1 = data["blocks"][0]
print("down1's gradient = " + " + ".join(f"{c['norm']:.3g} (norm, from {c['block']})" for c in d1["contributions"])
      + f"; the sum matches the recorded gradient to {d1['contrib_sum_error']:.1e}")

# the page's gradient norms per block, with and without the weight map (the Backward view's table)
import matplotlib.pyplot as plt  # noqa: E402
rows = [b for b in data["blocks"] if "grad_norms" in b]
fig, ax = plt.subplots(figsize=(8, 3))
pos = np.arange(len(rows))
for k, (key, label) in enumerate((("wm", "with the weight map"), ("plain", "without"))):
    ax.bar(pos + 0.4 * k, [b["grad_norms"][key] for b in rows], 0.4, label=label)
ax.set_xticks(pos + 0.2, [b["name"] for b in rows], rotation=45, fontsize=8)
ax.set_yscale("log")
ax.set_ylabel("||dL/d block output||")
ax.legend(frameon=False, fontsize=8)
ax.set_title("The gradient reaching each block (from the explainer page's data)", fontsize=9)
fig.savefig(L.fig("explainer_gradients.png"), dpi=100, bbox_inches="tight")
L.done(fig)
print("figure:", L.fig("explainer_gradients.png"))

# %%
L.finish()
