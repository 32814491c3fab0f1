# %% [markdown]
# # Lesson 7: real data, the DSB 2018 nuclei image
# One 512x512 fluorescence image with 125 labelled nuclei (Caicedo et al., Nature Methods 2019),
# shipped inside npunet. We cut it into 128x128 tiles (12 to train, 4 held out) and compare U-Net,
# U-Net++ and UNet 3+ fairly: the same parameter budget, recipe and epochs, three seeds each.
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 3 min, `--class` 43 s, `--fast` 6 s.

# %%
import numpy as np

import npunet
from npunet import losses, optim
from npunet.data import Augment, DataLoader, SegmentationDataset, load_nuclei, nuclei_split
from npunet.lesson import Lesson, table
from npunet.models import UNet, UNet3Plus, UNetPlusPlus
from npunet.train import Trainer, evaluate, predict_masks

L = Lesson("Lesson 7: real nuclei")

# %% [markdown]
# ## Step 1: the image

# %%
L.step("the DSB 2018 image")
img, lab, mask = load_nuclei()
print("image", img.shape, "nuclei", len(np.unique(lab)) - 1, "foreground", round(float(mask.mean()), 3))
split = nuclei_split(128, seed=0)
(xtr, ltr, mtr), (xte, lte, mte) = split["train"], split["test"]
print("train tiles", xtr.shape, "held-out tiles", xte.shape)

# %% [markdown]
# ## Step 2: three models, one parameter budget, three seeds
# A fair comparison holds everything but the architecture fixed: all three are padded, with BatchNorm,
# two output classes, cross-entropy with the U-Net weight map, Adam 3e-3 with a cosine schedule, the
# same augmentation, the same epochs, about the same number of parameters (U-Net base 16, depth 3;
# U-Net++ filters 15…120; UNet 3+ filters 8…144, cat_channels 8: the counts are printed below), and
# the same inference rule: one full-resolution output. So **none** of them uses deep supervision here:
# U-Net has no heads to supervise, and with it U-Net++'s eval output would be the mean of four heads
# (its weak L1 head included) while UNet 3+'s is d1 alone, three different rules. What deep supervision
# changes is lesson 11's subject. Each model is trained from three seeds (weights and data order; two
# in `--class`, one in `--fast`): the spread between seeds is the yardstick for any difference.
#
# A caveat on the data: the held-out tiles are other tiles *of the same image* (same microscope, same
# staining, same day). The scores say how well each model fills in the rest of an image it has seen
# part of, not how it does on new images.

# %%
L.step("train U-Net, U-Net++ and UNet 3+ from several seeds")
epochs = L.pick(25, 1, klass=8)
seeds = L.pick((0, 1, 2), (0,), klass=(0, 1))
nets = {"U-Net": lambda: UNet(1, 2, 16, depth=3, padding="same", batch_norm=True),
        "U-Net++": lambda: UNetPlusPlus(1, 2, filters=(15, 30, 60, 120), depth=3),
        "UNet 3+": lambda: UNet3Plus(1, 2, filters=(8, 16, 32, 64, 144), cat_channels=8)}
ds = SegmentationDataset(xtr, mtr, ltr, weight_map=True)
scores, preds, params, seconds = {}, {}, {}, {}
for name, make in nets.items():
    for seed in seeds:
        npunet.manual_seed(seed)
        net = make()
        loader = DataLoader(ds, batch_size=4, augment=Augment(elastic_p=0.3), seed=seed)
        opt = optim.Adam(net.parameters(), lr=3e-3)
        tr = Trainer(net, losses.CrossEntropyLoss(), opt, loader, scheduler=optim.CosineAnnealingLR(opt, epochs),
                     use_weight_map=True, progress=False, log=None)
        tr.fit(epochs)
        scores.setdefault(name, []).append(evaluate(net, xte, mte, lte))
        seconds.setdefault(name, []).append(sum(tr.history["seconds"]))
        params[name] = net.num_parameters()
        if seed == seeds[0]:
            preds[name] = predict_masks(net, xte)


def spread(name, key):
    """Mean and sample standard deviation (ddof=1; 0 for one seed) across seeds."""
    v = np.array([r[key] for r in scores[name]])
    return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)


rows = [[name, f"{params[name]:,}", f"{np.mean(seconds[name]):.0f}"]
        + [f"{spread(name, k)[0]:.3f} ± {spread(name, k)[1]:.3f}" for k in ("dice", "iou", "instance_f1")]
        for name in nets]
