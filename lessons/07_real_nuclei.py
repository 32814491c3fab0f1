# %% [markdown]
# # Lesson 7: real data, the DSB 2018 nuclei image
# One 512x512 fluorescence image with 125 labelled nuclei (Caicedo et al., Nature Methods 2019),
# shipped inside npunet. We cut it into 128x128 tiles (12 to train, 4 held out) and train U-Net,
# U-Net++ and UNet 3+ of similar small size, each for the same number of epochs.

# %%
import numpy as np

import npunet
from npunet import losses, optim
from npunet.data import Augment, DataLoader, SegmentationDataset, load_nuclei, nuclei_split
from npunet.lesson import Lesson, table
from npunet.models import UNet, UNet3Plus, UNetPlusPlus
from npunet.train import Trainer, evaluate, predict_masks
from npunet.viz import plot_predictions

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
# ## Step 2: three models, one budget
# All padded, BatchNorm, two output classes, cross-entropy with the U-Net weight map; U-Net++ and
# UNet 3+ train with deep supervision.

# %%
L.step("train U-Net, U-Net++ and UNet 3+")
epochs = L.pick(25, 1, klass=8)
nets = {"U-Net": lambda: UNet(1, 2, 16, depth=3, padding="same", batch_norm=True),
        "U-Net++": lambda: UNetPlusPlus(1, 2, filters=(8, 16, 32, 64), depth=3, deep_supervision=True),
        "UNet 3+": lambda: UNet3Plus(1, 2, filters=(8, 16, 32, 64, 128), cat_channels=8, deep_supervision=True)}
ds = SegmentationDataset(xtr, mtr, ltr, weight_map=True)
rows, preds = [], {}
for name, make in nets.items():
    npunet.manual_seed(0)
    net = make()
    loader = DataLoader(ds, batch_size=4, augment=Augment(elastic_p=0.3), seed=0)
    opt = optim.Adam(net.parameters(), lr=3e-3)
    tr = Trainer(net, losses.CrossEntropyLoss(), opt, loader, scheduler=optim.CosineAnnealingLR(opt, epochs),
                 use_weight_map=True, progress=False, log=None)
    tr.fit(epochs)
    r = evaluate(net, xte, mte, lte)
    preds[name] = predict_masks(net, xte)
    rows.append([name, f"{net.num_parameters():,}", f"{sum(tr.history['seconds']):.0f}", f"{r['dice']:.3f}",
                 f"{r['iou']:.3f}", f"{r['instance_f1']:.3f}"])
table(rows, ["model", "parameters", "train s", "Dice", "IoU", "instance F1"])

# %% [markdown]
# ## Step 3: predictions on held-out tiles

# %%
L.step("predictions")
path = plot_predictions(xte[:2], mte[:2], preds["U-Net"][:2], L.fig("nuclei_predictions.png"))
print("figure:", path)

# %%
L.finish()