table(rows, ["model", "parameters", "train s / seed", "Dice", "IoU", "instance F1"])
print(f"({len(seeds)} seed(s), {epochs} epochs each; ± is the sample standard deviation across seeds)")
budget = max(params.values()) / min(params.values()) - 1
print(f"parameter budgets equal within {budget:.1%}")

# %% [markdown]
# ## Step 3: what the numbers allow us to say
# A difference between two models means something only when it is larger than the spread between
# seeds of the same model. On 12 training tiles of one image it usually is not: the conclusion printed
# below is computed from the table above, not written in advance.

# %%
L.step("a conclusion")
best = max(nets, key=lambda n: spread(n, "dice")[0])
for name in nets if len(seeds) > 1 else []:
    if name == best:
        continue
    gap = spread(best, "dice")[0] - spread(name, "dice")[0]
    noise = max(spread(best, "dice")[1], spread(name, "dice")[1])
    verdict = "larger than" if gap > 2 * noise else "within"
    print(f"{best} vs {name}: Dice {gap:+.3f}, {verdict} twice the seed spread ({2 * noise:.3f})")
if len(seeds) == 1:
    print("one seed only: there is no spread to measure a difference against, so no conclusion")
fastest = min(nets, key=lambda n: np.mean(seconds[n]))
print(f"fastest to train: {fastest} ({np.mean(seconds[fastest]):.0f} s per run); with this little data, a model "
      f"that is not clearly better is not worth its extra time")

# %% [markdown]
# ## Step 4: predictions on held-out tiles
# Two held-out tiles, the truth, and each model's prediction (first seed): where do they disagree?

# %%
L.step("predictions of all three models")
import matplotlib.pyplot as plt  # noqa: E402

cols = ["image", "truth"] + list(nets)
fig, ax = plt.subplots(2, len(cols), figsize=(2.4 * len(cols), 5.3), gridspec_kw=dict(hspace=0.08))
for r in range(2):
    panels = [xte[r, 0], mte[r]] + [preds[n][r] for n in nets]
    for c, (title, im) in enumerate(zip(cols, panels)):
        ax[r, c].imshow(im, cmap="gray")
        ax[r, c].set_xticks([]); ax[r, c].set_yticks([])
        if r == 0:
            ax[r, c].set_title(title if c < 2 else f"{title}\nDice {scores[title][0]['dice']:.3f}", fontsize=9)
fig.savefig(L.fig("nuclei_predictions.png"), dpi=90, bbox_inches="tight")
L.done(fig)
print("figure:", L.fig("nuclei_predictions.png"))

# %%
L.finish()

# %% [markdown]
# ## Where next: graduate to PyTorch
# When a project outgrows one CPU, carry the trained model over: `npunet.export.to_pytorch` writes it as
# a standalone PyTorch module (`model.py`, the same layer names, so the same state_dict keys), its
# weights, and `train_ddp.py`, which continues training with this lesson's recipe on many processes
# (`torchrun`, DistributedDataParallel). The last model trained above (a UNet 3+) goes
# over, with the training tiles as an images/ + masks/ folder. From the shell: `npunet export
# --checkpoint RUN/checkpoint.npz --out DIR` does the same for any `npunet train` run.

# %%
import os  # noqa: E402

from PIL import Image  # noqa: E402

from npunet.export import to_pytorch  # noqa: E402
from npunet.runs import input_range  # noqa: E402

print("\n## Where next: export to PyTorch")
out = L.scratch("export") if L.size == "fast" else os.path.join(os.path.dirname(L.figdir), "runs", "nuclei_pytorch")
recipe = dict(loss="ce", weight_map=True, optimizer="adam", lr=3e-3, schedule="cosine", epochs=epochs, batch_size=4,
              seed=seeds[-1], augment=dict(elastic_p=0.3))
paths = to_pytorch(net, out, run_config=recipe, input_range=input_range(xtr))
for sub in ("images", "masks"):
    os.makedirs(os.path.join(out, "data", sub), exist_ok=True)
for i in range(len(xtr)):
    np.save(os.path.join(out, "data", "images", f"tile{i:02d}.npy"), xtr[i, 0])
    Image.fromarray((mtr[i] > 0).astype(np.uint8) * 255).save(os.path.join(out, "data", "masks", f"tile{i:02d}.png"))
print("wrote", ", ".join(os.path.basename(p) for p in paths), "and data/ in", out)
print("continue training in PyTorch on 2 processes (pip install torch safetensors pillow):")
print(f"  torchrun --nproc_per_node 2 {paths[2]} --data {os.path.join(out, 'data')} --epochs {epochs}")
